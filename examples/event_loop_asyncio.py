"""event_loop_asyncio.py - cfutures futures awaited in asyncio.

A completion queue's descriptor goes to loop.add_reader(); when it turns
readable, the reader drains the finished cfutures futures and resolves the
asyncio futures that stand for them. No thread blocks on a result. This
uses ctypes on the shared library (any ctypes-capable Python 3):

    python3 examples/event_loop_asyncio.py build/libcfutures.so

The tasks are Python functions called by the pool's worker threads through
ctypes (which takes the GIL for them); a C task would do the same.
"""
import asyncio
import ctypes
import sys

lib = ctypes.CDLL(sys.argv[1] if len(sys.argv) > 1 else "libcfutures.so")
P = ctypes.c_void_p
TASK = ctypes.CFUNCTYPE(P, P, P)  # void *(*)(void *arg, cf_call *call)
for name, args in {
    "cf_thread_pool_new": [P, ctypes.POINTER(P)],
    "cf_executor_submit": [P, TASK, P, ctypes.POINTER(P)],
    "cf_executor_free": [P],
    "cf_completion_queue_new": [ctypes.POINTER(P)],
    "cf_completion_queue_fd": [P],
    "cf_completion_queue_add": [P, P],
    "cf_completion_queue_drain": [P, ctypes.POINTER(P), ctypes.c_size_t,
                                  ctypes.POINTER(ctypes.c_size_t)],
    "cf_completion_queue_free": [P],
    "cf_future_result": [P, ctypes.c_double, ctypes.POINTER(P)],
    "cf_future_release": [P],
}.items():
    getattr(lib, name).argtypes = args
lib.cf_completion_queue_free.restype = None
lib.cf_executor_free.restype = None
lib.cf_future_release.restype = None


def check(rc):
    if rc != 0:
        raise RuntimeError(f"cfutures error {rc}")


@TASK
def square(arg, call):
    return (arg or 0) ** 2


async def main():
    loop = asyncio.get_running_loop()
    pool, queue = P(), P()
    check(lib.cf_thread_pool_new(None, ctypes.byref(pool)))
    check(lib.cf_completion_queue_new(ctypes.byref(queue)))
    waiting = {}  # cfutures future address -> asyncio future

    def on_readable():
        done = (P * 32)()
        n = ctypes.c_size_t()
        check(lib.cf_completion_queue_drain(queue, done, 32, ctypes.byref(n)))
        for f in done[:n.value]:
            value = P()
            rc = lib.cf_future_result(f, 0.0, ctypes.byref(value))
            fut = waiting.pop(f)
            if rc == 0:
                fut.set_result(value.value or 0)
            else:
                fut.set_exception(RuntimeError(f"task failed: {rc}"))
            lib.cf_future_release(f)

    loop.add_reader(lib.cf_completion_queue_fd(queue), on_readable)
    try:
        aws = []
        for i in range(1, 21):
            f = P()
            check(lib.cf_executor_submit(pool, square, i, ctypes.byref(f)))
            waiting[f.value] = loop.create_future()
            aws.append(waiting[f.value])
            check(lib.cf_completion_queue_add(queue, f))
            lib.cf_future_release(f)  # the queue holds its own reference
        results = await asyncio.wait_for(asyncio.gather(*aws), 30)
    finally:
        loop.remove_reader(lib.cf_completion_queue_fd(queue))
        lib.cf_completion_queue_free(queue)
        lib.cf_executor_free(pool)
    print("squares:", results)
    assert results == [i * i for i in range(1, 21)], results


asyncio.run(main())
