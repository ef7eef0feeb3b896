"""`roard`: the daemon (run) and its prerequisite checks (doctor)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from roard import config as config_mod
from roard import logs
from roard.cli.common import print_json, run_main
from roard.errors import ConfigError, PrerequisiteError, RoardError, UsageError
from roard.kernel import features
from roard.kernel.btf import Btf
from roard.kernel.headers import find_headers
from roard.kernel.loader import KERNEL_FIELDS, Variant
from roard.stopsignal import StopSignal

if TYPE_CHECKING:
    from roard.collector.storage import LineageStore
    from roard.collector.transport import Credentials, TlsFiles
    from roard.collector.web import WebServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roard", description="roard lineage daemon")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon in the foreground")
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--embedded",
        action="store_true",
        help="serve the registry in-process on local SQLite (the default without a collector)",
    )
    where.add_argument(
        "--collector", metavar="ADDR", help="stream records to this collector (HOST:PORT)"
    )
    run.add_argument("--config", type=Path, help="config file (default /etc/roard/roard.toml)")
    run.add_argument("--state-dir", type=Path, help="state directory (default /var/lib/roard)")
    run.add_argument("--socket", type=Path, help="control socket (default /run/roard/roard.sock)")
    run.add_argument("--check-config", action="store_true", help="validate the config and exit")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    collector = sub.add_parser("collector", help="run a standalone collector (registry)")
    collector.add_argument("--listen", required=True, help="HOST:PORT or unix:/path")
    collector.add_argument(
        "--db", required=True, help="sqlite:///path/registry.db or postgresql://user@host/db"
    )
    collector.add_argument("--tls-cert", type=Path, help="the collector's certificate (PEM)")
    collector.add_argument("--tls-key", type=Path, help="its private key (PEM)")
    collector.add_argument("--tls-ca", type=Path, help="CA of the hosts' client certificates")
    collector.add_argument(
        "--mtls", action="store_true", help="require client certificates (CN = host id)"
    )
    collector.add_argument(
        "--tokens",
        type=Path,
        help="file of 'HOST_ID TOKEN [PROJECT]', 'HOST_ID - PROJECT' and "
        "'user:NAME TOKEN PROJECT[,PROJECT...]' lines (see README: projects)",
    )
    collector.add_argument(
        "--join-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long a joined run waits for the part of a host gone silent (default 600)",
    )
    collector.add_argument(
        "--max-hosts",
        type=int,
        default=256,
        help="daemons connected at once (each holds a thread; default 256)",
    )
    collector.add_argument(
        "--web",
        metavar="HOST:PORT",
        help="also serve the read-only registry browser here (same TLS and tokens)",
    )
    collector.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
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
    if getattr(args, "collector", None):
        config = replace(config, collector=replace(config.collector, address=args.collector))
    elif getattr(args, "embedded", False):
        config = replace(config, collector=replace(config.collector, address=""))
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


def _collector(args: argparse.Namespace) -> int:
    from roard.collector.service import CollectorServer
    from roard.collector.stores import open_store
    from roard.collector.transport import TlsFiles, parse_tokens
    from roard.notify import Notifier

    logs.configure(args.log_level)
    tls = None
    if args.tls_cert or args.tls_key:
        tls = TlsFiles(cert=args.tls_cert, key=args.tls_key, ca=args.tls_ca)
    elif args.mtls:
        raise UsageError("--mtls needs --tls-cert, --tls-key and --tls-ca")
    credentials = None
    if args.tokens:
        try:
            credentials = parse_tokens(args.tokens.read_text(), str(args.tokens))
        except OSError as exc:
            raise ConfigError(f"--tokens {args.tokens}: {exc.strerror}") from None
    if not args.join_timeout > 0:
        raise UsageError(f"--join-timeout {args.join_timeout:g}: give a positive number of seconds")
    store = open_store(args.db)
    try:
        server = CollectorServer(
            store,
            args.listen,
            tls=tls,
            mtls=args.mtls,
            credentials=credentials,
            max_hosts=args.max_hosts,
            join_timeout=args.join_timeout,
        )
        web = _web(store, args, tls, credentials)
        # Before READY=1: systemd may send SIGTERM as soon as it is out.
        stopped = StopSignal()
        stopped.catch()
        server.start()
        print(f"roard collector: listening on {args.listen} (port {server.port})", flush=True)
        if web is not None:
            web.start()
            print(f"roard collector: web UI on {web.url}", flush=True)
        notifier = Notifier()
        notifier.ready(f"listening on {args.listen}")
        stopped.wait()
        notifier.stopping()
        if web is not None:
            web.stop()
        server.stop()
    finally:
        store.close()
    return 0


def _web(
    store: LineageStore,
    args: argparse.Namespace,
    tls: TlsFiles | None,
    credentials: Credentials | None,
) -> WebServer | None:
    """The registry browser `--web` asks for (None without it), with the gRPC listener's
    TLS files and tokens: client certificates are required with --mtls alone, and accepted
    beside tokens with --mtls and --tokens."""
    if not args.web:
        return None
    from roard.collector.web import WebServer, ssl_context

    context = None
    if tls is not None:
        certs: Literal["none", "optional", "required"] = "none"
        if args.mtls:
            certs = "optional" if credentials and credentials.tokens else "required"
        context = ssl_context(tls, certs)
    return WebServer(store, args.web, tls=context, credentials=credentials)


def _collector_reachable(config: config_mod.Config) -> tuple[bool, str]:
    """Whether the configured collector answers (the embedded one always does)."""
    import grpc

    from roard.collector.transport import client_channel, configured_target

    conf = config.collector
    if not conf.address:
        return True, "embedded (SQLite under the state dir)"
    try:
        channel = client_channel(configured_target(conf))
        grpc.channel_ready_future(channel).result(timeout=5)
        channel.close()
    except grpc.FutureTimeoutError:
        return False, f"{conf.address} does not answer within 5 s (records would be spooled)"
    except RoardError as exc:
        return False, str(exc)
    return True, f"{conf.address} answers"


def doctor_report(config: config_mod.Config) -> dict[str, Any]:
    """Every prerequisite, checked without loading anything. tracefs is mounted as `roard
    run` would (it lists the kernel's kprobe support; not mounted, kprobes look absent)."""
    mount_error = ""
    if features.privileged():
        try:
            features.ensure_tracefs()
        except PrerequisiteError as exc:
            mount_error = str(exc)
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
    plan = features.VfsPlan((), ("no BTF",))
    if host.btf:
        try:
            btf = Btf.load()
            for struct, member in KERNEL_FIELDS:
                btf.offset(struct, member)
            check("btf_fields", True, f"{len(KERNEL_FIELDS)} kernel fields found")
            plan = features.vfs_plan(btf, host.kprobes, config.kernel.tier)
        except Exception as exc:
            check("btf_fields", False, str(exc))
    if config.kernel.tier in ("fentry", "kprobe"):
        check("tier", bool(plan.tiers), f"[kernel] tier = {config.kernel.tier}: {plan.describe()}")
    variant = Variant(exit_args=False, vfs_tier=plan.tiers[0] if plan.tiers else None)
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
        else mount_error
        or f"not mounted, and only root may mount it: `mount -t tracefs nodev {features.TRACEFS}`",
    )
    try:
        headers = find_headers(config.state_dir)
        check("headers", True, f"{headers.path} ({headers.how})")
    except Exception as exc:
        check("headers", False, str(exc))
    check("collector", *_collector_reachable(config))
    return {
        "kernel": host.kernel,
        "tier": variant.tier,
        "tier_reason": plan.describe(),
        "hooks": variant.hooks(),
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
        for hook, how in report["hooks"].items():
            print(f"  hook {hook}: {how}")
        for c in report["checks"]:
            print(f"  [{'ok' if c['ok'] else 'FAIL'}] {c['check']}: {c['detail']}")
    return 0 if report["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of `roard`."""
    args = _parser().parse_args(argv)
    body = {"run": _run, "collector": _collector, "doctor": _doctor}[args.command]
    return run_main("roard", lambda: body(args))


if __name__ == "__main__":
    sys.exit(main())
