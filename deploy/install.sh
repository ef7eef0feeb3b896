#!/usr/bin/env bash
# Install roard as a systemd service that runs this checkout's .venv/bin/roard.
#   deploy/install.sh              set up (deploy/setup.sh), install roard.service and
#                                  roard-collector.service; start roard (the collector
#                                  stays disabled: systemctl enable --now roard-collector)
#   deploy/install.sh --uninstall  stop and remove both (state in /var/lib stays)
#   ROOT=/some/dir deploy/install.sh --no-start   write the files under ROOT only (tests)
# Idempotent. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
root=${ROOT:-}
units="$root/etc/systemd/system"
names=(roard roard-collector)
start=yes
action=install
for arg in "$@"; do
    case "$arg" in
        --uninstall) action=uninstall ;;
        --no-start) start=no ;;
        *) echo "install.sh: unknown argument $arg (use --uninstall or --no-start)" >&2; exit 2 ;;
    esac
done
have_systemd() { [ -z "$root" ] && [ -d /run/systemd/system ]; }

if [ "$action" = uninstall ]; then
    for name in "${names[@]}"; do
        if have_systemd; then systemctl disable --now "$name.service" 2>/dev/null || true; fi
        rm -f "$units/$name.service"
    done
    rm -f "$root/etc/roard/roard.toml.example"
    # The kernel maps runs left open were pinned in, for a restart that will not come.
    rm -rf "$root/sys/fs/bpf/roard"
    if have_systemd; then systemctl daemon-reload; fi
    echo "install.sh: roard.service and roard-collector.service removed (state kept)" >&2
    exit 0
fi

[ -n "$root" ] || deploy/setup.sh
mkdir -p "$units"
for name in "${names[@]}"; do
    sed -e "s|@ROARD@|$repo/.venv/bin/roard|" -e "s|@DOCS@|$repo/README.md|" \
        "deploy/$name.service.in" > "$units/$name.service.new"
    mv "$units/$name.service.new" "$units/$name.service"
done
# Every key, documented, at its default; the live file (roard.toml) is never touched.
install -D -m 0644 deploy/roard.toml.example "$root/etc/roard/roard.toml.example"
if have_systemd; then
    systemctl daemon-reload
    if [ "$start" = yes ]; then systemctl enable --now roard.service; fi
    echo "install.sh: roard.service installed; roarctl status to check it" >&2
else
    echo "install.sh: wrote $units/roard.service and roard-collector.service (no systemd running here: start roard with $repo/.venv/bin/roard run)" >&2
fi
