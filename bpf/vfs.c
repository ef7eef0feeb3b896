/* VFS hook of the kprobe and fentry tiers: file I/O that no syscall names, i.e. io_uring
 * (its inline issue, worker and SQPOLL threads) and aio. Every read or write passes the
 * LSM's security_file_permission(file, mask) first, whoever issues it; the syscall hooks
 * already count the rest, so only those contexts are taken here.
 *
 * The loader compiles this with ROARD_VFS_IO set to ROARD_VFS_FENTRY or ROARD_VFS_KPROBE
 * (roard/kernel/features.py: vfs_plan), only where BTF has what it reads
 * (pt_regs.orig_ax: x86_64). */
#include "lib/files.h"

#ifdef ROARD_VFS_IO

#define ROARD_VFS_KPROBE 1
#define ROARD_VFS_FENTRY 2

/* x86_64 syscall numbers whose file I/O the syscall hooks do not see. */
#define ROARD_NR_IO_SUBMIT 209
#define ROARD_NR_IO_URING_ENTER 426

/* (file, process, direction) already reported: one event each, not one per request.
 * LRU: an evicted entry costs a repeated event (idempotent in userspace), never a lost one. */
struct roard_vfskey {
	u64 file;
	u64 ino; /* a freed file's address reused for another file is another key */
	u32 tgid;
	u32 dir; /* ROARD_AGG_VFS_READ or ROARD_AGG_VFS_WRITE */
};
BPF_TABLE("lru_hash", struct roard_vfskey, u8, vfs_seen, 16384);

/* Whether the current task issues I/O the syscall hooks miss: an io_uring thread, or a
 * task inside io_uring_enter or io_submit (the syscall number it entered with). */
static __always_inline bool async_io_context(void)
{
	u64 task = bpf_get_current_task();
	if (rd_u32(task, OFF_TASK_STRUCT_FLAGS) & ROARD_PF_IO_WORKER)
		return true;
	u64 regs = (u64)bpf_task_pt_regs(bpf_get_current_task_btf());
	u64 nr = rd_u64(regs, OFF_PT_REGS_ORIG_AX);
	return nr == ROARD_NR_IO_URING_ENTER || nr == ROARD_NR_IO_SUBMIT;
}

/* A tracked process reads (MAY_READ) or writes (MAY_WRITE) `file` asynchronously: report
 * the file once per direction, with its path, as an aggregate without a descriptor. */
static __always_inline void vfs_io(u64 file, u32 mask)
{
	u32 dir = (mask & ROARD_MAY_WRITE) ? ROARD_AGG_VFS_WRITE
		  : (mask & ROARD_MAY_READ) ? ROARD_AGG_VFS_READ
					    : 0;
	if (!dir || !async_io_context())
		return;
	u32 tgid = current_tgid();
	u64 run_key = tracked_run(tgid);
	u64 inode = run_key ? rd_u64(file, OFF_FILE_F_INODE) : 0;
	if (!inode || !is_regular(inode))
		return;
	struct roard_vfskey seen = {.file = file, .ino = rd_u64(inode, OFF_INODE_I_INO),
				    .tgid = tgid, .dir = dir};
	u8 one = 1;
	if (vfs_seen.lookup(&seen) || vfs_seen.update(&seen, &one) != 0)
		return;
	struct roard_fdkey key = {.tgid = tgid, .fd = ROARD_FD_NONE};
	struct roard_fdagg agg = {};
	describe_file(&agg, file, inode, run_key);
	agg.flags |= dir;
	send_close(&key, &agg, true);
}

#if ROARD_VFS_IO == ROARD_VFS_FENTRY
KFUNC_PROBE(security_file_permission, struct file *file, int mask)
{
	vfs_io((u64)file, (u32)mask);
	return 0;
}
#else
/* Attached by the loader (not bcc's kprobe__ autoload, so a failed attach falls back). */
int kp__security_file_permission(struct pt_regs *ctx)
{
	vfs_io(PT_REGS_PARM1(ctx), (u32)PT_REGS_PARM2(ctx));
	return 0;
}
#endif

#endif
