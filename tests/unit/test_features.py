"""Which tiers the VFS hook may use: probed from BTF, bpf(2) and kallsyms, never assumed."""

from __future__ import annotations

import pytest

from roard.kernel import features
from roard.kernel.loader import Variant


class StubBtf:
    """BTF with or without the VFS hook's fields, with the hooked function or not."""

    def __init__(self, fields: bool = True, func: bool = True) -> None:
        self.fields, self.func = fields, func

    def has_member(self, struct: str, member: str) -> bool:
        return self.fields

    def function_id(self, name: str) -> int | None:
        return 42 if self.func and name == features.VFS_FUNCTION else None


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A host whose fentry answer and kallsyms the test sets."""
    facts: dict[str, object] = {"fentry": None, "symbol": True}
    monkeypatch.setattr(features.bpfsys, "fentry_refusal", lambda _id: facts["fentry"])
    monkeypatch.setattr(features, "_kernel_symbol", lambda _name: facts["symbol"])
    return facts


def plan(btf: StubBtf, kprobes: bool = True, wanted: str = "auto") -> features.VfsPlan:
    return features.vfs_plan(btf, kprobes, wanted)  # type: ignore[arg-type]


def test_fentry_first_then_kprobe(host: dict[str, object]) -> None:
    assert plan(StubBtf()).tiers == ("fentry", "kprobe")


def test_refusals_are_explained(host: dict[str, object]) -> None:
    """This development VM: fentry refused (EPERM), no kprobe_events."""
    host["fentry"] = "loading an fentry program: Operation not permitted"
    result = plan(StubBtf(), kprobes=False)
    assert result.tiers == ()
    assert "Operation not permitted" in result.describe()
    assert "no kprobe_events" in result.describe()
    assert result.describe().startswith("no VFS hook")


def test_kprobe_needs_the_symbol(host: dict[str, object]) -> None:
    host["symbol"] = False
    result = plan(StubBtf())
    assert result.tiers == ("fentry",)
    assert "not in /proc/kallsyms" in result.describe()


def test_a_function_missing_from_btf_rules_out_fentry(host: dict[str, object]) -> None:
    assert plan(StubBtf(func=False)).tiers == ("kprobe",)


def test_without_the_fields_no_vfs_hook(host: dict[str, object]) -> None:
    """Not x86_64 (no pt_regs.orig_ax): the hook could not tell io_uring's calls apart."""
    result = plan(StubBtf(fields=False))
    assert result.tiers == () and "x86_64" in result.describe()


@pytest.mark.parametrize(("wanted", "tiers"), [("kprobe", ("kprobe",)), ("tracepoint", ())])
def test_the_config_narrows_the_choice(
    host: dict[str, object], wanted: str, tiers: tuple[str, ...]
) -> None:
    assert plan(StubBtf(), wanted=wanted).tiers == tiers


def test_variant_names_the_tier_of_each_hook() -> None:
    assert Variant(exit_args=True, vfs_tier="kprobe").hooks()["io_uring_aio"] == "kprobe"
    bare = Variant(exit_args=True, vfs_tier=None)
    assert bare.tier == "tracepoint" and bare.hooks()["io_uring_aio"].startswith("none")
