#!/usr/bin/env bash
# Install everything roard needs on a Debian/Ubuntu host, into .venv of this checkout.
# Idempotent; run as root. Leaves .venv/bin/roard and .venv/bin/roarctl.
#   --dev   also what the test suite needs: a PostgreSQL server (the tests start private
#           instances of it in temporary directories; the system cluster is not used)
#           and graphviz (a test checks the DOT output with it), and Chromium with its
#           WebDriver (the registry browser's tests drive it headless), and libfuse2 (a
#           test mounts a FUSE file system that hangs, through fusepy).
set -euo pipefail
cd "$(dirname "$0")/.."

dev=no
for arg in "$@"; do
    case "$arg" in
        --dev) dev=yes ;;
        *) echo "setup.sh: unknown option $arg (known: --dev)" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs Debian packages): sudo $0" >&2
    exit 1
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
updated=no
apt_install() {
    [ "$updated" = yes ] || { apt-get update -qq; updated=yes; }
    echo "setup.sh: installing $*" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# The distribution's Python: its bcc module is pure Python over libbcc, so any system
# Python >= 3.11 can use it (Ubuntu 22.04 ships 3.10 as python3 and 3.11 beside it).
py=/usr/bin/python3
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    installed python3.11-venv || apt_install python3.11 python3.11-venv python3.11-dev
    py=/usr/bin/python3.11
fi
venv_pkg="python$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv"

# Kernel headers for bcc's compiler: the running kernel's if the distribution has them,
# else the generic ones (roard merges them itself at start; offsets come from BTF).
arch=$(dpkg --print-architecture)
if [ ! -d "/lib/modules/$(uname -r)/build/include" ] && ! ls -d /usr/src/linux-headers-*/include/generated >/dev/null 2>&1; then
    [ "$updated" = yes ] || { apt-get update -qq; updated=yes; }
    if apt-cache show "linux-headers-$(uname -r)" >/dev/null 2>&1; then
        headers="linux-headers-$(uname -r)"
    elif apt-cache show "linux-headers-$arch" >/dev/null 2>&1; then
        headers="linux-headers-$arch"     # Debian
    else
        headers="linux-headers-generic"   # Ubuntu
    fi
    apt_install "$headers"
fi

missing=()
wanted=(python3-bpfcc "$venv_pkg" gcc libc6-dev)
[ "$dev" = no ] || wanted+=(postgresql graphviz chromium chromium-driver)
# libfuse 2 for fusepy: the hash tests mount a FUSE file system that hangs (Ubuntu 24.04
# renamed the package libfuse2t64).
if [ "$dev" = yes ]; then
    if apt-cache show libfuse2t64 >/dev/null 2>&1; then wanted+=(libfuse2t64); else wanted+=(libfuse2); fi
fi
for p in "${wanted[@]}"; do installed "$p" || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
# roarctl runs as any user from this root-owned checkout: compile roard's modules now, or
# each non-root roarctl compiles them again (~25 ms of every tagged run's start).
.venv/bin/python -m compileall -q roard

# bcc is not on PyPI (the PyPI "bcc" is unrelated): expose the distribution's module.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
bcc_dir=$(/usr/bin/python3 -c 'import bcc, os; print(os.path.dirname(bcc.__file__))')
ln -sfn "$bcc_dir" "$site/bcc"
.venv/bin/python -c 'import bcc' || { echo "setup.sh: bcc is not importable from .venv" >&2; exit 1; }
echo "setup.sh: ready: .venv/bin/roard, .venv/bin/roarctl" >&2
