"""cfutures.ThreadPoolExecutor: submit, map, shutdown, names, errors."""
import concurrent.futures as stdlib
import gc
import math
import signal
import threading
import time
import traceback
import unittest
import weakref

import cfutures
from support import Latch, run_python, wait_until


def mul(x, y):
    return x * y


class SubmitTest(unittest.TestCase):
    def setUp(self):
        self.ex = cfutures.ThreadPoolExecutor(max_workers=4)

    def tearDown(self):
        self.ex.shutdown(wait=True)

    def test_is_an_instance_of_the_stdlib_executor(self):
        self.assertIsInstance(self.ex, stdlib.ThreadPoolExecutor)
        self.assertIsInstance(self.ex, stdlib.Executor)

    def test_submit_positional_and_keyword_arguments(self):
        self.assertEqual(self.ex.submit(mul, 6, y=7).result(), 42)
        f = self.ex.submit(lambda *a, **k: (a, k), 1, fn=2, self=3)
        self.assertEqual(f.result(), ((1,), {'fn': 2, 'self': 3}))

    def test_submit_without_fn_is_a_type_error(self):
        self.assertRaises(TypeError, self.ex.submit)
        self.assertRaises(TypeError, self.ex.submit, fn=abs)

    def test_non_callable_fails_the_future_with_type_error(self):
        f = self.ex.submit(42)
        self.assertRaises(TypeError, f.result)

    def test_exception_lands_on_the_future_with_its_traceback(self):
        def boom():
            raise ValueError('boom')
        f = self.ex.submit(boom)
        try:
            f.result()
        except ValueError as e:
            names = [frame.name for frame in
                     traceback.extract_tb(e.__traceback__)]
        self.assertIn('boom', names)

    def test_base_exception_lands_on_the_future(self):
        def leave():
            raise SystemExit(3)
        self.assertIsInstance(self.ex.submit(leave).exception(), SystemExit)

    def test_thread_names_are_the_stdlibs(self):
        name = self.ex.submit(lambda: threading.current_thread().name)
        self.assertRegex(name.result(), r'^ThreadPoolExecutor-\d+_0$')
        with cfutures.ThreadPoolExecutor(1, 'Special') as ex:
            name = ex.submit(lambda: threading.current_thread().name)
            self.assertEqual(name.result(), 'Special_0')

    def test_one_thread_state_per_worker_for_its_life(self):
        with cfutures.ThreadPoolExecutor(1) as ex:
            local = threading.local()

            def count():
                local.n = getattr(local, 'n', 0) + 1
                return local.n
            self.assertEqual([ex.submit(count).result() for _ in range(5)],
                             [1, 2, 3, 4, 5])

    def test_fn_and_args_are_dropped_when_the_call_ends(self):
        class Arg:
            pass
        arg = Arg()
        ref = weakref.ref(arg)
        gate = threading.Event()
        f = self.ex.submit(lambda a: gate.wait(30), arg)
        del arg
        self.assertIsNotNone(ref())
        gate.set()
        f.result()
        self.assertTrue(wait_until(lambda: ref() is None))
        self.assertTrue(f.done())

    def test_dropped_future_still_runs(self):
        ran = Latch()
        self.ex.submit(ran.count_down)
        gc.collect()
        self.assertTrue(ran.wait())

    def test_submit_after_shutdown_is_a_runtime_error(self):
        self.ex.shutdown()
        with self.assertRaisesRegex(RuntimeError, 'after shutdown'):
            self.ex.submit(abs, 1)

    def test_max_workers_must_be_positive(self):
        for n in (0, -1):
            with self.assertRaisesRegex(ValueError, 'greater than 0'):
                cfutures.ThreadPoolExecutor(max_workers=n)
        self.assertRaises(TypeError, cfutures.ThreadPoolExecutor, 'many')

    def test_initializer_must_be_callable(self):
        with self.assertRaisesRegex(TypeError, 'initializer must be'):
            cfutures.ThreadPoolExecutor(initializer=3)

    def test_idle_thread_is_reused(self):
        with cfutures.ThreadPoolExecutor(4) as ex:
            idents = {ex.submit(threading.get_ident).result()
                      for _ in range(20)}
        self.assertEqual(len(idents), 1)

    def test_threads_are_listed_and_joinable(self):
        ex = cfutures.ThreadPoolExecutor(3, 'Listed')
        gate = Latch(3)
        for _ in range(3):
            ex.submit(lambda: (gate.count_down(), gate.wait()))
        threads = ex._threads
        self.assertEqual(sorted(t.name for t in threads),
                         ['Listed_0', 'Listed_1', 'Listed_2'])
        self.assertTrue(all(t.is_alive() for t in threads))
        ex.shutdown(wait=False)
        del ex
        for t in threads:
            t.join(timeout=30)
            self.assertFalse(t.is_alive())

    def test_each_call_runs_once_or_is_cancelled(self):
        seen = []
        with cfutures.ThreadPoolExecutor(3) as ex:
            fs = [ex.submit(seen.append, i) for i in range(20000)]
            for f in fs[::7]:
                f.cancel()
        ran = set(seen)
        self.assertEqual(len(ran), len(seen))
        cancelled = {i for i, f in enumerate(fs) if f.cancelled()}
        self.assertEqual(ran | cancelled, set(range(20000)))
        self.assertFalse(ran & cancelled)
        self.assertTrue(all(f.done() for f in fs))

    def test_burst_runs_concurrently(self):
        gate = Latch(4)

        def meet():
            gate.count_down()
            return gate.wait(30)
        fs = [self.ex.submit(meet) for _ in range(4)]
        self.assertEqual([f.result() for f in fs], [True] * 4)


class InitializerTest(unittest.TestCase):
    def test_initializer_runs_once_per_thread(self):
        calls = []
        with cfutures.ThreadPoolExecutor(1, initializer=calls.append,
                                         initargs=('x',)) as ex:
            for _ in range(3):
                ex.submit(abs, 1).result()
        self.assertEqual(calls, ['x'])

    def test_submit_does_not_wait_for_the_initializer(self):
        # The initializer blocks until the gate opens, which happens only
        # after submit() returned: a submit that waited for it would hang
        # (no wall-clock bound: that failed on a loaded machine).
        gate = threading.Event()
        ex = cfutures.ThreadPoolExecutor(1, initializer=gate.wait)
        submitted = []
        t = threading.Thread(target=lambda: submitted.append(
            ex.submit(abs, -1)))
        t.start()
        t.join(60)
        self.assertFalse(t.is_alive())
        f, = submitted
        self.assertFalse(f.done())
        gate.set()
        self.assertEqual(f.result(), 1)
        ex.shutdown()

    def test_failing_initializer_breaks_the_pool(self):
        def fail():
            raise ValueError('init failed')
        ex = cfutures.ThreadPoolExecutor(2, initializer=fail)
        with self.assertLogs('concurrent.futures', 'CRITICAL') as cm:
            f = ex.submit(abs, 1)
            self.assertRaises(cfutures.BrokenThreadPool, f.result)
        self.assertIn('ValueError: init failed', cm.output[0])
        self.assertTrue(ex._broken)
        self.assertRaises(cfutures.BrokenExecutor, ex.submit, abs, 1)
        ex.shutdown()


class MapTest(unittest.TestCase):
    def setUp(self):
        self.ex = cfutures.ThreadPoolExecutor(max_workers=3)

    def tearDown(self):
        self.ex.shutdown(wait=True)

    def test_results_in_input_order(self):
        self.assertEqual(list(self.ex.map(pow, range(50), range(50))),
                         [pow(i, i) for i in range(50)])

    def test_chunksize_is_accepted(self):
        self.assertEqual(list(self.ex.map(abs, [-1, -2], chunksize=7)),
                         [1, 2])

    def test_error_ends_the_iteration_and_cancels_the_rest(self):
        gate = threading.Event()
        it = self.ex.map(lambda x: 1 // x if x else gate.wait(30),
                         [1, 0] + [0] * 20)
        self.assertEqual(next(it), 1)
        gate.set()
        self.assertEqual(next(it), True)

    def test_exception_raises_at_its_position(self):
        it = self.ex.map(divmod, [1, 1, 1], [2, 0, 5])
        self.assertEqual(next(it), (0, 1))
        self.assertRaises(ZeroDivisionError, next, it)
        self.assertRaises(StopIteration, next, it)

    def test_timeout(self):
        gate = threading.Event()
        it = self.ex.map(lambda x: gate.wait(30) if x else x, [0, 1],
                         timeout=0.05)
        self.assertEqual(next(it), 0)
        self.assertRaises(cfutures.TimeoutError, next, it)
        gate.set()

    def test_nan_timeout_is_a_value_error(self):
        self.assertRaises(ValueError, self.ex.map, abs, [1],
                          timeout=math.nan)

    def test_buffersize_bounds_the_calls_in_flight(self):
        submitted = []

        def numbers():
            for i in range(1000):
                submitted.append(i)
                yield i
        it = self.ex.map(abs, numbers(), buffersize=4)
        self.assertEqual(len(submitted), 4)
        self.assertEqual(next(it), 0)
        self.assertLessEqual(len(submitted), 6)
        self.assertEqual(sum(it), sum(range(1, 1000)))

    def test_buffersize_on_an_endless_input(self):
        import itertools
        it = self.ex.map(abs, itertools.count(), buffersize=2)
        self.assertEqual([next(it) for _ in range(100)], list(range(100)))
        it.close()

    def test_bad_buffersize(self):
        for bad in ('x', 2.0):
            self.assertRaisesRegex(TypeError, 'buffersize must be an integer',
                                   self.ex.map, abs, [1], buffersize=bad)
        for bad in (0, -1):
            self.assertRaisesRegex(ValueError, 'buffersize must be None or',
                                   self.ex.map, abs, [1], buffersize=bad)

    def test_close_cancels_calls_not_started(self):
        with cfutures.ThreadPoolExecutor(1) as ex:
            gate = threading.Event()
            ran = []
            it = ex.map(lambda x: ran.append(x) or x == 0 or gate.wait(30),
                        range(5))
            self.assertTrue(next(it))
            self.assertTrue(wait_until(lambda: len(ran) == 2))
            it.close()  # call 1 runs; 2, 3 and 4 are cancelled
            gate.set()
        self.assertEqual(ran, [0, 1])

    def test_unstarted_iterator_keeps_its_calls(self):
        done = []
        self.ex.map(done.append, range(10))
        self.ex.shutdown(wait=True)
        self.assertEqual(sorted(done), list(range(10)))

    def test_yielded_results_are_not_kept(self):
        class Obj:
            pass
        for obj in self.ex.map(lambda _: Obj(), range(5)):
            ref = weakref.ref(obj)
            del obj
            self.assertIsNone(ref())


class ShutdownTest(unittest.TestCase):
    def test_wait_finishes_queued_work(self):
        ex = cfutures.ThreadPoolExecutor(2)
        fs = [ex.submit(time.sleep, 0.001) for _ in range(50)]
        ex.shutdown(wait=True)
        self.assertTrue(all(f.done() and f.exception() is None for f in fs))

    def test_cancel_futures_cancels_queued_work(self):
        ex = cfutures.ThreadPoolExecutor(1)
        gate = threading.Event()
        first = ex.submit(gate.wait, 30)
        rest = [ex.submit(abs, i) for i in range(20)]
        self.assertTrue(wait_until(first.running))
        ex.shutdown(wait=False, cancel_futures=True)
        self.assertTrue(all(f.cancelled() for f in rest))
        gate.set()
        ex.shutdown(wait=True)
        self.assertTrue(first.result())

    def test_shutdown_from_own_task_raises(self):
        ex = cfutures.ThreadPoolExecutor(1)
        f = ex.submit(lambda: ex.shutdown(wait=True))
        self.assertRaisesRegex(RuntimeError, 'cannot join current thread',
                               f.result)
        ex.shutdown()

    def test_dropped_executor_finishes_its_work(self):
        done = Latch(5)
        ex = cfutures.ThreadPoolExecutor(2)
        for _ in range(5):
            ex.submit(done.count_down)
        del ex
        gc.collect()
        self.assertTrue(done.wait())

    def test_context_manager_waits(self):
        with cfutures.ThreadPoolExecutor(2) as ex:
            f = ex.submit(time.sleep, 0.01)
        self.assertTrue(f.done())

    def test_workers_leave_no_dummy_threads(self):
        # New threads only: one of an earlier test may end meanwhile.
        before = set(threading.enumerate())
        with cfutures.ThreadPoolExecutor(3) as ex:
            list(ex.map(time.sleep, [0.01] * 6))
        self.assertEqual(set(threading.enumerate()) - before, set())


class InterpreterExitTest(unittest.TestCase):
    def test_queued_work_finishes_at_exit(self):
        r = run_python(
            "import cfutures, time\n"
            "ex = cfutures.ThreadPoolExecutor(1)\n"
            "ex.submit(time.sleep, 0.2)\n"
            "ex.submit(print, 'apple', flush=True)\n")
        self.assertEqual((r.returncode, r.stdout.strip(), r.stderr),
                         (0, 'apple', ''))

    def test_shutdown_without_wait_still_finishes_at_exit(self):
        r = run_python(
            "import cfutures, time\n"
            "ex = cfutures.ThreadPoolExecutor(3)\n"
            "ex.submit(lambda: time.sleep(0.2) or print('apple'))\n"
            "ex.shutdown(wait=False)\n")
        self.assertEqual((r.returncode, r.stdout.strip(), r.stderr),
                         (0, 'apple', ''))

    def test_submit_after_interpreter_shutdown(self):
        r = run_python(
            "import atexit, cfutures\n"
            "@atexit.register\n"
            "def last():\n"
            "    try:\n"
            "        ex.submit(id, None)\n"
            "    except RuntimeError as e:\n"
            "        print(e)\n"
            "ex = cfutures.ThreadPoolExecutor(2)\n"
            "ex.submit(id, 1).result()\n")
        self.assertIn('after interpreter shutdown', r.stdout)

    @unittest.skipUnless(hasattr(signal, 'SIGINT'), 'needs SIGINT')
    def test_ctrl_c_interrupts_result_in_the_main_thread(self):
        r = run_python(
            "import cfutures, os, signal, threading, time\n"
            "ex = cfutures.ThreadPoolExecutor(1)\n"
            "gate = threading.Event()\n"
            "f = ex.submit(gate.wait)\n"
            "threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))"
            ".start()\n"
            "t0 = time.monotonic()\n"
            "try:\n"
            "    f.result()\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted', time.monotonic() - t0 < 5)\n"
            "gate.set()\n")
        self.assertEqual(r.stdout.strip(), 'interrupted True', r.stderr)


if __name__ == '__main__':
    unittest.main()
