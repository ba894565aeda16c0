"""Puts cfutures in the place of concurrent.futures, for the conformance run.

Imported by a .pth file in the throwaway virtual environment that
run_conformance.py makes, so every interpreter the tests start (children
of assert_python_ok and of multiprocessing included, even with -I) has
the substitution. cfutures itself is imported first: it subclasses the
stdlib's classes, which must be the originals.
"""
import concurrent.futures as _futures
import concurrent.futures._base as _base
import concurrent.futures.process as _process
import concurrent.futures.thread as _thread

import cfutures

_futures.Future = _base.Future = cfutures.Future
_futures.wait = _base.wait = cfutures.wait
_futures.as_completed = _base.as_completed = cfutures.as_completed
_futures.ThreadPoolExecutor = _thread.ThreadPoolExecutor = (
    cfutures.ThreadPoolExecutor)
_futures.ProcessPoolExecutor = _process.ProcessPoolExecutor = (
    cfutures.ProcessPoolExecutor)
