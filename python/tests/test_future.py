"""cfutures.Future: the stdlib's behaviour, states, callbacks, bad input."""
import concurrent.futures as stdlib
import logging
import math
import threading
import unittest

import cfutures
from cfutures._base import (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED,
                            PENDING, RUNNING)


class FutureIsTheStdlibsTest(unittest.TestCase):
    def test_is_an_instance_of_the_stdlib_future(self):
        f = cfutures.Future()
        self.assertIsInstance(f, stdlib.Future)
        self.assertIs(cfutures.CancelledError, stdlib.CancelledError)
        self.assertIs(cfutures.TimeoutError, stdlib.TimeoutError)
        self.assertIs(cfutures.InvalidStateError, stdlib.InvalidStateError)
        self.assertIs(cfutures.BrokenThreadPool,
                      stdlib.thread.BrokenThreadPool)

    def test_takes_no_arguments(self):
        with self.assertRaises(TypeError):
            cfutures.Future(1)

    def test_generic_alias(self):
        self.assertEqual(cfutures.Future[int].__origin__, cfutures.Future)

    def test_attributes_can_be_set(self):
        f = cfutures.Future()
        f.tag = 'x'  # as on the stdlib's, which has a __dict__
        self.assertEqual(f.tag, 'x')


class StatesTest(unittest.TestCase):
    def test_pending(self):
        f = cfutures.Future()
        self.assertEqual(f._state, PENDING)
        self.assertFalse(f.done() or f.running() or f.cancelled())
        self.assertRegex(repr(f), r'<Future at 0x[0-9a-f]+ state=pending>')

    def test_running(self):
        f = cfutures.Future()
        self.assertTrue(f.set_running_or_notify_cancel())
        self.assertTrue(f.running())
        self.assertEqual(f._state, RUNNING)
        self.assertFalse(f.cancel())

    def test_finished_with_result(self):
        f = cfutures.Future()
        f.set_result(42)
        self.assertEqual(f.result(), 42)
        self.assertIsNone(f.exception())
        self.assertEqual(f._state, FINISHED)
        self.assertRegex(repr(f), r'state=finished returned int>')

    def test_finished_with_exception(self):
        f = cfutures.Future()
        f.set_exception(OSError('no'))
        self.assertRaises(OSError, f.result)
        self.assertIsInstance(f.exception(), OSError)
        self.assertRegex(repr(f), r'state=finished raised OSError>')

    def test_set_twice_raises_invalid_state(self):
        f = cfutures.Future()
        f.set_result(1)
        with self.assertRaisesRegex(cfutures.InvalidStateError,
                                    'FINISHED: <Future at'):
            f.set_result(2)
        with self.assertRaises(cfutures.InvalidStateError):
            f.set_exception(ValueError())
        self.assertEqual(f.result(), 1)

    def test_set_result_after_cancel_raises_invalid_state(self):
        f = cfutures.Future()
        self.assertTrue(f.cancel())
        with self.assertRaisesRegex(cfutures.InvalidStateError, 'CANCELLED'):
            f.set_result(1)

    def test_bare_cancel_is_not_notified_until_set_running(self):
        f = cfutures.Future()
        self.assertTrue(f.cancel())
        self.assertEqual(f._state, CANCELLED)
        self.assertTrue(f.done())
        self.assertRaises(cfutures.CancelledError, f.result, 0)
        self.assertFalse(f.set_running_or_notify_cancel())
        self.assertEqual(f._state, CANCELLED_AND_NOTIFIED)

    def test_set_running_twice_raises_runtime_error(self):
        f = cfutures.Future()
        f.set_running_or_notify_cancel()
        with self.assertLogs('concurrent.futures', 'CRITICAL'):
            with self.assertRaises(RuntimeError):
                f.set_running_or_notify_cancel()

    def test_state_assignment_moves_forward_only(self):
        f = cfutures.Future()
        f._state = RUNNING
        f._exception = OSError()
        f._state = FINISHED
        self.assertIsInstance(f.exception(0), OSError)
        with self.assertRaises(ValueError):
            f._state = PENDING


def future_in(state):
    """A bare future moved to `state` through the public API."""
    f = cfutures.Future()
    if state == RUNNING:
        f.set_running_or_notify_cancel()
    elif state == CANCELLED:
        f.cancel()
    elif state == CANCELLED_AND_NOTIFIED:
        f.cancel()
        f.set_running_or_notify_cancel()
    elif state == 'RESULT':
        f.set_result(1)
    elif state == 'EXCEPTION':
        f.set_exception(KeyError('k'))
    return f


EVERY_STATE = [PENDING, RUNNING, CANCELLED, CANCELLED_AND_NOTIFIED,
               'RESULT', 'EXCEPTION']


class EveryStateTest(unittest.TestCase):
    """Every method in every state: the stdlib's answer, or its exception,
    never a crash."""

    def test_predicates(self):
        expect = {  # done, running, cancelled
            PENDING: (False, False, False),
            RUNNING: (False, True, False),
            CANCELLED: (True, False, True),
            CANCELLED_AND_NOTIFIED: (True, False, True),
            'RESULT': (True, False, False),
            'EXCEPTION': (True, False, False),
        }
        for state, want in expect.items():
            f = future_in(state)
            self.assertEqual((f.done(), f.running(), f.cancelled()), want,
                             state)

    def test_result_and_exception(self):
        for state in EVERY_STATE:
            f = future_in(state)
            if state in (PENDING, RUNNING):
                self.assertRaises(cfutures.TimeoutError, f.result, 0)
                self.assertRaises(cfutures.TimeoutError, f.exception, 0)
            elif state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                self.assertRaises(cfutures.CancelledError, f.result, 0)
                self.assertRaises(cfutures.CancelledError, f.exception, 0)
            elif state == 'RESULT':
                self.assertEqual((f.result(0), f.exception(0)), (1, None))
            else:
                self.assertRaises(KeyError, f.result, 0)
                self.assertIsInstance(f.exception(0), KeyError)

    def test_cancel(self):
        for state in EVERY_STATE:
            f = future_in(state)
            self.assertEqual(f.cancel(), state in (
                PENDING, CANCELLED, CANCELLED_AND_NOTIFIED), state)

    def test_set_result_and_set_exception(self):
        for state in EVERY_STATE:
            for setter, arg in (('set_result', 2), ('set_exception', OSError())):
                f = future_in(state)
                if state in (PENDING, RUNNING):
                    getattr(f, setter)(arg)
                    self.assertTrue(f.done())
                else:
                    self.assertRaises(cfutures.InvalidStateError,
                                      getattr(f, setter), arg)

    def test_set_running_or_notify_cancel(self):
        with self.assertLogs('concurrent.futures', 'CRITICAL'):
            for state in EVERY_STATE:
                f = future_in(state)
                if state == PENDING:
                    self.assertTrue(f.set_running_or_notify_cancel())
                elif state == CANCELLED:
                    self.assertFalse(f.set_running_or_notify_cancel())
                else:
                    self.assertRaises(RuntimeError,
                                      f.set_running_or_notify_cancel)

    def test_add_done_callback(self):
        for state in EVERY_STATE:
            f = future_in(state)
            seen = []
            f.add_done_callback(seen.append)
            self.assertEqual(seen, [] if state in (PENDING, RUNNING)
                             else [f], state)

    def test_wrong_argument_counts_are_type_errors(self):
        f = cfutures.Future()
        self.assertRaises(TypeError, f.set_result)
        self.assertRaises(TypeError, f.set_result, 1, 2)
        self.assertRaises(TypeError, f.set_exception)
        self.assertRaises(TypeError, f.add_done_callback)
        self.assertRaises(TypeError, f.result, 1, 2)
        self.assertRaises(TypeError, f.result, soon=1)
        self.assertRaises(TypeError, f.cancel, 1)

    def test_set_exception_with_a_non_exception(self):
        f = cfutures.Future()
        f.set_exception('not an exception')  # accepted, as by the stdlib
        self.assertRaises(TypeError, f.result)


class TimeoutTest(unittest.TestCase):
    def test_zero_and_negative_timeouts_poll(self):
        f = cfutures.Future()
        for t in (0, -1, -1e300, 0.0):
            self.assertRaises(cfutures.TimeoutError, f.result, t)
            self.assertRaises(cfutures.TimeoutError, f.exception, t)

    def test_nan_timeout_is_a_value_error(self):
        f = cfutures.Future()
        self.assertRaises(ValueError, f.result, math.nan)
        self.assertRaises(ValueError, f.exception, timeout=math.nan)

    def test_bad_timeout_type_is_a_type_error(self):
        f = cfutures.Future()
        self.assertRaises(TypeError, f.result, 'soon')
        self.assertRaises(TypeError, f.result, timeout=[])

    def test_huge_timeout_waits(self):
        f = cfutures.Future()
        t = threading.Timer(0.05, f.set_result, ('late',))
        t.start()
        self.assertEqual(f.result(1e300), 'late')
        t.join()

    def test_infinite_timeout_waits(self):
        f = cfutures.Future()
        t = threading.Timer(0.05, f.set_result, ('late',))
        t.start()
        self.assertEqual(f.result(math.inf), 'late')
        t.join()


class CallbackTest(unittest.TestCase):
    def test_callbacks_run_in_order_once(self):
        f = cfutures.Future()
        seen = []
        for i in range(3):
            f.add_done_callback(lambda fut, i=i: seen.append(i))
        f.set_result(None)
        self.assertEqual(seen, [0, 1, 2])

    def test_callback_added_after_done_runs_at_once(self):
        f = cfutures.Future()
        f.set_result(5)
        seen = []
        f.add_done_callback(lambda fut: seen.append(fut.result()))
        self.assertEqual(seen, [5])

    def test_callback_exception_is_logged_and_others_run(self):
        f = cfutures.Future()
        seen = []

        def bad(fut):
            raise ValueError('doh!')
        f.add_done_callback(bad)
        f.add_done_callback(lambda fut: seen.append(1))
        with self.assertLogs('concurrent.futures', logging.ERROR) as cm:
            f.set_result(None)
        self.assertEqual(seen, [1])
        self.assertIn('exception calling callback for', cm.output[0])
        self.assertIn('ValueError: doh!', cm.output[0])

    def test_cancel_runs_callbacks(self):
        f = cfutures.Future()
        seen = []
        f.add_done_callback(lambda fut: seen.append(fut.cancelled()))
        f.cancel()
        self.assertEqual(seen, [True])

    def test_callback_that_is_not_callable_is_logged(self):
        f = cfutures.Future()
        f.add_done_callback(42)
        with self.assertLogs('concurrent.futures', logging.ERROR):
            f.set_result(None)

    def test_base_exception_in_callback_propagates(self):
        f = cfutures.Future()

        def stop(fut):
            raise KeyboardInterrupt
        f.add_done_callback(stop)
        with self.assertRaises(KeyboardInterrupt):
            f.set_result(None)
        self.assertEqual(f.result(), None)


class ConcurrencyTest(unittest.TestCase):
    def test_result_wakes_when_another_thread_sets_it(self):
        f = cfutures.Future()
        t = threading.Thread(target=f.set_result, args=(7,))
        t.start()
        self.assertEqual(f.result(timeout=30), 7)
        t.join()

    def test_many_threads_wait_for_one_future(self):
        f = cfutures.Future()
        results = []
        threads = [threading.Thread(target=lambda: results.append(f.result()))
                   for _ in range(8)]
        for t in threads:
            t.start()
        f.set_result('x')
        for t in threads:
            t.join()
        self.assertEqual(results, ['x'] * 8)


if __name__ == '__main__':
    unittest.main()
