"""roard run: wire kernel, observer, tracker, hasher, registry and control together."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import structlog

import roard
from roard.artifacts.hashcache import HashCache
from roard.artifacts.hasher import Hasher
from roard.collector.storage import SqliteStore
from roard.config import Config
from roard.control.server import ControlServer, ControlService
from roard.errors import PrerequisiteError
from roard.kernel import features, loader
from roard.kernel.abi import Abi
from roard.kernel.decode import Decoder
from roard.observer import Observer
from roard.records import convert
from roard.records.sink import EmbeddedSink
from roard.tracking.tracker import Tracker

log = structlog.get_logger("roard.daemon")

_REAP_SECONDS = 5.0


class Daemon:
    """One running roard: start() brings everything up, stop() takes it down in order."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stopped = threading.Event()
        self._started_at = time.time()

    def start(self) -> None:
        """Check prerequisites, load the BPF programs and start serving."""
        host = features.probe()
        features.require(host)
        self.features = host
        state = self.config.state_dir
        state.mkdir(parents=True, exist_ok=True)
        os.chmod(state, 0o700)
        self._lock_state(state)
        self.store = SqliteStore(state / "registry.db")
        self.cache = HashCache(state / "hashcache.db")
        self.hasher = Hasher(self.cache, self.config.hash_workers)
        self.probes = loader.load(state, self.config.kernel)
        for event in self.probes.skipped:
            log.warning(
                "tracepoint missing on this kernel; its syscall is not observed", tracepoint=event
            )
        self.sink = EmbeddedSink(self.store)
        self._close_interrupted_runs()
        self.tracker = Tracker(
            self.probes,
            self.hasher,
            self.sink,
            self.config.classify,
            linger_seconds=self.config.linger_seconds,
        )
        self.observer = Observer(self.probes, Decoder(Abi.load()), self.tracker)
        self.observer.start()
        threading.Thread(target=self._reap_loop, name="roard-reaper", daemon=True).start()
        self.control = ControlServer(
            lambda relay: ControlService(self.tracker, self.store, self.status, relay),
            public=self.config.socket,
            private=state / "control" / "grpc.sock",
        )
        self.control.start()
        log.info(
            "roard ready",
            tier=host.tier,
            socket=str(self.config.socket),
            state_dir=str(state),
            load_seconds=round(self.probes.load_seconds, 2),
            headers=str(self.probes.headers.path),
        )

    def _reap_loop(self) -> None:
        """Every few seconds, look for tracked processes that died without an exit event."""
        while not self._stopped.wait(_REAP_SECONDS):
            try:
                self.tracker.reap()
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

    def _close_interrupted_runs(self) -> None:
        """Runs a previous roard on this host left open can never finish normally: close
        them as incomplete, so nobody mistakes them for complete or still running."""
        now = time.time()
        stale = self.store.unfinished(socket.gethostname())
        for run_id in stale:
            self.sink.emit(convert.run_interrupted(run_id, now))
        if stale:
            self.sink.flush()
            log.warning("closed runs left open by a previous roard", runs=stale)

    def status(self, uid: int | None = None) -> dict[str, Any]:
        """Health, tier and counters, for `roarctl status`; active runs of `uid` only,
        unless None (root)."""
        losses = self.probes.losses()
        return {
            "version": roard.__version__,
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - self._started_at, 1),
            "kernel": self.features.kernel,
            "tier": self.features.tier,
            "tier_reason": self.features.tier_reason(),
            "headers": {"path": str(self.probes.headers.path), "how": self.probes.headers.how},
            "probes": self.probes.attached,
            "probes_missing": self.probes.skipped,
            "events": dict(self.observer.counts),
            "lost": losses,
            "lost_total": sum(losses.values()),
            "hash": {
                "queue": self.hasher.pending,
                "files_hashed": self.hasher.files_hashed,
                "bytes_hashed": self.hasher.bytes_hashed,
                "cache_hits": self.cache.hits,
                "cache_misses": self.cache.misses,
            },
            "tracker": self.tracker.counts(),
            "kernel_tracked_processes": self.probes.tracked_count(),
            "records_delivered": self.sink.delivered,
            "record_store_failures": self.sink.failures,
            "runs": [
                {"run_id": r.run_id, "name": r.name, "processes": len(r.live)}
                for r in self.tracker.active_runs()
                if uid is None or r.uid == uid
            ],
            "state_dir": str(self.config.state_dir),
            "socket": str(self.config.socket),
        }

    def wait(self) -> None:
        """Block until SIGTERM or SIGINT."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stopped.set())
        self._stopped.wait()

    def stop(self) -> None:
        """Stop serving, finalize open runs with what was seen, detach the programs."""
        log.info("roard stopping")
        self.control.stop()
        self.observer.stop()
        for run in self.tracker.active_runs():
            self.tracker.untag(run)
        self.probes.close()
        self.hasher.close()
        self.sink.close()
        self.cache.close()
        self.store.close()
