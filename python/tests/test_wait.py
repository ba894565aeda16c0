"""wait() and as_completed(): ours, the stdlib's, and both mixed."""
import concurrent.futures as stdlib
import math
import threading
import unittest

import cfutures
import support


def futures_of_every_kind():
    """A bare future of each library."""
    return [cfutures.Future(), stdlib.Future()]


class WaitTest(unittest.TestCase):
    def test_all_completed_with_done_futures(self):
        fs = [cfutures.Future() for _ in range(100)]
        for f in fs:
            f.set_result(1)
        done, not_done = cfutures.wait(fs)
        self.assertEqual((done, not_done), (set(fs), set()))

    def test_timeout_returns_what_is_left(self):
        a, b = cfutures.Future(), cfutures.Future()
        a.set_result(1)
        done, not_done = cfutures.wait([a, b], timeout=0.01)
        self.assertEqual((done, not_done), ({a}, {b}))

    def test_first_completed_wakes_on_another_thread(self):
        a, b = cfutures.Future(), cfutures.Future()
        threading.Timer(0.02, b.set_result, (2,)).start()
        done, not_done = cfutures.wait([a, b],
                                       return_when=cfutures.FIRST_COMPLETED)
        self.assertEqual((done, not_done), ({b}, {a}))

    def test_first_exception(self):
        a, b, c = cfutures.Future(), cfutures.Future(), cfutures.Future()
        a.set_result(1)
        threading.Timer(0.02, b.set_exception, (ValueError(),)).start()
        done, not_done = cfutures.wait(
            [a, b, c], return_when=cfutures.FIRST_EXCEPTION)
        self.assertEqual((done, not_done), ({a, b}, {c}))

    def test_duplicates_count_once(self):
        a = cfutures.Future()
        a.set_result(1)
        done, not_done = cfutures.wait([a, a, a])
        self.assertEqual(done, {a})

    def test_bare_cancelled_counts_once_notified(self):
        a, b = cfutures.Future(), cfutures.Future()
        a.cancel()
        b.set_result(1)
        done, not_done = cfutures.wait(
            [a, b], return_when=cfutures.FIRST_COMPLETED)
        self.assertEqual((done, not_done), ({b}, {a}))
        a.set_running_or_notify_cancel()
        self.assertEqual(cfutures.wait([a], timeout=0).done, {a})

    def test_executor_future_is_done_when_cancelled(self):
        with cfutures.ThreadPoolExecutor(1) as ex:
            gate = threading.Event()
            ex.submit(gate.wait, 30)
            queued = ex.submit(abs, 1)
            self.assertTrue(queued.cancel())
            self.assertEqual(cfutures.wait([queued], timeout=0).done,
                             {queued})
            self.assertEqual(stdlib.wait([queued], timeout=0).done,
                             {queued})
            gate.set()

    def test_bad_arguments(self):
        f = cfutures.Future()
        self.assertRaises(ValueError, cfutures.wait, [f], timeout=math.nan)
        self.assertRaises(ValueError, cfutures.wait, [f], return_when='SOON')
        self.assertRaises(TypeError, cfutures.wait, 3)
        # As the stdlib: an object without the future protocol.
        self.assertRaises(AttributeError, cfutures.wait, [object()], 0)
        self.assertRaises(TypeError, cfutures.wait)

    def test_empty(self):
        self.assertEqual(cfutures.wait([]), (set(), set()))
        self.assertEqual(list(cfutures.as_completed([])), [])


class MixedTest(unittest.TestCase):
    """Stdlib futures in our wait, ours in the stdlib's, both at once."""

    def test_our_wait_on_stdlib_futures(self):
        fs = [stdlib.Future() for _ in range(3)]
        threading.Timer(0.02, fs[1].set_exception, (OSError(),)).start()
        done, not_done = cfutures.wait(
            fs, return_when=cfutures.FIRST_EXCEPTION)
        self.assertEqual(done, {fs[1]})
        for f in fs:
            self.assertEqual(f._waiters, [])

    def test_our_wait_on_mixed_futures_all_completed(self):
        fs = futures_of_every_kind() * 1 + futures_of_every_kind()
        for i, f in enumerate(fs):
            threading.Timer(0.01 * i, f.set_result, (i,)).start()
        done, not_done = cfutures.wait(fs, timeout=30)
        self.assertEqual((done, not_done), (set(fs), set()))

    def test_stdlib_wait_on_our_futures(self):
        with cfutures.ThreadPoolExecutor(2) as ex:
            gate = threading.Event()
            slow = ex.submit(gate.wait, 30)
            fast = ex.submit(abs, -1)
            done, not_done = stdlib.wait(
                [slow, fast], return_when=stdlib.FIRST_COMPLETED)
            self.assertEqual((done, not_done), ({fast}, {slow}))
            threading.Timer(0.02, gate.set).start()
            done, not_done = stdlib.wait([slow, fast])
            self.assertEqual(done, {slow, fast})

    def test_stdlib_as_completed_on_mixed_futures(self):
        fs = futures_of_every_kind() + futures_of_every_kind()
        for i, f in enumerate(fs):
            threading.Timer(0.01 * i, f.set_result, (i,)).start()
        self.assertEqual(set(stdlib.as_completed(fs, timeout=30)), set(fs))

    def test_our_as_completed_on_mixed_futures(self):
        fs = futures_of_every_kind() + futures_of_every_kind()
        fs[0].set_result(0)
        it = cfutures.as_completed(fs, timeout=30)
        for i, f in enumerate(fs[1:], 1):
            threading.Timer(0.01 * i, f.set_result, (i,)).start()
        got = list(it)
        self.assertEqual(got[0], fs[0])
        self.assertEqual(set(got), set(fs))
        for f in fs:
            self.assertEqual(f._waiters, [])

    def test_stdlib_wait_first_exception_on_ours(self):
        a, b = cfutures.Future(), cfutures.Future()
        threading.Timer(0.02, a.set_exception, (KeyError(),)).start()
        done, not_done = stdlib.wait([a, b],
                                     return_when=stdlib.FIRST_EXCEPTION)
        self.assertEqual((done, not_done), ({a}, {b}))


class AsCompletedTest(unittest.TestCase):
    def test_timeout_message(self):
        a, b = cfutures.Future(), cfutures.Future()
        a.set_result(1)
        it = cfutures.as_completed([a, b, b], timeout=0)
        self.assertIs(next(it), a)
        with self.assertRaisesRegex(cfutures.TimeoutError,
                                    r'^1 \(of 2\) futures unfinished$'):
            next(it)
        self.assertRaises(StopIteration, next, it)

    def test_completion_order(self):
        fs = [cfutures.Future() for _ in range(5)]
        order = [3, 1, 4, 0, 2]

        def complete():
            for i in order:
                fs[i].set_result(i)
        it = cfutures.as_completed(fs)
        threading.Thread(target=complete).start()
        self.assertEqual([f.result() for f in it], order)

    def test_second_thread_gets_already_executing(self):
        f = cfutures.Future()
        it = cfutures.as_completed([f])
        results = []

        def take():
            try:
                results.append(next(it))
            except ValueError as e:
                results.append(e)
        threads = [threading.Thread(target=take) for _ in range(2)]
        for t in threads:
            t.start()
        # Whichever calls next() second is refused at once; the other
        # waits for f.
        self.assertTrue(support.wait_until(lambda: len(results) == 1))
        self.assertIsInstance(results[0], ValueError)
        f.set_result(1)
        for t in threads:
            t.join()
        self.assertIs(results[1], f)

    def test_nan_timeout(self):
        self.assertRaises(ValueError, cfutures.as_completed,
                          [cfutures.Future()], math.nan)

    def test_dropping_the_iterator_removes_its_waiters(self):
        f = stdlib.Future()
        it = cfutures.as_completed([f, cfutures.Future()], timeout=0)
        self.assertEqual(len(f._waiters), 1)
        del it
        self.assertEqual(f._waiters, [])


if __name__ == '__main__':
    unittest.main()
