#!/usr/bin/env bash
# profile.sh - where cfutures' time goes on the W1 and W2 paths.
#
#   bench/profile.sh            (after bench/run.sh has built bench/out/)
#
# Records bench_throughput (W1) and bench_latency (W2) with `perf record`
# (software cpu-clock samples: enough inside a VM without hardware
# counters) and prints the hottest symbols of each thread, the submitting
# thread ("bench_*") and the pool's workers ("cfpool*"). Without a usable
# perf it falls back to valgrind's callgrind (slow: the sizes shrink).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin="$here/out/bench"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -x "$bin/bench_throughput" ] || {
    echo "profile.sh: build first (bench/run.sh)" >&2
    exit 1
}

top_symbols() { # data file, thread name
    perf report -i "$1" --stdio --no-children --comm "$2" --sort sym \
        2>/dev/null | grep -E '^ +[0-9]+\.[0-9]+%' | head -12
}

profile() { # name, program and arguments
    local name=$1
    shift
    echo "=== $name: $*"
    if perf record -q -o "$work/$name.data" -g "$@" 2>/dev/null; then
        local prog
        prog=$(basename "$1" | cut -c1-15)
        echo "--- submitting thread ($prog)"
        top_symbols "$work/$name.data" "$prog"
        echo "--- worker thread (cfpool0_0)"
        top_symbols "$work/$name.data" cfpool0_0
    else
        echo "(perf unusable here: callgrind, smaller size)"
        valgrind --tool=callgrind --callgrind-out-file="$work/$name.cg" \
            "$1" 20000 "${@:3}" >/dev/null 2>&1
        callgrind_annotate "$work/$name.cg" 2>/dev/null | head -30
    fi
    echo
}

profile w1 "$bin/bench_throughput" 1000000 1
profile w2 "$bin/bench_latency" 100000
