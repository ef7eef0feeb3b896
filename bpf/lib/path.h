/* Resolve a (vfsmount, dentry) pair to a path in the kernel, crossing mounts. */
#ifndef ROARD_PATH_H
#define ROARD_PATH_H

#include "lib/common.h"

/* Append the components of `path_addr` (a struct path), leaf first and NUL-terminated,
 * to data[s->pos...], advancing s->pos. Sets s->walk_truncated when the walk stopped before
 * reaching the root. */
static __always_inline void walk_path(struct roard_scratch *s, u8 *data, u64 path_addr)
{
	u64 vfsmnt = rd_u64(path_addr, OFF_PATH_MNT);
	u64 dentry = rd_u64(path_addr, OFF_PATH_DENTRY);
	u64 mnt = vfsmnt - OFF_MOUNT_MNT;
	/* The path as the process sees it: stop at its root (a chroot's root, not the host's). */
	u64 fs_root = rd_u64(bpf_get_current_task(), OFF_TASK_STRUCT_FS) + OFF_FS_STRUCT_ROOT;
	u64 root_mnt = rd_u64(fs_root, OFF_PATH_MNT);
	u64 root_dentry = rd_u64(fs_root, OFF_PATH_DENTRY);

	s->walk_truncated = 1;
	for (int i = 0; i < ROARD_PATH_DEPTH; i++) {
		if (dentry == root_dentry && vfsmnt == root_mnt) {
			s->walk_truncated = 0;
			break;
		}
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
		u32 off = s->pos;
		if (off > ROARD_DATA_MAX - ROARD_NAME_MAX)
			break;
		u64 name = rd_u64(dentry, OFF_DENTRY_D_NAME + OFF_QSTR_NAME);
		int n = bpf_probe_read_kernel_str(data + (off & (ROARD_DATA_MAX - 1)),
						  ROARD_NAME_MAX, (const void *)name);
		if (n <= 0)
			break;
		s->pos = off + n;
		dentry = parent;
	}
}

#endif
