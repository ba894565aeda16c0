#!/usr/bin/env python3
"""Runs CPython's own test_concurrent_futures with cfutures substituted.

    run_conformance.py PYTHON BUILD_DIR [GROUP ...]

PYTHON is the interpreter under test; BUILD_DIR holds the built package
(BUILD_DIR/cfutures with its _cfutures extension for that interpreter).
A virtual environment (no pip, system site-packages) made in BUILD_DIR
gets a .pth file that imports cfutures_substitute at every start, so the
test's child interpreters are substituted too. GROUPs name the test
classes to run (see GROUPS); the default is every thread-pool and future
group. Tests listed in CONFORMANCE.md as not run are excluded here by
name, each with the reason. Exits with regrtest's status.
"""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Test classes by group; the 3.11 suite is one module, 3.12+ a package.
# regrtest's -m takes fnmatch patterns over test ids.
GROUPS = {
    'future': ['FutureTests'],
    'thread': ['*ThreadPool*'],
    'process': ['*ProcessPool*'],
    # The same, one start method each (ctest runs them side by side).
    'process-fork': ['*ProcessPoolFork[!s]*'],
    'process-forkserver': ['*ProcessPoolForkserver*'],
    'process-spawn': ['*ProcessPoolSpawn*'],
}

# Tests that cannot run on cfutures (see CONFORMANCE.md).
EXCLUDED = [
    # They read private attributes of the stdlib's process pool: its
    # manager thread, its call queue.
    '*.test_shutdown_deadlock_pickle',     # _executor_manager_thread
    '*ProcessPool*.test_del_shutdown',     # _executor_manager_thread
    '*ProcessPool*.test_shutdown_no_wait',  # _call_queue
    # They count executor._processes after submitting calls whose argument
    # (a multiprocessing Semaphore) cannot be pickled: the stdlib starts
    # processes inside submit() and fails the call later, cfutures fails
    # the call in submit(), so no process starts for it.
    '*ProcessPool*.test_saturation',
    '*ProcessPool*.test_processes_terminate',
    # Expects some queued calls to have started by the time
    # shutdown(cancel_futures=True) runs right after submit(); cfutures
    # cancels every call not started, and here none had.
    '*ProcessPool*.test_cancel_futures',
    # 3.12+: makes the stdlib pool's own thread creation fail (mocks
    # threading._start_joinable_thread) and expects the pool to break;
    # cfutures starts no Python thread, so the call just runs.
    '*ProcessPool*.test_python_finalization_error',
]


def main(argv):
    python, build = argv[1], os.path.abspath(argv[2])
    groups = argv[3:] or list(GROUPS)
    venv = os.path.join(build, 'conformance-venv-' + '-'.join(groups))
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([python, '-m', 'venv', '--without-pip',
                    '--system-site-packages', venv], check=True)
    vpython = os.path.join(venv, 'bin', 'python')
    site = subprocess.run(
        [vpython, '-c', 'import site; print(site.getsitepackages()[0])'],
        check=True, capture_output=True, text=True).stdout.strip()
    os.makedirs(site, exist_ok=True)
    with open(os.path.join(site, 'cfutures_substitute.pth'), 'w') as fp:
        fp.write(build + '\n' + HERE + '\nimport cfutures_substitute\n')
    cmd = [vpython, '-m', 'test', '-v', '--timeout', '300']
    version = subprocess.run(
        [vpython, '-c', 'import sys; print(sys.version_info >= (3, 12))'],
        check=True, capture_output=True, text=True).stdout.strip()
    if version == 'True':
        cmd += ['-u', 'walltime']  # the timing tests 3.12+ gates behind it
    for group in groups:
        for cls in GROUPS[group]:
            cmd += ['-m', cls]
    for pattern in EXCLUDED:
        cmd += ['-i', pattern]
    cmd.append('test_concurrent_futures')
    print(' '.join(cmd), flush=True)
    return subprocess.run(cmd).returncode


if __name__ == '__main__':
    sys.exit(main(sys.argv))
