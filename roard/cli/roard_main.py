"""`roard`: the daemon (run) and its prerequisite checks (doctor)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from roard import config as config_mod
from roard import logs
from roard.cli.common import print_json, run_main
from roard.kernel import features
from roard.kernel.btf import Btf
from roard.kernel.headers import find_headers
from roard.kernel.loader import KERNEL_FIELDS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roard", description="roard lineage daemon")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument(
        "--embedded",
        action="store_true",
        help="serve the registry in-process on local SQLite (the default for now)",
    )
    run.add_argument("--config", type=Path, help="config file (default /etc/roard/roard.toml)")
    run.add_argument("--state-dir", type=Path, help="state directory (default /var/lib/roard)")
    run.add_argument("--socket", type=Path, help="control socket (default /run/roard/roard.sock)")
    run.add_argument("--check-config", action="store_true", help="validate the config and exit")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    doctor = sub.add_parser("doctor", help="check prerequisites and say which tier would run")
    doctor.add_argument("--config", type=Path)
    doctor.add_argument("--json", action="store_true", help="one JSON document on stdout")
    return parser


def _config(args: argparse.Namespace) -> config_mod.Config:
    config = config_mod.load(args.config)
    if getattr(args, "state_dir", None):
        config = replace(config, state_dir=args.state_dir)
    if getattr(args, "socket", None):
        config = replace(config, socket=args.socket)
    return config


def _run(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.check_config:
        print(f"roard: config OK (state {config.state_dir}, socket {config.socket})")
        return 0
    logs.configure(args.log_level)
    from roard.daemon import Daemon

    daemon = Daemon(config)
    daemon.start()
    try:
        daemon.wait()
    finally:
        daemon.stop()
    return 0


def doctor_report(config: config_mod.Config) -> dict[str, Any]:
    """Every prerequisite, checked without loading anything."""
    host = features.probe()
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "ok": ok, "detail": detail})

    check(
        "privileges",
        host.privileged,
        "root or CAP_BPF+CAP_PERFMON" if host.privileged else "not privileged: run as root",
    )
    check("btf", host.btf, str(features.BTF_PATH))
    if host.btf:
        try:
            btf = Btf.load()
            for struct, member in KERNEL_FIELDS:
                btf.offset(struct, member)
            check("btf_fields", True, f"{len(KERNEL_FIELDS)} kernel fields found")
        except Exception as exc:
            check("btf_fields", False, str(exc))
    check(
        "bcc",
        host.bcc,
        "python3-bpfcc importable" if host.bcc else "install python3-bpfcc and run deploy/setup.sh",
    )
    check(
        "tracefs",
        host.tracefs,
        str(features.TRACEFS)
        if host.tracefs
        else "not mounted: roard run mounts it; or `mount -t tracefs nodev /sys/kernel/tracing`",
    )
    try:
        headers = find_headers(config.state_dir)
        check("headers", True, f"{headers.path} ({headers.how})")
    except Exception as exc:
        check("headers", False, str(exc))
    return {
        "kernel": host.kernel,
        "tier": host.tier,
        "tier_reason": host.tier_reason(),
        "kprobes": host.kprobes,
        "ok": all(c["ok"] for c in checks),
        "checks": checks,
    }


def _doctor(args: argparse.Namespace) -> int:
    report = doctor_report(_config(args))
    if args.json:
        print_json(report)
    else:
        print(f"kernel {report['kernel']}; tier {report['tier']}: {report['tier_reason']}")
        for c in report["checks"]:
            print(f"  [{'ok' if c['ok'] else 'FAIL'}] {c['check']}: {c['detail']}")
    return 0 if report["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of `roard`."""
    args = _parser().parse_args(argv)
    body = _run if args.command == "run" else _doctor
    return run_main("roard", lambda: body(args))


if __name__ == "__main__":
    sys.exit(main())
