#!/usr/bin/env bash
# Install everything roard needs on a Debian/Ubuntu host, into .venv of this checkout.
# Idempotent; run as root. Leaves .venv/bin/roard and .venv/bin/roarctl.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs Debian packages): sudo $0" >&2
    exit 1
fi

arch=$(dpkg --print-architecture)
need=(python3-bpfcc python3-venv python3-dev gcc "linux-headers-$arch")
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The distribution's python3 is the one its bcc module is built for.
py=/usr/bin/python3
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "setup.sh: roard needs Python >= 3.11 as /usr/bin/python3" >&2
    exit 1
}
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

# bcc is not on PyPI (the PyPI "bcc" is unrelated): expose the distribution's module.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
dist=$("$py" -c 'import bcc, os; print(os.path.dirname(os.path.dirname(bcc.__file__)))')
ln -sfn "$dist/bcc" "$site/bcc"
.venv/bin/python -c 'import bcc' || { echo "setup.sh: bcc is not importable from .venv" >&2; exit 1; }
echo "setup.sh: ready: .venv/bin/roard, .venv/bin/roarctl" >&2
