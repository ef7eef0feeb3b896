"""roard run: wire kernel, observer, tracker, hasher, registry and control together."""

from __future__ import annotations

import fcntl
import os
import resource
import secrets
import threading
import time
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import structlog

import roard
from roard.artifacts.filesystems import Locator
from roard.artifacts.hashcache import HashCache
from roard.artifacts.hasher import Hasher
from roard.collector.client import CollectorClient
from roard.collector.scopes import Principal
from roard.collector.service import CollectorServer
from roard.collector.sqlite import SqliteStore
from roard.collector.transport import (
    CollectorTarget,
    Credentials,
    configured_target,
    default_host_id,
)
from roard.collector.web import WebServer
from roard.config import Config
from roard.context.probe import ContextProbe
from roard.control.server import ControlServer, ControlService
from roard.errors import ConfigError, PrerequisiteError
from roard.export.stream import Exporter, HelloInfo
from roard.kernel import features, loader, pins
from roard.kernel.abi import Abi
from roard.kernel.decode import Decoder
from roard.memory import release_compiler_memory
from roard.metrics import MetricsServer
from roard.neighbours import Neighbour, other_daemons
from roard.notify import Notifier
from roard.observer import Observer
from roard.records import convert
from roard.records.sink import SpoolSink
from roard.records.spool import Spool
from roard.statedir import StateDirProblem, require_writable
from roard.stopsignal import StopSignal
from roard.tracking.checkpoint import CheckpointStore
from roard.tracking.tracker import Tracker

log = structlog.get_logger("roard.daemon")

_REAP_SECONDS = 5.0
# How much of a run a SIGKILLed roard can lose: what happened since the last checkpoint.
_CHECKPOINT_SECONDS = 2.0


def _raise_fd_limit() -> None:
    """Each control connection costs the daemon three descriptors (relayed client,
    upstream, gRPC's end): systemd's default soft limit of 1024 would run out under a few
    hundred clients, so take what the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1 << 16 if hard == resource.RLIM_INFINITY else min(hard, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class Daemon:
    """One running roard: start() brings everything up, stop() takes it down in order."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stopped = threading.Event()
        self._stop_signal = StopSignal()
        self._started_at = time.time()
        self._saved: dict[str, int] = {}  # run id -> change count at its last checkpoint
        self.checkpointed_at = 0.0
        self._neighbours_seen: tuple[float, list[Neighbour]] | None = None  # when, what

    def start(self) -> None:
        """Check prerequisites, load the BPF programs and start serving. On failure,
        whatever had started is stopped again before the error propagates."""
        # From the start: systemd may send SIGTERM as soon as READY=1 is out, and a
        # SIGTERM during the start must still end in a clean stop.
        self._stop_signal.catch()
        with ExitStack() as stack:
            self._start(stack)
            self._running = stack.pop_all()

    def _start(self, stack: ExitStack) -> None:
        # Each part registers its shutdown as it starts: the stack unwinds in reverse, so
        # roarctl is cut off first and the spool is drained last.
        host = features.probe()
        features.require(host)
        self.features = host
        _raise_fd_limit()
        state = self.config.state_dir
        try:
            state.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PrerequisiteError(f"cannot create the state dir {state}: {exc}") from None
        require_writable(state)
        os.chmod(state, 0o700)
        self._lock_state(state)
        self.host_id = self.config.collector.host_id or default_host_id()
        self.embedded: CollectorServer | None = None
        target = self._collector_target(stack)
        self.spool = stack.enter_context(
            closing(Spool(state / "spool.db", self.config.collector.spool_max_bytes))
        )
        self.sink = SpoolSink(
            self.spool,
            on_spooled=self._spooled,
            backlog_max_bytes=self.config.collector.backlog_max_bytes,
        )
        self.queries = stack.enter_context(closing(CollectorClient(target)))
        self.cache = stack.enter_context(closing(HashCache(state / "hashcache.db")))
        self.hasher = stack.enter_context(
            closing(Hasher(self.cache, self.config.hash_workers, self.config.hash_limits()))
        )
        self.probes = stack.enter_context(
            closing(loader.load(state, self.config.kernel, env_runs=self.config.env_runs))
        )
        self.exporter = Exporter(
            self.spool,
            self.sink,
            target,
            HelloInfo(self.host_id, _boot_id(), roard.__version__, self.probes.variant.tier),
            backoff_max=self.config.collector.reconnect_max_seconds,
            local=self.embedded.service if self.embedded is not None else None,
        )
        self.exporter.start()
        stack.callback(self._drain)
        released = release_compiler_memory()
        log.info(
            "compiler memory released",
            rss_before_mib=round(released.rss_before / 2**20, 1),
            rss_after_mib=round(released.rss_after / 2**20, 1),
            code_unmapped_mib=round(released.code_bytes / 2**20, 1),
        )
        variant = self.probes.variant
        if variant.exit_args_fallback is not None:
            log.warning(
                "read/write hooks need entry and exit handlers on this kernel (slower)",
                why=variant.exit_args_fallback[:500],
            )
        if variant.vfs_tier is None:
            log.warning(
                "no VFS hook: io_uring and aio file I/O are not observed (runs that set "
                "them up are marked incomplete)",
                why="; ".join(variant.notes)[:500],
            )
        for event in self.probes.skipped:
            log.warning(
                "tracepoint missing on this kernel; its syscall is not observed", tracepoint=event
            )
        self.checkpoints = stack.enter_context(closing(CheckpointStore(state / "runs.db")))
        self.tracker = Tracker(
            self.probes,
            self.hasher,
            self.sink,
            self.config.classify,
            linger_seconds=self.config.linger_seconds,
            host=self.host_id,
            locator=Locator(self.config.artifacts.shared_rules()),
            redactor=self.config.context.redactor(),
            context=ContextProbe(),
            datasets=self.config.datasets,
            socket_path=str(self.config.socket),
        )
        self._resume_runs()
        stack.callback(self._suspend)
        self.observer = Observer(self.probes, Decoder(Abi.load()), self.tracker)
        self.observer.start()
        stack.callback(self.observer.stop)
        threading.Thread(target=self._reap_loop, name="roard-reaper", daemon=True).start()
        threading.Thread(target=self._checkpoint_loop, name="roard-checkpoint", daemon=True).start()
        self.control = ControlServer(
            lambda relay: ControlService(
                self.tracker,
                self.queries,
                self.status,
                relay,
                self,
            ),
            public=self.config.socket,
            private=state / "control" / "grpc.sock",
        )
        self.control.start()
        stack.callback(self.control.stop)
        if self.config.metrics.listen:
            metrics = MetricsServer(self.config.metrics.listen, self.status, self.healthy)
            metrics.start()
            stack.callback(metrics.stop)
            log.info(
                "metrics", url=f"http://{self.config.metrics.listen}/metrics", port=metrics.port
            )
        for other in self._neighbours():
            log.warning(
                "another roard is running on this host: every process pays both daemons' "
                "hooks; stop one unless this is meant (a private daemon for tests)",
                pid=other.pid,
                command=other.command[:300],
            )
        self.notifier = Notifier()
        self.notifier.ready(f"tier {variant.tier}; socket {self.config.socket}")
        self.notifier.start_watchdog(self.healthy)
        log.info(
            "roard ready",
            tier=variant.tier,
            socket=str(self.config.socket),
            state_dir=str(state),
            load_seconds=round(self.probes.load_seconds, 2),
            headers=str(self.probes.headers.path),
        )

    def healthy(self) -> bool:
        """The ring reader is alive and polling (the watchdog and /healthz ask)."""
        return self.observer.alive()

    def state_problems(self) -> list[StateDirProblem]:
        """Why parts of the state dir cannot be written now (empty: they can)."""
        return [p for p in (self.sink.problem, self.cache.problem) if p is not None]

    def spool_problem(self) -> str | None:
        """Why records wait in memory instead of the spool (None: they do not)."""
        problem = self.sink.problem
        return problem.message if problem is not None else None

    def collector_problem(self) -> str | None:
        """Why the collector is known to be unreachable (None: it is not)."""
        if self.exporter.connected:
            return None
        return self.exporter.last_error

    def _suspend(self) -> None:
        """Leave open runs to the next roard: save their state; the kernel keeps tracking
        their processes in the pinned maps. With no run open, the pins go too."""
        self.tracker.suspend()
        self._checkpoint()
        if not self.tracker.active_runs():
            pins.remove(self.config.state_dir)
        elif self.probes.pinned is None:
            log.warning(
                "runs left open without pinned maps: the next start re-adopts only "
                "their processes still alive"
            )

    def _checkpoint(self) -> None:
        """Save the state of every run that changed since the last checkpoint."""
        now = time.time()
        states, counts = self.tracker.checkpoint(self._saved, now)
        finished = [run_id for run_id in self._saved if run_id not in counts]
        if states or finished:
            self.checkpoints.save(states, finished)
        self._saved = counts
        self.checkpointed_at = now  # everything applied before this is saved

    def _checkpoint_loop(self) -> None:
        failing = False
        while not self._stopped.wait(_CHECKPOINT_SECONDS):
            try:
                self._checkpoint()
            except Exception as exc:
                if not failing:  # once per outage (a full state dir fails every pass)
                    log.error(
                        "saving run checkpoints failed: a restart now would resume runs "
                        "from their last saved state; retrying",
                        state_dir=str(self.config.state_dir),
                        error=str(exc),
                    )
                failing = True
            else:
                if failing:
                    log.info("run checkpoints saved again")
                failing = False

    def _drain(self) -> None:
        """Spool what is queued, give the collector a moment to take it, stop streaming;
        whatever is not acked waits on disk for the next start."""
        self.sink.close()
        self.exporter.wait_acked(self.sink.last_emitted, 2.0)
        self.exporter.stop()

    def _collector_target(self, stack: ExitStack) -> CollectorTarget:
        """Where records go: the configured collector, or an embedded one on local SQLite
        served on a socket in the state dir (the same stream code either way)."""
        conf = self.config.collector
        if not conf.address:
            self.store = stack.enter_context(SqliteStore(self.config.state_dir / "registry.db"))
            address = f"unix:{self.config.state_dir / 'collector.sock'}"
            self.embedded = CollectorServer(self.store, address, max_hosts=4)
            self.embedded.start()
            stack.callback(self.embedded.stop)
            if conf.web_listen:
                self._start_web(stack)
            return CollectorTarget(address)
        if conf.web_listen:
            raise ConfigError(
                "[collector] web_listen serves the embedded registry only; for a remote "
                "collector, start its web UI there: roard collector --web HOST:PORT"
            )
        return configured_target(conf)

    def _start_web(self, stack: ExitStack) -> None:
        """The embedded registry's browser. It shows every user's runs, so it takes a
        token only root can read (state dir, 0600): other local users must not browse
        runs that `roarctl` would not show them."""
        token_file = self.config.state_dir / "web-token"
        token = secrets.token_urlsafe(24)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
        # The embedded registry is this host's alone: its web token sees every project.
        owner = Principal("web", projects=None, user=True)
        web = WebServer(
            self.store,
            self.config.collector.web_listen,
            credentials=Credentials(tokens={token: owner}),
        )
        web.start()
        stack.callback(web.stop)
        log.info(
            "registry web UI: open the URL with ?token=<the token file's content>",
            url=web.url,
            token_file=str(token_file),
        )

    def _spooled(self) -> None:
        exporter = getattr(self, "exporter", None)
        if exporter is not None:
            exporter.notify()

    def delivered(self, timeout: float | None = None) -> bool:
        """Wait until everything emitted so far is stored by the collector."""
        wait = self.config.collector.delivery_wait_seconds if timeout is None else timeout
        if self.sink.problem is not None:
            return False  # not even spooled: roarctl says why instead of waiting
        if self.collector_problem() is not None:
            wait = 0  # known unreachable: no point keeping roarctl waiting
        return self.sink.flush(wait) and self.exporter.wait_acked(self.sink.last_emitted, wait)

    def _reap_loop(self) -> None:
        """Every few seconds, look for tracked processes that died without an exit event,
        and write remembered hashes (a cache that could not write tries again)."""
        while not self._stopped.wait(_REAP_SECONDS):
            try:
                self.tracker.reap()
                self.cache.flush()
            except Exception:
                log.exception("reaping failed")

    def _lock_state(self, state: Path) -> None:
        """One daemon per state directory: a second would fight the first over its sockets
        and its registry."""
        self._lock_file = (state / "roard.lock").open("a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            holder = self._lock_file.read().strip() or "unknown"
            raise PrerequisiteError(
                f"another roard (pid {holder}) is running with state dir {state}: stop it "
                "first, or give this one its own --state-dir and --socket"
            ) from None
        self._lock_file.truncate(0)
        self._lock_file.write(f"{os.getpid()}\n")
        self._lock_file.flush()

    def _resume_runs(self) -> None:
        """Carry on the runs a previous roard left open and saved a checkpoint of; close the
        others as incomplete, so nobody mistakes them for complete or still running."""
        now = time.time()
        open_runs = self.spool.open_runs()
        states = self.checkpoints.load()
        resumable = [s for s in states if s.run_id in open_runs]
        done = [s.run_id for s in states if s.run_id not in open_runs]
        resumed = {run.run_id for run in self.tracker.resume(resumable, now)}
        self._saved = {run_id: -1 for run_id in resumed}  # saved again at the next pass
        if done:
            self.checkpoints.save([], done)
        stale = [r for r in open_runs if r not in resumed]
        if self.embedded is not None:
            # Also those an older roard (before the spool kept open runs) left in the
            # embedded registry, or that a lost spool forgot; not those whose end is
            # still on its way from the spool.
            skip = set(open_runs) | self.spool.runs_waiting()
            stale += [r for r in self.store.unfinished(self.host_id) if r not in skip]
        for run_id in stale:
            self.sink.emit(convert.run_interrupted(run_id, now))
        if stale:
            self.sink.flush(30.0)
            log.warning("closed runs left open by a previous roard", runs=stale)

    def status(self, uid: int | None = None) -> dict[str, Any]:
        """Health, tier and counters, for `roarctl status`; active runs of `uid` only,
        unless None (root)."""
        losses = self.probes.losses()
        ring = self.probes.ring_fill()
        problems = self.state_problems()
        return {
            "version": roard.__version__,
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - self._started_at, 1),
            "kernel": self.features.kernel,
            "tier": self.probes.variant.tier,
            "tier_reason": "; ".join(self.probes.variant.notes) or "best tier attached",
            "hooks": self.probes.variant.hooks(),
            "headers": {"path": str(self.probes.headers.path), "how": self.probes.headers.how},
            "probes": self.probes.attached,
            "probes_missing": self.probes.skipped,
            # "exit": byte movers hooked once per call (arguments from saved registers)
            "io_hooks": "exit" if self.probes.variant.exit_args else "entry+exit",
            "env_runs": self.config.env_runs,
            "events": dict(self.observer.counts),
            "lost": losses,
            "lost_total": sum(losses.values()),
            "ring": {
                "used_bytes": ring.used_bytes,
                "size_bytes": ring.size_bytes,
                "fill_ratio": ring.ratio,
                "max_fill_ratio": ring.max_ratio,
            },
            "hash": {
                "queue": self.hasher.backlog,
                "files_hashed": self.hasher.files_hashed,
                "bytes_hashed": self.hasher.bytes_hashed,
                "seconds_hashing": round(self.hasher.seconds_hashing, 3),
                "cache_hits": self.cache.hits,
                "cache_misses": self.cache.misses,
                # Files recorded without a hash, by reason: over hash_max_bytes ("size"),
                # past hash_timeout_seconds ("timeout"), not a regular file, ...
                "unhashed": self.tracker.unhashed_counts(),
                "timeouts": self.hasher.timeouts,
                "stuck_threads": self.hasher.stuck,
                "refusing": self._hash_refusal(),
            },
            "tracker": self.tracker.counts(),
            "kernel_tracked_processes": self.probes.tracked_count(),
            "records_spooled": self.sink.spooled,
            "spool_failures": self.sink.failures,
            "state_dir_error": problems[0].as_dict() if problems else None,
            "spool": self._spool_status(),
            "collector": {
                "address": "embedded" if self.embedded else self.config.collector.address,
                "host_id": self.host_id,
                "connected": self.exporter.connected,
                "acked_seq": self.exporter.acked_seq,
                "records_sent": self.exporter.records_sent,
                "reconnects": self.exporter.reconnects,
                "last_error": self.exporter.last_error,
            },
            "runs": [
                {"run_id": r.run_id, "name": r.name, "processes": len(r.live)}
                for r in self.tracker.active_runs()
                if uid is None or r.uid == uid
            ],
            "checkpoint": {
                "runs": len(self._saved),
                "saved_at": self.checkpointed_at,
                "pinned_maps": str(self.probes.pinned or ""),
            },
            "state_dir": str(self.config.state_dir),
            "socket": str(self.config.socket),
            "other_daemons": [{"pid": n.pid, "command": n.command} for n in self._neighbours()],
        }

    def _neighbours(self) -> list[Neighbour]:
        """Other roard daemons here, looked for at most every 10 s (status is polled)."""
        now = time.monotonic()
        if self._neighbours_seen is None or now - self._neighbours_seen[0] > 10:
            self._neighbours_seen = (now, other_daemons(os.getpid()))
        return self._neighbours_seen[1]

    def _hash_refusal(self) -> str | None:
        """Why new files are recorded unhashed at once, or None while hashing works."""
        if not self.hasher.refusing:
            return None
        return (
            f"{self.hasher.stuck} hash threads are blocked on unresponsive files (hash_stuck_max "
            f"{self.hasher.limits.stuck_max}): new files are recorded unhashed until they "
            "return; look for hung mounts (the daemon's log names the files)"
        )

    def _spool_status(self) -> dict[str, Any]:
        depth = self.spool.depth()
        return {
            "records": depth.records,
            "bytes": depth.bytes,
            "oldest_age_seconds": round(time.time() - depth.oldest, 1) if depth.oldest else 0,
            "shed_records": self.spool.shed_records + self.sink.shed_records,
            "backlog_records": self.sink.backlog_records,
        }

    def wait(self) -> None:
        """Block until SIGTERM or SIGINT (caught from start() on), then tell the daemon's
        threads."""
        self._stop_signal.wait()
        self._stopped.set()

    def stop(self) -> None:
        """Stop serving, save open runs for the next start, detach the programs."""
        log.info("roard stopping")
        self.notifier.stopping()
        self._running.close()
