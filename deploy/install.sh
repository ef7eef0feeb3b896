#!/usr/bin/env bash
# Install roard as a systemd service that runs this checkout's .venv/bin/roard.
#   deploy/install.sh              set up (deploy/setup.sh), install and start the unit
#   deploy/install.sh --uninstall  stop and remove the unit (state in /var/lib/roard stays)
#   ROOT=/some/dir deploy/install.sh --no-start   write the files under ROOT only (tests)
# Idempotent. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
root=${ROOT:-}
unit="$root/etc/systemd/system/roard.service"
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
    if have_systemd; then systemctl disable --now roard.service 2>/dev/null || true; fi
    rm -f "$unit"
    if have_systemd; then systemctl daemon-reload; fi
    echo "install.sh: roard.service removed (state in /var/lib/roard kept)" >&2
    exit 0
fi

[ -n "$root" ] || deploy/setup.sh
mkdir -p "$(dirname "$unit")"
sed -e "s|@ROARD@|$repo/.venv/bin/roard|" -e "s|@DOCS@|$repo/README.md|" \
    deploy/roard.service.in > "$unit.new"
mv "$unit.new" "$unit"
if have_systemd; then
    systemctl daemon-reload
    if [ "$start" = yes ]; then systemctl enable --now roard.service; fi
    echo "install.sh: roard.service installed; roarctl status to check it" >&2
else
    echo "install.sh: wrote $unit (no systemd running here: start it with $repo/.venv/bin/roard run --embedded)" >&2
fi
