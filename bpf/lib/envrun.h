/* The ROARD_RUN environment convention: an untracked process that execs with
 * ROARD_RUN=<value> in its environment becomes the root of a new run, in the kernel, so
 * nothing it does between its exec and userspace noticing is missed.
 *
 * Compiled in only with -DROARD_ENV_RUNS (config env_runs); without it, exec costs
 * untracked processes nothing more than the tracked-map lookup.
 *
 * Where to look: the new program's environment block, mm->env_start..env_end, at
 * sched_process_exec. That hook already runs on every exec; it fires only for an exec that
 * succeeded; it sees exactly the strings the program got (not the caller's envp array,
 * which another thread may change while execve copies it); and it covers execve,
 * execveat and 32-bit callers alike, with no per-thread state to clean up after a failed
 * exec (what scanning envp at sys_enter_execve would need). Cost: one
 * bpf_probe_read_user_str per environment entry, copying only up to its NUL
 * (bench/exec_storm.py measures it).
 */
#ifndef ROARD_ENVRUN_H
#define ROARD_ENVRUN_H

#include "lib/common.h"

#define ROARD_ENV_PREFIX "ROARD_RUN="
#define ROARD_ENV_PREFIX_LEN 10
/* Reads per exec at most: some 500 entries (an entry longer than ROARD_ENV_ENTRY_MAX takes
 * one read per ROARD_ENV_ENTRY_MAX bytes). Entries past that are not looked at. */
#define ROARD_ENV_SCAN_MAX 512

/* Per CPU, one counter: ROARD_RUN run keys handed out on that CPU (low bits of the next).
 * Kept across restarts, so a new run never reuses the key of a run being resumed. */
ROARD_KEPT_TABLE("percpu_array", env_run_seq, u32, u64, 1);

static __always_inline bool is_env_run_entry(const u8 *entry)
{
	const char prefix[] = ROARD_ENV_PREFIX;
#pragma unroll
	for (int i = 0; i < ROARD_ENV_PREFIX_LEN; i++)
		if (entry[i] != prefix[i])
			return false;
	return true;
}

/* Copy the ROARD_RUN=... entry of the current (just exec'd) program's environment to
 * `entry`; return the bytes copied (with the NUL), or 0 if there is none. */
static __always_inline int find_env_run(u8 *entry, u64 mm)
{
	u64 pos = rd_u64(mm, OFF_MM_STRUCT_ENV_START);
	u64 end = rd_u64(mm, OFF_MM_STRUCT_ENV_END);
	bool at_start = true; /* pos is the first byte of an entry, not inside a long one */
	for (int i = 0; i < ROARD_ENV_SCAN_MAX && pos < end; i++) {
		int n = bpf_probe_read_user_str(entry, ROARD_ENV_ENTRY_MAX, (const void *)pos);
		if (n <= 0)
			return 0;
		if (at_start && n > ROARD_ENV_PREFIX_LEN && is_env_run_entry(entry))
			return n;
		/* n == the buffer size: no NUL yet, the entry goes on from its last byte read. */
		at_start = n < ROARD_ENV_ENTRY_MAX;
		pos += at_start ? n : n - 1;
	}
	return 0;
}

/* A run key no other run has: see ROARD_ENV_KEY_TOP_BIT. A per-CPU sequence needs no atomics:
 * raw tracepoint programs do not migrate between CPUs while they run. */
static __always_inline u64 new_env_run_key(void)
{
	u32 zero = 0;
	u64 *seq = env_run_seq.lookup(&zero);
	if (!seq)
		return 0;
	*seq += 1;
	u64 cpu = bpf_get_smp_processor_id();
	return 1ULL << ROARD_ENV_KEY_TOP_BIT | cpu << ROARD_ENV_KEY_CPU_SHIFT |
	       (*seq & ((1ULL << ROARD_ENV_KEY_CPU_SHIFT) - 1));
}

/* Called at sched_process_exec of an untracked process: if its environment has ROARD_RUN,
 * track it under a new run key and announce the run. Returns that key, or 0. */
static __always_inline u64 start_env_run(u32 tgid)
{
	struct roard_scratch *s = scratch_buf();
	if (!s)
		return 0;
	u64 task = bpf_get_current_task();
	struct roard_ev_env_run *ev = (struct roard_ev_env_run *)s->buf;
	int n = find_env_run(s->buf + sizeof(*ev), rd_u64(task, OFF_TASK_STRUCT_MM));
	if (n <= 0)
		return 0;
	u64 run_key = new_env_run_key();
	if (!run_key)
		return 0;
	if (tracked.update(&tgid, &run_key) != 0) {
		count_loss(ROARD_LOSS_TRACKED_FULL, 0);
		return 0;
	}
	fill_hdr(&ev->hdr, ROARD_EV_ENV_RUN, run_key);
	if (n == ROARD_ENV_ENTRY_MAX)
		ev->hdr.flags |= ROARD_HDR_VALUE_TRUNCATED;
	ev->start_boottime_ns = start_boottime(task);
	ev->ppid = parent_tgid(task);
	ev->uid = (u32)bpf_get_current_uid_gid(); /* the real uid, even for a setuid program */
	ev->entry_len = n - 1;
	/* Unannounced, the run would be unknown to userspace: leave the process untracked
	 * (the drop is counted, globally: no run_losses entry for a key nobody will take). */
	if (!submit(s, sizeof(*ev), n - 1, ROARD_LOSS_RINGBUF_PROC, 0, true)) {
		tracked.delete(&tgid);
		return 0;
	}
	return run_key;
}

#endif
