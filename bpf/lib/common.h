/* Shared definitions for every hook file: offsets, kernel reads, maps, loss counting.
 *
 * Struct offsets are never taken from kernel headers (the headers on the build host may
 * belong to another kernel): the loader reads them from BTF and passes -DOFF_<STRUCT>_<FIELD>.
 */
#ifndef ROARD_COMMON_H
#define ROARD_COMMON_H

#include <uapi/linux/ptrace.h>
#include "include/roard_abi.h"

/* Sizing, from roard's config (defaults in roard/kernel/loader.py). */
#ifndef ROARD_TRACKED_MAX
#define ROARD_TRACKED_MAX 65536
#endif
#ifndef ROARD_FDAGG_MAX
#define ROARD_FDAGG_MAX 131072
#endif
#ifndef ROARD_RUNS_MAX
#define ROARD_RUNS_MAX 4096
#endif
#ifndef ROARD_RING_PAGES
#define ROARD_RING_PAGES 2048
#endif
#ifndef ROARD_OWN_MNTNS
#define ROARD_OWN_MNTNS 0 /* unknown: every event is then checked in userspace */
#endif
#ifndef ROARD_WAKEUP_EVERY
#define ROARD_WAKEUP_EVERY 64
#endif

/* Room for the largest fixed event plus a data area that masked offsets cannot overrun:
 * paths and names start below ROARD_DATA_MAX and end below twice that; an exec's argv
 * starts below ROARD_DATA_MAX, and its environment follows it. */
#define ROARD_EVENT_HDR_MAX 128 /* >= the largest roard_ev_* */
#define ROARD_SCRATCH_DATA (ROARD_DATA_MAX + ROARD_ARGV_MAX + ROARD_ENV_MAX)
#define ROARD_SCRATCH_SIZE (ROARD_EVENT_HDR_MAX + ROARD_SCRATCH_DATA)
#define ROARD_SCRATCH_MASK 32767 /* the power of two above ROARD_SCRATCH_DATA, less one */
_Static_assert(ROARD_SCRATCH_DATA >= 2 * ROARD_DATA_MAX, "scratch too small for paths");
_Static_assert(ROARD_SCRATCH_DATA <= ROARD_SCRATCH_MASK + 1, "ROARD_SCRATCH_MASK too small");

struct roard_scratch {
	u8 buf[ROARD_SCRATCH_SIZE]; /* first: submit() sends the struct from its start */
	u32 since_wakeup;
	/* Loop state of walk_path kept in map memory, not registers: the verifier then sees
	 * every iteration in the same state and prunes, instead of exploring 64 levels deep. */
	u32 pos;
	u32 walk_truncated;
	u32 seen_len; /* of the last walk: see ROARD_SEEN_NONE */
};

/* Syscall tracepoint records: the loader checks these layouts against the live formats
 * in tracefs before loading (roard/kernel/loader.py: check_syscall_formats). */
struct roard_sys_enter {
	u64 common;
	s32 nr;
	s32 pad;
	u64 args[6];
};

struct roard_sys_exit {
	u64 common;
	s32 nr;
	s32 pad;
	s64 ret;
};

/* A syscall tracepoint handler; the loader attaches tp__<event> to syscalls:<event>. */
#define SYSCALL_ENTER(event) int tp__##event(struct roard_sys_enter *ctx)
#define SYSCALL_EXIT(event) int tp__##event(struct roard_sys_exit *ctx)

struct roard_inflight {
	s32 fd_in;  /* descriptor whose bytes were read, or -1 */
	s32 fd_out; /* descriptor whose bytes were written, or -1 */
};

struct roard_rename_args {
	s64 olddfd;
	u64 oldname;
	s64 newdfd;
	u64 newname;
	u64 flags;
	u32 op; /* ROARD_NAME_*: one-name ops leave newname 0 */
	u32 pad;
};

/* Maps a restarted roard must find again (roard/kernel/pins.py) are pinned on bpffs when
 * the loader passes ROARD_PIN_DIR. */
#ifdef ROARD_PIN_DIR
#define ROARD_KEPT_TABLE(type, name, key, leaf, size) \
	BPF_TABLE_PINNED(type, key, leaf, name, size, ROARD_PIN_DIR "/" #name)
#else
#define ROARD_KEPT_TABLE(type, name, key, leaf, size) BPF_TABLE(type, key, leaf, name, size)
#endif

/* tgid -> run key of every tracked process: the in-kernel filter, one entry per process. */
ROARD_KEPT_TABLE("hash", tracked, u32, u64, ROARD_TRACKED_MAX);
/* (tgid, fd) -> I/O so far on that open file; flushed at close, reuse and exit. */
ROARD_KEPT_TABLE("hash", fdagg, struct roard_fdkey, struct roard_fdagg, ROARD_FDAGG_MAX);
#ifndef ROARD_EXIT_ARGS
/* thread id -> descriptors of the read/write syscall it is inside; one per running thread. */
BPF_HASH(inflight, u64, struct roard_inflight, ROARD_TRACKED_MAX);
#endif
/* thread id -> 1 while it is inside an open that truncates (the file's f_flags lose
 * O_TRUNC once open); one per running thread. */
BPF_HASH(truncating, u64, u8, ROARD_TRACKED_MAX);
/* thread id -> arguments of the rename, link, unlink or truncate it is inside; one per
 * running thread. */
BPF_HASH(renames, u64, struct roard_rename_args, ROARD_TRACKED_MAX);
/* (run key, category) -> events dropped for that run; a few entries per open run at most. */
BPF_HASH(run_losses, struct roard_losskey, u64, ROARD_RUNS_MAX);
/* Drops by category (ROARD_LOSS_*), per CPU so counting never contends. */
BPF_PERCPU_ARRAY(losses, u64, ROARD_LOSS_NR);
/* The event under construction: larger than the 512-byte BPF stack. */
BPF_PERCPU_ARRAY(scratch, struct roard_scratch, 1);
_Static_assert(sizeof(struct roard_scratch) <= 32768,
	       "the kernel refuses per-CPU map values over 32 KiB (PCPU_MIN_UNIT_SIZE)");
/* Events to userspace, one ring shared by all CPUs so order is preserved. */
BPF_RINGBUF_OUTPUT(events, ROARD_RING_PAGES);

static __always_inline u64 rd_u64(u64 base, u32 off)
{
	u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (const void *)(base + off));
	return v;
}

static __always_inline u32 rd_u32(u64 base, u32 off)
{
	u32 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (const void *)(base + off));
	return v;
}

static __always_inline void count_loss(u32 category, u64 run_key)
{
	u64 *n = losses.lookup(&category);
	if (n)
		*n += 1;
	if (!run_key)
		return;
	u64 zero = 0;
	struct roard_losskey key = {.run_key = run_key, .category = category};
	u64 *r = run_losses.lookup_or_try_init(&key, &zero);
	if (r)
		lock_xadd(r, 1);
}

static __always_inline u32 current_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline u64 tracked_run(u32 tgid)
{
	u64 *run = tracked.lookup(&tgid);
	return run ? *run : 0;
}

/* Start time of a task's process (its group leader): with the tgid, a process's identity. */
static __always_inline u64 start_boottime(u64 task)
{
	return rd_u64(rd_u64(task, OFF_TASK_STRUCT_GROUP_LEADER), OFF_TASK_STRUCT_START_BOOTTIME);
}

/* A task's parent process (its real parent: not a ptrace tracer). */
static __always_inline u32 parent_tgid(u64 task)
{
	return rd_u32(rd_u64(task, OFF_TASK_STRUCT_REAL_PARENT), OFF_TASK_STRUCT_TGID);
}

/* A task's real uid (not the effective one a setuid program has): whose process it is. */
static __always_inline u32 real_uid(u64 task)
{
	return rd_u32(rd_u64(task, OFF_TASK_STRUCT_REAL_CRED), OFF_CRED_UID);
}

#ifdef ROARD_EXIT_ARGS
/* The field at `off` of a BTF-typed kernel pointer (from bpf_get_current_task_btf and the
 * pointers loaded through it): one load the verifier checks against BTF, and that reads 0
 * where the address faults, instead of a helper call as rd_u64 makes. The kernels that load
 * the exit-only variant (bpf_task_pt_regs: 5.15) all allow it; the hooks that run on every
 * read and write of a tracked process use it. */
#define typed_field(ptr, off, type) (*(type *)((char *)(ptr) + (off)))

/* Argument `i` (0-2) of the syscall the current task is leaving: the kernel keeps the
 * user registers it entered with (x86_64: di, si, dx; offsets from BTF), so an exit
 * handler needs no entry handler nor a map to carry them across. */
static __always_inline u64 syscall_arg_at_exit(u32 i)
{
	void *regs = (void *)bpf_task_pt_regs(bpf_get_current_task_btf());
	return typed_field(regs, i == 0 ? OFF_PT_REGS_DI : i == 1 ? OFF_PT_REGS_SI : OFF_PT_REGS_DX,
			   u64);
}
#endif

static __always_inline struct roard_scratch *scratch_buf(void)
{
	u32 zero = 0;
	return scratch.lookup(&zero);
}

/* Set ROARD_HDR_OTHER_MNTNS, and say so, when the current task is in another mount
 * namespace than roard (ROARD_OWN_MNTNS, its inode number; the loader passes it).
 * Unreadable counts as other: userspace then checks. Only events with paths need this. */
static __always_inline bool mark_other_mntns(struct roard_hdr *h)
{
	u64 nsproxy = rd_u64(bpf_get_current_task(), OFF_TASK_STRUCT_NSPROXY);
	u64 mnt_ns = rd_u64(nsproxy, OFF_NSPROXY_MNT_NS);
	if (rd_u32(mnt_ns, OFF_MNT_NAMESPACE_NS + OFF_NS_COMMON_INUM) == ROARD_OWN_MNTNS)
		return false;
	h->flags |= ROARD_HDR_OTHER_MNTNS;
	return true;
}

static __always_inline void fill_hdr(struct roard_hdr *h, u32 type, u64 run_key)
{
	u64 id = bpf_get_current_pid_tgid();
	h->type = type;
	h->tgid = id >> 32;
	h->pid = (u32)id;
	h->flags = 0;
	h->ktime_ns = bpf_ktime_get_ns();
	h->run_key = run_key;
}

/* Send the event at the start of the scratch buffer: `hdr_size` fixed bytes and `data_len`
 * bytes after them (capped so the verifier can bound it); false when the ring had no room.
 * Waking the reader costs more than an event, so file events wake it only every
 * ROARD_WAKEUP_EVERY events; it also polls on a timer. */
static __always_inline bool ring_output(struct roard_scratch *s, u32 hdr_size, u32 data_len,
					bool urgent)
{
	/* Masked before it is capped: clang may size the record from a copy of data_len that
	 * the cap's branch does not bound in the verifier's eyes; the mask bounds every copy. */
	data_len &= ROARD_SCRATCH_MASK;
	if (data_len > ROARD_SCRATCH_DATA)
		data_len = ROARD_SCRATCH_DATA;
	u64 size = hdr_size + data_len;
	u64 flags = BPF_RB_NO_WAKEUP;
	s->since_wakeup += 1;
	if (urgent || s->since_wakeup >= ROARD_WAKEUP_EVERY) {
		flags = BPF_RB_FORCE_WAKEUP;
		s->since_wakeup = 0;
	}
	return events.ringbuf_output(s, size, flags) == 0;
}

/* ring_output, the drop counted (globally, and for the run). */
static __always_inline bool submit(struct roard_scratch *s, u32 hdr_size, u32 data_len,
				   u32 loss_category, u64 run_key, bool urgent)
{
	if (ring_output(s, hdr_size, data_len, urgent))
		return true;
	count_loss(loss_category, run_key);
	return false;
}

#endif
