"""The names of concurrent.futures._base that cfutures implements in C.

Everything else (the exception classes, the state constants, Executor)
is the stdlib's own object, re-exported so existing code matches on it.
"""
from concurrent.futures._base import *  # noqa: F401,F403
from concurrent.futures._base import (  # noqa: F401
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    LOGGER,
    PENDING,
    RUNNING,
    DoneAndNotDoneFutures,
)

from cfutures._cfutures import Future, as_completed, wait  # noqa: F401
