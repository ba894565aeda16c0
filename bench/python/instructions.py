#!/usr/bin/env python3
"""instructions.py - W3's cost in instructions per future (callgrind).

    instructions.py [LABEL=]PYTHONPATH... [N]

For the stdlib and each cfutures build given (a directory holding the
`cfutures` package, e.g. build/python/3.11.2), runs each case below under
`valgrind --tool=callgrind` twice, with and without the measured call,
over the same N futures (default 20000), and prints the difference per
future: the instructions the call itself costs, creating and completing
the futures excluded (the garbage collector off, a fixed hash seed, so
that both runs execute the same code but the call). Instruction counts do not depend on the machine's
load, so old and new builds compare on a busy machine too; wall-clock
figures are workloads.py's. Cases:

    as_completed done   as_completed(fs) over done futures, consumed
    as_completed later  as_completed(fs) over pending futures (and one
                        done, taken first), then each completed
                        (set_result, same thread), consumed
    wait done           wait(fs) over done futures
    wait pending        wait(fs, timeout=0) over pending futures
    dup as_completed    as_completed(fs + fs) over done futures

and two floors, on cfutures futures: the consumer's loop alone
(sum(1 for _ in fs), which the as_completed cases include) and set(fs),
which wait() must build (its result) and the stdlib builds first.
"""
import os
import re
import subprocess
import sys
import tempfile

SNIPPET = r"""
import gc, sys
gc.disable()  # a collection falling in one run of the two, not the other
impl, case, n, measure = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1'
if impl == 'stdlib':
    import concurrent.futures as futures
else:
    import cfutures as futures
fs = [futures.Future() for _ in range(n)]
def complete():
    for f in fs:
        f.set_result(None)
if case in ('as_completed done', 'wait done', 'dup as_completed', 'loop',
            'set'):
    complete()
count = n
if not measure:
    if case == 'as_completed later':
        complete()
elif case == 'as_completed done':
    count = sum(1 for _ in futures.as_completed(fs))
elif case == 'dup as_completed':
    count = sum(1 for _ in futures.as_completed(fs + fs))
elif case == 'as_completed later':
    # The stdlib's as_completed() is a generator: it looks at the futures
    # at the first next(), which one done future lets return at once.
    first = futures.Future()
    first.set_result(None)
    it = futures.as_completed([first] + fs)
    next(it)
    complete()
    count = sum(1 for _ in it)
elif case == 'wait done':
    count = len(futures.wait(fs).done)
elif case == 'wait pending':
    count = len(futures.wait(fs, timeout=0).not_done)
elif case == 'loop':
    count = sum(1 for _ in fs)
elif case == 'set':
    count = len(set(fs))
assert count == n, (case, count)
"""

CASES = ['as_completed done', 'as_completed later', 'wait done',
         'wait pending', 'dup as_completed']
if os.environ.get('CASES'):  # e.g. CASES='wait done,wait pending'
    CASES = os.environ['CASES'].split(',')


def instructions(path, impl, case, n, measure):
    env = dict(os.environ, PYTHONPATH=path or '', PYTHONHASHSEED='0')
    # The script alone in its directory: the import system lists the
    # script's directory, and /tmp's changing contents would change the
    # count.
    with tempfile.TemporaryDirectory() as where:
        script = os.path.join(where, 'w3.py')
        with open(script, 'w') as fp:
            fp.write(SNIPPET)
        out = subprocess.run(
            ['valgrind', '--tool=callgrind', '--callgrind-out-file=/dev/null',
             sys.executable, '-s', script, impl, case, str(n),
             '1' if measure else '0'],
            env=env, cwd=where, capture_output=True, text=True,
            check=True).stderr
    return int(re.search(r'Collected : (\d+)', out).group(1))


def per_future(path, impl, case, n):
    return (instructions(path, impl, case, n, True)
            - instructions(path, impl, case, n, False)) / n


def main(argv):
    args = argv[1:]
    n = int(args.pop()) if args and args[-1].isdigit() else 20000
    builds = [a.split('=', 1) if '=' in a else [a, a] for a in args]
    if not builds:
        raise SystemExit(__doc__)
    print('Python %s, N=%d, instructions per future (callgrind, the call '
          'alone)\n' % (sys.version.split()[0], n))
    print('| case | stdlib | ' + ' | '.join(b[0] for b in builds) + ' | '
          + ' | '.join('stdlib / ' + b[0] for b in builds) + ' |')
    print('|---' * (2 + 2 * len(builds)) + '|')
    for case in CASES:
        std = per_future(builds[0][1], 'stdlib', case, n)
        ours = [per_future(path, 'cfutures', case, n) for _, path in builds]
        print('| %s | %.0f | %s | %s |' % (
            case, std, ' | '.join('%.0f' % o for o in ours),
            ' | '.join('%.1fx' % (std / o) for o in ours)), flush=True)
    print('\nFloors: the loop sum(1 for _ in fs) %.0f, set(fs) %.0f '
          'instructions per future.' % tuple(
              per_future(builds[0][1], 'cfutures', case, n)
              for case in ('loop', 'set')))


if __name__ == '__main__':
    main(sys.argv)
