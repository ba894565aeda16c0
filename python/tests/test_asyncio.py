"""asyncio accepts cfutures' futures and executors as the stdlib's."""
import asyncio
import threading
import unittest

import cfutures


class AsyncioTest(unittest.TestCase):
    def test_run_in_executor(self):
        async def main():
            loop = asyncio.get_running_loop()
            with cfutures.ThreadPoolExecutor(2) as ex:
                return await loop.run_in_executor(ex, pow, 2, 10)
        self.assertEqual(asyncio.run(main()), 1024)

    def test_set_default_executor(self):
        async def main():
            loop = asyncio.get_running_loop()
            loop.set_default_executor(cfutures.ThreadPoolExecutor(2))
            name = await loop.run_in_executor(
                None, lambda: threading.current_thread().name)
            return name
        self.assertRegex(asyncio.run(main()), r'^ThreadPoolExecutor-\d+_0$')

    def test_to_thread_uses_the_default_executor(self):
        async def main():
            asyncio.get_running_loop().set_default_executor(
                cfutures.ThreadPoolExecutor(1, 'tothread'))
            return await asyncio.to_thread(
                lambda: threading.current_thread().name)
        self.assertEqual(asyncio.run(main()), 'tothread_0')

    def test_wrap_future_result_and_exception(self):
        async def main():
            with cfutures.ThreadPoolExecutor(1) as ex:
                ok = await asyncio.wrap_future(ex.submit(abs, -3))
                try:
                    await asyncio.wrap_future(ex.submit(divmod, 1, 0))
                except ZeroDivisionError:
                    return ok
        self.assertEqual(asyncio.run(main()), 3)

    def test_cancelling_the_asyncio_future_cancels_ours(self):
        async def main():
            f = cfutures.Future()
            wrapped = asyncio.wrap_future(f)
            wrapped.cancel()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            return f.cancelled()
        self.assertTrue(asyncio.run(main()))

    def test_gather_many(self):
        async def main():
            loop = asyncio.get_running_loop()
            with cfutures.ThreadPoolExecutor(4) as ex:
                return await asyncio.gather(
                    *(loop.run_in_executor(ex, abs, -i) for i in range(200)))
        self.assertEqual(asyncio.run(main()), list(range(200)))


if __name__ == '__main__':
    unittest.main()
