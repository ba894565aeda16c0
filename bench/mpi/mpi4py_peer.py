"""mpi4py.futures on the same scenarios as bench_mpi.c (one line each),
with MPICommExecutor: rank 0 submits, the other ranks (2 under -n 3) serve.

    mpirun -n 3 python3 bench/mpi/mpi4py_peer.py round_trip 2000
    mpirun -n 3 python3 bench/mpi/mpi4py_peer.py submit 20000
    mpirun -n 3 python3 bench/mpi/mpi4py_peer.py map 100000
    mpirun -n 1 python3 bench/mpi/mpi4py_peer.py round_trip 2000 spawn

With `spawn`, MPIPoolExecutor(max_workers=2) spawns the two workers
(MPI_Comm_spawn), as cf_mpi_spawn_executor() does.
"""
import sys
import time

from mpi4py import MPI
from mpi4py.futures import MPICommExecutor, MPIPoolExecutor


def identity(x):
    return x


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "round_trip"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    spawn = len(sys.argv) > 3 and sys.argv[3] == "spawn"
    pool = (MPIPoolExecutor(max_workers=2) if spawn
            else MPICommExecutor(MPI.COMM_WORLD, root=0))
    with pool as ex:
        if ex is None:
            return  # a worker rank: served until rank 0 left the block
        if what == "round_trip":
            times = []
            for i in range(-n // 10, n):
                t0 = time.perf_counter()
                assert ex.submit(identity, i).result() == i
                if i >= 0:
                    times.append(time.perf_counter() - t0)
            times.sort()
            print("mpi4py round_trip: p50 %.1f us (%d round trips)"
                  % (times[n // 2] * 1e6, n))
        elif what == "submit":
            t0 = time.perf_counter()
            fs = [ex.submit(identity, i) for i in range(n)]
            for i, f in enumerate(fs):
                assert f.result() == i
            s = time.perf_counter() - t0
            print("mpi4py submit: %d tasks in %.3f s (%.0f/s)" % (n, s, n / s))
        else:
            t0 = time.perf_counter()
            for i, v in enumerate(ex.map(identity, range(n), chunksize=100)):
                assert v == i
            s = time.perf_counter() - t0
            print("mpi4py map_chunksize_100: %d tasks in %.3f s (%.0f/s)"
                  % (n, s, n / s))


if __name__ == "__main__":
    main()
