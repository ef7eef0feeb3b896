"""One run's context, as recorded when it ends: the probes of this package over the
paths it read, and the host facts (taken once: they do not change under a daemon)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future

import structlog
from google.protobuf import json_format

from roard.context import as_json, by_directory
from roard.context.git import work_trees
from roard.context.host import HostFacts, host_facts
from roard.context.packages import (
    SiteIndexes,
    SystemPackageIndex,
    python_distributions,
    system_packages,
)
from roard.v1 import records_pb2 as pb

log = structlog.get_logger("roard.context")


# How long a run's finalization waits for its context: the probes stat and run git in the
# run's directories, and a mount that hangs must not hold the run's end back for ever.
DESCRIBE_TIMEOUT = 30.0


class ContextProbe:
    """Describes runs for the finalizer threads; safe to share between them."""

    def __init__(self, timeout: float = DESCRIBE_TIMEOUT) -> None:
        self._lock = threading.Lock()
        self._host: HostFacts | None = None
        self._packages = SystemPackageIndex()
        self._sites = SiteIndexes()
        self._timeout = timeout
        self._stuck: Future[pb.RunContext] | None = None  # a probe past its deadline

    def begin(self, paths: Iterable[str]) -> Callable[[], pb.RunContext | None]:
        """Start `describe(paths)` on a thread of its own (git runs there while the caller
        goes on); the call returned waits for it, up to the deadline counted from now, and
        raises what describe raised, or gives None past the deadline: the probe is then
        left to finish alone, and no new probe starts until it has (a hung mount costs one
        thread, not one per run)."""
        with self._lock:
            if self._stuck is not None and not self._stuck.done():
                return lambda: None
            self._stuck = None
        future: Future[pb.RunContext] = Future()
        paths = list(paths)

        def work() -> None:
            try:
                future.set_result(self.describe(paths))
            except BaseException as exc:
                future.set_exception(exc)

        try:
            threading.Thread(target=work, name="roard-context", daemon=True).start()
        except RuntimeError as exc:  # no thread to be had: the call returned raises it
            future.set_exception(exc)
        deadline = time.monotonic() + self._timeout

        def result() -> pb.RunContext | None:
            try:
                return future.result(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                with self._lock:
                    self._stuck = future
                log.warning("describing a run took too long: recorded without context")
                return None

        return result

    def host(self) -> HostFacts:
        """This host's facts, probed on first use."""
        with self._lock:
            if self._host is None:
                self._host = host_facts()
            return self._host

    def describe(self, paths: Iterable[str]) -> pb.RunContext:
        """The context of a run that read `paths` (inputs, executables, scripts)."""
        directories = by_directory(sorted(set(paths)))  # once, for every probe
        trees = work_trees(directories)  # first: its git commands wait while others run
        with self._lock:  # the dpkg index is reloaded in place
            system = system_packages(directories, index=self._packages)
        doc = {
            "git": as_json(trees),
            "python": as_json(python_distributions(directories, self._sites)),
            "system": as_json(system),
            "host": as_json(self.host()),
        }
        return json_format.ParseDict(doc, pb.RunContext(), ignore_unknown_fields=True)
