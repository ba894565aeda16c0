"""cfutures.ProcessPoolExecutor: every start method, pickling, errors,
broken pools, map, shutdown, terminate/kill."""
import concurrent.futures as stdlib
import gc
import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
import unittest

import cfutures
from cfutures.process import NATIVE, BrokenProcessPool
from support import run_python

CONTEXTS = {
    'native': NATIVE,
    'fork': mp.get_context('fork'),
    'forkserver': mp.get_context('forkserver'),
    'spawn': mp.get_context('spawn'),
}


def mul(x, y):
    return x * y


def boom(msg):
    raise ValueError(msg)


def die(code):
    os._exit(code)


def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def unpicklable_result():
    return lambda: None


def set_global(value):
    global GLOBAL
    GLOBAL = value


def get_global():
    return GLOBAL


def fail_init():
    raise RuntimeError('no start')


def boom_at(i):
    if i == 13:
        raise ValueError('item 13')
    return i


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


class ErrorAtPickle:
    def __reduce__(self):
        raise pickle.PicklingError('Error in pickle')


class Unpicklable:
    def __reduce__(self):
        raise TypeError('cannot pickle this')


class FailsInWorker:
    """Pickles in the parent, fails to unpickle in the worker."""
    def __reduce__(self):
        return (boom, ('unpickled in the worker',))


GLOBAL = None


class StartMethodsTest(unittest.TestCase):
    """What every start method must do; one pool per method."""

    def check(self, name):
        with cfutures.ProcessPoolExecutor(2, mp_context=CONTEXTS[name]) as ex:
            self.assertEqual(ex.submit(mul, 6, y=7).result(), 42)
            self.assertNotEqual(ex.submit(os.getpid).result(), os.getpid())
            self.assertEqual(list(ex.map(mul, range(5), range(5))),
                             [0, 1, 4, 9, 16])
            self.assertEqual(list(ex.map(mul, range(7), range(7),
                                         chunksize=3)),
                             [i * i for i in range(7)])
            f = ex.submit(boom, 'remote')
            with self.assertRaises(ValueError) as cm:
                f.result()
            cause = cm.exception.__cause__
            self.assertIsInstance(cause, cfutures.process._RemoteTraceback)
            self.assertIn("raise ValueError(msg)", str(cause))

    def test_native(self):
        self.check('native')

    def test_fork(self):
        self.check('fork')

    def test_forkserver(self):
        self.check('forkserver')

    def test_spawn(self):
        self.check('spawn')


class PoolTest(unittest.TestCase):
    ctx = NATIVE

    def setUp(self):
        self.ex = cfutures.ProcessPoolExecutor(2, mp_context=self.ctx)

    def tearDown(self):
        self.ex.shutdown(wait=True)

    def test_is_an_instance_of_the_stdlib_executor(self):
        self.assertIsInstance(self.ex, stdlib.ProcessPoolExecutor)
        self.assertIsInstance(self.ex.submit(abs, 1), stdlib.Future)

    def test_unpicklable_call_fails_its_future_not_submit(self):
        f = self.ex.submit(abs, Unpicklable())
        self.assertTrue(f.done())
        self.assertIsInstance(f.exception(), TypeError)
        self.assertIsInstance(f.exception().__cause__,
                              cfutures.process._RemoteTraceback)
        f = self.ex.submit(lambda: 1)
        self.assertIsInstance(f.exception(), (pickle.PicklingError,
                                              AttributeError))
        self.assertEqual(self.ex.submit(abs, -3).result(), 3)

    def test_unpicklable_result_fails_with_the_pickling_error(self):
        e = self.ex.submit(unpicklable_result).exception()
        self.assertIsInstance(e, (pickle.PicklingError, AttributeError))
        self.assertEqual(self.ex.submit(abs, -4).result(), 4)

    def test_call_failing_to_unpickle_in_the_worker_is_broken_process_pool(
            self):
        f = self.ex.submit(abs, FailsInWorker())
        with self.assertRaises(BrokenProcessPool) as cm:
            f.result()
        self.assertIn('unpickled in the worker', str(cm.exception.__cause__))
        self.assertEqual(self.ex.submit(abs, -5).result(), 5)

    def test_base_exception_is_returned(self):
        self.assertIsInstance(self.ex.submit(sys.exit, 3).exception(),
                              SystemExit)

    def test_non_callable_fails_the_future_with_type_error(self):
        self.assertIsInstance(self.ex.submit(42).exception(), TypeError)

    def test_wait_first_exception_sees_a_remote_exception(self):
        slow = self.ex.submit(sleep_then, 90, 1)
        bad = self.ex.submit(boom, 'first')
        t0 = time.monotonic()
        done, pending = cfutures.wait([slow, bad],
                                      return_when=cfutures.FIRST_EXCEPTION,
                                      timeout=60)
        self.assertEqual(done, {bad})
        self.assertLess(time.monotonic() - t0, 45)  # not by the timeout
        self.ex.shutdown(wait=False, cancel_futures=True)
        self.ex.terminate_workers()

    def test_done_callback_runs_with_the_result(self):
        seen = []
        f = self.ex.submit(mul, 3, 4)
        f.add_done_callback(lambda fut: seen.append(fut.result()))
        f.result()
        cfutures.wait([f])
        self.ex.shutdown(wait=True)
        self.assertEqual(seen, [12])

    def test_stdlib_wait_and_as_completed_accept_its_futures(self):
        fs = [self.ex.submit(mul, i, i) for i in range(6)]
        done, _ = stdlib.wait(fs, timeout=30)
        self.assertEqual(len(done), 6)
        self.assertEqual(sorted(f.result() for f in
                                stdlib.as_completed(fs, timeout=30)),
                         [i * i for i in range(6)])

    def test_map_chunks_of_one_iterable_yield_each_item(self):
        # One iterable: a chunk travels as a list of items (fn(item) in
        # the worker) and its result list is yielded item by item.
        self.assertEqual(list(self.ex.map(abs, range(-50, 0), chunksize=7)),
                         list(range(50, 0, -1)))
        self.assertEqual(list(self.ex.map(abs, [], chunksize=7)), [])
        it = self.ex.map(boom_at, range(20), chunksize=6)
        self.assertEqual([next(it) for _ in range(12)], list(range(12)))
        with self.assertRaisesRegex(ValueError, 'item 13'):
            next(it)  # its chunk (12-17) failed as a whole
        self.assertRaises(StopIteration, next, it)

    def test_map_buffersize_and_timeout_arguments(self):
        self.assertEqual(list(self.ex.map(abs, [-1, -2, -3], buffersize=1)),
                         [1, 2, 3])
        self.assertRaises(ValueError, self.ex.map, abs, [1], chunksize=0)
        it = self.ex.map(sleep_then, [30], [1], timeout=0.05)
        self.assertRaises(stdlib.TimeoutError, next, it)
        self.ex.terminate_workers()

    def test_submit_after_shutdown_is_runtime_error(self):
        self.ex.shutdown()
        with self.assertRaisesRegex(RuntimeError, 'after shutdown'):
            self.ex.submit(abs, 1)

    def test_shutdown_cancel_futures_cancels_queued_work(self):
        # 40 calls of 1 s on 2 workers: more than half are still queued
        # for 10 s, however slow the submitting (a loaded machine, a debug
        # interpreter); shutdown waits only for the 2 running.
        fs = [self.ex.submit(sleep_then, 1, i) for i in range(40)]
        self.ex.shutdown(wait=True, cancel_futures=True)
        cancelled = [f for f in fs if f.cancelled()]
        self.assertGreater(len(cancelled), 20)
        for f in fs:
            self.assertTrue(f.done())

    # The public part of three CPython tests that read private attributes
    # of the stdlib's pool (CONFORMANCE.md): test_del_shutdown,
    # test_shutdown_no_wait, test_shutdown_deadlock_pickle.
    def test_dropped_executor_finishes_its_map(self):
        ex = cfutures.ProcessPoolExecutor(2, mp_context=self.ctx)
        res = ex.map(abs, range(-5, 5))
        processes = ex._processes
        del ex
        gc.collect()
        for p in processes.values():
            p.join()
        self.assertEqual(list(res), [abs(v) for v in range(-5, 5)])

    def test_shutdown_without_wait_finishes_its_map(self):
        ex = cfutures.ProcessPoolExecutor(2, mp_context=self.ctx)
        res = ex.map(abs, range(-5, 5))
        ex.shutdown(wait=False)
        self.assertEqual(list(res), [abs(v) for v in range(-5, 5)])
        ex.shutdown(wait=True)

    def test_pickling_error_after_shutdown_without_wait(self):
        self.assertEqual(self.ex.submit(abs, -42).result(), 42)
        f = self.ex.submit(id, ErrorAtPickle())
        self.ex.shutdown(wait=False)
        with self.assertRaisesRegex(pickle.PicklingError, 'Error in pickle'):
            f.result()

    def test_terminate_workers_ends_running_calls(self):
        f = self.ex.submit(sleep_then, 60, 1)
        while not f.running():
            time.sleep(0.01)
        t0 = time.monotonic()
        self.ex.terminate_workers()
        self.assertLess(time.monotonic() - t0, 30)
        self.assertRaises(BrokenProcessPool, f.result)

    def test_kill_workers_ends_running_calls(self):
        f = self.ex.submit(sleep_then, 60, 1)
        while not f.running():
            time.sleep(0.01)
        self.ex.kill_workers()
        self.assertRaises(BrokenProcessPool, f.result)


class ForkPoolTest(PoolTest):
    ctx = mp.get_context('fork')


class BrokenPoolTest(unittest.TestCase):
    def check_broken(self, ctx, fn, *args, expect=''):
        ex = cfutures.ProcessPoolExecutor(2, mp_context=ctx)
        try:
            f = ex.submit(fn, *args)
            with self.assertRaises(BrokenProcessPool) as cm:
                f.result(timeout=60)
            self.assertIn(expect, str(cm.exception))
            self.assertIn('worker process', ex._broken)
            with self.assertRaisesRegex(BrokenProcessPool, 'not usable'):
                ex.submit(abs, 1)
        finally:
            ex.shutdown(wait=True)

    def test_worker_exit_breaks_the_pool_naming_pid_status_and_call(self):
        self.check_broken(NATIVE, die, 7, expect='exit')
        self.check_broken(NATIVE, die, 7, expect='the call: die')

    def test_worker_killed_by_signal_breaks_the_pool(self):
        self.check_broken(NATIVE, kill_self, expect='signal')

    def test_fork_worker_death_breaks_the_pool(self):
        self.check_broken(CONTEXTS['fork'], die, 3, expect='worker process')

    def test_survive_worker_death_keeps_the_pool(self):
        with cfutures.ProcessPoolExecutor(
                2, mp_context=NATIVE, survive_worker_death=True) as ex:
            self.assertRaises(BrokenProcessPool,
                              ex.submit(die, 9).result, 60)
            self.assertEqual(ex.submit(abs, -2).result(timeout=60), 2)


class InitializerTest(unittest.TestCase):
    def test_initializer_runs_in_each_worker(self):
        for name in ('native', 'fork', 'spawn'):
            with cfutures.ProcessPoolExecutor(
                    1, mp_context=CONTEXTS[name], initializer=set_global,
                    initargs=(name,)) as ex:
                self.assertEqual(ex.submit(get_global).result(), name)

    def test_failing_initializer_breaks_the_pool(self):
        for name in ('native', 'fork'):
            ex = cfutures.ProcessPoolExecutor(
                1, mp_context=CONTEXTS[name], initializer=fail_init)
            try:
                f = ex.submit(abs, 1)
                self.assertRaises(BrokenProcessPool, f.result, 60)
            finally:
                ex.shutdown(wait=True)

    def test_max_tasks_per_child_replaces_workers(self):
        with cfutures.ProcessPoolExecutor(
                1, mp_context=NATIVE, max_tasks_per_child=2) as ex:
            pids = [ex.submit(os.getpid).result() for _ in range(4)]
        self.assertEqual(pids[0], pids[1])
        self.assertEqual(pids[2], pids[3])
        self.assertNotEqual(pids[0], pids[2])


class ArgumentsTest(unittest.TestCase):
    def test_bad_arguments_are_the_stdlibs_errors(self):
        PPE = cfutures.ProcessPoolExecutor
        self.assertRaisesRegex(ValueError, 'greater than 0', PPE, 0)
        self.assertRaisesRegex(ValueError, 'greater than 0', PPE, -1)
        self.assertRaisesRegex(TypeError, 'callable', PPE, 1,
                               initializer=42)
        self.assertRaisesRegex(ValueError, '>= 1', PPE, 1,
                               max_tasks_per_child=0)
        self.assertRaisesRegex(TypeError, 'integer', PPE, 1,
                               max_tasks_per_child=1.5)
        self.assertRaisesRegex(ValueError, 'fork', PPE, 1,
                               mp_context=CONTEXTS['fork'],
                               max_tasks_per_child=1)

    def test_default_context_is_the_stdlibs(self):
        ex = cfutures.ProcessPoolExecutor(1)
        try:
            self.assertEqual(ex._mp_context.get_start_method(),
                             mp.get_context().get_start_method())
        finally:
            ex.shutdown()


class InterpreterExitTest(unittest.TestCase):
    def test_queued_work_finishes_at_exit(self):
        code = ('import cfutures, time\n'
                'from cfutures.process import NATIVE\n'
                'ex = cfutures.ProcessPoolExecutor(1, mp_context=NATIVE)\n'
                'fs = [ex.submit(pow, 2, i) for i in range(5)]\n'
                'fs[-1].add_done_callback(lambda f: print(f.result()))\n')
        r = run_python(code)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), '16')


if __name__ == '__main__':
    unittest.main()
