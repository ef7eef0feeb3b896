"""One run's context, as recorded when it ends: the probes of this package over the
paths it read, and the host facts (taken once: they do not change under a daemon)."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import structlog
from google.protobuf import json_format

from roard.context import as_json
from roard.context.git import work_trees
from roard.context.host import HostFacts, host_facts
from roard.context.packages import SystemPackageIndex, python_distributions, system_packages
from roard.v1 import records_pb2 as pb

log = structlog.get_logger("roard.context")


class ContextProbe:
    """Describes runs for the finalizer threads; safe to share between them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._host: HostFacts | None = None
        self._packages = SystemPackageIndex()

    def host(self) -> HostFacts:
        """This host's facts, probed on first use."""
        with self._lock:
            if self._host is None:
                self._host = host_facts()
            return self._host

    def describe(self, paths: Iterable[str]) -> pb.RunContext:
        """The context of a run that read `paths` (inputs, executables, scripts)."""
        paths = sorted(set(paths))
        with self._lock:  # the dpkg index is reloaded in place
            system = system_packages(paths, index=self._packages)
        doc = {
            "git": as_json(work_trees(paths)),
            "python": as_json(python_distributions(paths)),
            "system": as_json(system),
            "host": as_json(self.host()),
        }
        return json_format.ParseDict(doc, pb.RunContext(), ignore_unknown_fields=True)
