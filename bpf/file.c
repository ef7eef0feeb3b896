/* File hooks: syscall tracepoints for opens, byte movement, mmap and close.
 * The loader finds the hooks by these macro names; keep one hook macro per line. */
#include "lib/files.h"

#define OPEN_HOOK(name)                                                                    \
	SYSCALL_EXIT(sys_exit_##name)                                                      \
	{                                                                                  \
		open_exit(ctx->ret);                                                       \
		return 0;                                                                  \
	}

/* An open with O_TRUNC for writing changes the file even if nothing is written: noted at
 * entry (the flags), applied at exit (the descriptor). */
static __always_inline void open_enter(u64 flags)
{
	if ((flags & ROARD_O_TRUNC) && (flags & ROARD_O_ACCMODE) && tracked_run(current_tgid())) {
		u64 id = bpf_get_current_pid_tgid();
		u8 one = 1;
		if (truncating.update(&id, &one) != 0)
			count_loss(ROARD_LOSS_INFLIGHT_FULL, tracked_run(current_tgid()));
	}
}

static __always_inline void open_exit(long ret)
{
	u64 id = bpf_get_current_pid_tgid();
	bool truncated = truncating.lookup(&id) != 0;
	if (truncated) /* deleted whatever the outcome: an entry must not outlive its call */
		truncating.delete(&id);
	if (ret < 0)
		return;
	on_open(ret);
	u64 run_key = truncated ? tracked_run(id >> 32) : 0;
	if (run_key)
		account(run_key, ret, 0, 0, ROARD_AGG_RESIZED);
}

SYSCALL_ENTER(sys_enter_open)
{
	open_enter(ctx->args[1]);
	return 0;
}

SYSCALL_ENTER(sys_enter_openat)
{
	open_enter(ctx->args[2]);
	return 0;
}

/* creat(2) is open(O_CREAT | O_WRONLY | O_TRUNC). */
SYSCALL_ENTER(sys_enter_creat)
{
	open_enter(ROARD_O_TRUNC | 1);
	return 0;
}

/* openat2(dfd, name, struct open_how *how, size): how->flags is its first field. */
SYSCALL_ENTER(sys_enter_openat2)
{
	u64 flags = 0;
	bpf_probe_read_user(&flags, sizeof(flags), (const void *)ctx->args[2]);
	open_enter(flags);
	return 0;
}

/* Byte movers: which argument is read from and which written to (-1: none). With
 * ROARD_EXIT_ARGS one exit handler reads them from the saved registers; else the entry
 * handler keeps them for the exit in `inflight`. */
#ifdef ROARD_EXIT_ARGS
#define IO_HOOK(name, in_arg, out_arg)                                                     \
	SYSCALL_EXIT(sys_exit_##name)                                                      \
	{                                                                                  \
		u64 run_key = ctx->ret > 0 ? tracked_run(current_tgid()) : 0;              \
		if (run_key)                                                               \
			io_done(run_key, ctx->ret,                                         \
				in_arg < 0 ? -1 : (s32)syscall_arg_at_exit(in_arg & 3),     \
				out_arg < 0 ? -1 : (s32)syscall_arg_at_exit(out_arg & 3));  \
		return 0;                                                                  \
	}
#else
#define IO_HOOK(name, in_arg, out_arg)                                                     \
	SYSCALL_ENTER(sys_enter_##name)                                                    \
	{                                                                                  \
		io_enter(in_arg < 0 ? -1 : (s32)ctx->args[in_arg & 7],                     \
			 out_arg < 0 ? -1 : (s32)ctx->args[out_arg & 7]);                  \
		return 0;                                                                  \
	}                                                                                  \
	SYSCALL_EXIT(sys_exit_##name)                                                      \
	{                                                                                  \
		io_exit(ctx->ret);                                                         \
		return 0;                                                                  \
	}
#endif

OPEN_HOOK(open)
OPEN_HOOK(openat)
OPEN_HOOK(openat2)
OPEN_HOOK(creat)

IO_HOOK(read, 0, -1)
IO_HOOK(pread64, 0, -1)
IO_HOOK(readv, 0, -1)
IO_HOOK(preadv, 0, -1)
IO_HOOK(preadv2, 0, -1)
IO_HOOK(write, -1, 0)
IO_HOOK(pwrite64, -1, 0)
IO_HOOK(writev, -1, 0)
IO_HOOK(pwritev, -1, 0)
IO_HOOK(pwritev2, -1, 0)
IO_HOOK(sendfile64, 1, 0)
IO_HOOK(copy_file_range, 0, 2)
IO_HOOK(splice, 0, 2)

/* Size changes through a descriptor make the file an output. */
#define RESIZE_HOOK(name)                                                                  \
	SYSCALL_ENTER(sys_enter_##name)                                                    \
	{                                                                                  \
		u64 run_key = tracked_run(current_tgid());                                 \
		if (run_key)                                                               \
			account(run_key, (s32)ctx->args[0], 0, 0, ROARD_AGG_RESIZED);      \
		return 0;                                                                  \
	}

RESIZE_HOOK(ftruncate)
RESIZE_HOOK(fallocate)

/* io_uring and Linux AIO move bytes without these syscalls: without the VFS hook
 * (bpf/vfs.c), say so instead of being silently partial. */
static __always_inline void async_io_setup(u32 category)
{
#ifndef ROARD_VFS_IO
	u64 run_key = tracked_run(current_tgid());
	if (run_key)
		count_loss(category, run_key);
#endif
}

SYSCALL_ENTER(sys_enter_io_uring_setup)
{
	async_io_setup(ROARD_LOSS_IO_URING);
	return 0;
}

SYSCALL_ENTER(sys_enter_io_setup)
{
	async_io_setup(ROARD_LOSS_AIO);
	return 0;
}

/* PROT_READ mappings consume the file; shared writable ones change it; executable ones
 * run it (shared libraries). */
SYSCALL_ENTER(sys_enter_mmap)
{
	s32 fd = (s32)ctx->args[4];
	u64 prot = ctx->args[2];
	u64 flags = ctx->args[3];
	u64 run_key = fd >= 0 && !(flags & ROARD_MAP_ANONYMOUS) ? tracked_run(current_tgid()) : 0;
	if (!run_key)
		return 0;
	u32 agg_flags = 0;
	if (prot & ROARD_PROT_READ)
		agg_flags |= ROARD_AGG_MMAP_READ;
	if ((prot & ROARD_PROT_WRITE) && (flags & ROARD_MAP_SHARED))
		agg_flags |= ROARD_AGG_MMAP_SHARED_WRITE;
	if (prot & ROARD_PROT_EXEC)
		agg_flags |= ROARD_AGG_MMAP_EXEC;
	if (agg_flags)
		account(run_key, fd, 0, 0, agg_flags);
	return 0;
}

SYSCALL_ENTER(sys_enter_close)
{
	on_close((s32)ctx->args[0]);
	return 0;
}

/* dup2/dup3 close their target descriptor first. */
SYSCALL_ENTER(sys_enter_dup2)
{
	if (ctx->args[0] != ctx->args[1])
		on_close((s32)ctx->args[1]);
	return 0;
}

SYSCALL_ENTER(sys_enter_dup3)
{
	on_close((s32)ctx->args[1]);
	return 0;
}

/* close_range and exec drop descriptors without close(2): flush the lazy ones first.
 * (An exec that fails only means the next I/O starts a new aggregate.) */
#define FLUSH_LAZY_HOOK(name)                                                              \
	SYSCALL_ENTER(sys_enter_##name)                                                    \
	{                                                                                  \
		u32 tgid = current_tgid();                                                 \
		if (tracked_run(tgid))                                                     \
			flush_lazy_fds(tgid);                                              \
		return 0;                                                                  \
	}

FLUSH_LAZY_HOOK(close_range)
FLUSH_LAZY_HOOK(execve)
FLUSH_LAZY_HOOK(execveat)
