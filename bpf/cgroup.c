/* Cgroup hooks: a process moved into a tagged cgroup, or into one below it, joins its run.
 * Processes already in the cgroup are adopted by userspace; their children follow by fork. */
#include "lib/common.h"
#include "lib/cgroups.h"

/* cgroup_attach_task(struct cgroup *dst_cgrp, const char *path, struct task_struct *task,
 * bool threadgroup): once per migrated thread. */
RAW_TRACEPOINT_PROBE(cgroup_attach_task)
{
	if (any_cgroup_tagged())
		join_tagged_cgroup(ctx->args[0], ctx->args[2]);
	return 0;
}
