/* Name hooks: a renamed file keeps its lineage under its new name (write to a temporary,
 * then rename: the final name is the output); a new link is an output; an unlinked file is
 * deleted; a file truncated by name is an output. Arguments are kept at entry; the event is
 * sent only when the call succeeded. */
#include "lib/common.h"
#include "lib/files.h"
#include "lib/path.h"

#define AT_FDCWD_VALUE -100

static __always_inline void rename_enter(u32 op, s64 olddfd, u64 oldname, s64 newdfd,
					 u64 newname, u64 flags)
{
	if (!tracked_run(current_tgid()))
		return;
	u64 id = bpf_get_current_pid_tgid();
	struct roard_rename_args args = {olddfd, oldname, newdfd, newname, flags, op};
	if (renames.update(&id, &args) != 0)
		count_loss(ROARD_LOSS_INFLIGHT_FULL, tracked_run(current_tgid()));
}

/* The directory `name` (passed with `dfd`) starts from: the process's root for an absolute
 * name (a chroot's, so that the name becomes a host path), else the cwd or the dir fd's
 * file. */
static __always_inline void walk_base(struct roard_scratch *s, u8 *data, s64 dfd, u64 name)
{
	u64 fs = rd_u64(bpf_get_current_task(), OFF_TASK_STRUCT_FS);
	char first = 0;
	bpf_probe_read_user(&first, 1, (const void *)name);
	u64 base;
	if (first == '/')
		base = fs + OFF_FS_STRUCT_ROOT;
	else if (dfd == AT_FDCWD_VALUE)
		base = fs + OFF_FS_STRUCT_PWD;
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
	mark_other_mntns(&ev->hdr);
	ev->rename_flags = args.flags;
	ev->op = args.op;
	s->pos = 0;
	walk_base(s, data, args.olddfd, args.oldname);
	u32 truncated = s->walk_truncated;
	u32 mark = s->pos;
	ev->olddir_len = mark;
	ev->olddir_seen_len = s->seen_len;
	ev->old_len = read_name(s, data, args.oldname);
	ev->newdir_len = 0;
	ev->new_len = 0;
	ev->newdir_seen_len = ROARD_SEEN_NONE;
	if (args.newname) {
		mark = s->pos;
		walk_base(s, data, args.newdfd, args.newname);
		truncated |= s->walk_truncated;
		ev->newdir_len = s->pos - mark;
		ev->newdir_seen_len = s->seen_len;
		ev->new_len = read_name(s, data, args.newname);
		truncated |= !ev->new_len;
	}
	if (truncated || !ev->old_len)
		ev->hdr.flags |= ROARD_HDR_PATH_TRUNCATED;
	u32 len = s->pos;
	submit(s, sizeof(*ev), len, ROARD_LOSS_RINGBUF_FILE, run_key, false);
}

SYSCALL_ENTER(sys_enter_rename)
{
	rename_enter(ROARD_NAME_RENAME, AT_FDCWD_VALUE, ctx->args[0], AT_FDCWD_VALUE,
		     ctx->args[1], 0);
	return 0;
}

SYSCALL_ENTER(sys_enter_renameat)
{
	rename_enter(ROARD_NAME_RENAME, (s32)ctx->args[0], ctx->args[1], (s32)ctx->args[2],
		     ctx->args[3], 0);
	return 0;
}

SYSCALL_ENTER(sys_enter_renameat2)
{
	rename_enter(ROARD_NAME_RENAME, (s32)ctx->args[0], ctx->args[1], (s32)ctx->args[2],
		     ctx->args[3], ctx->args[4]);
	return 0;
}

/* Every name hook's exit: the event, if the call succeeded. */
#define NAME_EXIT_HOOK(name)                                                               \
	SYSCALL_EXIT(sys_exit_##name)                                                      \
	{                                                                                  \
		rename_exit(ctx->ret);                                                     \
		return 0;                                                                  \
	}

NAME_EXIT_HOOK(rename)
NAME_EXIT_HOOK(renameat)
NAME_EXIT_HOOK(renameat2)
NAME_EXIT_HOOK(link)
NAME_EXIT_HOOK(linkat)
NAME_EXIT_HOOK(unlink)
NAME_EXIT_HOOK(unlinkat)
NAME_EXIT_HOOK(truncate)

SYSCALL_ENTER(sys_enter_link)
{
	rename_enter(ROARD_NAME_LINK, AT_FDCWD_VALUE, ctx->args[0], AT_FDCWD_VALUE, ctx->args[1],
		     0);
	return 0;
}

/* linkat(olddfd, oldname, newdfd, newname, flags): with AT_EMPTY_PATH the old name is ""
 * (the dir fd is the file itself); only the new name matters. */
SYSCALL_ENTER(sys_enter_linkat)
{
	rename_enter(ROARD_NAME_LINK, (s32)ctx->args[0], ctx->args[1], (s32)ctx->args[2],
		     ctx->args[3], ctx->args[4]);
	return 0;
}

SYSCALL_ENTER(sys_enter_unlink)
{
	rename_enter(ROARD_NAME_UNLINK, AT_FDCWD_VALUE, ctx->args[0], 0, 0, 0);
	return 0;
}

/* unlinkat(dfd, name, flags): AT_REMOVEDIR is rmdir, of an empty directory: no content. */
SYSCALL_ENTER(sys_enter_unlinkat)
{
	if (!(ctx->args[2] & ROARD_AT_REMOVEDIR))
		rename_enter(ROARD_NAME_UNLINK, (s32)ctx->args[0], ctx->args[1], 0, 0, 0);
	return 0;
}

SYSCALL_ENTER(sys_enter_truncate)
{
	rename_enter(ROARD_NAME_TRUNCATE, AT_FDCWD_VALUE, ctx->args[0], 0, 0, 0);
	return 0;
}
