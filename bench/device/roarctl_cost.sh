#!/bin/bash
# What `roarctl tag` itself costs on a host without a package registry, after
# bench/device/check.sh's setup stage: the interpreter's start, roarctl's import, and
# `roarctl tag -- true` under a private daemon (the job is nothing, so all of it is
# roarctl and the daemon's tag and finish). Output on stdout.
#   run(command="OUT=$OUT STAGES=setup bash bench/device/check.sh && bash bench/device/roarctl_cost.sh",
#       carry=[".dev"])
set -u
VENV=${VENV:-/tmp/venv}  # setup's; VENV=.venv here
[ -d /tmp/b/khdr ] && export BCC_KERNEL_SOURCE=/tmp/b/khdr
PY=$VENV/bin/python
dir=$(mktemp -d -p /dev/shm roard-cost-XXXXXX)
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$dir"' EXIT
"$VENV/bin/roard" run --embedded --state-dir "$dir/state" --socket "$dir/roard.sock" \
    2> "$dir/roard.log" &
daemon=$!
export ROARD_SOCKET=$dir/roard.sock
for _ in $(seq 120); do "$VENV/bin/roarctl" status > /dev/null 2>&1 && break; sleep 0.5; done
"$PY" - "$VENV" <<'EOF'
import statistics, subprocess, sys, time

def median_ms(cmd: list[str], n: int = 20) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000

py = f"{sys.argv[1]}/bin/python"
for label, cmd in [
    ("python -c pass", [py, "-c", "pass"]),
    ("python -S -c pass (no site)", [py, "-S", "-c", "pass"]),
    ("import roard.cli.roarctl", [py, "-c", "import roard.cli.roarctl"]),
    ("roarctl tag -- true", [f"{sys.argv[1]}/bin/roarctl", "tag", "--", "true"]),
]:
    print(f"{median_ms(cmd):7.1f} ms  {label}")
EOF
"$PY" -X importtime -c "import roard.cli.roarctl" 2>&1 | sort -t'|' -k2 -n | tail -8
grep -c '"run finalized"' "$dir/roard.log"
