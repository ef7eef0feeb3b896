/* Open files of tracked processes: descriptor lookup, I/O aggregation and announcement. */
#ifndef ROARD_FILES_H
#define ROARD_FILES_H

#include "lib/common.h"
#include "lib/path.h"

/* current->files->fdt->fd[fd], or 0. */
static __always_inline u64 fd_to_file(s32 fd)
{
	if (fd < 0)
		return 0;
#ifdef ROARD_EXIT_ARGS
	void *files = typed_field(bpf_get_current_task_btf(), OFF_TASK_STRUCT_FILES, void *);
	void *fdt = typed_field(files, OFF_FILES_STRUCT_FDT, void *);
	if ((u32)fd >= typed_field(fdt, OFF_FDTABLE_MAX_FDS, u32))
		return 0;
	/* The array of file pointers is not a BTF struct: read as any kernel memory. */
	return rd_u64(typed_field(fdt, OFF_FDTABLE_FD, u64), (u32)fd * sizeof(u64));
#else
	u64 task = bpf_get_current_task();
	u64 fdt = rd_u64(rd_u64(task, OFF_TASK_STRUCT_FILES), OFF_FILES_STRUCT_FDT);
	if ((u32)fd >= rd_u32(fdt, OFF_FDTABLE_MAX_FDS))
		return 0;
	return rd_u64(rd_u64(fdt, OFF_FDTABLE_FD), (u32)fd * sizeof(u64));
#endif
}

static __always_inline bool is_regular(u64 inode)
{
	u16 mode = 0;
	bpf_probe_read_kernel(&mode, sizeof(mode), (const void *)(inode + OFF_INODE_I_MODE));
	return (mode & ROARD_S_IFMT) == ROARD_S_IFREG;
}

/* Whether a superblock's magic (linux/magic.h) is a filesystem whose files the kernel
 * makes as they are read: a later read is not what the run saw, and reading some
 * (/proc/kmsg, tracefs's trace_pipe) takes data from their other readers. */
static __always_inline bool generated_fs(u64 magic)
{
	switch (magic) {
	case 0x9fa0:     /* proc */
	case 0x62656572: /* sysfs */
	case 0x74726163: /* tracefs */
	case 0x64626720: /* debugfs */
	case 0x73636673: /* securityfs */
	case 0x27e0eb:   /* cgroup */
	case 0x63677270: /* cgroup2 */
	case 0xcafe4a11: /* bpf */
	case 0x62656570: /* configfs */
	case 0x6165676c: /* pstore */
	case 0xde5e81e4: /* efivarfs */
	case 0xf97cff8c: /* selinuxfs */
	case 0x43415d53: /* smackfs */
	case 0x65735543: /* fusectl */
	case 0x42494e4d: /* binfmt_misc */
	case 0x19800202: /* mqueue: a queue read(2) gives its status line */
	case 0x6e736673: /* nsfs */
	case 0x6e667364: /* nfsd */
	case 0x67596969: /* rpc_pipefs */
		return true;
	}
	return false;
}

/* The aggregate's description of `file` (its `inode`), for run `run_key`, counts zero. */
static __always_inline void describe_file(struct roard_fdagg *agg, u64 file, u64 inode,
					  u64 run_key)
{
	u64 sb = rd_u64(inode, OFF_INODE_I_SB);
	agg->file = file;
	agg->run_key = run_key;
	agg->ino = rd_u64(inode, OFF_INODE_I_INO);
	agg->dev = rd_u32(sb, OFF_SUPER_BLOCK_S_DEV);
	agg->open_flags = rd_u32(file, OFF_FILE_F_FLAGS);
	agg->fmode = rd_u32(file, OFF_FILE_F_MODE);
	agg->flags = generated_fs(rd_u64(sb, OFF_SUPER_BLOCK_S_MAGIC)) ? ROARD_AGG_GENERATED : 0;
}

/* Send the I/O aggregated for (tgid, fd) as a close event. A file not yet announced is
 * sent with its path, walked now: callers send while something still holds the file. */
static __always_inline void send_close(struct roard_fdkey *key, struct roard_fdagg *agg,
				       bool file_alive)
{
	struct roard_scratch *s = (agg->flags & ROARD_AGG_IGNORE) ? 0 : scratch_buf();
	if (s) {
		struct roard_ev_close *ev = (struct roard_ev_close *)s->buf;
		fill_hdr(&ev->hdr, ROARD_EV_CLOSE, agg->run_key);
		ev->hdr.tgid = key->tgid;
		ev->fd = key->fd;
		ev->ino = agg->ino;
		ev->dev = agg->dev;
		ev->rbytes = agg->rbytes;
		ev->wbytes = agg->wbytes;
		ev->nreads = agg->nreads;
		ev->nwrites = agg->nwrites;
		ev->agg_flags = agg->flags;
		ev->open_flags = agg->open_flags;
		ev->fmode = agg->fmode;
		s->pos = 0;
		u32 len = 0;
		if (!(agg->flags & ROARD_AGG_ANNOUNCED)) {
			if (file_alive)
				len = walk_paths(s, &ev->hdr, s->buf + sizeof(*ev),
						 agg->file + OFF_FILE_F_PATH);
			else
				ev->hdr.flags |= ROARD_HDR_PATH_UNKNOWN;
		}
		ev->path_len = len;
		ev->fs_path_len = s->pos - len;
		ev->seen_len = len ? s->seen_len : ROARD_SEEN_NONE;
		submit(s, sizeof(*ev), s->pos, ROARD_LOSS_RINGBUF_FILE, agg->run_key, false);
	}
}

/* Send the I/O aggregated on an entry and forget it (see send_close). */
static __always_inline void flush_entry(struct roard_fdkey *key, struct roard_fdagg *agg,
					bool file_alive)
{
	send_close(key, agg, file_alive);
	fdagg.delete(key);
}

/* Flush the lazily announced files of the current process (descriptors below
 * ROARD_LAZY_FDS) before the kernel drops them without a close(2): at exec
 * (close-on-exec) and at exit. */
static __always_inline void flush_lazy_fds(u32 tgid)
{
	for (s32 fd = 0; fd < ROARD_LAZY_FDS; fd++) {
		struct roard_fdkey key = {.tgid = tgid, .fd = fd};
		struct roard_fdagg *agg = fdagg.lookup(&key);
		if (agg)
			flush_entry(&key, agg, agg->file == fd_to_file(fd));
	}
}

/* Forget the IGNORE entries (pipes, sockets...) of a dead process's higher descriptors:
 * nobody else would. Entries of announced files are left for userspace, which knows them
 * from their open events and reads their last counts. */
static __always_inline void drop_ignored_fds(u32 tgid)
{
	for (s32 fd = ROARD_LAZY_FDS; fd < ROARD_SWEEP_FDS; fd++) {
		struct roard_fdkey key = {.tgid = tgid, .fd = fd};
		struct roard_fdagg *agg = fdagg.lookup(&key);
		if (agg && (agg->flags & ROARD_AGG_IGNORE))
			fdagg.delete(&key);
	}
}

/* Whether another process shares the current descriptor table (clone with CLONE_FILES):
 * it may close a descriptor for both, and the close then reaches only its own entries.
 * Each task using the table holds a reference; this process's threads account for
 * nr_threads of them. */
static __always_inline bool table_shared(void)
{
	u64 task = bpf_get_current_task();
	u32 users = rd_u32(rd_u64(task, OFF_TASK_STRUCT_FILES), OFF_FILES_STRUCT_COUNT);
	return users > rd_u32(rd_u64(task, OFF_TASK_STRUCT_SIGNAL), OFF_SIGNAL_STRUCT_NR_THREADS);
}

/* Start aggregating the I/O of the file behind (tgid, fd). Regular files on high
 * descriptors, or in a table shared with another process, are announced now with their
 * path; the others at flush. Non-regular files
 * (pipes, sockets, ttys, directories) get a silent IGNORE entry so they are classified
 * once, not on every read. */
static __always_inline struct roard_fdagg *track_file(struct roard_fdkey *key, u64 file,
						      u64 run_key, u32 origin)
{
	u64 inode = rd_u64(file, OFF_FILE_F_INODE);
	struct roard_fdagg init = {};
	describe_file(&init, file, inode, run_key);
	bool regular = is_regular(inode);
	bool announce = regular && (key->fd >= ROARD_LAZY_FDS || table_shared());
	if (!regular)
		init.flags |= ROARD_AGG_IGNORE;
	if (announce)
		init.flags |= ROARD_AGG_ANNOUNCED;
	if (fdagg.update(key, &init) != 0) {
		count_loss(ROARD_LOSS_AGG_FULL, run_key);
		return 0;
	}
	if (announce) {
		struct roard_scratch *s = scratch_buf();
		if (s) {
			struct roard_ev_open *ev = (struct roard_ev_open *)s->buf;
			fill_hdr(&ev->hdr, ROARD_EV_OPEN, run_key);
			ev->ino = init.ino;
			ev->dev = init.dev;
			ev->fd = key->fd;
			ev->open_flags = init.open_flags;
			ev->fmode = init.fmode;
			ev->origin = origin;
			u32 len = walk_paths(s, &ev->hdr, s->buf + sizeof(*ev),
					     file + OFF_FILE_F_PATH);
			ev->path_len = len;
			ev->fs_path_len = s->pos - len;
			ev->seen_len = s->seen_len;
			submit(s, sizeof(*ev), s->pos, ROARD_LOSS_RINGBUF_FILE, run_key, false);
		}
	}
	return fdagg.lookup(key);
}

/* A tracked process opened `fd`: any older entry under that number is stale. */
static __always_inline void on_open(s32 fd)
{
	u32 tgid = current_tgid();
	u64 run_key = tracked_run(tgid);
	u64 file = run_key ? fd_to_file(fd) : 0;
	if (!file)
		return;
	struct roard_fdkey key = {.tgid = tgid, .fd = fd};
	struct roard_fdagg *old = fdagg.lookup(&key);
	if (old) /* its file was released without a close(2) we saw */
		flush_entry(&key, old, false);
	track_file(&key, file, run_key, ROARD_ORIGIN_OPEN);
}

/* Add I/O on `fd`. A descriptor first seen here (inherited, dup'ed, or opened before the
 * process was adopted) is announced now; an entry whose file changed under the same number
 * (close-on-exec, dup2, close_range) is flushed first. */
static __always_inline void account(u64 run_key, s32 fd, u64 rbytes, u64 wbytes, u32 flags)
{
	u64 file = fd_to_file(fd);
	if (!file)
		return;
	struct roard_fdkey key = {.tgid = current_tgid(), .fd = fd};
	struct roard_fdagg *agg = fdagg.lookup(&key);
	if (agg && agg->file != file) {
		flush_entry(&key, agg, false);
		agg = 0;
	}
	if (!agg)
		agg = track_file(&key, file, run_key, ROARD_ORIGIN_INHERITED);
	if (!agg || (agg->flags & ROARD_AGG_IGNORE))
		return;
	if (rbytes) {
		lock_xadd(&agg->rbytes, rbytes);
		lock_xadd(&agg->nreads, 1);
	}
	if (wbytes) {
		lock_xadd(&agg->wbytes, wbytes);
		lock_xadd(&agg->nwrites, 1);
	}
	agg->flags |= flags;
}

/* close(2), or dup2/dup3 onto `fd`: flush while the descriptor still holds the file. */
static __always_inline void on_close(s32 fd)
{
	u32 tgid = current_tgid();
	if (!tracked_run(tgid))
		return;
	struct roard_fdkey key = {.tgid = tgid, .fd = fd};
	struct roard_fdagg *agg = fdagg.lookup(&key);
	if (agg)
		flush_entry(&key, agg, agg->file == fd_to_file(fd));
}

/* `moved` bytes went from descriptor fd_in and/or to fd_out (-1: none). */
static __always_inline void io_done(u64 run_key, long moved, s32 fd_in, s32 fd_out)
{
	if (fd_in >= 0)
		account(run_key, fd_in, moved, 0, 0);
	if (fd_out >= 0)
		account(run_key, fd_out, 0, moved, 0);
}

#ifndef ROARD_EXIT_ARGS
/* Without ROARD_EXIT_ARGS, syscalls that move bytes remember their descriptors at entry;
 * the exit adds the count. */
static __always_inline void io_enter(s32 fd_in, s32 fd_out)
{
	if (!tracked_run(current_tgid()))
		return;
	u64 id = bpf_get_current_pid_tgid();
	struct roard_inflight io = {.fd_in = fd_in, .fd_out = fd_out};
	if (inflight.update(&id, &io) != 0)
		count_loss(ROARD_LOSS_INFLIGHT_FULL, tracked_run(current_tgid()));
}

static __always_inline void io_exit(long ret)
{
	u64 id = bpf_get_current_pid_tgid();
	struct roard_inflight *io = inflight.lookup(&id);
	if (!io)
		return;
	struct roard_inflight fds = *io;
	inflight.delete(&id);
	u64 run_key = tracked_run(id >> 32);
	if (ret > 0 && run_key)
		io_done(run_key, ret, fds.fd_in, fds.fd_out);
}
#endif

#endif
