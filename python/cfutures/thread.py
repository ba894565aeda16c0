"""ThreadPoolExecutor on the cfutures C core (cfutures.thread).

The pool, submit(), the worker loop, map() and shutdown() are C; this
module only validates the constructor's arguments exactly as the stdlib
does and registers the interpreter-exit hook.
"""
import os
import threading
from concurrent.futures import thread as _thread
from concurrent.futures.thread import BrokenThreadPool  # noqa: F401

from cfutures import _cfutures

__all__ = ('ThreadPoolExecutor', 'BrokenThreadPool')

_cpu_count = getattr(os, 'process_cpu_count', os.cpu_count)

# Queued work finishes and worker threads end before the interpreter is
# torn down, as the stdlib's thread.py arranges with _python_exit.
threading._register_atexit(_cfutures._python_exit)


class ThreadPoolExecutor(_cfutures.ThreadPoolBase, _thread.ThreadPoolExecutor):
    """An Executor that runs each call on a pool of threads (C core)."""

    __slots__ = ()

    def __init__(self, max_workers=None, thread_name_prefix='',
                 initializer=None, initargs=()):
        if max_workers is None:
            max_workers = min(32, (_cpu_count() or 1) + 4)
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        prefix = (thread_name_prefix or
                  ("ThreadPoolExecutor-%d" % self._counter()))
        self._cf_start(max_workers, prefix, initializer, initargs)
