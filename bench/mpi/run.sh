#!/usr/bin/env bash
# The MPI executor against mpi4py.futures (Debian's python3-mpi4py), in one
# run: 3 ranks (rank 0 submits, 2 worker ranks), each scenario RUNS times
# (default 5) with the contenders interleaved, medians printed.
#   bench/mpi/run.sh            build with -O2 into bench/out/mpi, run, print
#   RUNS=3 bench/mpi/run.sh
# Scenarios: round trip p50 (submit one tiny task, wait, repeat), tiny
# tasks per second by submit/result and by map with chunksize 100, and the
# floor: a 1-byte MPI_Send/MPI_Recv ping-pong between two ranks. Spawn
# mode (rows "spawn: ..."): mpirun -n 1, the process spawns its 2 workers
# (cf_mpi_spawn_executor against mpi4py's MPIPoolExecutor).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-5}
BUILD=${BUILD:-bench/out/mpi}
PY=${PYTHON:-/usr/bin/python3}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCF_BUILD_BENCH=ON \
    -DCF_BUILD_TESTS=OFF -DCF_BUILD_EXAMPLES=OFF -DCF_BUILD_DOCS=OFF \
    -DCF_BUILD_PYTHON=OFF -DCF_REQUIRE_MPI=ON >/dev/null
cmake --build "$BUILD" --target bench_mpi -j2 >/dev/null
BIN=$BUILD/bench/bench_mpi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export MPIEXEC_TIMEOUT=300
MPIRUN1=(mpirun --oversubscribe --bind-to none
         --mca btl_vader_single_copy_mechanism none
         --mca mpi_yield_when_idle 1)
MPIRUN=("${MPIRUN1[@]}" -n 3)
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
# number extraction: "p50 12.3 us" or "(123456/s)"
value() { sed -n 's/.*p50 \([0-9.]*\) us.*/\1/p; s/.*(\([0-9.]*\)\/s).*/\1/p'; }
for ((r = 1; r <= RUNS; r++)); do
    echo "run $r/$RUNS" >&2
    for s in "round_trip 2000" "submit 100000" "map 100000" "ping_pong 20000"; do
        set -- $s
        echo "cf $1 $("${MPIRUN[@]}" "$BIN" "$1" "$2" | value)" >>"$OUT"
    done
    for s in "round_trip 2000" "submit 20000" "map 100000"; do
        set -- $s
        echo "py $1 $("${MPIRUN[@]}" "$PY" bench/mpi/mpi4py_peer.py "$1" "$2" |
            value)" >>"$OUT"
    done
    for s in "round_trip 2000 20000" "submit 100000 10000" "map 100000 100000"; do
        set -- $s
        echo "cf spawn_$1 $("${MPIRUN1[@]}" -n 1 "$BIN" "$1" "$2" spawn |
            value)" >>"$OUT"
        echo "py spawn_$1 $("${MPIRUN1[@]}" -n 1 "$PY" \
            bench/mpi/mpi4py_peer.py "$1" "$3" spawn | value)" >>"$OUT"
    done
done
"$PY" - "$OUT" "$RUNS" <<'PYEOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 3]
def med(who, what):
    v = [float(r[2]) for r in rows if r[0] == who and r[1] == what]
    return statistics.median(v), min(v), max(v)
print("MPI executor vs mpi4py.futures: 3 ranks (2 workers), medians of %s runs (min-max)" % sys.argv[2])
print("| scenario | cfutures_mpi | mpi4py.futures | ratio |")
print("|---|---|---|---|")
names = {"round_trip": "round trip p50", "submit": "tiny tasks, submit/result",
         "map": "tiny tasks, map chunksize 100"}
for what, unit, better in (("round_trip", "us p50", "lower"),
                           ("submit", "tasks/s", "higher"),
                           ("map", "tasks/s", "higher"),
                           ("spawn_round_trip", "us p50", "lower"),
                           ("spawn_submit", "tasks/s", "higher"),
                           ("spawn_map", "tasks/s", "higher")):
    c, p = med("cf", what), med("py", what)
    ratio = p[0] / c[0] if better == "lower" else c[0] / p[0]
    name = names.get(what) or "spawn: " + names[what[6:]]
    print("| %s | %.0f %s (%.0f-%.0f) | %.0f %s (%.0f-%.0f) | %.1fx |"
          % (name, c[0], unit, c[1], c[2], p[0], unit, p[1], p[2], ratio))
f = med("cf", "ping_pong")
print("| MPI ping-pong floor (1 byte, round trip p50) | %.1f us (%.1f-%.1f) | | |" % f)
PYEOF
