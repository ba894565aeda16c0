"""cfutures: concurrent.futures on the cfutures C core.

A drop-in replacement: change ``from concurrent import futures`` to
``import cfutures as futures``. Futures are real concurrent.futures.Future
instances, the exceptions are the stdlib's own classes, and the stdlib's
wait() and as_completed() accept cfutures futures (and the reverse).
"""
from concurrent.futures._base import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BrokenExecutor,
    CancelledError,
    Executor,
    InvalidStateError,
    TimeoutError,
)

from cfutures._base import Future, as_completed, wait
from cfutures.process import BrokenProcessPool, ProcessPoolExecutor
from cfutures.thread import BrokenThreadPool, ThreadPoolExecutor

__all__ = (
    'FIRST_COMPLETED',
    'FIRST_EXCEPTION',
    'ALL_COMPLETED',
    'CancelledError',
    'TimeoutError',
    'InvalidStateError',
    'BrokenExecutor',
    'BrokenThreadPool',
    'BrokenProcessPool',
    'Future',
    'Executor',
    'wait',
    'as_completed',
    'ProcessPoolExecutor',
    'ThreadPoolExecutor',
)
