/* roard_abi.h: the one ABI between the BPF programs and userspace.
 *
 * roard/kernel/abi.py parses this file (plain #defines of integers, and structs of
 * fixed-width fields or of structs defined above them) and builds its decoders from it,
 * so nothing is synced by hand. Keep it that way: no unions, no expressions in #defines.
 */
#ifndef ROARD_ABI_H
#define ROARD_ABI_H

/* Event types (roard_hdr.type). */
#define ROARD_EV_FORK 1
#define ROARD_EV_EXEC 2
#define ROARD_EV_EXIT 3
#define ROARD_EV_OPEN 4
#define ROARD_EV_CLOSE 5
#define ROARD_EV_RENAME 6
#define ROARD_EV_CGROUP_JOIN 7

#define ROARD_EV_ENV_RUN 8

/* roard_ev_open.origin: how the file became known for this (tgid, fd). */
#define ROARD_ORIGIN_OPEN 1
#define ROARD_ORIGIN_INHERITED 2

/* roard_fdagg.flags and roard_ev_close.agg_flags. */
#define ROARD_AGG_IGNORE 1
#define ROARD_AGG_MMAP_READ 2
#define ROARD_AGG_MMAP_SHARED_WRITE 4
#define ROARD_AGG_ANNOUNCED 8
#define ROARD_AGG_RESIZED 16
/* Read or written through a path no syscall hook sees (io_uring, aio), seen by the VFS
 * hook of the kprobe/fentry tiers (bpf/vfs.c): one event per file and direction, no
 * descriptor (fd ROARD_FD_NONE), byte counts unknown. */
#define ROARD_AGG_VFS_READ 32
#define ROARD_AGG_VFS_WRITE 64
/* The file is on a filesystem whose content the kernel makes when it is read (proc, sysfs,
 * tracefs, ...): userspace never reads it to hash it (bpf/lib/files.h: generated_fs). */
#define ROARD_AGG_GENERATED 128
/* Mapped PROT_EXEC: the dynamic loader maps shared libraries so; the file is code the run
 * executed, not data it consumed, wherever it lies (LD_LIBRARY_PATH, a build directory). */
#define ROARD_AGG_MMAP_EXEC 256
#define ROARD_FD_NONE -1

/* Descriptors below this are announced lazily: one event per file, at close (or exec,
 * exit), path included. Higher ones get an open event too, because the loops that flush a
 * process's files at exec and exit cover only these: a path walk nested in a longer loop
 * exceeds the verifier's limit on pending branches ("sequence of jumps too complex"). */
#define ROARD_LAZY_FDS 16
/* Descriptors below this have their pipe/socket (IGNORE) entries dropped at exit. */
#define ROARD_SWEEP_FDS 256

/* roard_hdr.flags. */
#define ROARD_HDR_PATH_TRUNCATED 1
#define ROARD_HDR_ARGV_TRUNCATED 2
#define ROARD_HDR_PATH_UNKNOWN 4
#define ROARD_HDR_VALUE_TRUNCATED 8
#define ROARD_HDR_ENV_TRUNCATED 16 /* the exec's environment was cut, or could not be read */
/* The process is in another mount namespace than roard: its paths name that namespace's
 * mounts, and userspace maps them (roard/tracking/views.py). */
#define ROARD_HDR_OTHER_MNTNS 32

/* A walked path's *_seen_len when the walk did not pass the process's root (a file
 * outside a chroot, through a descriptor opened before). A process that is not chrooted
 * has its namespace's root as its own: the walk passes it at its end, and seen_len is then
 * the whole path's length. Either way the path is the one the process saw. */
#define ROARD_SEEN_NONE 0xffff

/* Loss counters (index into the per-CPU `losses` array). */
#define ROARD_LOSS_RINGBUF_PROC 0
#define ROARD_LOSS_RINGBUF_FILE 1
#define ROARD_LOSS_TRACKED_FULL 2
#define ROARD_LOSS_AGG_FULL 3
#define ROARD_LOSS_INFLIGHT_FULL 4
#define ROARD_LOSS_IO_URING 5 /* the run set up io_uring, whose file I/O this tier cannot see */
#define ROARD_LOSS_AIO 6      /* the run set up Linux AIO, likewise */
#define ROARD_LOSS_NR 7

/* Sizes. A path is sent as its components, leaf first, each NUL-terminated. */
#define ROARD_NAME_MAX 256
#define ROARD_PATH_DEPTH 64
#define ROARD_ARGV_MAX 2048
#define ROARD_ENV_MAX 16384 /* twice a typical host's 2-8 KiB: most conda/CUDA ones fit too */
#define ROARD_RENAME_NAME_MAX 1024
#define ROARD_DATA_MAX 8192
/* Cgroup levels walked up from a task's new cgroup to find a tagged ancestor. */
#define ROARD_CGROUP_DEPTH 32

/* roard_cgroup_tag.flags. */
#define ROARD_CGTAG_ANY_UID 1 /* tagged by root: every process joins, whatever its uid */

/* Longest ROARD_RUN=<value> environment entry sent whole (longer ones are cut and flagged). */
#define ROARD_ENV_ENTRY_MAX 512

/* Run keys the kernel picks for ROARD_RUN runs: bit ROARD_ENV_KEY_TOP_BIT set, the CPU
 * from bit ROARD_ENV_KEY_CPU_SHIFT up, a per-CPU sequence number below it. Userspace counts
 * its own keys up from 1, so the two ranges never meet. */
#define ROARD_ENV_KEY_TOP_BIT 63
#define ROARD_ENV_KEY_CPU_SHIFT 40

/* Kernel constants not described by BTF (stable since 4.19). */
#define ROARD_FMODE_CREATED 1048576
#define ROARD_S_IFMT 61440
#define ROARD_S_IFREG 32768
#define ROARD_PROT_READ 1
#define ROARD_PROT_WRITE 2
#define ROARD_PROT_EXEC 4
#define ROARD_MAP_SHARED 1
#define ROARD_MAP_ANONYMOUS 32
#define ROARD_RENAME_EXCHANGE 2
#define ROARD_AT_REMOVEDIR 512
#define ROARD_O_ACCMODE 3
#define ROARD_O_TRUNC 512
#define ROARD_MAY_WRITE 2
#define ROARD_MAY_READ 4
#define ROARD_PF_IO_WORKER 16 /* task_struct.flags of io_uring's worker and SQPOLL threads */

/* roard_ev_rename.op: which name change. Links, unlinks and truncates by name share the
 * rename event; unlink and truncate name one file (new_len 0). */
#define ROARD_NAME_RENAME 0
#define ROARD_NAME_LINK 1
#define ROARD_NAME_UNLINK 2
#define ROARD_NAME_TRUNCATE 3

/* Common prefix of every event: each roard_ev_* starts with it. */
struct roard_hdr {
	__u32 type;
	__u32 tgid;
	__u32 pid;
	__u32 flags;
	__u64 ktime_ns;
	__u64 run_key;
};

/* A tracked process forked a new process (threads are not reported). */
struct roard_ev_fork {
	struct roard_hdr hdr;
	__u64 start_boottime_ns;
	__u64 parent_start_boottime_ns;
	__u32 ppid;
	__u32 pad;
};

/* A tracked process called execve; data = exe path, cwd path, (with ROARD_HDR_OTHER_MNTNS)
 * the exe's and the cwd's paths within their filesystems, argv (NUL-separated), the
 * environment block (NUL-terminated NAME=value entries, as the program got them). */
struct roard_ev_exec {
	struct roard_hdr hdr;
	__u64 start_boottime_ns;
	__u32 ppid;
	__u32 uid;
	__u16 exe_len;
	__u16 cwd_len;
	__u16 argv_len;
	__u16 env_len;
	__u16 exe_seen_len; /* chrooted: as roard_ev_open's seen_len */
	__u16 exe_fs_len; /* as roard_ev_open's fs_path_len (0: none), with the device of each */
	__u16 cwd_fs_len;
	__u16 pad;
	__u32 exe_dev;
	__u32 cwd_dev;
};

/* The last thread of a tracked process exited. */
struct roard_ev_exit {
	struct roard_hdr hdr;
	__u64 start_boottime_ns;
	__s32 exit_code;
	__u32 pad;
};

/* A regular file became reachable through (tgid, fd); data = path. */
struct roard_ev_open {
	struct roard_hdr hdr;
	__u64 ino;
	__u32 dev;
	__s32 fd;
	__u32 open_flags;
	__u32 fmode;
	__u32 origin;
	__u16 path_len;
	__u16 fs_path_len; /* with ROARD_HDR_OTHER_MNTNS: the path within its filesystem follows */
	__u16 seen_len; /* chrooted: the path's first seen_len bytes are below its root */
	__u16 pad;
};

/* (tgid, fd) was closed, reused, or its process exec'd or exited: the I/O aggregated on
 * it. data = path, unless the file was announced by an open event (path_len 0). */
struct roard_ev_close {
	struct roard_hdr hdr;
	__u64 ino;
	__u64 rbytes;
	__u64 wbytes;
	__u32 dev;
	__s32 fd;
	__u32 nreads;
	__u32 nwrites;
	__u32 agg_flags;
	__u32 open_flags;
	__u32 fmode;
	__u16 path_len;
	__u16 fs_path_len; /* as in roard_ev_open */
	__u16 seen_len; /* as in roard_ev_open */
	__u16 pad;
};

/* A tracked process changed a name (`op`): renamed a file or directory (rename, renameat,
 * renameat2), linked a file (link, linkat), unlinked one (unlink, unlinkat), or truncated
 * one by name (truncate). Sent only when the call succeeded.
 * data = old base dir (components), old name (as passed, NUL-terminated), new base dir,
 * new name. A base dir is the process's root for an absolute name (a chroot's: the name
 * then resolves to a host path), else the cwd or the dir fd's directory. */
struct roard_ev_rename {
	struct roard_hdr hdr;
	__u32 rename_flags;
	__u16 olddir_len;
	__u16 old_len;
	__u16 newdir_len;
	__u16 new_len;
	__u32 op;
	__u16 olddir_seen_len; /* chrooted: as roard_ev_open's seen_len, for each base dir */
	__u16 newdir_seen_len;
};

/* A process moved into a tagged cgroup (or one below it) and joined its run. */
struct roard_ev_cgroup_join {
	struct roard_hdr hdr;
	__u64 start_boottime_ns;
	__u32 ppid; /* these two describe it if it is gone before userspace reads /proc */
	__u32 uid;  /* real uid */
};

/* Key and value of the tagged-cgroups map: a cgroup by (hierarchy id, kernfs node id; the
 * node id is the cgroup directory's inode number on 64-bit kernels). */
struct roard_cgroup_key {
	__u64 kn_id;
	__u32 hierarchy_id;
	__u32 pad;
};

struct roard_cgroup_tag {
	__u64 run_key;
	__u32 uid;   /* without ROARD_CGTAG_ANY_UID: only processes of this real uid join */
	__u32 flags;
};

/* An untracked process exec'd with ROARD_RUN=<value> in its environment: the kernel now
 * tracks it under a new run key (hdr.run_key). Sent before that exec's own exec event.
 * data = the environment entry, "ROARD_RUN=<value>". */
struct roard_ev_env_run {
	struct roard_hdr hdr;
	__u64 start_boottime_ns;
	__u32 ppid;
	__u32 uid; /* real uid: the run's owner */
	__u16 entry_len;
	__u16 pad;
	__u32 pad2;
};

/* Key of the per-run loss counters. */
struct roard_losskey {
	__u64 run_key;
	__u32 category;
	__u32 pad;
};

/* Key and value of the in-kernel I/O aggregation map. */
struct roard_fdkey {
	__u32 tgid;
	__s32 fd;
};

struct roard_fdagg {
	__u64 file;
	__u64 run_key;
	__u64 ino;
	__u64 rbytes;
	__u64 wbytes;
	__u32 dev;
	__u32 flags;
	__u32 nreads;
	__u32 nwrites;
	__u32 open_flags;
	__u32 fmode;
};

#endif
