/* Resolve a (vfsmount, dentry) pair to a path in the kernel, crossing mounts. */
#ifndef ROARD_PATH_H
#define ROARD_PATH_H

#include "lib/common.h"

/* Append the name of `dentry` at data[s->pos], NUL-terminated, advancing s->pos; false
 * when there is no room or it cannot be read. */
static __always_inline bool append_name(struct roard_scratch *s, u8 *data, u64 dentry)
{
	u32 off = s->pos;
	if (off > ROARD_DATA_MAX - ROARD_NAME_MAX)
		return false;
	u64 name = rd_u64(dentry, OFF_DENTRY_D_NAME + OFF_QSTR_NAME);
	int n = bpf_probe_read_kernel_str(data + (off & (ROARD_DATA_MAX - 1)), ROARD_NAME_MAX,
					  (const void *)name);
	if (n <= 0)
		return false;
	s->pos = off + n;
	return true;
}

/* Append the components of `path_addr` (a struct path) up to its mount namespace's root,
 * leaf first and NUL-terminated, to data[s->pos...], advancing s->pos. Sets
 * s->walk_truncated when the walk stopped before reaching the root, and s->seen_len to
 * the length of the components below the current process's root when the walk passed it
 * (else ROARD_SEEN_NONE). */
static __always_inline void walk_path(struct roard_scratch *s, u8 *data, u64 path_addr)
{
	u64 vfsmnt = rd_u64(path_addr, OFF_PATH_MNT);
	u64 dentry = rd_u64(path_addr, OFF_PATH_DENTRY);
	u64 mnt = vfsmnt - OFF_MOUNT_MNT;
	u64 root = rd_u64(bpf_get_current_task(), OFF_TASK_STRUCT_FS) + OFF_FS_STRUCT_ROOT;
	u64 root_mnt = rd_u64(root, OFF_PATH_MNT);
	u64 root_dentry = rd_u64(root, OFF_PATH_DENTRY);
	u32 start = s->pos;

	/* Past a chrooted process's root, up to its mount namespace's root: the path roard
	 * itself can open (a chroot's "/data/x" is <jail>/data/x); where the process's root
	 * was passed says which part is the path it saw. */
	s->walk_truncated = 1;
	s->seen_len = ROARD_SEEN_NONE;
	for (int i = 0; i < ROARD_PATH_DEPTH; i++) {
		if (dentry == root_dentry && vfsmnt == root_mnt)
			s->seen_len = s->pos - start;
		u64 mnt_root = rd_u64(vfsmnt, OFF_VFSMOUNT_MNT_ROOT);
		u64 parent = rd_u64(dentry, OFF_DENTRY_D_PARENT);
		if (dentry == mnt_root || dentry == parent) {
			u64 mnt_parent = rd_u64(mnt, OFF_MOUNT_MNT_PARENT);
			/* Stop at the namespace's root mount, or at a dentry detached from its mount. */
			if (dentry != mnt_root || mnt_parent == mnt || !mnt_parent) {
				s->walk_truncated = 0;
				break;
			}
			dentry = rd_u64(mnt, OFF_MOUNT_MNT_MOUNTPOINT);
			mnt = mnt_parent;
			vfsmnt = mnt + OFF_MOUNT_MNT;
			continue;
		}
		if (!append_name(s, data, dentry))
			break;
		dentry = parent;
	}
}

/* Like walk_path, but up to the root of the file's filesystem, not crossing mounts: with
 * the device, a name that does not depend on any namespace's mounts (userspace finds where
 * roard's own namespace mounts that directory of that filesystem). Returns its length; 0,
 * with s->pos back where it was, when the walk was cut short (userspace then falls back to
 * /proc). */
static __always_inline u16 walk_fs_path(struct roard_scratch *s, u8 *data, u64 path_addr)
{
	u32 start = s->pos;
	u64 dentry = rd_u64(path_addr, OFF_PATH_DENTRY);
	for (int i = 0; i < ROARD_PATH_DEPTH; i++) {
		u64 parent = rd_u64(dentry, OFF_DENTRY_D_PARENT);
		if (dentry == parent)
			return s->pos - start;
		if (!append_name(s, data, dentry))
			break;
		dentry = parent;
	}
	s->pos = start;
	return 0;
}

/* The device of the filesystem holding `path_addr` (a struct path). */
static __always_inline u32 path_dev(u64 path_addr)
{
	u64 dentry = rd_u64(path_addr, OFF_PATH_DENTRY);
	return rd_u32(rd_u64(dentry, OFF_DENTRY_D_SB), OFF_SUPER_BLOCK_S_DEV);
}

/* walk_path, then (for a process in another mount namespace, which `hdr` is marked with)
 * walk_fs_path right after it. Returns the first path's length; s->pos ends after both. */
static __always_inline u32 walk_paths(struct roard_scratch *s, struct roard_hdr *hdr, u8 *data,
				      u64 path_addr)
{
	s->pos = 0;
	walk_path(s, data, path_addr);
	if (s->walk_truncated)
		hdr->flags |= ROARD_HDR_PATH_TRUNCATED;
	u32 first = s->pos;
	if (!mark_other_mntns(hdr))
		return first;
	s->pos = 0;
	walk_fs_path(s, data + (first & (ROARD_DATA_MAX - 1)), path_addr);
	s->pos += first;
	return first;
}

#endif
