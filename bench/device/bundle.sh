#!/usr/bin/env bash
# Build .dev/ for bench/device/check.sh: what roard needs on a host with no package
# registry (this workplace's GPU machines: Ubuntu 24.04, Python 3.12, no bcc, no headers).
# Run here, as root, after deploy/setup.sh --dev; needs patchelf, gcc and pip access.
# Leaves .dev/bcc.tar.xz (libbcc with LLVM 14 and clang, the bcc module, merged kernel
# headers; about 41 MB) and .dev/whl/ (cp312 wheels of roard's compiled dependencies).
# .dev/ is ignored by git; carry it: run(command="OUT=$OUT bash bench/device/check.sh",
# carry=[".dev"]).
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lib" .dev/whl

# libbcc and what it links, but the C/C++ runtime the host has anyway.
libbcc=$(/usr/bin/python3 -c 'import ctypes.util; print(ctypes.util.find_library("bcc"))')
cp -L "/usr/lib/x86_64-linux-gnu/$libbcc" "$work/lib/"
ldd "$work/lib/$libbcc" | awk '$3 ~ /^\// {print $3}' |
    grep -vE '/(libc|libm|libstdc\+\+|libgcc_s|libz|ld-linux[^/]*)\.so' |
    grep -vE '/lib(icu|xml2|z3)' | xargs -I{} cp -L {} "$work/lib/"

# LLVM links libz3 and libxml2 (and ICU through it) but never calls them for BPF: stubs of
# the symbols it names, with libxml2's symbol versions, replace 30 MB of libraries.
llvm=$(ls "$work"/lib/libLLVM-*.so*)
objdump -T "$llvm" | awk '/\*UND\*/ && $NF ~ /^Z3_/ {print $NF}' | sort -u |
    awk 'BEGIN {print "#include <stdlib.h>"} {print "void " $1 "(void) { abort(); }"}' > "$work/z3.c"
gcc -shared -fPIC -o "$work/lib/libz3.so.4" -Wl,-soname,libz3.so.4 "$work/z3.c"
objdump -T "$llvm" | awk '/\*UND\*/ && $NF ~ /^xml/ {gsub(/[()]/, "", $(NF-1)); print $2, $(NF-1), $NF}' > "$work/xml.syms"
awk 'BEGIN {print "#include <stdlib.h>"} $1 == "DF" {print "void " $3 "(void) { abort(); }"}
     $1 == "DO" {print "void *" $3 ";"}' "$work/xml.syms" > "$work/xml.c"
awk '{v[$2] = v[$2] $3 "; "} END {for (k in v) print k " { global: " v[k] "};"}' "$work/xml.syms" > "$work/xml.map"
gcc -shared -fPIC -o "$work/lib/libxml2.so.2" -Wl,-soname,libxml2.so.2 \
    -Wl,--version-script="$work/xml.map" "$work/xml.c"
for f in "$work"/lib/*; do patchelf --set-rpath '$ORIGIN' "$f"; done

# The bcc module, loading its own libbcc (no LD_LIBRARY_PATH: traced programs must load
# their own libraries).
cp -rL "$(/usr/bin/python3 -c 'import bcc, os; print(os.path.dirname(bcc.__file__))')" "$work/bcc"
rm -rf "$work/bcc/__pycache__"
sed -i "s|^lib = ct.CDLL(\"$libbcc\"|lib = ct.CDLL(__import__('os').path.join(__import__('os').path.dirname(__file__), '..', 'lib', '$libbcc')|" "$work/bcc/libbcc.py"
grep -q "'..', 'lib'" "$work/bcc/libbcc.py"

# Kernel headers, merged as roard merges them (offsets come from the host's BTF).
tree=$(.venv/bin/python -c "from pathlib import Path; from roard.kernel.headers import find_headers; print(find_headers(Path('$work/state')).path)")
mkdir -p "$work/khdr"
(cd "$tree" && tar chf - include arch/x86/include) | tar xf - -C "$work/khdr"

(cd "$work" && tar cf - lib bcc khdr) | xz -6 -T0 > .dev/bcc.tar.xz

# Wheels the host's Python lacks or has in other versions, at this venv's versions.
version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
specs=()
for dist in blake3 grpcio protobuf structlog psycopg psycopg-binary; do specs+=("$dist==$(version "$dist")"); done
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .dev/whl "${specs[@]}"
ls -la .dev/bcc.tar.xz .dev/whl
