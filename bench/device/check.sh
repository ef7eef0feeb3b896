#!/bin/bash
# One-shot check of roard on a host with no package registry, from what
# bench/device/bundle.sh left in .dev/ (carried along): host facts, the e2e files of the
# observation issue under the tier roard picks, a kprobe-forced pass, per-hook kernel costs
# per tier, and the peers benchmark's roard modes. Every stage has its own limit inside one
# deadline (BUDGET seconds); output under $OUT (log.txt, junit XML, peers.md/png).
# STAGES (space-separated names) runs only those; PEERS_SCALE sizes the peers workloads,
# PEERS_REPEAT sets their runs per mode.
START=$SECONDS
BUDGET=${BUDGET:-450}
STAGES=${STAGES:-}
PEERS_SCALE=${PEERS_SCALE:-0.5}
PEERS_REPEAT=${PEERS_REPEAT:-3}
REPO=$PWD
export PYTHONUNBUFFERED=1
LOG=$OUT/log.txt
exec > >(tee -a "$LOG") 2>&1

stage() { # stage NAME SECONDS CMD...: run CMD with min(SECONDS, time left) as its limit
    local name=$1 want=$2; shift 2
    if [ -n "$STAGES" ] && [[ " $STAGES " != *" $name "* ]]; then return 0; fi
    local left=$((BUDGET - (SECONDS - START)))
    if [ "$left" -lt 15 ]; then echo "=== SKIP $name (only ${left}s left)"; return; fi
    [ "$want" -lt "$left" ] || want=$left
    echo "=== $name (limit ${want}s, t=$((SECONDS - START))s)"
    timeout -k 5 "$want" "$@"
    local rc=$?
    echo "=== $name rc=$rc took $((SECONDS - START))s so far"
    return $rc
}

facts() {
    uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; free -g | head -2
    ls -la /sys/kernel/btf/vmlinux /sys/kernel/tracing/kprobe_events 2>&1
    mount | grep -E 'tracefs|debugfs|bpf' ; cat /proc/sys/kernel/unprivileged_bpf_disabled
    for f in /proc/config.gz; do [ -e $f ] && zgrep -E '^CONFIG_(KPROBES|KPROBE_EVENTS|FPROBE|FUNCTION_TRACER|DYNAMIC_FTRACE|BPF_SYSCALL|DEBUG_INFO_BTF|BPF_LSM|FTRACE_SYSCALLS|IO_URING)=' $f; done
    ls /boot 2>&1 | head
    grep -cw -E 'security_file_permission|security_file_open|vfs_rename' /sys/kernel/tracing/available_filter_functions 2>&1
    command -v python3 gcc unshare chroot cp tar strace; /usr/bin/python3 -V; python3 -V
}

setup() {
    mkdir -p /tmp/b && tar xJf .dev/bcc.tar.xz -C /tmp/b || return 1
    local py site
    py=$(command -v python3)
    site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$py" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .dev/whl/*.whl || return 1
    if ! "$py" -m venv --without-pip /tmp/venv; then  # by hand: what venv itself writes
        local base
        base=$("$py" -c 'import os, sys; print(os.path.realpath(sys._base_executable))')
        mkdir -p /tmp/venv/bin && ln -sf "$base" /tmp/venv/bin/python
        printf 'home = %s\ninclude-system-site-packages = false\n' "$(dirname "$base")" > /tmp/venv/pyvenv.cfg
    fi
    local vsite
    vsite=$(/tmp/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    printf '%s\n' /tmp/site /tmp/b "$REPO" "$site" > "$vsite/roard-dev.pth"
    printf '#!/tmp/venv/bin/python\nimport sys\nfrom roard.cli.roard_main import main\nsys.exit(main())\n' > /tmp/venv/bin/roard
    printf '#!/tmp/venv/bin/python\nimport sys\nfrom roard.cli.roarctl import main\nsys.exit(main())\n' > /tmp/venv/bin/roarctl
    chmod 755 /tmp/venv/bin/roard /tmp/venv/bin/roarctl
    [ -x /usr/bin/python3 ] || ln -s "$(readlink -f "$py")" /usr/bin/python3
    chmod -R a+rX /tmp/b /tmp/site /tmp/venv "$REPO" 2>/dev/null
    ldd /tmp/b/lib/libbcc.so.0 | grep -E 'not found|/tmp/b' ; true
}

smoke() {
    /tmp/venv/bin/python - <<'EOF'
import grpc, blake3, structlog, psutil, bcc
print("grpc", grpc.__version__, "bcc", bcc.__file__)
from bcc import BPF
b = BPF(text="#include <linux/sched.h>\nint f(void *ctx) { return 0; }")
print("bcc compiles and loads:", b.load_func(b"f", BPF.KPROBE).fd >= 0)
EOF
    /tmp/venv/bin/roard doctor; /tmp/venv/bin/roard doctor --json
}

tiers_cfg() { printf '[kernel]\ntier = "%s"\n' "$1" > "/tmp/$1.toml"; }

# No LD_LIBRARY_PATH: the carried libraries find each other by RUNPATH=$ORIGIN, and traced
# programs must load their own.
export BCC_KERNEL_SOURCE=/tmp/b/khdr ROARD_REQUIRE_BPF=1
PY=/tmp/venv/bin/python
PT=("$PY" -m pytest -q -p no:cacheprovider -rfE --timeout 120)

stage facts 20 bash -c "$(declare -f facts); facts"
stage setup 60 bash -c "$(declare -f setup); REPO=$REPO; setup" || exit 1
stage smoke 40 bash -c "$(declare -f smoke); smoke"
for t in tracepoint kprobe fentry; do tiers_cfg $t; done
stage e2e-auto 190 "${PT[@]}" --junitxml="$OUT/auto.xml" \
    tests/e2e/test_tiers.py tests/e2e/test_observe.py tests/e2e/test_io_paths.py \
    tests/e2e/test_hard_paths.py tests/e2e/test_loss.py -k "not unreadable_input"
# Without kprobe_events the kprobe and fentry tiers cannot attach: `facts` says so, and the
# stages that force them would only repeat it.
kprobes=0; [ -e /sys/kernel/tracing/kprobe_events ] && kprobes=1
[ $kprobes = 1 ] && stage e2e-kprobe 70 env ROARD_CONFIG=/tmp/kprobe.toml "${PT[@]}" --junitxml="$OUT/kprobe.xml" \
    tests/e2e/test_observe.py tests/e2e/test_io_paths.py -k "async or uring or aio or sendfile or copy or mmap or rename"
for t in tracepoint kprobe fentry; do
    [ $t = tracepoint ] || [ $kprobes = 1 ] || continue
    stage "hooks-$t" 30 env ROARD_CONFIG=/tmp/$t.toml "$PY" bench/hook_costs.py \
        --workloads syscalls,small-files --scale 0.1 --dir /dev/shm --min-runs 100
done
mkdir -p /dev/shm/pb
stage peers 400 "$PY" bench/peers.py --scale "$PEERS_SCALE" --repeat "$PEERS_REPEAT" \
    --dir /dev/shm/pb --modes untraced,roard-untagged,roard-env,roard-tag \
    --plot "$OUT/peers.png" --markdown "$OUT/peers.md" --daemon-log "$OUT/roard-peers.log"
stage run-ends 10 "$PY" bench/run_ends.py "$OUT/roard-peers.log"
find /tmp/pytest-of-root -name 'roard-*.log' -size -4M -print0 2>/dev/null |
    tar czf "$OUT/daemon-logs.tgz" --null -T - 2>/dev/null
echo "=== done at $((SECONDS - START))s"
