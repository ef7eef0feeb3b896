/* Process hooks: the tracked set follows fork, and exec/exit are reported. */
#include "lib/common.h"
#include "lib/cgroups.h"
#include "lib/files.h"
#include "lib/path.h"
#include "lib/envrun.h"

/* clone3(CLONE_INTO_CGROUP) starts a child in another (v2) cgroup than its parent's, with no
 * migration to report (systemd and container runtimes start processes so). */
static __always_inline void join_cloned_into_cgroup(u64 parent, u64 child)
{
	if (!any_cgroup_tagged())
		return;
	u64 cset = rd_u64(child, OFF_TASK_STRUCT_CGROUPS);
	if (cset != rd_u64(parent, OFF_TASK_STRUCT_CGROUPS))
		join_tagged_cgroup(rd_u64(cset, OFF_CSS_SET_DFL_CGRP), child);
}

/* Children of tracked processes are tracked before they run; other processes enter a run by
 * entering a tagged cgroup. */
RAW_TRACEPOINT_PROBE(sched_process_fork)
{
	u64 parent = ctx->args[0];
	u64 child = ctx->args[1];
	u32 ptgid = rd_u32(parent, OFF_TASK_STRUCT_TGID);
	u32 ctgid = rd_u32(child, OFF_TASK_STRUCT_TGID);
	if (ptgid == ctgid)
		return 0; /* a new thread shares its process's run */
	u64 run_key = tracked_run(ptgid);
	if (!run_key) {
		join_cloned_into_cgroup(parent, child);
		return 0;
	}
	if (tracked.update(&ctgid, &run_key) != 0) {
		count_loss(ROARD_LOSS_TRACKED_FULL, run_key);
		return 0;
	}
	/* clone(CLONE_FILES): the child shares the parent's descriptor table, and may close
	 * a file for both. Name the parent's lazily announced files now, while they are held;
	 * files tracked from now on are announced at once (track_file: table_shared). */
	if (rd_u64(child, OFF_TASK_STRUCT_FILES) == rd_u64(parent, OFF_TASK_STRUCT_FILES))
		flush_lazy_fds(ptgid);
	struct roard_scratch *s = scratch_buf();
	if (!s)
		return 0;
	struct roard_ev_fork *ev = (struct roard_ev_fork *)s->buf;
	fill_hdr(&ev->hdr, ROARD_EV_FORK, run_key);
	ev->hdr.tgid = ctgid;
	ev->hdr.pid = ctgid;
	ev->ppid = ptgid;
	ev->start_boottime_ns = rd_u64(child, OFF_TASK_STRUCT_START_BOOTTIME);
	ev->parent_start_boottime_ns = start_boottime(parent);
	submit(s, sizeof(*ev), 0, ROARD_LOSS_RINGBUF_PROC, run_key, true);
	return 0;
}

/* Copy the user memory [start, end), a block the kernel just laid out for the new program
 * (argv or environment), to `dst`: at most `max` bytes. A longer block, or one that cannot be
 * read, sets `flag` in the header, so userspace knows its copy is not the whole. Returns the
 * bytes copied. */
static __always_inline u32 copy_exec_block(struct roard_hdr *hdr, u8 *dst, u64 start, u64 end,
					   u32 max, u32 flag)
{
	u64 len = end - start;
	if (len > max) {
		len = max;
		hdr->flags |= flag;
	}
	if (bpf_probe_read_user(dst, len, (const void *)start) == 0)
		return len;
	hdr->flags |= flag;
	return 0;
}

RAW_TRACEPOINT_PROBE(sched_process_exec)
{
	u32 tgid = current_tgid();
	u64 run_key = tracked_run(tgid);
#ifdef ROARD_ENV_RUNS
	/* A process already in a run ignores ROARD_RUN: its children inherit the variable. */
	if (!run_key)
		run_key = start_env_run(tgid);
#endif
	if (!run_key)
		return 0;
	struct roard_scratch *s = scratch_buf();
	if (!s)
		return 0;
	u64 task = bpf_get_current_task();
	u64 mm = rd_u64(task, OFF_TASK_STRUCT_MM);
	struct roard_ev_exec *ev = (struct roard_ev_exec *)s->buf;
	u8 *data = s->buf + sizeof(*ev);
	fill_hdr(&ev->hdr, ROARD_EV_EXEC, run_key);
	ev->start_boottime_ns = start_boottime(task);
	ev->ppid = parent_tgid(task);
	ev->uid = (u32)bpf_get_current_uid_gid();

	u64 exe = rd_u64(mm, OFF_MM_STRUCT_EXE_FILE) + OFF_FILE_F_PATH;
	u64 cwd = rd_u64(task, OFF_TASK_STRUCT_FS) + OFF_FS_STRUCT_PWD;
	s->pos = 0;
	walk_path(s, data, exe);
	u32 truncated = s->walk_truncated;
	ev->exe_seen_len = s->seen_len;
	ev->exe_len = s->pos;
	walk_path(s, data, cwd);
	truncated |= s->walk_truncated;
	ev->cwd_len = s->pos - ev->exe_len;
	if (truncated)
		ev->hdr.flags |= ROARD_HDR_PATH_TRUNCATED;
	ev->exe_fs_len = 0;
	ev->cwd_fs_len = 0;
	if (mark_other_mntns(&ev->hdr)) {
		ev->exe_fs_len = walk_fs_path(s, data, exe);
		ev->exe_dev = path_dev(exe);
		ev->cwd_fs_len = walk_fs_path(s, data, cwd);
		ev->cwd_dev = path_dev(cwd);
	}
	u32 paths_end = s->pos & (ROARD_DATA_MAX - 1);

	u32 argv_len = copy_exec_block(&ev->hdr, data + paths_end, rd_u64(mm, OFF_MM_STRUCT_ARG_START),
				       rd_u64(mm, OFF_MM_STRUCT_ARG_END), ROARD_ARGV_MAX,
				       ROARD_HDR_ARGV_TRUNCATED);
	/* Read here, not from /proc when userspace gets to it: a short-lived program is gone by
	 * then. The offset is below ROARD_DATA_MAX + ROARD_ARGV_MAX (the verifier tracks it). */
	u32 env_off = paths_end + argv_len;
	u32 env_len = copy_exec_block(&ev->hdr, data + env_off, rd_u64(mm, OFF_MM_STRUCT_ENV_START),
				      rd_u64(mm, OFF_MM_STRUCT_ENV_END), ROARD_ENV_MAX,
				      ROARD_HDR_ENV_TRUNCATED);
	ev->argv_len = argv_len;
	ev->env_len = env_len;
	if (ring_output(s, sizeof(*ev), env_off + env_len, true))
		return 0;
	/* A ring too full for the environment may still take the rest, and an exec matters more
	 * than its environment (which userspace then reads from /proc while it can). */
	ev->env_len = 0;
	ev->hdr.flags |= ROARD_HDR_ENV_TRUNCATED;
	submit(s, sizeof(*ev), env_off, ROARD_LOSS_RINGBUF_PROC, run_key, true);
	return 0;
}

/* Reported once, when the last thread of a tracked process exits. */
RAW_TRACEPOINT_PROBE(sched_process_exit)
{
	u32 tgid = current_tgid();
	u64 run_key = tracked_run(tgid);
	if (!run_key)
		return 0;
	/* A thread killed inside a syscall never reaches its exit. */
	u64 id = bpf_get_current_pid_tgid();
#ifndef ROARD_EXIT_ARGS
	inflight.delete(&id);
#endif
	truncating.delete(&id);
	u64 task = bpf_get_current_task();
	if (rd_u32(rd_u64(task, OFF_TASK_STRUCT_SIGNAL), OFF_SIGNAL_STRUCT_LIVE) != 0)
		return 0;
	/* Threads exiting together may all see live == 0: the one whose delete succeeds
	 * reports. The descriptor table is released after this tracepoint, so its files are
	 * still here to flush. */
	if (tracked.delete(&tgid) != 0)
		return 0;
	flush_lazy_fds(tgid);
	drop_ignored_fds(tgid);
	struct roard_scratch *s = scratch_buf();
	if (!s)
		return 0;
	struct roard_ev_exit *ev = (struct roard_ev_exit *)s->buf;
	fill_hdr(&ev->hdr, ROARD_EV_EXIT, run_key);
	ev->start_boottime_ns = start_boottime(task);
	ev->exit_code = rd_u32(task, OFF_TASK_STRUCT_EXIT_CODE);
	submit(s, sizeof(*ev), 0, ROARD_LOSS_RINGBUF_PROC, run_key, true);
	return 0;
}
