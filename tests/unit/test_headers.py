"""Tests for roard.kernel.headers: merging generic header packages into a symlink tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from roard.errors import PrerequisiteError
from roard.kernel.headers import find_headers

RELEASE = "9.9.9-nothere"
COMMON = "linux-headers-6.1.0-9-common"
ARCH = "linux-headers-6.1.0-9-amd64"


def write(path: Path, text: str) -> Path:
    """Create a file (and its directories)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def src(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake /usr/src with a -common and an -amd64 header package, Debian style."""
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    root = tmp_path / "usr"
    src = root / "src"
    write(src / COMMON / "include" / "linux" / "a.h", "common a")
    write(src / COMMON / "include" / "linux" / "both.h", "common both")
    write(src / ARCH / "include" / "generated" / "autoconf.h", "arch autoconf")
    write(src / ARCH / "include" / "linux" / "both.h", "arch both")
    write(root / "lib" / "x" / "scripts" / "Makefile.build", "kbuild")
    (src / ARCH / "scripts").symlink_to("../../lib/x/scripts")
    return src


def test_merges_common_and_arch_packages(src: Path, tmp_path: Path) -> None:
    """Directories both packages have are merged; what one package alone has is linked."""
    tree = find_headers(tmp_path / "state", release=RELEASE, src=src)
    assert tree.how == "merged"
    assert tree.path.is_relative_to(tmp_path / "state")
    linux = tree.path / "include" / "linux"
    assert linux.is_dir() and not linux.is_symlink()  # in both: a real, merged directory
    a_h = linux / "a.h"
    assert a_h.is_symlink()
    assert a_h.resolve() == (src / COMMON / "include" / "linux" / "a.h").resolve()
    generated = tree.path / "include" / "generated"  # arch only: linked whole
    assert generated.is_symlink()
    assert generated.resolve() == (src / ARCH / "include" / "generated").resolve()
    assert (generated / "autoconf.h").read_text() == "arch autoconf"


def test_relative_directory_symlink_is_resolved(src: Path, tmp_path: Path) -> None:
    """A relative directory symlink in a package is linked to its real target, so it still
    resolves from the merged tree's location."""
    tree = find_headers(tmp_path / "state", release=RELEASE, src=src)
    scripts = tree.path / "scripts"
    assert scripts.is_symlink()
    assert scripts.resolve() == (tmp_path / "usr" / "lib" / "x" / "scripts").resolve()
    assert (scripts / "Makefile.build").read_text() == "kbuild"


def test_arch_package_wins(src: Path, tmp_path: Path) -> None:
    """A header present in both packages comes from the arch-specific one."""
    tree = find_headers(tmp_path / "state", release=RELEASE, src=src)
    assert (tree.path / "include" / "linux" / "both.h").read_text() == "arch both"


def test_second_call_reuses_the_tree(src: Path, tmp_path: Path) -> None:
    """A tree already merged from the same packages is reused, not rebuilt."""
    first = find_headers(tmp_path / "state", release=RELEASE, src=src)
    marker = write(first.path / "marker", "kept")
    second = find_headers(tmp_path / "state", release=RELEASE, src=src)
    assert second == first
    assert marker.exists()


def test_source_packages_are_never_modified(src: Path, tmp_path: Path) -> None:
    """Merging only writes under the state directory."""
    before = sorted(str(p) for p in (tmp_path / "usr").rglob("*"))
    find_headers(tmp_path / "state", release=RELEASE, src=src)
    assert sorted(str(p) for p in (tmp_path / "usr").rglob("*")) == before


def test_directory_symlink_in_common_is_not_written_through(src: Path, tmp_path: Path) -> None:
    """A dir symlink in -common shadowed by a real dir in the arch package stays untouched."""
    shared = write(tmp_path / "usr" / "lib" / "kbuild" / "tools" / "objtool", "common tool")
    (src / COMMON / "tools").symlink_to("../../lib/kbuild/tools")
    write(src / ARCH / "tools" / "objtool", "arch tool")
    tree = find_headers(tmp_path / "state", release=RELEASE, src=src)
    assert shared.read_text() == "common tool"
    assert not shared.is_symlink()
    assert (tree.path / "tools" / "objtool").read_text() == "arch tool"


def test_newest_arch_package_is_chosen(src: Path, tmp_path: Path) -> None:
    """With several versions installed, the highest ABI number is used."""
    write(src / "linux-headers-6.1.0-10-common" / "include" / "linux" / "a.h", "new common")
    write(src / "linux-headers-6.1.0-10-amd64" / "include" / "generated" / "autoconf.h", "new")
    tree = find_headers(tmp_path / "state", release=RELEASE, src=src)
    assert (tree.path / "include" / "linux" / "a.h").read_text() == "new common"
    assert (tree.path / "include" / "generated" / "autoconf.h").read_text() == "new"


def test_environment_wins(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BCC_KERNEL_SOURCE, when set, is used as is."""
    monkeypatch.setenv("BCC_KERNEL_SOURCE", str(tmp_path / "mine"))
    tree = find_headers(tmp_path / "state", release=RELEASE, src=src)
    assert (tree.path, tree.how) == (tmp_path / "mine", "environment")
    assert not (tmp_path / "state").exists()


def test_no_headers_is_a_prerequisite_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without any header package the error says how to install one."""
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    (tmp_path / "src").mkdir()
    with pytest.raises(PrerequisiteError, match="apt-get install linux-headers"):
        find_headers(tmp_path / "state", release=RELEASE, src=tmp_path / "src")


def test_arch_package_without_common_is_not_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An arch package alone (no -common to merge with) is reported as missing headers."""
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    write(tmp_path / "src" / ARCH / "include" / "generated" / "autoconf.h", "x")
    with pytest.raises(PrerequisiteError):
        find_headers(tmp_path / "state", release=RELEASE, src=tmp_path / "src")
    assert os.listdir(tmp_path / "src") == [ARCH]
