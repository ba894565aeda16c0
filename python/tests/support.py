"""Shared helpers of cfutures' Python tests (unittest, no third-party)."""
import os
import subprocess
import sys
import threading
import time

import cfutures

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def run_python(code, timeout=60, **kwargs):
    """Runs `code` in a child interpreter that imports the same cfutures;
    returns the CompletedProcess (text output)."""
    env = dict(os.environ)
    pkg = os.path.dirname(os.path.dirname(cfutures.__file__))
    env['PYTHONPATH'] = os.pathsep.join([pkg, TESTS_DIR])
    return subprocess.run([sys.executable, '-c', code], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          **kwargs)


class Latch:
    """Counts down; wait() returns once it reaches zero."""

    def __init__(self, n=1):
        self._n = n
        self._cond = threading.Condition()

    def count_down(self):
        with self._cond:
            self._n -= 1
            self._cond.notify_all()

    def wait(self, timeout=30):
        with self._cond:
            return self._cond.wait_for(lambda: self._n <= 0, timeout)


def wait_until(predicate, timeout=30):
    """Polls `predicate` until true or `timeout`; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return predicate()
        time.sleep(0.001)
    return True
