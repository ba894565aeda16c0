"""ProcessPoolExecutor (cfutures.process).

Phase 1 of the binding: the process pool is still the stdlib's own class,
so `cfutures.ProcessPoolExecutor` behaves exactly as before; its futures
mix with cfutures futures in cfutures.wait() and as_completed().
"""
from concurrent.futures.process import (  # noqa: F401
    BrokenProcessPool,
    ProcessPoolExecutor,
)

__all__ = ('ProcessPoolExecutor', 'BrokenProcessPool')
