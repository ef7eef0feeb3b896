"""Configuration: /etc/roard/roard.toml (every key optional), flags and ROARD_* environment."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from roard.artifacts.datasets import DEFAULT_MIN_FILES
from roard.artifacts.filesystems import DEFAULT_SHARED_FSTYPES, SharedRules
from roard.context.environment import DEFAULT_SECRET_NAMES, DEFAULT_SECRET_VALUES, Redactor
from roard.control.address import DEFAULT_SOCKET
from roard.errors import ConfigError

DEFAULT_CONFIG = Path("/etc/roard/roard.toml")
DEFAULT_STATE_DIR = Path("/var/lib/roard")


IO_HOOKS = ("auto", "entry+exit")
TIERS = ("auto", "fentry", "kprobe", "tracepoint")


@dataclass(frozen=True)
class KernelSizing:
    """Map and ring sizes, and how reads and writes are hooked (config section [kernel])."""

    ring_pages: int = 4096  # 16 MiB: about 60k open/close events of headroom
    tracked_max: int = 65536
    fdagg_max: int = 131072
    runs_max: int = 4096
    wakeup_every: int = 64
    # "auto": one exit handler per read/write where the kernel allows (x86_64, 5.15+), else
    # entry and exit handlers; "entry+exit" forces the latter.
    io_hooks: str = "auto"
    # Tier of the VFS hook that sees io_uring and aio file I/O: "auto" the best this host
    # attaches (fentry, else kprobe, else none: such runs are marked incomplete); "fentry"
    # or "kprobe" insist on one (roard fails to start without it); "tracepoint" goes without.
    tier: str = "auto"


SYSTEM_PREFIXES = (
    "/usr/",
    "/lib/",
    "/lib32/",
    "/lib64/",
    "/bin/",
    "/sbin/",
    "/etc/",
    "/proc/",
    "/sys/",
    "/dev/",
    "/run/",
    "/var/cache/",
    "/var/lib/dpkg/",
)
# Under a system prefix, but the user's own files: /dev/shm is the memory (tmpfs) that jobs
# stage datasets and checkpoints in.
USER_PREFIXES = ("/dev/shm/",)
PACKAGE_MARKERS = ("/site-packages/", "/dist-packages/", "/.venv/", "/venv/", "/.pyenv/")
# Source files: a run's code, not its data (diff and reproduce tell the two apart).
CODE_SUFFIXES = (
    ".py",
    ".pyx",
    ".ipynb",
    ".sh",
    ".bash",
    ".R",
    ".r",
    ".jl",
    ".scala",
    ".java",
    ".kt",
    ".go",
    ".rs",
    ".c",
    ".cc",
    ".cpp",
    ".h",
    ".hpp",
    ".cu",
    ".js",
    ".ts",
    ".lua",
    ".pl",
    ".rb",
)
# Programs whose first non-option argument is a script they run (version digits dropped:
# python3.11 is python).
INTERPRETERS = (
    "python",
    "pypy",
    "sh",
    "bash",
    "dash",
    "zsh",
    "ksh",
    "perl",
    "ruby",
    "Rscript",
    "julia",
    "node",
    "lua",
    "php",
)


@dataclass(frozen=True)
class ClassifyRules:
    """Which paths are system files, package files, code, or (otherwise) artifacts.

    A package marker wins over a system prefix (/usr/lib/python3/dist-packages is a package),
    and both over code (a library's .py files are the package's). A user prefix takes its
    paths out of the system prefixes (/dev/shm/ is not /dev).
    """

    system_prefixes: tuple[str, ...] = SYSTEM_PREFIXES
    package_markers: tuple[str, ...] = PACKAGE_MARKERS
    code_suffixes: tuple[str, ...] = CODE_SUFFIXES
    interpreters: tuple[str, ...] = INTERPRETERS
    user_prefixes: tuple[str, ...] = USER_PREFIXES


@dataclass(frozen=True)
class ArtifactsConfig:
    """How files are identified across hosts (config section [artifacts])."""

    # Filesystem types whose files are the same on every host mounting them ("fuse.*": any
    # FUSE filesystem that names its source, such as gcsfuse or rclone).
    shared_fstypes: tuple[str, ...] = tuple(sorted(DEFAULT_SHARED_FSTYPES))
    # Extra shared trees: directory -> a name that is the same on every host.
    shared_paths: dict[str, str] = field(default_factory=dict)

    def shared_rules(self) -> SharedRules:
        """The rules the locator applies; raises ConfigError for a bad shared path."""
        return SharedRules(frozenset(self.shared_fstypes), dict(self.shared_paths))


@dataclass(frozen=True)
class ContextConfig:
    """What is recorded about how a run was invoked (config section [context])."""

    # Regular expressions (Python syntax): environment variables and command-line options
    # whose name matches one have their value replaced by "<redacted>"; so has any value
    # matching one of secret_values, whatever its name.
    secret_names: tuple[str, ...] = DEFAULT_SECRET_NAMES
    secret_values: tuple[str, ...] = DEFAULT_SECRET_VALUES

    def redactor(self) -> Redactor:
        """The redactor these patterns make; raises ConfigError for a bad pattern."""
        try:
            return Redactor(self.secret_names, self.secret_values)
        except re.error as exc:
            raise ConfigError(
                f"config: [context] secret pattern {exc.pattern!r} is not a valid regular "
                f"expression: {exc}"
            ) from None


@dataclass(frozen=True)
class DatasetsConfig:
    """Directories of many files read or written as one (config section [datasets]; the
    rule is in roard.artifacts.datasets)."""

    enabled: bool = True
    min_files: int = DEFAULT_MIN_FILES  # files of a role under a directory to make a dataset


@dataclass(frozen=True)
class CollectorConfig:
    """Where records go (config section [collector]); empty strings mean "not set"."""

    address: str = ""  # HOST:PORT or unix:/path; empty: the embedded collector
    host_id: str = ""  # empty: the hostname
    token_file: str = ""  # a file holding this host's bearer token
    tls_ca: str = ""  # CA that signed the collector's certificate (enables TLS)
    tls_cert: str = ""  # this host's client certificate (mutual TLS)
    tls_key: str = ""
    spool_max_bytes: int = 1 << 30  # records held while the collector is unreachable
    # Records held in memory while the state dir cannot be written (full or read-only);
    # past it, the least valuable are shed and their runs marked incomplete.
    backlog_max_bytes: int = 64 << 20
    delivery_wait_seconds: float = 10.0  # how long queries wait for spooled records
    reconnect_max_seconds: float = 15.0  # the longest pause between reconnection attempts
    web_listen: str = ""  # HOST:PORT (loopback) of the embedded registry's web UI; empty: off


@dataclass(frozen=True)
class MetricsConfig:
    """Health and Prometheus metrics (config section [metrics])."""

    listen: str = ""  # loopback HOST:PORT for /healthz and /metrics; empty: off


@dataclass(frozen=True)
class HashLimits:
    """What hashing one file may cost (top-level keys hash_max_bytes, hash_timeout_seconds,
    hash_stuck_max). Files over a limit are recorded unhashed, with the reason."""

    # 64 GiB: 30-60 s at the 1-2 GB/s of a local NVMe disk; a larger single file would hold
    # its run's finalization (and `roarctl tag`) for minutes.
    max_bytes: int = 64 << 30
    # How long one file's hash may go without progress (its stat and open, or a chunk of a
    # large file's read) before it is abandoned as hung; slow storage still bringing bytes
    # is given the time it takes.
    timeout_seconds: float = 300.0
    # Hash threads blocked past their deadline (a dead mount) before new files are recorded
    # unhashed at once rather than given more threads to block.
    stuck_max: int = 16


@dataclass(frozen=True)
class Config:
    """Everything roard run reads at start."""

    state_dir: Path = DEFAULT_STATE_DIR
    socket: Path = Path(DEFAULT_SOCKET)
    hash_workers: int = 4
    hash_max_bytes: int = HashLimits.max_bytes
    hash_timeout_seconds: float = HashLimits.timeout_seconds
    hash_stuck_max: int = HashLimits.stuck_max
    linger_seconds: float = 2.0  # how long a spawned run waits for stragglers after its root exits
    env_runs: bool = True  # ROARD_RUN=<name> in an exec'd program's environment starts a run
    kernel: KernelSizing = field(default_factory=KernelSizing)
    classify: ClassifyRules = field(default_factory=ClassifyRules)
    artifacts: ArtifactsConfig = field(default_factory=ArtifactsConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    datasets: DatasetsConfig = field(default_factory=DatasetsConfig)
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def hash_limits(self) -> HashLimits:
        """The hashing limits, as the hasher takes them."""
        return HashLimits(self.hash_max_bytes, self.hash_timeout_seconds, self.hash_stuck_max)


_TOP_KEYS = {
    "state_dir": Path,
    "socket": Path,
    "hash_workers": int,
    "hash_max_bytes": int,
    "hash_timeout_seconds": float,
    "hash_stuck_max": int,
    "linger_seconds": float,
    "env_runs": bool,
}


def _typed(section: str, key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is Path and isinstance(value, str):
        return Path(value)
    if kind is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if kind is dict and isinstance(value, dict):
        if not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"config key [{section}] {key}: every value must be a string")
        return dict(value)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        where = f"[{section}] {key}" if section else key
        raise ConfigError(f"config key {where}: expected {kind.__name__}, got {value!r}")
    return value


def _section(name: str, table: Any, cls: type[Any]) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"config [{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"unknown config key [{name}] {key}; known: {', '.join(known)}")
        default = getattr(cls(), key)
        values[key] = _typed(name, key, value, type(default))
    return cls(**values)


def parse(text: str, source: str = "config") -> Config:
    """Parse TOML text into a Config; errors name the key and what was expected."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from exc
    config = Config()
    top: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "kernel":
            config = replace(config, kernel=_section("kernel", value, KernelSizing))
        elif key == "classify":
            config = replace(config, classify=_section("classify", value, ClassifyRules))
        elif key == "context":
            config = replace(config, context=_section("context", value, ContextConfig))
        elif key == "artifacts":
            config = replace(config, artifacts=_section("artifacts", value, ArtifactsConfig))
        elif key == "datasets":
            config = replace(config, datasets=_section("datasets", value, DatasetsConfig))
        elif key == "collector":
            config = replace(config, collector=_section("collector", value, CollectorConfig))
        elif key == "metrics":
            config = replace(config, metrics=_section("metrics", value, MetricsConfig))
        elif key in _TOP_KEYS:
            top[key] = _typed("", key, value, _TOP_KEYS[key])
        else:
            raise ConfigError(f"unknown config key {key!r} in {source}")
    return _checked(replace(config, **top))


def _checked(config: Config) -> Config:
    """Reject values of the right type that cannot work, naming the key."""
    k = config.kernel
    c = config.collector
    problems = [
        (c.spool_max_bytes >= 1 << 20, "[collector] spool_max_bytes must be at least 1 MiB"),
        (c.backlog_max_bytes >= 1 << 14, "[collector] backlog_max_bytes must be at least 16 KiB"),
        (c.delivery_wait_seconds >= 0, "[collector] delivery_wait_seconds must not be negative"),
        (c.reconnect_max_seconds >= 0.1, "[collector] reconnect_max_seconds must be >= 0.1"),
        (
            not (c.web_listen and c.address),
            "[collector] web_listen serves the embedded registry (address empty); for a "
            "remote collector, start its web UI there: roard collector --web HOST:PORT",
        ),
        (
            not (c.tls_cert or c.tls_key) or bool(c.tls_cert and c.tls_key and c.tls_ca),
            "[collector] tls_cert and tls_key go together, with tls_ca",
        ),
        (
            config.datasets.min_files >= 2,
            "[datasets] min_files must be at least 2 (files of a directory a run used to "
            "make it one dataset)",
        ),
        (config.hash_workers >= 1, "hash_workers must be at least 1"),
        (
            config.hash_max_bytes >= 0,
            "hash_max_bytes must not be negative (files larger are recorded unhashed; "
            "0 hashes only empty files)",
        ),
        (
            config.hash_timeout_seconds > 0,
            "hash_timeout_seconds must be positive (how long a hash may stall, e.g. 300)",
        ),
        (
            config.hash_stuck_max >= 1,
            "hash_stuck_max must be at least 1 (hash threads stuck on hung mounts before "
            "new files are recorded unhashed at once)",
        ),
        (config.linger_seconds >= 0, "linger_seconds must not be negative"),
        (
            k.ring_pages > 0 and k.ring_pages & (k.ring_pages - 1) == 0,
            "[kernel] ring_pages must be a power of two (the kernel requires it)",
        ),
        (k.tracked_max > 0, "[kernel] tracked_max must be positive"),
        (k.fdagg_max > 0, "[kernel] fdagg_max must be positive"),
        (k.runs_max > 0, "[kernel] runs_max must be positive"),
        (k.wakeup_every > 0, "[kernel] wakeup_every must be positive"),
        (k.io_hooks in IO_HOOKS, f"[kernel] io_hooks must be one of {', '.join(IO_HOOKS)}"),
        (k.tier in TIERS, f"[kernel] tier must be one of {', '.join(TIERS)}"),
    ]
    for ok, message in problems:
        if not ok:
            raise ConfigError(f"config: {message}")
    config.context.redactor()
    try:
        config.artifacts.shared_rules()
    except ConfigError as exc:
        raise ConfigError(f"config: [artifacts] shared_paths: {exc}") from None
    return config


def load(path: Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read the config file (if present) and apply ROARD_STATE_DIR / ROARD_SOCKET."""
    env = os.environ if environ is None else environ
    explicit = path or (Path(env["ROARD_CONFIG"]) if env.get("ROARD_CONFIG") else None)
    chosen = explicit or DEFAULT_CONFIG
    if chosen.is_file():
        config = parse(chosen.read_text(), str(chosen))
    elif explicit:
        raise ConfigError(f"config file {explicit} does not exist")
    else:
        config = Config()
    if env.get("ROARD_STATE_DIR"):
        config = replace(config, state_dir=Path(env["ROARD_STATE_DIR"]))
    if env.get("ROARD_SOCKET"):
        config = replace(config, socket=Path(env["ROARD_SOCKET"]))
    return config
