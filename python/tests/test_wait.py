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


class Probe(stdlib.Future):
    """A stdlib future whose first hash runs `action`: Python code in the
    middle of a wait() or as_completed() collecting its futures."""

    def __init__(self, action):
        super().__init__()
        self.action = action

    def __hash__(self):
        action, self.action = self.action, None
        if action:
            action()
        return object.__hash__(self)


class DistinctFuturesTest(unittest.TestCase):
    """Each distinct future counts once, as in set(fs): ours deduplicated
    by a per-call mark, foreign ones and subclasses by a set."""

    def test_repeats_of_every_kind_count_once(self):
        done_ours, late_ours, done_std, late_std = (
            cfutures.Future(), cfutures.Future(), stdlib.Future(),
            stdlib.Future())
        done_ours.set_result(1)
        done_std.set_result(2)
        fs = [done_ours, late_ours, done_std, late_std] * 3
        it = cfutures.as_completed(fs, timeout=30)
        late_ours.set_result(3)
        late_std.set_result(4)
        got = list(it)
        self.assertEqual(len(got), 4)
        self.assertEqual(set(got), set(fs))
        self.assertEqual(cfutures.wait(fs + fs), (set(fs), set()))
        for f in fs:
            self.assertEqual(f._waiters, [])

    def test_an_iterator_of_futures_is_read_once(self):
        a, b = cfutures.Future(), cfutures.Future()
        a.set_result(1)
        b.set_result(2)
        self.assertEqual(sorted(f.result() for f in cfutures.as_completed(
            iter([a, b, a, b]))), [1, 2])
        self.assertEqual(cfutures.wait(x for x in (b, a, b)).done, {a, b})

    def test_a_call_inside_a_hash_keeps_each_once(self):
        # A foreign future's __hash__ runs while the outer call collects:
        # the inner call must not take over the outer call's marks.
        a, b, c = (cfutures.Future() for _ in range(3))
        inner = []
        probe = Probe(lambda: inner.append((
            list(cfutures.as_completed([a, b, a, c, b])),
            cfutures.wait([c, a, c, b]).done)))
        for f in (a, b, c, probe):
            f.set_result(None)
        fs = [a, b, probe, a, c, b]
        self.assertEqual(len(list(cfutures.as_completed(fs))), 4)
        self.assertEqual(cfutures.wait(fs).done, {a, b, c, probe})
        self.assertEqual([(len(x), len(y)) for x, y in inner], [(3, 3)])

    def test_two_threads_collecting_the_same_futures(self):
        # Thread B first sees f while thread A still collects (A's mark on
        # f is in use), then again after A finished (A's mark is stale):
        # the second sight must still be known as a repeat.
        f = cfutures.Future()
        a_marked, b_saw, a_done = (threading.Event() for _ in range(3))

        def a_hash():
            a_marked.set()
            b_saw.wait(30)

        def b_hash():
            b_saw.set()
            a_done.wait(30)
        probe_a, probe_b = Probe(a_hash), Probe(b_hash)
        for x in (f, probe_a, probe_b):
            x.set_result(None)
        got = {}

        def run_a():
            it = cfutures.as_completed([f, probe_a, f])
            a_done.set()
            got['a'] = list(it)

        thread = threading.Thread(target=run_a)
        thread.start()
        a_marked.wait(30)
        got['b'] = list(cfutures.as_completed([f, probe_b, f]))
        thread.join()
        self.assertEqual(got, {'a': [f, probe_a], 'b': [f, probe_b]})

    def test_completed_between_its_repeats_counts_once(self):
        f = cfutures.Future()
        probe = Probe(lambda: f.set_result(1))
        probe.set_result(2)
        got = list(cfutures.as_completed([f, probe, f]))
        self.assertEqual((len(got), set(got)), (2, {f, probe}))
        g = cfutures.Future()
        probe = Probe(lambda: g.set_result(1))
        probe.set_result(2)
        self.assertEqual(cfutures.wait([g, probe, g], timeout=0),
                         ({g, probe}, set()))

    def test_equal_subclass_instances_count_once_as_in_a_set(self):
        class Same(cfutures.Future):
            def __eq__(self, other):
                return isinstance(other, Same)

            def __hash__(self):
                return 1
        fs = [Same(), Same()]
        for f in fs:
            f.set_result(None)
        self.assertEqual(len(stdlib.wait(fs).done), 1)
        self.assertEqual(len(cfutures.wait(fs).done), 1)
        self.assertEqual(len(list(cfutures.as_completed(fs))), 1)

    def test_bad_items_raise_what_set_raises(self):
        for fs in (3, [cfutures.Future(), []]):
            with self.assertRaises(TypeError) as ours:
                cfutures.wait(fs)
            with self.assertRaises(TypeError) as theirs:
                set(fs)
            self.assertEqual(str(ours.exception), str(theirs.exception))
            self.assertRaises(TypeError,
                              lambda: list(cfutures.as_completed(fs)))


if __name__ == '__main__':
    unittest.main()
