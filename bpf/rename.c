/* Rename hooks: a renamed file keeps its lineage under its new name (write to a temporary,
 * then rename: the final name is the output). Arguments are kept at entry; the event is sent
 * only when the rename succeeded. */
#include "lib/common.h"
#include "lib/files.h"
#include "lib/path.h"

#define AT_FDCWD_VALUE -100

static __always_inline void rename_enter(s64 olddfd, u64 oldname, s64 newdfd, u64 newname,
					 u64 flags)
{
	if (!tracked_run(current_tgid()))
		return;
	u64 id = bpf_get_current_pid_tgid();
	struct roard_rename_args args = {olddfd, oldname, newdfd, newname, flags};
	if (renames.update(&id, &args) != 0)
		count_loss(ROARD_LOSS_INFLIGHT_FULL, tracked_run(current_tgid()));
}

/* The directory a name passed with `dfd` is relative to: the cwd or the dir fd's file. */
static __always_inline void walk_base(struct roard_scratch *s, u8 *data, s64 dfd)
{
	u64 base;
	if (dfd == AT_FDCWD_VALUE)
		base = rd_u64(bpf_get_current_task(), OFF_TASK_STRUCT_FS) + OFF_FS_STRUCT_PWD;
	else
		base = fd_to_file((s32)dfd) + OFF_FILE_F_PATH;
	walk_path(s, data, base);
}

/* Append the user string at `name`; its length including the NUL, 0 when it did not fit. */
static __always_inline u32 read_name(struct roard_scratch *s, u8 *data, u64 name)
{
	u32 off = s->pos;
	if (off > ROARD_DATA_MAX - ROARD_RENAME_NAME_MAX)
		return 0;
	int n = bpf_probe_read_user_str(data + (off & (ROARD_DATA_MAX - 1)),
					ROARD_RENAME_NAME_MAX, (const void *)name);
	if (n <= 0)
		return 0;
	s->pos = off + n;
	return n;
}

static __always_inline void rename_exit(long ret)
{
	u64 id = bpf_get_current_pid_tgid();
	struct roard_rename_args *found = renames.lookup(&id);
	if (!found)
		return;
	struct roard_rename_args args = *found;
	renames.delete(&id);
	u64 run_key = tracked_run(id >> 32);
	struct roard_scratch *s = run_key && ret == 0 ? scratch_buf() : 0;
	if (!s)
		return;
	struct roard_ev_rename *ev = (struct roard_ev_rename *)s->buf;
	u8 *data = s->buf + sizeof(*ev);
	fill_hdr(&ev->hdr, ROARD_EV_RENAME, run_key);
	ev->rename_flags = args.flags;
	s->pos = 0;
	walk_base(s, data, args.olddfd);
	u32 truncated = s->walk_truncated;
	u32 mark = s->pos;
	ev->olddir_len = mark;
	ev->old_len = read_name(s, data, args.oldname);
	mark = s->pos;
	walk_base(s, data, args.newdfd);
	truncated |= s->walk_truncated;
	ev->newdir_len = s->pos - mark;
	ev->new_len = read_name(s, data, args.newname);
	if (truncated || !ev->old_len || !ev->new_len)
		ev->hdr.flags |= ROARD_HDR_PATH_TRUNCATED;
	u32 len = s->pos;
	submit(s, sizeof(*ev), len, ROARD_LOSS_RINGBUF_FILE, run_key, false);
}

SYSCALL_ENTER(sys_enter_rename)
{
	rename_enter(AT_FDCWD_VALUE, ctx->args[0], AT_FDCWD_VALUE, ctx->args[1], 0);
	return 0;
}

SYSCALL_ENTER(sys_enter_renameat)
{
	rename_enter((s32)ctx->args[0], ctx->args[1], (s32)ctx->args[2], ctx->args[3], 0);
	return 0;
}

SYSCALL_ENTER(sys_enter_renameat2)
{
	rename_enter((s32)ctx->args[0], ctx->args[1], (s32)ctx->args[2], ctx->args[3],
		     ctx->args[4]);
	return 0;
}

SYSCALL_EXIT(sys_exit_rename)
{
	rename_exit(ctx->ret);
	return 0;
}

SYSCALL_EXIT(sys_exit_renameat)
{
	rename_exit(ctx->ret);
	return 0;
}

SYSCALL_EXIT(sys_exit_renameat2)
{
	rename_exit(ctx->ret);
	return 0;
}
