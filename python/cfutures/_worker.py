"""The cfutures-native worker program (ProcessPoolExecutor with
mp_context=cfutures.process.NATIVE): the C core starts the interpreter on
this module, which prepares like a spawned multiprocessing child (the
parent's sys.path, working directory and __main__ as __mp_main__) and
serves the pool (the channel comes in the environment).
"""
import base64
import functools
import pickle
import sys

from cfutures import _cfutures
from cfutures.process import _run_pickled_initializer


def main(payload):
    prep, init_blob = pickle.loads(base64.b64decode(payload))
    if prep:
        from multiprocessing import spawn
        spawn.prepare(prep)
    init = None
    if init_blob is not None:
        # Unpickled by the worker's initializer: a failure breaks the pool
        # as a failing initializer does.
        init = functools.partial(_run_pickled_initializer, init_blob)
    sys.exit(_cfutures._worker_main(init))
