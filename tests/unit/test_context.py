"""Tests for roard.context: git work trees, Python and system packages, host facts. Real
git repositories, the real venv and dpkg database, and fake file trees; no mocks."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from roard.context import as_json, by_directory
from roard.context.git import GitTree, strip_credentials, work_trees
from roard.context.host import (
    cgroup_context,
    container_id,
    host_facts,
    parse_gpus,
    pod_uid,
    process_context,
)
from roard.context.packages import (
    SiteIndexes,
    SystemPackage,
    SystemPackageIndex,
    python_distributions,
    system_packages,
)

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "PATH": os.environ["PATH"],
}


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` as a user would; its stdout."""
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        env=_GIT_ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    """A repository at `path` with one commit of `files` on branch main."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, text in (files or {"a.py": "print(1)\n", "src/b.py": "x = 1\n"}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    return path


def one(trees: list[GitTree]) -> GitTree:
    assert len(trees) == 1, trees
    return trees[0]


# --- git ---------------------------------------------------------------------------------


@needs_git
def test_clean_repo_commit_branch_and_remote_without_credentials(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "upstream", "https://other.example/x.git")
    git(repo, "remote", "add", "origin", "https://alice:s3cret@git.example.com/org/repo.git")
    # Names as a process may spell them, and a submodule's gitfile: git's, not content.
    spelled = [f"{repo}/src/./../a.py", f"{repo}//src/b.py", str(repo / "src/.git")]
    tree = one(
        work_trees(
            by_directory([str(repo / "a.py"), str(repo / "src/b.py"), "/etc/passwd", *spelled])
        )
    )
    assert tree.root == str(repo)
    assert tree.commit == git(repo, "rev-parse", "HEAD") and len(tree.commit) == 40
    assert tree.branch == "main"
    assert tree.remote == "https://git.example.com/org/repo.git"
    assert (tree.dirty, tree.diff_hash, tree.modified) == (False, "", ())
    assert tree.files_read == ("a.py", "src/b.py")
    assert json.loads(json.dumps(tree.to_dict()))["files_read"] == ["a.py", "src/b.py"]


def test_strip_credentials() -> None:
    assert strip_credentials("https://tok@github.com/o/r") == "https://github.com/o/r"
    assert strip_credentials("ssh://git@host:22/o/r") == "ssh://host:22/o/r"
    assert strip_credentials("git@github.com:o/r.git") == "git@github.com:o/r.git"
    assert strip_credentials("https://github.com/o/r") == "https://github.com/o/r"


@needs_git
def test_dirty_repo_lists_changes_and_hashes_them_stably(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "a.py").write_text("print(2)\n")
    (repo / "new dir").mkdir()
    (repo / "new dir" / "c.py").write_text("y = 2\n")
    git(repo, "rm", "-q", "src/b.py")
    first = one(work_trees(by_directory([str(repo / "a.py")])))
    assert first.dirty
    assert first.modified == ("a.py", "new dir/c.py", "src/b.py")
    assert not first.modified_truncated
    assert first.diff_hash.startswith("blake3:") and len(first.diff_hash) == 7 + 64
    assert one(work_trees(by_directory([str(repo / "a.py")]))).diff_hash == first.diff_hash
    (repo / "new dir" / "c.py").write_text("y = 3\n")  # only an untracked file's content
    second = one(work_trees(by_directory([str(repo / "a.py")])))
    assert second.diff_hash != first.diff_hash
    (repo / "a.py").write_text("print(3)\n")  # a tracked file's
    assert one(work_trees(by_directory([str(repo / "a.py")]))).diff_hash not in (
        first.diff_hash,
        second.diff_hash,
    )
    # The probe took no lock and changed nothing the user's git sees.
    assert not (repo / ".git/index.lock").exists()


@needs_git
def test_repo_without_commits(tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "x.py").write_text("1\n")
    tree = one(work_trees(by_directory([str(repo / "x.py")])))
    assert (tree.commit, tree.branch, tree.dirty, tree.modified) == ("", "main", True, ("x.py",))
    assert tree.diff_hash.startswith("blake3:")


@needs_git
def test_detached_head(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "--detach")
    tree = one(work_trees(by_directory([str(repo / "a.py")])))
    assert (tree.branch, tree.commit) == ("", head)


@needs_git
def test_linked_worktree_is_its_own_tree_and_git_dir_paths_do_not_count(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    linked = tmp_path / "repo" / "wt"  # nested inside the main tree, on another branch
    git(repo, "worktree", "add", "-q", "-b", "feature", str(linked))
    (linked / "a.py").write_text("changed\n")
    trees = work_trees(
        by_directory(
            [
                str(linked / "a.py"),
                str(repo / "src/b.py"),
                str(repo / ".git/HEAD"),
                str(repo / ".git/worktrees/wt/HEAD"),
                str(tmp_path / "outside.txt"),
            ]
        )
    )
    assert [t.root for t in trees] == [str(repo), str(linked)]
    main, feature = trees
    assert (main.branch, main.files_read) == ("main", ("src/b.py",))
    assert (feature.branch, feature.files_read, feature.modified) == (
        "feature",
        ("a.py",),
        ("a.py",),
    )
    assert feature.commit == main.commit


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="roard-ctx-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@needs_git
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_repo_owned_by_another_user_is_probed(world_dir: Path) -> None:
    repo = make_repo(world_dir / "theirs")
    (repo / "a.py").write_text("theirs\n")
    head = git(repo, "rev-parse", "HEAD")
    subprocess.run(["chown", "-R", "nobody:", str(repo)], check=True)
    tree = one(work_trees(by_directory([str(repo / "a.py")])))
    assert (tree.commit, tree.dirty, tree.modified) == (head, True, ("a.py",))
    # Probing left nothing of root's behind in their repository.
    assert all(p.stat().st_uid != 0 for p in repo.rglob("*"))


@needs_git
def test_corrupt_repo_is_skipped_not_mistaken_for_the_one_around_it(tmp_path: Path) -> None:
    outer = make_repo(tmp_path / "outer")
    inner = make_repo(outer / "inner")
    (inner / ".git/HEAD").write_text("garbage\n")
    trees = work_trees(by_directory([str(inner / "a.py"), str(outer / "a.py")]))
    assert [t.root for t in trees] == [str(outer)]
    assert work_trees(by_directory([str(inner / "a.py")])) == []


def test_a_git_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    """A git (or a hook's child) that hangs: the probe gives up at the timeout, and the
    whole process group, child included, is gone."""
    from roard.context.git import _GitFailed, _output

    pidfile = tmp_path / "child.pid"
    proc = subprocess.Popen(
        ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    # The child must be running (its pid known) before the timeout kills the group.
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().endswith("\n")):
        assert time.monotonic() < deadline, "the fake git never started its child"
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(_GitFailed, match=r"git status timed out after 0\.3s"):
        _output(proc, "status", 0.3)
    assert time.monotonic() - started < 5
    assert proc.returncode is not None
    child = int(pidfile.read_text())

    def alive() -> bool:  # a zombie is dead: only init's reaping is left
        try:
            return Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 5
    while alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive()


def test_no_paths_in_any_repo(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert (
        work_trees(by_directory([str(tmp_path / "f"), "relative/path", "/proc/self/status"])) == []
    )


# --- packages ----------------------------------------------------------------------------


def test_python_distribution_of_a_file_in_the_venv() -> None:
    import blake3
    import grpc

    files = [str(Path(blake3.__file__).resolve()), str(Path(grpc.__file__).resolve())]
    site = str(Path(grpc.__file__).resolve().parent.parent)
    found = python_distributions(by_directory([*files, files[0], "/usr/bin/env"]))
    assert [(d.name, d.version, d.location) for d in found] == [
        ("blake3", importlib.metadata.version("blake3"), site),
        ("grpcio", importlib.metadata.version("grpcio"), site),
    ]


def test_python_distributions_of_a_fake_site_dir(tmp_path: Path) -> None:
    site = tmp_path / "lib/python3.11/site-packages"
    info = site / "demo_pkg-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: Demo-Pkg\nVersion: 1.2.3\n\nName: not this\n"
    )
    (info / "RECORD").write_text(
        "demo/__init__.py,sha256=x,1\ndemo/data file.txt,,\n../../../bin/demo,,\n"
        "demo_pkg-1.2.3.dist-info/RECORD,,\n"
    )
    (info / "top_level.txt").write_text("demo\n")
    egg = site / "old.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Name: old\nVersion: 0.1\n")
    (egg / "installed-files.txt").write_text("../old.py\n")
    demo = python_distributions(by_directory([str(tmp_path / "bin/demo")]))
    assert [(d.name, d.version, d.location) for d in demo] == [("Demo-Pkg", "1.2.3", str(site))]
    both = python_distributions(
        by_directory(
            [
                str(site / "demo/data file.txt"),
                str(site / "demo/__pycache__/__init__.cpython-311.pyc"),  # not in RECORD
                str(site / "old.py"),
                str(site / "unowned.py"),
            ]
        )
    )
    assert [d.name for d in both] == ["Demo-Pkg", "old"]


def test_site_indexes_are_kept_until_a_distribution_comes_or_goes(tmp_path: Path) -> None:
    """Runs share environments: a site dir is read once, and again only when its listing
    changes (an install adds a *.dist-info)."""
    site = tmp_path / "lib/python3.11/site-packages"
    for name in ("alpha", "beta"):
        info = site / f"{name}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Name: {name}\nVersion: 1.0\n")
        (info / "RECORD").write_text(f"{name}/__init__.py,,\n")
    sites = SiteIndexes()
    paths = [str(site / "alpha/__init__.py"), str(site / "beta/__init__.py")]
    assert [d.name for d in python_distributions(by_directory(paths), sites)] == ["alpha", "beta"]
    first = sites.get(str(site))
    assert sites.get(str(site)) is first  # not read again
    stamp = site.stat().st_mtime_ns
    shutil.rmtree(site / "beta-1.0.dist-info")
    os.utime(site, ns=(stamp + 1, stamp + 1))  # a coarse clock could hide the change
    assert [d.name for d in python_distributions(by_directory(paths), sites)] == ["alpha"]


def dpkg_version(package: str) -> str:
    return subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.skipif(not Path("/var/lib/dpkg/status").is_file(), reason="not a dpkg system")
def test_system_packages_from_the_real_dpkg_database() -> None:
    python = os.path.realpath("/usr/bin/python3")
    found = system_packages(by_directory([python, "/usr/bin/ls", "/nonexistent/file"]))
    names = {p.name: p for p in found}
    assert len(found) == 2, found
    for package in found:
        assert package.manager == "dpkg"
        assert package.version == dpkg_version(f"{package.name}:{package.arch}")
    # /usr/bin/ls is listed by coreutils as /bin/ls on a /usr-merged system.
    assert "coreutils" in names


def fake_dpkg_root(root: Path) -> Path:
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (info / "tool.list").write_text("/.\n/usr\n/usr/bin\n/usr/bin/tool\n")
    (info / "libz1:amd64.list").write_text("/lib\n/lib/x86_64-linux-gnu/libz.so.1\n")
    (info / "gone.list").write_text("/usr/bin/gone\n")
    (root / "var/lib/dpkg/status").write_text(
        "Package: tool\nStatus: install ok installed\nArchitecture: all\nVersion: 1.0-1\n"
        "Description: a tool\n continued: line\n\n"
        "Package: libz1\nStatus: install ok installed\nArchitecture: amd64\n"
        "Multi-Arch: same\nVersion: 1:1.2.13\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\n"
        "Version: 3\n"
    )
    return root


def test_system_packages_from_a_fake_dpkg_tree_with_usr_merge(tmp_path: Path) -> None:
    root = str(fake_dpkg_root(tmp_path))
    found = system_packages(
        by_directory(
            [
                "/bin/tool",
                "/usr/lib/x86_64-linux-gnu/libz.so.1",
                "/usr/bin/gone",
                "/usr/bin/tool",
                "/data/shard-0",  # in a directory no package has files in
            ]
        ),
        root=root,
    )
    assert system_packages(by_directory(["/data/../usr/bin//tool"]), root=root) == [found[1]]
    assert found == [
        SystemPackage("dpkg", "libz1", "1:1.2.13", "amd64"),
        SystemPackage("dpkg", "tool", "1.0-1", "all"),
    ]


def test_system_package_index_reloads_when_status_changes(tmp_path: Path) -> None:
    root = fake_dpkg_root(tmp_path)
    index = SystemPackageIndex(str(root))
    index.load()
    assert [p.version for p in index.lookup(by_directory(["/usr/bin/tool"]))] == ["1.0-1"]
    status = root / "var/lib/dpkg/status"
    status.write_text(status.read_text().replace("1.0-1", "2.0-1"))
    os.utime(status, ns=(1, 1))  # a different mtime, however fast the test runs
    index.load()
    assert [p.version for p in index.lookup(by_directory(["/usr/bin/tool"]))] == ["2.0-1"]


def test_system_packages_without_any_manager(tmp_path: Path) -> None:
    if shutil.which("rpm"):
        pytest.skip("rpm is installed")
    assert system_packages(by_directory(["/usr/bin/tool"]), root=str(tmp_path)) == []


# --- host --------------------------------------------------------------------------------


def test_host_facts_of_this_machine() -> None:
    facts = host_facts(nvidia_smi=None)
    assert facts.os and facts.kernel == os.uname().release and facts.arch
    assert facts.cpus > 0 and facts.memory_bytes > 0
    assert (facts.gpus, facts.driver_version, facts.cuda_version) == ((), "", "")
    assert json.loads(json.dumps(as_json(facts)))["cpus"] == facts.cpus


def test_host_facts_without_nvidia_smi_installed() -> None:
    if shutil.which("nvidia-smi"):
        pytest.skip("nvidia-smi is installed")
    assert host_facts().gpus == ()


def test_gpus_from_a_fake_nvidia_smi(tmp_path: Path) -> None:
    tool = tmp_path / "nvidia-smi"
    tool.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--query-gpu=index,name,uuid,memory.total,driver_version" ]; then\n'
        "  echo '1, NVIDIA H100 80GB HBM3, GPU-bbbb, 81559, 550.54.15'\n"
        "  echo '0, NVIDIA H100 80GB HBM3, GPU-aaaa, 81559, 550.54.15'\n"
        "else\n"
        "  echo '| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4  |'\n"
        "fi\n"
    )
    tool.chmod(0o755)
    facts = host_facts(nvidia_smi=str(tool))
    assert [(g.index, g.uuid, g.memory_bytes) for g in facts.gpus] == [
        (0, "GPU-aaaa", 81559 << 20),
        (1, "GPU-bbbb", 81559 << 20),
    ]
    assert facts.gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert (facts.driver_version, facts.cuda_version) == ("550.54.15", "12.4")
    assert facts.to_dict()["gpus"][0]["uuid"] == "GPU-aaaa"


def test_failing_nvidia_smi_means_no_gpus(tmp_path: Path) -> None:
    tool = tmp_path / "nvidia-smi"
    tool.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    tool.chmod(0o755)
    assert host_facts(nvidia_smi=str(tool)).gpus == ()
    assert parse_gpus("0, X, GPU-1, [N/A], 1\ngarbage\n") == ((), "")


def test_process_context_of_this_process() -> None:
    context = process_context(os.getpid())
    assert context.cgroup.startswith("/")
    assert process_context(2**22 + 1).cgroup == ""  # above pid_max: never a process


def test_container_and_pod_from_cgroup_paths_and_mountinfo() -> None:
    cid = "0123456789abcdef" * 4
    uid = "8f5b5c1e-2d3a-4b5c-9d8e-112233445566"
    assert container_id(f"/system.slice/docker-{cid}.scope") == cid
    assert container_id(f"/docker/{cid}") == cid
    systemd_uid = uid.replace("-", "_")
    pod = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{systemd_uid}.slice"
    assert container_id(f"{pod}/cri-containerd-{cid}.scope") == cid
    assert pod_uid(f"{pod}/cri-containerd-{cid}.scope") == uid
    assert pod_uid(f"/kubepods/besteffort/pod{uid}/{cid}") == uid
    assert container_id("/user.slice/user-1000.slice/session-3.scope") == ""
    mountinfo = (
        f"612 600 259:1 /var/lib/docker/containers/{cid}/hostname /etc/hostname rw,relatime"
        " - ext4 /dev/nvme0n1p1 rw\n"
    )
    assert container_id("/", mountinfo) == cid
    assert pod_uid("/") == ""


def test_cgroup_path_prefers_v2_then_named_systemd_hierarchy() -> None:
    from roard.tracking.cgroups import proc_cgroup_path

    assert proc_cgroup_path("9:name=systemd:/a\n4:memory:/m\n0::/b\n") == "/b"
    assert proc_cgroup_path("9:name=systemd:/a\n4:memory:/m\n") == "/a"
    assert proc_cgroup_path("") == ""


def test_a_probe_that_hangs_is_abandoned_at_its_deadline_and_not_repeated() -> None:
    """A hung mount under a run's directory: finalization gets no context after the
    deadline instead of waiting for ever, and no second thread piles up behind it."""
    import threading

    from roard.context.probe import ContextProbe
    from roard.v1 import records_pb2

    release = threading.Event()
    entered = threading.Event()
    calls: list[int] = []

    class Hanging(ContextProbe):
        def describe(self, paths: Iterable[str]) -> records_pb2.RunContext:
            calls.append(1)
            entered.set()
            release.wait(10)
            return records_pb2.RunContext()

    probe = Hanging(timeout=0.2)
    assert probe.begin(["/x"])() is None
    assert probe.begin(["/x"])() is None  # still stuck: not started again
    assert entered.wait(10)  # its thread may get to run only after the deadline
    assert len(calls) == 1
    release.set()
    deadline = time.monotonic() + 5
    while probe.begin(["/x"])() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(calls) >= 2  # once the stuck one finished, probing resumed


def test_a_probe_that_cannot_start_a_thread_says_so_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Out of threads: begin() still returns, and its call raises the error (the
    finalizer then records the run without a context)."""
    import threading

    from roard.context.probe import ContextProbe

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    pending = ContextProbe(timeout=0.2).begin(["/x"])
    with pytest.raises(RuntimeError, match="can't start new thread"):
        pending()


# Captured on a lent H100 host (nvidia-smi 580.159.04, Ubuntu 24.04) on 2026-11-26.
_H100_QUERY = (
    "0, NVIDIA H100 80GB HBM3, GPU-17c07f79-fcc0-1191-4661-c55918bbde62, 81559, 580.159.04"
)
_H100_BANNER = (
    "Thu Nov 26 13:16:23 2026       \n"
    "+-----------------------------------------------------------------------------------------+\n"
    "| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |\n"
    "+-----------------------------------------+------------------------+----------------------+\n"
)


def test_gpus_from_a_real_h100_nvidia_smi_output(tmp_path: Path) -> None:
    """The same parse over what nvidia-smi printed on a real GPU host."""
    (tmp_path / "query").write_text(_H100_QUERY + "\n")
    (tmp_path / "banner").write_text(_H100_BANNER)
    tool = tmp_path / "nvidia-smi"
    tool.write_text(
        f'#!/bin/sh\nif [ -n "$1" ]; then cat {tmp_path}/query; else cat {tmp_path}/banner; fi\n'
    )
    tool.chmod(0o755)
    facts = host_facts(nvidia_smi=str(tool))
    assert [(g.index, g.name, g.memory_bytes) for g in facts.gpus] == [
        (0, "NVIDIA H100 80GB HBM3", 81559 << 20)
    ]
    assert facts.gpus[0].uuid == "GPU-17c07f79-fcc0-1191-4661-c55918bbde62"
    assert (facts.driver_version, facts.cuda_version) == ("580.159.04", "13.0")


def test_pod_name_of_a_process_in_kubernetes_and_a_tagged_cgroups_context() -> None:
    """The pod's name is the process's HOSTNAME, only when it runs in Kubernetes."""
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "train-7f9c-0", "PATH": "/bin"}
    with subprocess.Popen(["sleep", "30"], env=env) as child:
        try:
            # Until it has exec'd, the child still has the test's environment.
            cmdline = Path(f"/proc/{child.pid}/cmdline")
            for _ in range(500):
                if cmdline.read_bytes().startswith(b"sleep"):
                    break
                time.sleep(0.01)
            assert process_context(child.pid).kubernetes_pod == "train-7f9c-0"
        finally:
            child.kill()
    assert (
        process_context(os.getpid()).kubernetes_pod == "" or "KUBERNETES_SERVICE_HOST" in os.environ
    )
    cid = "0123456789abcdef" * 4
    context = cgroup_context(f"/system.slice/docker-{cid}.scope")
    assert (context.pid, context.container, context.kubernetes_pod_uid) == (0, cid, "")
