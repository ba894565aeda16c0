"""Random mixes of submit, cancel, callbacks, waits, map and shutdown on
several threads at once, ours and the stdlib's futures mixed: no crash,
no hang, no exception but the documented ones. (It found two threads
freeing the same dropped executor's pool.) CF_TEST_SCALE scales the time.
"""
import concurrent.futures as std
import gc
import os
import random
import threading
import time
import unittest

import cfutures

SECONDS = 4 * float(os.environ.get('CF_TEST_SCALE', '1'))


def work(x):
    if x % 7 == 0:
        raise ValueError(x)
    if x % 5 == 0:
        time.sleep(0.0005)
    return x


def run(seed, seconds):
    rnd = random.Random(seed)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        ex = cfutures.ThreadPoolExecutor(rnd.randint(1, 4))
        fs = [ex.submit(work, i) for i in range(rnd.randint(0, 200))]
        bare = [cfutures.Future() for _ in range(rnd.randint(0, 5))] + [std.Future() for _ in range(rnd.randint(0, 3))]
        for f in bare:
            f.add_done_callback(lambda f: None)
        def finisher():
            for f in bare:
                r = rnd.random()
                try:
                    if r < 0.3: f.cancel(); f.set_running_or_notify_cancel()
                    elif r < 0.6: f.set_result(1)
                    else: f.set_exception(KeyError())
                except Exception:
                    pass
        t = threading.Thread(target=finisher); t.start()
        for f in rnd.sample(fs, len(fs) // 3):
            f.cancel()
        for f in rnd.sample(fs, len(fs) // 10):  # as executor authors may
            try:
                f.set_result(0)
            except std.InvalidStateError:
                pass
        op = rnd.randrange(5)
        try:
            if op == 0:
                list(cfutures.as_completed(fs + bare, timeout=rnd.choice([0, 0.01, None])))
            elif op == 1:
                cfutures.wait(fs + bare, timeout=rnd.choice([0, 0.01, None]), return_when=rnd.choice([cfutures.ALL_COMPLETED, cfutures.FIRST_COMPLETED, cfutures.FIRST_EXCEPTION]))
            elif op == 2:
                std.wait(fs, timeout=0.01)
            elif op == 3:
                it = ex.map(work, range(50), timeout=rnd.choice([None, 0.005]), buffersize=rnd.choice([None, 3]))
                for _ in range(rnd.randint(0, 50)):
                    next(it)
            else:
                for f in fs[:20]:
                    try: f.result(timeout=rnd.choice([0, 0.001, None]))
                    except Exception: pass
        except (std.TimeoutError, std.CancelledError, ValueError, KeyError, StopIteration):
            pass
        t.join()
        if rnd.random() < 0.5:
            ex.shutdown(wait=rnd.random() < 0.5, cancel_futures=rnd.random() < 0.5)
        del ex
        n += 1
        if n % 20 == 0:
            gc.collect()
    return n



class StressTest(unittest.TestCase):
    def test_random_mixes_on_three_threads(self):
        errors = []

        def guarded(seed):
            try:
                run(seed, SECONDS)
            except BaseException as e:  # reported below
                errors.append(e)
        threads = [threading.Thread(target=guarded, args=(i,))
                   for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])


if __name__ == '__main__':
    unittest.main()
