"""What machine a run ran on (OS, kernel, CPUs, memory, GPUs) and in which cgroup,
container and Kubernetes pod its root process was."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil
import structlog

from roard import procfs
from roard.context import Plain
from roard.context.environment import read_environ
from roard.tracking.cgroups import proc_cgroup_path

log = structlog.get_logger("roard.context.host")

# A container id in a cgroup path: docker-<id>.scope, /docker/<id>, cri-containerd-<id>.scope,
# crio-<id>.scope, libpod-<id>.scope, /kubepods/.../<id> (all 64 hex digits).
_CGROUP_CONTAINER = re.compile(r"(?:^|[/-])([0-9a-f]{64})(?:\.scope)?(?:/|$)")
# Inside a container's own cgroup namespace the path is "/": the files the runtime bind
# mounts into it (/etc/hostname, ...) name the container's directory instead.
_MOUNT_CONTAINER = re.compile(
    r"/(?:containers|overlay-containers|sandboxes|io\.containerd[^/]*/[^/]+)/([0-9a-f]{64})/"
)
_MOUNT_POINTS = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
# kubepods-burstable-pod<uid>.slice (systemd driver: "_" for "-") or /kubepods/.../pod<uid>/
_POD_UID = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)
_CUDA_VERSION = re.compile(r"CUDA Version\s*:\s*([0-9][0-9.]*)")


@dataclass(frozen=True)
class Gpu(Plain):
    """One GPU as nvidia-smi lists it."""

    index: int
    name: str
    uuid: str
    memory_bytes: int


@dataclass(frozen=True)
class HostFacts(Plain):
    """The machine roard runs on, and the container (if any) roard runs in."""

    os: str  # PRETTY_NAME from os-release
    kernel: str  # uname release
    arch: str  # uname machine
    cpu_model: str
    cpus: int  # logical CPUs
    memory_bytes: int
    gpus: tuple[Gpu, ...]
    driver_version: str  # NVIDIA driver; "" without nvidia-smi
    cuda_version: str  # the highest CUDA the driver supports; "" without nvidia-smi
    container: str  # container id, "" when not in a container (or it cannot be told)
    kubernetes_pod: str  # pod name (HOSTNAME) when in Kubernetes, else ""
    kubernetes_pod_uid: str  # from the cgroup path, else ""


@dataclass(frozen=True)
class ProcessContext(Plain):
    """Where one process (or a tagged cgroup) ran: its cgroup, container and Kubernetes
    pod; empty fields for what cannot be told."""

    pid: int  # 0 for a cgroup
    cgroup: str  # v2 path, else the v1 name=systemd path; "" when gone
    container: str  # container id, "" if none found
    kubernetes_pod_uid: str  # "" if none found
    kubernetes_pod: str = ""  # the pod's name: the process's HOSTNAME, in Kubernetes


def _os_release(root: Path = Path("/")) -> str:
    for name in ("etc/os-release", "usr/lib/os-release"):
        try:
            text = (root / name).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key == "PRETTY_NAME":
                return value.strip().strip("\"'")
    return ""


def _cpu_model() -> str:
    """ "model name" on x86; other architectures name the field differently."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""
    for key in ("model name", "Model", "Processor", "cpu model", "cpu"):
        for line in text.splitlines():
            field, _, value = line.partition(":")
            if field.strip() == key and value.strip():
                return value.strip()
    return ""


def container_id(cgroup_path: str, mountinfo: str = "") -> str:
    """The container id a cgroup path (or, failing that, mountinfo text) shows; ""."""
    found = _CGROUP_CONTAINER.findall(cgroup_path)
    if found:
        return str(found[-1])  # the innermost: the container, not a pod sandbox above it
    for mount in procfs.parse_mountinfo(mountinfo):
        if mount.point in _MOUNT_POINTS:
            match = _MOUNT_CONTAINER.search(mount.root)
            if match:
                return match[1]
    return ""


def pod_uid(cgroup_path: str) -> str:
    """The Kubernetes pod uid a cgroup path shows (with "-"), or ""."""
    match = _POD_UID.search(cgroup_path)
    return match[1].replace("_", "-") if match else ""


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError:
        return ""


def process_context(pid: int) -> ProcessContext:
    """The cgroup, container id and pod of process `pid` (empty fields for what cannot
    be read, e.g. after it exited)."""
    cgroup = proc_cgroup_path(_read(f"/proc/{pid}/cgroup"))
    env = read_environ(pid) or {}
    return ProcessContext(
        pid=pid,
        cgroup=cgroup,
        container=container_id(cgroup, _read(f"/proc/{pid}/mountinfo")),
        kubernetes_pod_uid=pod_uid(cgroup),
        kubernetes_pod=env.get("HOSTNAME", "") if "KUBERNETES_SERVICE_HOST" in env else "",
    )


def cgroup_context(path: str) -> ProcessContext:
    """The container id and pod uid a tagged cgroup's path shows."""
    return ProcessContext(
        pid=0, cgroup=path, container=container_id(path), kubernetes_pod_uid=pod_uid(path)
    )


def parse_gpus(csv_text: str) -> tuple[tuple[Gpu, ...], str]:
    """The GPUs and driver version in `nvidia-smi --query-gpu=index,name,uuid,memory.total,
    driver_version --format=csv,noheader,nounits` output (memory in MiB)."""
    gpus = []
    driver = ""
    for line in csv_text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 5:
            continue
        try:
            index, memory = int(fields[0]), int(float(fields[3]) * (1 << 20))
        except ValueError:  # "[N/A]" and the like
            continue
        gpus.append(Gpu(index=index, name=fields[1], uuid=fields[2], memory_bytes=memory))
        driver = driver or fields[4]
    return tuple(sorted(gpus, key=lambda g: g.index)), driver


def _nvidia_smi(tool: str, args: list[str], timeout: float) -> str:
    try:
        done = subprocess.run(
            [tool, *args],
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        log.info("nvidia-smi failed", error=str(e))
        return ""
    if done.returncode != 0:
        log.info("nvidia-smi failed", rc=done.returncode)
        return ""
    return done.stdout.decode(errors="replace")


def host_facts(
    nvidia_smi: str | None = shutil.which("nvidia-smi"), timeout: float = 5.0
) -> HostFacts:
    """This machine's facts. GPUs come from `nvidia_smi` (no GPUs when it is None or
    fails; each call is bounded by `timeout`)."""
    uname = os.uname()
    gpus: tuple[Gpu, ...] = ()
    driver = cuda = ""
    if nvidia_smi:
        gpus, driver = parse_gpus(
            _nvidia_smi(
                nvidia_smi,
                [
                    "--query-gpu=index,name,uuid,memory.total,driver_version",
                    "--format=csv,noheader,nounits",
                ],
                timeout,
            )
        )
        if gpus:  # the CUDA version is only in the human-readable banner
            match = _CUDA_VERSION.search(_nvidia_smi(nvidia_smi, [], timeout))
            cuda = match[1] if match else ""
    own = process_context(os.getpid())
    in_kubernetes = "KUBERNETES_SERVICE_HOST" in os.environ
    return HostFacts(
        os=_os_release(),
        kernel=uname.release,
        arch=uname.machine,
        cpu_model=_cpu_model(),
        cpus=psutil.cpu_count(logical=True) or os.cpu_count() or 0,
        memory_bytes=psutil.virtual_memory().total,
        gpus=gpus,
        driver_version=driver,
        cuda_version=cuda,
        container=own.container,
        kubernetes_pod=(os.environ.get("HOSTNAME") or uname.nodename) if in_kubernetes else "",
        kubernetes_pod_uid=own.kubernetes_pod_uid,
    )
