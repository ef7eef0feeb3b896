"""Tests for roard.artifacts.filesystems: one name per shared file, whichever host reads it."""

from __future__ import annotations

import os

import pytest

from roard.artifacts.filesystems import (
    DEFAULT_SHARED_FSTYPES,
    Locator,
    Mount,
    MountTable,
    SharedRules,
    location,
)
from roard.errors import ConfigError, PrerequisiteError
from roard.procfs import mount_devices, parse_mountinfo

RULES = SharedRules()

# Host A: a training node. NFSv4 home of checkpoints, Lustre scratch, CephFS mounted whole,
# a gcsfuse bucket and an s3fs one, local disks, a container's overlay.
HOST_A = """\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
25 22 0:23 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
26 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw,size=4096k
30 22 0:26 / /tmp rw,nosuid,nodev shared:5 - tmpfs tmpfs rw
101 22 0:51 / /mnt/ckpt rw,relatime shared:60 - nfs4 fs1:/export/ml/ rw,vers=4.2
102 22 0:52 / /lustre/scratch rw shared:61 - lustre 10.0.0.1@tcp:/scratch rw,flock
103 22 0:53 / /cephfs rw shared:62 - ceph 10.0.0.9:6789:/ rw,name=ml
104 22 0:54 / /mnt/bucket rw,nosuid,nodev shared:63 - fuse.gcsfuse ml-models rw,user_id=0
105 22 0:55 / /mnt/s3 rw,nosuid,nodev shared:64 - fuse.s3fs s3fs rw,user_id=0
106 22 0:56 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw,lowerdir=/x
107 22 0:57 / /mnt/my\\040data rw shared:65 - nfs fs1:/export/my\\040data rw,vers=3
"""

# Host B: the same exports at other mount points, NFS by v3, Ceph and NFS by bind mounts
# of subdirectories (a scheduler binding a job's directory into its sandbox).
HOST_B = """\
21 1 8:1 / / rw,relatime shared:1 - xfs /dev/sda1 rw
201 21 0:71 / /shared/ml rw,relatime shared:70 master:3 - nfs fs1:/export/ml rw,vers=3
202 21 0:72 / /scratch rw shared:71 - lustre 10.0.0.1@tcp:/scratch rw
203 21 0:73 /volumes/team /data/team rw shared:72 - ceph 10.0.0.9:6789:/ rw,name=ml
204 21 0:71 / /job/ckpt rw,relatime shared:70 - nfs fs1:/export/ml/run7 rw,vers=3
205 21 0:74 / /gcs rw,nosuid,nodev - fuse.gcsfuse ml-models rw,user_id=0
"""

A = MountTable.parse(HOST_A)
B = MountTable.parse(HOST_B)


def loc(table: MountTable, path: str, dev: int | None = None, rules: SharedRules = RULES) -> str:
    return location(path, dev, table, rules)


def test_parse_fields_escapes_and_optional_fields() -> None:
    """Optional fields of any number, a trailing "/" on the source kept as written, an
    escaped blank decoded in both point and source."""
    assert len(A.mounts) == 11
    assert A.mounts[4] == Mount(
        mount_id=101,
        dev=os.makedev(0, 51),
        root="/",
        point="/mnt/ckpt",
        fstype="nfs4",
        source="fs1:/export/ml/",
        super_options=frozenset({"rw", "vers=4.2"}),
    )
    assert A.mounts[10].point == "/mnt/my data"
    assert A.mounts[10].source == "fs1:/export/my data"
    assert B.mounts[3].root == "/volumes/team"


def test_parse_skips_malformed_lines() -> None:
    text = (
        "garbage\n"
        "x 1 0:1 / /a rw - ext4 /dev/x rw\n"  # mount id not a number
        "7 1 01 / /b rw - ext4 /dev/x rw\n"  # no major:minor
        "8 1 0:1 / /c rw ext4 /dev/x rw\n"  # no separator
        "9 1 0:1 / /d rw -\n"  # nothing after the separator
        "\n"
        "10 1 0:2 / /- rw shared:1 - tmpfs tmpfs rw\n"  # a mount point named "-"
    )
    assert [(m.mount_id, m.point, m.fstype) for m in parse_mountinfo(text)] == [(10, "/-", "tmpfs")]


def test_same_nfs_file_same_name_on_both_hosts() -> None:
    """nfs4 on A and nfs (v3) on B, at different mount points: one name."""
    a = loc(A, "/mnt/ckpt/run7/ckpt.pt", os.makedev(0, 51))
    b = loc(B, "/shared/ml/run7/ckpt.pt", os.makedev(0, 71))
    assert a == b == "nfs://fs1:/export/ml/run7/ckpt.pt"


def test_nfs_bind_of_a_subdirectory() -> None:
    """NFS shows a bind mount's subdirectory in the source (its root field stays "/");
    the bind mount shares the export's dev, so the dev alone cannot choose."""
    assert loc(B, "/job/ckpt/ckpt.pt", os.makedev(0, 71)) == "nfs://fs1:/export/ml/run7/ckpt.pt"


def test_bind_mount_root_is_joined() -> None:
    """A root field other than "/" (a bind mount of a subdirectory on any filesystem
    but NFS) is the directory within the source."""
    nfs_bind = MountTable.parse(
        "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "5 1 0:40 /run7/./out /out rw - nfs4 fs1:/export/ml rw\n"
    )
    assert loc(nfs_bind, "/out/ckpt.pt") == "nfs://fs1:/export/ml/run7/out/ckpt.pt"


def test_lustre() -> None:
    assert loc(A, "/lustre/scratch/u/ckpt.pt") == "lustre://10.0.0.1@tcp:/scratch/u/ckpt.pt"
    assert loc(B, "/scratch/u/ckpt.pt") == "lustre://10.0.0.1@tcp:/scratch/u/ckpt.pt"


def test_cephfs_subdirectory_mount() -> None:
    """B mounts only /volumes/team of the filesystem A mounts whole."""
    expected = "ceph://10.0.0.9:6789:/volumes/team/x/ckpt.pt"
    assert loc(A, "/cephfs/volumes/team/x/ckpt.pt") == expected
    assert loc(B, "/data/team/x/ckpt.pt", os.makedev(0, 73)) == expected
    assert loc(B, "/data/team", os.makedev(0, 73)) == "ceph://10.0.0.9:6789:/volumes/team"


def test_fuse_bucket_named_by_its_source_and_anonymous_one_not() -> None:
    """gcsfuse shows the bucket; s3fs shows only "s3fs", which would join any two
    buckets, so it gets no shared name (SharedRules.paths can give it one)."""
    assert loc(A, "/mnt/bucket/m.pt") == loc(B, "/gcs/m.pt") == "fuse.gcsfuse://ml-models/m.pt"
    assert loc(A, "/mnt/s3/m.pt") == ""
    declared = SharedRules(paths={"/mnt/s3": "s3-ml-models"})
    assert loc(A, "/mnt/s3/m.pt", rules=declared) == "shared:s3-ml-models/m.pt"


def test_rclone_sshfs_smb3_and_fuseblk() -> None:
    table = MountTable.parse(
        "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "2 1 0:41 / /r rw - fuse.rclone gdrive:models rw\n"
        "3 1 0:42 / /s rw - smb3 //fs2/share rw\n"
        "4 1 0:43 / /c rw - cifs //fs2/share/ rw\n"
        "5 1 8:17 / /usb rw - fuseblk /dev/sdb1 rw\n"
        "6 1 0:44 / /lx rw - fuse.lxcfs lxcfs rw\n"
    )
    assert loc(table, "/r/a.pt") == "fuse.rclone://gdrive:models/a.pt"
    assert loc(table, "/s/a.pt") == loc(table, "/c/a.pt") == "cifs:////fs2/share/a.pt"
    assert loc(table, "/usb/a.pt") == ""
    assert loc(table, "/lx/a.pt") == ""
    assert "fuseblk" not in DEFAULT_SHARED_FSTYPES
    no_fuse = SharedRules(fstypes=DEFAULT_SHARED_FSTYPES - {"fuse.*"})
    assert loc(table, "/r/a.pt", rules=no_fuse) == ""


def test_escaped_mount_point_with_blank() -> None:
    assert loc(A, "/mnt/my data/a b.pt") == "nfs://fs1:/export/my data/a b.pt"


def test_local_filesystems_are_not_shared() -> None:
    assert loc(A, "/home/u/ckpt.pt") == ""  # ext4
    assert loc(A, "/tmp/ckpt.pt") == ""  # tmpfs
    assert loc(A, "/var/lib/docker/overlay2/abc/merged/ckpt.pt") == ""  # overlay
    assert loc(B, "/srv/ckpt.pt") == ""  # xfs
    assert loc(A, "relative/ckpt.pt") == ""


def test_component_wise_prefix() -> None:
    """/mnt/ckptx is not under /mnt/ckpt."""
    assert A.find("/mnt/ckptx/a.pt") == A.mounts[0]
    assert loc(A, "/mnt/ckptx/a.pt") == ""
    assert loc(A, "/mnt/ckpt") == "nfs://fs1:/export/ml"
    assert loc(A, "/cephfs") == "ceph://10.0.0.9:6789:"  # "10.0.0.9:6789:/" less its "/"
    assert loc(A, "/mnt//ckpt/./x/../a.pt") == "nfs://fs1:/export/ml/a.pt"


def test_overmounted_point_is_shadowed() -> None:
    """A tmpfs mounted over an NFS mount hides it; a file still open from before the
    overmount carries the NFS dev and is named by it."""
    table = MountTable.parse(HOST_A + "300 101 0:90 / /mnt/ckpt rw - tmpfs tmpfs rw\n")
    assert table.find("/mnt/ckpt/a.pt") == table.mounts[-1]
    assert loc(table, "/mnt/ckpt/a.pt") == ""
    assert loc(table, "/mnt/ckpt/a.pt", os.makedev(0, 90)) == ""
    assert loc(table, "/mnt/ckpt/a.pt", os.makedev(0, 51)) == "nfs://fs1:/export/ml/a.pt"


def test_find_prefers_dev_then_falls_back_to_path() -> None:
    """A container's view: /ckpt is the host's NFS export bind-mounted, but the path the
    kernel reports is the container's; the dev still finds the NFS mount on an ancestor."""
    table = MountTable.parse(
        "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "2 1 0:51 / /mnt rw - nfs4 fs1:/export/ml rw\n"
        "3 2 0:60 / /mnt/cache rw - tmpfs tmpfs rw\n"
    )
    assert table.find("/mnt/cache/a", os.makedev(0, 51)) == table.mounts[1]
    assert table.find("/mnt/cache/a", os.makedev(0, 60)) == table.mounts[2]
    assert table.find("/mnt/cache/a", os.makedev(9, 9)) == table.mounts[2]  # unknown dev
    assert table.find("/mnt/cache/a") == table.mounts[2]
    assert table.find("/elsewhere", os.makedev(0, 51)) == table.mounts[0]  # not an ancestor


def test_shared_paths_override_and_longest_wins() -> None:
    rules = SharedRules(
        paths={"/mnt/ckpt": "ckpts", "/mnt/ckpt/run7/": "run7", "/srv/data": "datalake"}
    )
    assert loc(A, "/mnt/ckpt/run6/a.pt", rules=rules) == "shared:ckpts/run6/a.pt"
    assert loc(A, "/mnt/ckpt/run7/a.pt", rules=rules) == "shared:run7/a.pt"
    assert loc(A, "/srv/data/x/y.csv", rules=rules) == "shared:datalake/x/y.csv"
    assert loc(A, "/srv/data", rules=rules) == "shared:datalake"
    assert loc(A, "/srv/database/y.csv", rules=rules) == ""
    assert rules.paths == {"/mnt/ckpt": "ckpts", "/mnt/ckpt/run7": "run7", "/srv/data": "datalake"}


def test_shared_paths_are_validated() -> None:
    with pytest.raises(ConfigError, match="absolute directory"):
        SharedRules(paths={"data": "datalake"})
    with pytest.raises(ConfigError, match="non-empty name"):
        SharedRules(paths={"/data": ""})


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeLoader:
    """Hands out tables in turn (the last one for ever), counting loads."""

    def __init__(self, *tables: MountTable | Exception) -> None:
        self.tables = list(tables)
        self.loads = 0

    def __call__(self) -> MountTable:
        self.loads += 1
        table = self.tables[min(self.loads, len(self.tables)) - 1]
        if isinstance(table, Exception):
            raise table
        return table


ROOT_ONLY = MountTable.parse("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n")
NFS_DEV = os.makedev(0, 51)


def test_locator_reloads_on_unknown_dev_at_most_once_a_second() -> None:
    clock, loader = FakeClock(), FakeLoader(ROOT_ONLY, A)
    locator = Locator(RULES, loader=loader, clock=clock)
    assert locator.locate("/home/a", os.makedev(8, 1)) == ""
    assert loader.loads == 1
    # The NFS mount appears within the second: not reread yet.
    clock.now += 0.5
    assert locator.locate("/mnt/ckpt/a.pt", NFS_DEV) == ""
    assert loader.loads == 1
    clock.now += 0.5
    assert locator.locate("/mnt/ckpt/a.pt", NFS_DEV) == "nfs://fs1:/export/ml/a.pt"
    assert loader.loads == 2
    # Known devs and a dev no mount has (a btrfs subvolume): at most one reload a second.
    for _ in range(10):
        clock.now += 0.25
        locator.locate("/mnt/ckpt/a.pt", NFS_DEV)
        locator.locate("/home/a", os.makedev(0, 999))
    assert loader.loads == 4


def test_locator_reloads_when_old_and_keeps_table_on_failure() -> None:
    clock = FakeClock()
    loader = FakeLoader(A, PrerequisiteError("no /proc"), ROOT_ONLY)
    locator = Locator(RULES, max_age=30.0, loader=loader, clock=clock)
    assert locator.locate("/mnt/ckpt/a.pt", NFS_DEV) == "nfs://fs1:/export/ml/a.pt"
    clock.now += 29
    assert locator.locate("/mnt/ckpt/a.pt", None) == "nfs://fs1:/export/ml/a.pt"
    assert loader.loads == 1
    clock.now += 1
    assert locator.locate("/mnt/ckpt/a.pt", None) == "nfs://fs1:/export/ml/a.pt"  # failed
    assert loader.loads == 2
    clock.now += 0.5
    locator.locate("/mnt/ckpt/a.pt", None)
    assert loader.loads == 2  # a failure is not retried within the second
    clock.now += 30
    assert locator.locate("/mnt/ckpt/a.pt", None) == ""  # unmounted since
    assert loader.loads == 3


def test_locator_names_declared_trees_on_a_host_without_shared_mounts() -> None:
    """With no mount of a shared type, only the configured shared trees are named."""
    rules = SharedRules(paths={"/data": "lake"})
    locator = Locator(rules, loader=FakeLoader(ROOT_ONLY), clock=FakeClock())
    assert locator.locate("/data/x/y.csv", os.makedev(8, 1)) == "shared:lake/x/y.csv"
    assert locator.locate("/home/a", os.makedev(8, 1)) == ""


def test_real_mountinfo() -> None:
    """This process's own table has a root mount, and "/" is on it."""
    table = MountTable.load()
    root = table.find("/")
    assert root is not None
    assert root.point == "/"
    assert table.find("/", os.stat("/").st_dev) is not None
    assert mount_devices(os.getpid())[str(root.mount_id)] == root.dev


def test_unreadable_mountinfo_is_a_clear_error() -> None:
    with pytest.raises(PrerequisiteError, match=r"cannot read /proc/0/mountinfo"):
        MountTable.load("0")
    assert mount_devices(0) == {}
