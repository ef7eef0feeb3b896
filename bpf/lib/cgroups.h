/* Tagged cgroups: a process that enters one (or a cgroup below it) joins its run. */
#ifndef ROARD_CGROUPS_H
#define ROARD_CGROUPS_H

#include "lib/common.h"

/* (hierarchy, cgroup) -> the run that tagged it; each cgroup run tags one, so one per open run. */
BPF_HASH(tagged_cgroups, struct roard_cgroup_key, struct roard_cgroup_tag, ROARD_RUNS_MAX);
/* How many cgroups are tagged (kept by userspace): migrations skip the walk while it is 0. */
BPF_ARRAY(cgroups_tagged, u32, 1);

static __always_inline bool any_cgroup_tagged(void)
{
	u32 zero = 0;
	u32 *n = cgroups_tagged.lookup(&zero);
	return n && *n;
}

/* The tag of cgroup `cgrp` or of its nearest tagged ancestor; NULL when none is tagged.
 * Up through cgroup.self (the cgroup's own css): css.parent, then that css's cgroup, which
 * every kernel since 3.16 has (cgroup->ancestors[] and ->level changed form over time). */
static __always_inline struct roard_cgroup_tag *tagged_ancestor(u64 cgrp)
{
	struct roard_cgroup_key key = {};
	key.hierarchy_id = rd_u32(rd_u64(cgrp, OFF_CGROUP_ROOT), OFF_CGROUP_ROOT_HIERARCHY_ID);
	for (u32 level = 0; level < ROARD_CGROUP_DEPTH && cgrp; level++) {
		key.kn_id = rd_u64(rd_u64(cgrp, OFF_CGROUP_KN), OFF_KERNFS_NODE_ID);
		struct roard_cgroup_tag *tag = tagged_cgroups.lookup(&key);
		if (tag)
			return tag;
		u64 parent_css = rd_u64(cgrp + OFF_CGROUP_SELF, OFF_CGROUP_SUBSYS_STATE_PARENT);
		cgrp = parent_css ? rd_u64(parent_css, OFF_CGROUP_SUBSYS_STATE_CGROUP) : 0;
	}
	return NULL;
}

/* Whether a process of `task` may join the run that `tag` belongs to: a cgroup tagged by a
 * user (a delegated one) takes only that user's processes. */
static __always_inline bool may_join(struct roard_cgroup_tag *tag, u64 task)
{
	if (tag->flags & ROARD_CGTAG_ANY_UID)
		return true;
	return real_uid(task) == tag->uid;
}

/* `task` entered cgroup `cgrp`: if that or an ancestor is tagged, its process joins the
 * run (tracked from now on, children by fork) and userspace is told to adopt it. */
static __always_inline void join_tagged_cgroup(u64 cgrp, u64 task)
{
	struct roard_cgroup_tag *tag = tagged_ancestor(cgrp);
	if (!tag || !may_join(tag, task))
		return;
	u64 run_key = tag->run_key;
	u32 tgid = rd_u32(task, OFF_TASK_STRUCT_TGID);
	if (tracked_run(tgid) == run_key)
		return; /* another thread of a process that joined, or a move within the run */
	if (tracked.update(&tgid, &run_key) != 0) {
		count_loss(ROARD_LOSS_TRACKED_FULL, run_key);
		return;
	}
	struct roard_scratch *s = scratch_buf();
	if (!s)
		return;
	struct roard_ev_cgroup_join *ev = (struct roard_ev_cgroup_join *)s->buf;
	fill_hdr(&ev->hdr, ROARD_EV_CGROUP_JOIN, run_key);
	ev->hdr.tgid = tgid; /* the process that entered, not the one that moved it */
	ev->hdr.pid = tgid;
	ev->start_boottime_ns = start_boottime(task);
	ev->ppid = parent_tgid(task);
	ev->uid = real_uid(task);
	submit(s, sizeof(*ev), 0, ROARD_LOSS_RINGBUF_PROC, run_key, true);
}

#endif
