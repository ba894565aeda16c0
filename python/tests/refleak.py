"""Reference-leak run of cfutures' Python tests, for a debug interpreter.

    python3.11-dbg refleak.py [ROUNDS]

Runs the tests of every test_*.py here (those that start child
interpreters excepted) ROUNDS times (default 7), the first three as
warm-up, and compares sys.gettotalrefcount() around each round, as
regrtest's -R does: a leak is a count that grows in every checked
round. Exits 1 on a leak or a failing test. Needs a --with-pydebug
build (Debian's python3.11-dbg).
"""
import gc
import io
import os
import sys
import unittest

WARMUP = 3
SKIP = ('InterpreterExitTest',  # children of their own; slow, unrelated
        'StressTest')           # random and long: no stable count


def suite():
    here = os.path.dirname(os.path.abspath(__file__))
    loader = unittest.TestLoader()
    tests = unittest.TestSuite()
    for case in loader.discover(here, pattern='test_*.py'):
        for group in case:
            for cls_suite in group:
                if not any(skip in str(cls_suite) for skip in SKIP):
                    tests.addTest(cls_suite)
    return tests


def main():
    if not hasattr(sys, 'gettotalrefcount'):
        sys.exit('refleak.py needs a debug interpreter (python3.11-dbg)')
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    deltas = []
    for i in range(rounds):
        gc.collect()
        before = sys.gettotalrefcount()
        tests = suite()
        result = unittest.TextTestRunner(stream=io.StringIO(),
                                         verbosity=0).run(tests)
        del tests
        gc.collect()
        if not result.wasSuccessful():
            for what, trace in result.failures + result.errors:
                print(what, trace, sep='\n')
            sys.exit('refleak.py: a test failed in round %d' % (i + 1))
        ran = result.testsRun
        del result
        gc.collect()
        delta = sys.gettotalrefcount() - before
        deltas.append(delta)
        print('round %d: %d tests, refcount delta %+d'
              % (i + 1, ran, delta), flush=True)
    checked = deltas[WARMUP:]
    if checked and all(d > 0 for d in checked):
        sys.exit('refleak.py: references leak: deltas %s' % checked)
    print('no reference leak: deltas after warm-up %s' % checked)


if __name__ == '__main__':
    main()
