#!/usr/bin/env bash
# run.sh - the one command for cfutures' benchmark suite:
#   installs the peers (Debian packages), builds everything with -O2 into
#   bench/out/, runs every scenario several times with the contenders
#   interleaved, and prints one table (also written to bench/out/table.md),
#   keeps every run in bench/out/results.json and draws a chart per
#   scenario into bench/out/charts/ (matplotlib; bench/charts.py).
#
#   bench/run.sh                  full run: 5 runs per case (~10 minutes)
#   BENCH_QUICK=1 bench/run.sh    smoke test: small sizes, 3 runs
#
# Further knobs: BENCH_RUNS=N, BENCH_ONLY='W1|W2' (groups by title),
# BENCH_NO_INSTALL=1 (skip apt-get), BENCH_NO_PYTHON=1 (skip the Python
# extension's run, bench/python/), BENCH_PYTHON (default: Debian's
# /usr/bin/python3, whose concurrent.futures is the CPython peer).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
out="$here/out"
python=${BENCH_PYTHON:-/usr/bin/python3}
packages=(build-essential cmake pkg-config python3 libuv1-dev
          libglib2.0-dev libtbb-dev python3-matplotlib)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
        missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] && [ -z "${BENCH_NO_INSTALL:-}" ]; then
    echo "run.sh: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# RelWithDebInfo is -O2 -g: optimised, and perf can still name functions.
cmake -S "$root" -B "$out" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCF_BUILD_BENCH=ON -DCF_BUILD_TESTS=OFF -DCF_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$out" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null

"$python" "$here/harness.py" "$out/bench" "$out"

# The Python extension against the stdlib's concurrent.futures, same
# interpreter (bench/python/run.py), when it was built for $python.
pyver=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3] + sys.abiflags)')
if [ -d "$out/python/$pyver/cfutures" ] && [ -z "${BENCH_NO_PYTHON:-}" ]; then
    echo
    "$python" "$here/python/run.py" "$out/python/$pyver" | tee "$out/python.md"
fi
