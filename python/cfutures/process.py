"""ProcessPoolExecutor on the cfutures C core (cfutures.process).

submit(), the pool, its manager and the worker loop are C; this module
validates the constructor's arguments exactly as the stdlib does and
starts workers: through the multiprocessing context (fork, forkserver,
spawn; the stdlib's default context when none is given) or, with
``mp_context=cfutures.process.NATIVE``, as the cfutures-native worker
program (``python -c ...cfutures._worker...``: no multiprocessing machinery
on either side, safe in a multithreaded parent, faster to start than
spawn).
"""
import base64
import functools
import itertools
import multiprocessing as mp
import os
import pickle
import subprocess
import sys
import threading
import traceback
from concurrent.futures import _base
from concurrent.futures import process as _process
from concurrent.futures.process import (  # noqa: F401
    BrokenProcessPool,
    _chain_from_iterable_of_lists,
    _ExceptionWithTraceback,
    _RemoteTraceback,
)
from multiprocessing import reduction
from multiprocessing import spawn as _mp_spawn

from cfutures import _cfutures

__all__ = ('ProcessPoolExecutor', 'BrokenProcessPool', 'NATIVE')

_cpu_count = getattr(os, 'process_cpu_count', os.cpu_count)

# Queued work finishes and workers end before the interpreter is torn
# down (the stdlib's process.py registers its own _python_exit the same
# way). Registered once by thread.py for both pools.


class _NativeContext:
    """The cfutures-native start method: workers run the interpreter on
    cfutures._worker, started by the C core (fork + exec)."""

    def get_start_method(self, allow_none=False):
        return 'cfutures'

    def __repr__(self):
        return 'cfutures.process.NATIVE'


NATIVE = _NativeContext()


# ---------------------------------------------------------------------------
# In the workers

def _run_initializer(initializer, initargs):
    try:
        initializer(*initargs)
        return True
    except BaseException:
        _base.LOGGER.critical('Exception in initializer:', exc_info=True)
        # The parent breaks the pool as soon as this returns: flush what
        # multiprocessing still buffers (a logging QueueHandler's queue)
        # first, as the stdlib's worker does by exiting.
        if mp.parent_process() is not None:
            from multiprocessing import util
            util._exit_function()
        return False


def _run_pickled_initializer(blob):
    try:
        initializer, initargs = pickle.loads(blob)
    except BaseException:
        _base.LOGGER.critical('Exception in initializer:', exc_info=True)
        return False
    return _run_initializer(initializer, initargs)


def _pack_exception(exc, unpickling):
    """The pickled outcome of a call that raised (C: remote.c)."""
    if unpickling:
        return pickle.dumps(''.join(
            traceback.format_exception(type(exc), exc, exc.__traceback__)))
    try:
        return pickle.dumps(_ExceptionWithTraceback(exc, exc.__traceback__))
    except BaseException as e:  # the exception itself cannot be pickled
        return pickle.dumps(_ExceptionWithTraceback(e, e.__traceback__))


class _Fd:
    """A descriptor for a child: inherited across fork, duplicated into
    the child by multiprocessing's spawning popen otherwise."""
    __slots__ = ('fd',)

    def __init__(self, fd):
        self.fd = fd

    def __reduce__(self):
        return _rebuild_fd, (reduction.DupFd(self.fd),)


def _rebuild_fd(dup):
    return dup.detach()


def _mp_worker(read_fd, write_fd, shm_fd, slot, initializer, initargs):
    """The target of a worker Process: serves the pool until it lets go."""
    fds = [x.fd if isinstance(x, _Fd) else x
           for x in (read_fd, write_fd, shm_fd)]
    init = (functools.partial(_run_initializer, initializer, initargs)
            if initializer is not None else None)
    status = _cfutures._serve(fds[0], fds[1], fds[2], slot, init)
    if status:
        sys.exit(status)


# ---------------------------------------------------------------------------
# In the parent

def _pickling_failed(exc):
    """A call that cannot be pickled: its future gets the error, with the
    traceback as cause, as the stdlib's queue feeder reports it."""
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    exc.__cause__ = _RemoteTraceback('\n"""\n{}"""'.format(''.join(tb)))
    return exc


class _Launcher:
    """Starts and reaps workers through a multiprocessing context; called
    by the core pool's manager thread with the GIL (procpool.c)."""

    def __init__(self, ctx, initializer, initargs):
        self.ctx = ctx
        self.initializer = initializer
        self.initargs = initargs
        self.processes = {}

    def start(self, read_fd, write_fd, shm_fd, slot):
        # One object per descriptor (a socket is both ends): pickled once,
        # passed to the child once.
        fds = {fd: _Fd(fd) for fd in (read_fd, write_fd, shm_fd) if fd >= 0}
        try:
            p = self.ctx.Process(
                target=_mp_worker,
                args=(fds[read_fd], fds[write_fd], fds.get(shm_fd, -1), slot,
                      self.initializer, self.initargs))
            p.start()
        except BaseException:
            _base.LOGGER.critical('cfutures: cannot start a worker process',
                                  exc_info=True)
            return -1
        self.processes[p.pid] = p
        return p.pid

    def reap(self, pid):
        p = self.processes.pop(pid, None)
        if p is None:
            return None
        try:
            p.join(10)
        except BaseException:
            return None
        code = p.exitcode
        if code is None:
            return None
        # As waitpid() reports it.
        return -code if code < 0 else (code & 0xff) << 8


def _native_argv(initializer, initargs):
    prep = _mp_spawn.get_preparation_data('cfutures-worker')
    prep.pop('authkey', None)  # not for a command line; workers need none
    init = (pickle.dumps((initializer, initargs))
            if initializer is not None else None)
    blob = pickle.dumps((prep, init))
    code = ('import sys; sys.path[:0] = %r; '
            'from cfutures._worker import main; main(%r)'
            % (sys.path, base64.b64encode(blob).decode('ascii')))
    return [sys.executable,
            *subprocess._args_from_interpreter_flags(), '-c', code]


def _chunks(iterables, chunksize):
    """map()'s calls, `chunksize` at a time, each chunk the argument of
    one call: a list of the items with one iterable (no tuple per call
    to build, pickle and unpickle), else a tuple of argument tuples."""
    if len(iterables) == 1:
        it = iter(iterables[0])
        while chunk := list(itertools.islice(it, chunksize)):
            yield chunk
        return
    it = zip(*iterables)
    while chunk := tuple(itertools.islice(it, chunksize)):
        yield chunk


def _process_items(fn, items):
    return list(map(fn, items))


def _process_chunk(fn, chunk):
    return list(itertools.starmap(fn, chunk))


class ProcessPoolExecutor(_cfutures.ProcessPoolBase,
                          _process.ProcessPoolExecutor):
    """An Executor that runs each call in a pool of worker processes
    (C core)."""

    def __init__(self, max_workers=None, mp_context=None,
                 initializer=None, initargs=(), *, max_tasks_per_child=None,
                 survive_worker_death=False):
        if max_workers is None:
            max_workers = _cpu_count() or 1
        elif max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if mp_context is None:
            if max_tasks_per_child is not None:
                mp_context = mp.get_context("spawn")
            else:
                mp_context = mp.get_context()
        self._mp_context = mp_context
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._initializer = initializer
        self._initargs = initargs
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            elif max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
            if mp_context.get_start_method(allow_none=False) == "fork":
                # https://github.com/python/cpython/issues/90622
                raise ValueError("max_tasks_per_child is incompatible with"
                                 " the 'fork' multiprocessing start method;"
                                 " supply a different mp_context.")
        self._max_tasks_per_child = max_tasks_per_child
        self._max_workers = max_workers
        method = mp_context.get_start_method(allow_none=False)
        if mp_context is NATIVE:
            launcher, argv = None, _native_argv(initializer, initargs)
        else:
            launcher, argv = _Launcher(mp_context, initializer,
                                       initargs), None
            if method == 'forkserver':
                # Started here, by a thread with the usual signal mask.
                from multiprocessing import forkserver
                forkserver.ensure_running()
        self._cf_start(max_workers, launcher, argv,
                       max_tasks_per_child or 0, survive_worker_death)

    @property
    def _processes(self):
        """The worker processes alive (mp contexts: their Process
        objects, by pid), counting those the tasks submitted so far
        start, as the stdlib's submit() starts them."""
        pids = self._cf_pids()
        launcher = self._launcher
        if launcher is None:
            return {}
        processes = launcher.processes
        return {pid: processes[pid] for pid in pids if pid in processes}

    def map(self, fn, *iterables, timeout=None, chunksize=1,
            buffersize=None):
        """Returns an iterator equivalent to map(fn, iter), the calls
        sent to the workers in chunks of `chunksize`."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if chunksize == 1:
            return _cfutures._map(self, fn, *iterables, timeout=timeout,
                                  buffersize=buffersize)
        run = _process_items if len(iterables) == 1 else _process_chunk
        # One call per chunk, its result list's items yielded in turn.
        return _cfutures._map(self, functools.partial(run, fn),
                              _chunks(iterables, chunksize),
                              timeout=timeout, buffersize=buffersize,
                              _flatten=True)
