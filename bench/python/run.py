#!/usr/bin/env python3
"""run.py - cfutures against the stdlib's concurrent.futures, same Python.

    run.py PYTHONPATH_WITH_CFUTURES [RUNS]

Runs every case of workloads.py RUNS times (default 5; BENCH_QUICK=1: 3 and
smaller sizes), the two implementations interleaved, each in a fresh
process of this same interpreter, and prints one Markdown table of
medians (min-max) with the ratio stdlib / cfutures (above 1: cfutures
wins) and the issue's targets, plus two floors measured in the same run:
the cost of set(fs) and of a bare loop over 100k futures, which wait()
and as_completed() cannot beat (their result is a set, or each future).
"""
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
QUICK = bool(os.environ.get('BENCH_QUICK'))
N = 20000 if QUICK else 100000

# (title, workload args, metric, target ratio or None)
CASES = [
    ('W1 submit then result, 1 worker', ['w1', N, 1], 'ns_per_task', 5),
    ('W1 submit then result, 2 workers', ['w1', N, 2], 'ns_per_task', 5),
    ('W2 round trip p50 (us)', ['w2', N // 5], 'p50_us', 5),
    ('W3 wait, all done', ['w3', N, 'wait', 'done'], 'ns_per_future', 50),
    ('W3 as_completed, all done', ['w3', N, 'as_completed', 'done'],
     'ns_per_future', 50),
    ('W3 wait, completing', ['w3', N, 'wait', 'live'], 'ns_per_future', 50),
    ('W3 as_completed, completing', ['w3', N, 'as_completed', 'live'],
     'ns_per_future', 50),
    ('Memory per pending future (bytes)', ['mem', 2 * N], 'bytes_per_future',
     5),
    # Process pools, each with the default mp context of this Python.
    ('W4 process pool, submit then result (ns/call)', ['p4', N // 10, 2],
     'ns_per_task', 10),
    ('W4 process pool, map chunksize 100 (ns/call)', ['p4map', N, 100],
     'ns_per_task', 3),
    ('Process pool round trip p50 (us)', ['p2', N // 50], 'p50_us', None),
]

FLOOR = """
import cfutures, time
fs = [cfutures.Future() for _ in range(%d)]
for f in fs:
    f.set_result(None)
t = time.perf_counter_ns(); s = set(fs); a = time.perf_counter_ns() - t
t = time.perf_counter_ns(); n = sum(1 for _ in fs); b = time.perf_counter_ns() - t
print('floor set_ns=%%.1f loop_ns=%%.1f' %% (a / len(fs), b / len(fs)))
"""


def run(env, args):
    out = subprocess.run([sys.executable, os.path.join(HERE, 'workloads.py')]
                         + [str(a) for a in args], env=env, check=True,
                         capture_output=True, text=True, timeout=600).stdout
    return dict(kv.split('=') for kv in out.split()[2:] if '=' in kv)


def main(argv):
    env = dict(os.environ, PYTHONPATH=argv[1])
    runs = int(argv[2]) if len(argv) > 2 else (3 if QUICK else 5)
    print('Python %s, %d runs per case, interleaved; medians (min-max)\n'
          % (sys.version.split()[0], runs))
    print('| case | stdlib | cfutures | stdlib / cfutures | target |')
    print('|---|---|---|---|---|')
    for title, args, metric, target in CASES:
        got = {'stdlib': [], 'cfutures': []}
        for _ in range(runs):
            for impl in got:
                got[impl].append(float(run(env, [impl] + args)[metric]))
        med = {k: statistics.median(v) for k, v in got.items()}
        ratio = med['stdlib'] / med['cfutures']
        verdict = ('>= %dx: %s' % (target, 'met' if ratio >= target
                                   else 'not met')) if target else ''
        print('| %s | %.1f (%.1f-%.1f) | %.1f (%.1f-%.1f) | %.1fx | %s |' % (
            title, med['stdlib'], min(got['stdlib']), max(got['stdlib']),
            med['cfutures'], min(got['cfutures']), max(got['cfutures']),
            ratio, verdict), flush=True)
    floors = [subprocess.run([sys.executable, '-c', FLOOR % N], env=env,
                             check=True, capture_output=True,
                             text=True).stdout.split()[1:]
              for _ in range(runs)]
    set_ns = statistics.median(float(f[0].split('=')[1]) for f in floors)
    loop_ns = statistics.median(float(f[1].split('=')[1]) for f in floors)
    print('\nFloors over %d done futures (medians): set(fs) %.1f ns/future, '
          'a bare loop %.1f ns/future.' % (N, set_ns, loop_ns))


if __name__ == '__main__':
    main(sys.argv)
