"""workloads.py - one workload, one implementation, one output line.

    workloads.py IMPL CASE N [ARG]

IMPL is `stdlib` (concurrent.futures) or `cfutures`; both run in the same
interpreter, one per process. Prints `<case> <impl> key=value ...` like
the C benchmarks. Cases:

    w1 N WORKERS      thread pool: submit N no-op calls, then result() each
    w2 N              thread pool, 1 worker: N submit-then-result round trips
    w3 N MODE STATE   MODE as_completed|wait over N bare futures, STATE done
                      (all done before) or live (a thread completes them)
    mem N             thread pool: bytes per pending future (peak RSS growth
                      with N calls queued behind a blocked worker)
    p4 N WORKERS      process pool (the default mp context): submit N tiny
                      calls, then result() each
    p4map N CHUNK     process pool, 2 workers: list(map(abs, range(N),
                      chunksize=CHUNK))
    p2 N              process pool, 1 worker: N submit-then-result round
                      trips
"""
import sys
import threading
import time

now = time.perf_counter_ns


def noop():
    return None


def load(impl):
    if impl == 'stdlib':
        import concurrent.futures as futures
    else:
        import cfutures as futures
    return futures


def w1(futures, n, workers):
    with futures.ThreadPoolExecutor(max_workers=workers) as ex:
        for f in [ex.submit(noop) for _ in range(1000)]:  # warm up
            f.result()
        t0 = now()
        fs = [ex.submit(noop) for _ in range(n)]
        for f in fs:
            f.result()
        ns = (now() - t0) / n
        del fs
    return f"workers={workers} n={n} ns_per_task={ns:.1f}"


def w2(futures, n):
    samples = []
    with futures.ThreadPoolExecutor(max_workers=1) as ex:
        for _ in range(1000):  # warm up
            ex.submit(noop).result()
        for _ in range(n):
            t0 = now()
            ex.submit(noop).result()
            samples.append(now() - t0)
    samples.sort()
    return (f"n={n} p50_us={samples[n // 2] / 1e3:.2f} "
            f"mean_us={sum(samples) / n / 1e3:.2f} "
            f"p99_us={samples[int((n - 1) * 0.99)] / 1e3:.2f}")


def w3(futures, n, mode, state):
    fs = [futures.Future() for _ in range(n)]

    def complete():
        for f in fs:
            f.set_result(None)
    if state == 'done':
        complete()
    completer = threading.Thread(target=complete)
    t0 = now()
    if state == 'live':
        completer.start()
    if mode == 'as_completed':
        count = sum(1 for _ in futures.as_completed(fs))
    else:
        count = len(futures.wait(fs).done)
    seconds = (now() - t0) / 1e9
    if state == 'live':
        completer.join()
    if count != n:
        raise SystemExit(f"w3: {count} of {n}")
    return (f"n={n} mode={mode} state={state} "
            f"ns_per_future={seconds * 1e9 / n:.1f}")


def rss(field):
    with open('/proc/self/status') as fp:
        for line in fp:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    return 0


def mem(futures, n):
    gate = threading.Event()
    fs = [None] * n  # the list itself is not counted
    with futures.ThreadPoolExecutor(max_workers=1) as ex:
        held = ex.submit(gate.wait)
        before = rss('VmRSS')
        for i in range(n):
            fs[i] = ex.submit(noop)
        peak = rss('VmHWM')
        gate.set()
        held.result()
    return f"n={n} bytes_per_future={(peak - before) / n:.1f}"


def p4(futures, n, workers):
    with futures.ProcessPoolExecutor(max_workers=workers) as ex:
        for f in [ex.submit(abs, -1) for _ in range(200)]:  # start, warm up
            f.result()
        t0 = now()
        fs = [ex.submit(abs, -1) for _ in range(n)]
        for f in fs:
            f.result()
        ns = (now() - t0) / n
    return (f"workers={workers} n={n} ns_per_task={ns:.1f} "
            f"tasks_per_s={1e9 / ns:.0f}")


def p4map(futures, n, chunk):
    with futures.ProcessPoolExecutor(max_workers=2) as ex:
        list(ex.map(abs, range(200), chunksize=chunk))  # start, warm up
        t0 = now()
        count = len(list(ex.map(abs, range(n), chunksize=chunk)))
        ns = (now() - t0) / n
    if count != n:
        raise SystemExit(f"p4map: {count} of {n}")
    return f"n={n} chunksize={chunk} ns_per_task={ns:.1f}"


def p2(futures, n):
    samples = []
    with futures.ProcessPoolExecutor(max_workers=1) as ex:
        for _ in range(200):  # start, warm up
            ex.submit(abs, -1).result()
        for _ in range(n):
            t0 = now()
            ex.submit(abs, -1).result()
            samples.append(now() - t0)
    samples.sort()
    return (f"n={n} p50_us={samples[n // 2] / 1e3:.2f} "
            f"p99_us={samples[int((n - 1) * 0.99)] / 1e3:.2f}")


def main(argv):
    impl, case, n = argv[1], argv[2], int(argv[3])
    futures = load(impl)
    if case == 'w1':
        line = w1(futures, n, int(argv[4]))
    elif case == 'w2':
        line = w2(futures, n)
    elif case == 'w3':
        line = w3(futures, n, argv[4], argv[5])
    elif case == 'mem':
        line = mem(futures, n)
    elif case == 'p4':
        line = p4(futures, n, int(argv[4]))
    elif case == 'p4map':
        line = p4map(futures, n, int(argv[4]))
    elif case == 'p2':
        line = p2(futures, n)
    else:
        raise SystemExit(__doc__)
    print(f"{case} {impl} {line}", flush=True)


if __name__ == '__main__':
    main(sys.argv)
