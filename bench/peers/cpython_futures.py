"""cpython_futures.py - CPython's concurrent.futures on the suite's workloads.

Run with Debian's python3. Prints one line, as the C programs do:
``<scenario> <contender> key=value ...``.

    cpython_futures.py w1 N WORKERS        ThreadPoolExecutor: N empty tasks
    cpython_futures.py w2 N                ThreadPoolExecutor: N round trips
    cpython_futures.py w3 N as_completed|wait done|live
    cpython_futures.py w4 N submit|map1|map100
    cpython_futures.py w4lat N             ProcessPoolExecutor: round trips
    cpython_futures.py w5 WORKERS REPS     ProcessPoolExecutor: primes map
    cpython_futures.py mem N               ThreadPoolExecutor: pending memory
"""
import concurrent.futures as cf
import math
import resource
import sys
import threading
import time

now = time.perf_counter_ns


def noop():
    return None


def inc(x):
    return x + 1


# The spec's example, word for word.
PRIMES = [
    112272535095293,
    112582705942171,
    112272535095293,
    115280095190773,
    115797848077099,
    1099726899285419]


def is_prime(n):
    if n < 2:
        return False
    if n == 2:
        return True
    if n % 2 == 0:
        return False

    sqrt_n = int(math.floor(math.sqrt(n)))
    for i in range(3, sqrt_n + 1, 2):
        if n % i == 0:
            return False
    return True


def latency_line(name, samples):
    samples.sort()
    n = len(samples)
    mean = sum(samples) / n / 1e3
    p50 = samples[n // 2] / 1e3
    p99 = samples[int((n - 1) * 0.99)] / 1e3
    return f"{name} n={n} mean_us={mean:.2f} p50_us={p50:.2f} p99_us={p99:.2f}"


def w1(n, workers):
    with cf.ThreadPoolExecutor(max_workers=workers) as ex:
        cf.wait([ex.submit(noop) for _ in range(1000)])  # warm up
        k0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        t0 = now()
        fs = [ex.submit(noop) for _ in range(n)]
        cf.wait(fs, return_when=cf.ALL_COMPLETED)
        del fs
        ns = (now() - t0) / n
        k1 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        sys_ns = (k1 - k0) * 1e9 / n
    print(f"w1 cpython_thread workers={workers} n={n} ns_per_task={ns:.1f} "
          f"tasks_per_s={1e9 / ns:.0f} sys_ns_per_task={sys_ns:.1f}")


def w2(n):
    samples = []
    with cf.ThreadPoolExecutor(max_workers=1) as ex:
        for _ in range(1000):  # warm up
            ex.submit(noop).result()
        for _ in range(n):
            t0 = now()
            ex.submit(noop).result()
            samples.append(now() - t0)
    print(latency_line("w2 cpython_thread", samples))


def complete_all(fs):
    for f in fs:
        f.set_result(None)


def w3(n, mode, state):
    fs = [cf.Future() for _ in range(n)]
    completer = threading.Thread(target=complete_all, args=(fs,))
    if state == "done":
        complete_all(fs)
    t0 = now()
    if state == "live":
        completer.start()
    if mode == "as_completed":
        count = sum(1 for _ in cf.as_completed(fs))
    else:
        done, _ = cf.wait(fs, return_when=cf.ALL_COMPLETED)
        count = len(done)
    seconds = (now() - t0) / 1e9
    if state == "live":
        completer.join()
    if count != n:
        raise SystemExit(f"w3: {count} of {n}")
    print(f"w3 cpython n={n} mode={mode} state={state} seconds={seconds:.4f} "
          f"ns_per_future={seconds * 1e9 / n:.1f}")


def w4(n, method):
    with cf.ProcessPoolExecutor(max_workers=2) as ex:
        list(ex.map(inc, range(100)))  # warm up: start the workers
        t0 = now()
        if method == "submit":
            fs = [ex.submit(inc, i) for i in range(n)]
            out = [f.result() for f in fs]
        else:
            chunk = 1 if method == "map1" else 100
            out = list(ex.map(inc, range(n), chunksize=chunk))
        ns = (now() - t0) / n
    if out[-1] != n:
        raise SystemExit("w4: wrong result")
    print(f"w4 cpython_process method={method} n={n} ns_per_task={ns:.1f} "
          f"tasks_per_s={1e9 / ns:.0f}")


def w4lat(n):
    samples = []
    with cf.ProcessPoolExecutor(max_workers=2) as ex:
        for i in range(100):  # warm up
            ex.submit(inc, i).result()
        for i in range(n):
            t0 = now()
            if ex.submit(inc, i).result() != i + 1:
                raise SystemExit("w4lat: wrong result")
            samples.append(now() - t0)
    print(latency_line("w4lat cpython_process", samples))


def w5(workers, reps):
    numbers = PRIMES * reps
    t0 = now()
    with cf.ProcessPoolExecutor(max_workers=workers) as ex:
        out = list(ex.map(is_prime, numbers))
    seconds = (now() - t0) / 1e9
    if out[:6] != [True, True, True, True, True, False]:
        raise SystemExit("w5: wrong answer")
    print(f"w5 cpython_process workers={workers} reps={reps} "
          f"seconds={seconds:.3f}")


def status_bytes(field):
    with open("/proc/self/status") as fp:
        for line in fp:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def mem(n):
    gate = threading.Event()
    fs = [None] * n  # the handle array is not counted, as in C
    with cf.ThreadPoolExecutor(max_workers=1) as ex:
        held = ex.submit(gate.wait)
        before = status_bytes("VmRSS")
        for i in range(n):
            fs[i] = ex.submit(noop)
        peak = status_bytes("VmHWM")
        gate.set()
        held.result()
        cf.wait(fs)
    print(f"mem cpython_thread n={n} bytes_per_task={(peak - before) / n:.1f} "
          f"peak_rss_mb={peak / 1048576:.1f}")


def main(argv):
    what = argv[1] if len(argv) > 1 else ""
    args = argv[2:]
    if what == "w1":
        w1(int(args[0]), int(args[1]))
    elif what == "w2":
        w2(int(args[0]))
    elif what == "w3":
        w3(int(args[0]), args[1], args[2])
    elif what == "w4":
        w4(int(args[0]), args[1])
    elif what == "w4lat":
        w4lat(int(args[0]))
    elif what == "w5":
        w5(int(args[0]), int(args[1]))
    elif what == "mem":
        mem(int(args[0]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
