"""Which installed packages a run's inputs belong to: Python distributions (from the
metadata in site-packages) and system packages (dpkg's database, or rpm)."""

from __future__ import annotations

import csv
import glob
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from roard.context import Directories, Plain

log = structlog.get_logger("roard.context.packages")

_SITE_DIRS = ("site-packages", "dist-packages")
# /usr-merge: dpkg may list a file under either name of these directory pairs.
_META_SUFFIXES = (".dist-info", ".egg-info", "__pycache__")
_MERGED = ("/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/")
_MERGED_EITHER = _MERGED + tuple("/usr" + prefix for prefix in _MERGED)


@dataclass(frozen=True, order=True)
class Distribution(Plain):
    """An installed Python distribution (what `pip install` installs)."""

    name: str  # as its METADATA spells it
    version: str
    location: str  # the site-packages directory it is installed in


@dataclass(frozen=True, order=True)
class SystemPackage(Plain):
    """An installed operating-system package."""

    manager: str  # "dpkg" or "rpm"
    name: str
    version: str
    arch: str  # "" when the manager does not say


def _metadata(path: Path) -> tuple[str, str] | None:
    """Name and Version from a METADATA or PKG-INFO file's header."""
    name = version = ""
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # the header ends at the first blank line; the description follows
                key, _, value = line.partition(":")
                if key == "Name" and not name:
                    name = value.strip()
                elif key == "Version" and not version:
                    version = value.strip()
    except OSError:
        return None
    return (name, version) if name else None


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


@dataclass
class _SiteIndex:
    """Who owns what in one site-packages directory."""

    files: dict[str, Distribution] = field(default_factory=dict)  # absolute path -> owner
    top_level: dict[str, Distribution] = field(default_factory=dict)  # first component


def _index_site(site: str) -> _SiteIndex:
    """Read every *.dist-info (RECORD, top_level.txt) and *.egg-info (installed-files.txt,
    top_level.txt) in `site`."""
    index = _SiteIndex()
    inside = site.rstrip("/") + "/"
    try:
        entries = sorted(os.listdir(site))
    except OSError:
        return index
    for entry in entries:
        meta_dir = Path(site, entry)
        if entry.endswith(".dist-info"):
            meta, listing, base = meta_dir / "METADATA", meta_dir / "RECORD", site
        elif entry.endswith(".egg-info") and meta_dir.is_dir():
            meta, listing, base = (
                meta_dir / "PKG-INFO",
                meta_dir / "installed-files.txt",
                str(meta_dir),
            )
        else:
            continue
        found = _metadata(meta)
        if found is None:
            continue
        dist = Distribution(name=found[0], version=found[1], location=site)
        rows: Iterable[list[str]]
        if listing.name == "RECORD":
            rows = csv.reader(_lines(listing))
        else:
            rows = ([line] for line in _lines(listing))
        for name in _lines(meta_dir / "top_level.txt"):
            if name.strip():
                index.top_level.setdefault(name.strip(), dist)
        for row in rows:
            if row and row[0]:
                # RECORD paths are relative to the site dir (scripts: "../../../bin/x").
                path = os.path.normpath(os.path.join(base, row[0]))
                index.files.setdefault(path, dist)
                # Not every installer writes top_level.txt: the dirs RECORD lists stand in.
                if path.startswith(inside):
                    top = path[len(inside) :].split("/", 1)[0]
                    if not top.endswith(_META_SUFFIXES):
                        index.top_level.setdefault(top, dist)
    return index


class SiteIndexes:
    """Site dirs indexed once and reused while their listing is unchanged: installing,
    upgrading or removing a distribution adds or removes its *.dist-info entry, which
    changes the directory's mtime. Safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._indexes: dict[str, tuple[int, _SiteIndex]] = {}  # site -> (mtime_ns, index)

    def get(self, site: str) -> _SiteIndex:
        """The index of `site`, read again only if the directory changed."""
        try:
            stamp = os.stat(site).st_mtime_ns
        except OSError:
            return _SiteIndex()
        with self._lock:
            cached = self._indexes.get(site)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        index = _index_site(site)
        with self._lock:
            self._indexes[site] = (stamp, index)
        return index


def _site_dir(directory: str) -> str | None:
    """The site-packages (or dist-packages) directory at or nearest above `directory`."""
    parts = directory.split("/")
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] in _SITE_DIRS:
            return "/".join(parts[: i + 1])
    return None


def _prefix_sites(directory: str) -> list[str]:
    """The site dirs of the environment whose bin/ `directory` is, if it is one."""
    head, _, name = directory.rpartition("/")
    if name != "bin":
        return []
    prefix = head or "/"
    return sorted(
        glob.glob(os.path.join(glob.escape(prefix), "lib", "python*", "site-packages"))
        + glob.glob(os.path.join(glob.escape(prefix), "lib", "python*", "dist-packages"))
    )


def python_distributions(
    directories: Directories, sites: SiteIndexes | None = None
) -> list[Distribution]:
    """The Python distributions that own any of the paths (by_directory), sorted and
    without duplicates. A file is matched by its distribution's RECORD (or installed-files.txt);
    one not listed there (a .pyc written later) by its top-level package's top_level.txt
    or RECORD; a console script in an environment's bin/ by that environment's RECORDs.
    `sites`: indexes kept across calls (a daemon's runs mostly share a few environments)."""
    sites = sites or SiteIndexes()
    indexes: dict[str, _SiteIndex] = {}  # each site dir looked up once per call

    def index_of(site: str) -> _SiteIndex:
        if site not in indexes:
            indexes[site] = sites.get(site)
        return indexes[site]

    found: set[Distribution] = set()
    for directory, files in directories.items():
        site = _site_dir(directory)
        if site is None:
            # A console script (<prefix>/bin/pytest) is listed in its environment's RECORD.
            for other in _prefix_sites(directory):
                listed = index_of(other).files
                found.update(dist for path in files if (dist := listed.get(path)) is not None)
            continue
        index = index_of(site)
        for path in files:
            dist = index.files.get(path)
            if dist is None:
                top = path[len(site) + 1 :].split("/", 1)[0]
                # A package dir, a module "six.py", an extension module
                # "m.cpython-311-x86_64-linux-gnu.so".
                for key in (top, top.removesuffix(".py"), top.split(".", 1)[0]):
                    dist = index.top_level.get(key)
                    if dist is not None:
                        break
            if dist is not None:
                found.add(dist)
    return sorted(found)


def _aliases(path: str) -> tuple[str, ...]:
    """`path` and its other name under /usr-merge (/bin/x <-> /usr/bin/x)."""
    if not path.startswith(_MERGED_EITHER):  # most of a job's files: one check, not 13
        return (path,)
    for prefix in _MERGED:
        if path.startswith(prefix):
            return (path, "/usr" + path)
        if path.startswith("/usr" + prefix):
            return (path, path[len("/usr") :])
    return (path,)


def _parse_status(text: str) -> dict[tuple[str, str], str]:
    """(package, arch) -> version for the installed packages in dpkg's status file."""
    installed: dict[tuple[str, str], str] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace():
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Status") == "install ok installed" and "Package" in fields:
            installed[(fields["Package"], fields.get("Architecture", ""))] = fields.get(
                "Version", ""
            )
    return installed


class SystemPackageIndex:
    """dpkg's file -> package index of a root file system, kept between runs and read
    again when dpkg's status file changes (a package was installed or removed)."""

    def __init__(self, root: str = "/") -> None:
        self.root = root
        self._dpkg = Path(root, "var/lib/dpkg")
        self._stamp: tuple[int, int] | None = None
        self._owners: dict[str, SystemPackage] = {}
        self._dirs: frozenset[str] = frozenset()  # those holding an owned entry

    @property
    def has_dpkg(self) -> bool:
        """Whether the root has a dpkg database."""
        return (self._dpkg / "status").is_file()

    def load(self) -> None:
        """Read the dpkg database, unless its status file is unchanged since the last
        load (an empty index where there is none)."""
        try:
            st = (self._dpkg / "status").stat()
        except OSError:
            self._stamp, self._owners, self._dirs = None, {}, frozenset()
            return
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            installed = _parse_status((self._dpkg / "status").read_text(errors="replace"))
        except OSError as e:
            log.warning("dpkg status unreadable", error=str(e))
            return
        # A package without an arch in its .list name is listed under its only arch.
        arch_of = {name: arch for name, arch in installed}
        owners: dict[str, SystemPackage] = {}
        for listing in sorted((self._dpkg / "info").glob("*.list")):
            name, _, arch = listing.name.removesuffix(".list").partition(":")
            arch = arch or arch_of.get(name, "")
            version = installed.get((name, arch))
            if version is None:
                continue  # configured-but-removed ("deinstall") leftovers
            package = SystemPackage(manager="dpkg", name=name, version=version, arch=arch)
            for line in _lines(listing):
                owners.setdefault(line, package)
        self._dirs = frozenset(entry.rpartition("/")[0] or "/" for entry in owners)
        self._owners, self._stamp = owners, stamp

    def lookup(self, directories: Directories) -> list[SystemPackage]:
        """The dpkg packages owning any of the paths (by_directory; under either /usr-merge
        name), sorted."""
        found: set[SystemPackage] = set()
        for files in directories.values():
            # A directory no package has a file in (a job's data): none of its files looked up.
            if not any((a.rpartition("/")[0] or "/") in self._dirs for a in _aliases(files[0])):
                continue
            for path in files:
                for alias in _aliases(path):
                    package = self._owners.get(alias)
                    if package is not None:
                        found.add(package)
                        break
        return sorted(found)


def _rpm_packages(paths: list[str], root: str, timeout: float) -> list[SystemPackage]:
    """`rpm -qf` for every path (in batches); unowned paths are left out."""
    rpm = shutil.which("rpm")
    if rpm is None or not paths:
        return []
    fmt = r"%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n"
    found: set[SystemPackage] = set()
    for start in range(0, len(paths), 500):  # keep the command line short
        cmd = [rpm, "--root", root, "-qf", "--queryformat", fmt, "--", *paths[start : start + 500]]
        try:
            out = subprocess.run(
                cmd, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
            ).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            log.warning("rpm query failed", error=str(e))
            return sorted(found)
        for line in out.decode(errors="replace").splitlines():
            fields = line.split("\t")
            if len(fields) == 3:  # "file ... is not owned by any package" has no tabs
                found.add(SystemPackage("rpm", fields[0], fields[1], fields[2]))
    return sorted(found)


def system_packages(
    directories: Directories,
    root: str = "/",
    index: SystemPackageIndex | None = None,
    timeout: float = 10.0,
) -> list[SystemPackage]:
    """The system packages owning any of the paths (by_directory; as seen under `root`),
    sorted. dpkg's database is used where there is one (pass a long-lived `index` to keep
    it between calls); else rpm, when installed; else none."""
    if index is None:
        index = SystemPackageIndex(root)
    if index.has_dpkg:
        index.load()
        return index.lookup(directories)
    return _rpm_packages([p for files in directories.values() for p in files], root, timeout)
