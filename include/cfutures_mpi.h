/* cfutures_mpi.h - the MPI executor: cfutures' executor interface across
 * the ranks of an MPI job (libcfutures_mpi; link with cfutures_mpi, which
 * brings cfutures and MPI).
 *
 * SPMD, as `mpirun -n N ./prog` runs it, like mpi4py's MPICommExecutor:
 *
 *     MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
 *     cf_executor *ex;
 *     if (cf_mpi_comm_executor(MPI_COMM_WORLD, 0, NULL, &ex) != CF_OK)
 *         ...;                       // every rank: see the returns
 *     if (ex) {                      // rank 0: the program proper
 *         cf_executor_submit(ex, task, arg, &f); ...
 *         cf_executor_free(ex);      // the other ranks return now
 *     }
 *     MPI_Finalize();
 *
 * Rank `root` gets an ordinary cf_executor: submit, map (chunksize,
 * buffersize), wait, as_completed, callbacks and shutdown work as on the
 * process pool, and its futures mix with any other executor's in one
 * cf_wait(). Every other rank of the communicator serves tasks until that
 * executor shuts down, then returns.
 *
 * What it asks of your program:
 * - MPI is yours: initialise it with MPI_Init_thread() at
 *   MPI_THREAD_SERIALIZED or better (one thread of the executor, its
 *   communication thread, calls MPI while your threads run; less is
 *   CF_ENOTSUP), and free the executor before MPI_Finalize(). The executor
 *   talks on its own duplicate of the communicator (MPI_Comm_dup, so
 *   creating it is collective), never on yours. Do not call MPI on the
 *   communicator's ranks' behalf while an executor or a server runs on it
 *   other than from your own threads at the thread level you asked for.
 * - Every rank runs the same build of the same program: tasks, custom
 *   codecs and the initializer go by module + offset, as on the process
 *   pool (functions and static codecs only; heap or stack code is
 *   CF_EINVAL at submit). The executor checks it at start: a rank whose
 *   executable differs (a hash of the file) breaks the executor, every
 *   future failing with CF_EBROKEN and a message naming the rank, and
 *   that rank's server returns CF_EINVAL after printing why.
 * - Arguments and results cross through a codec (cf_codec_word() by
 *   default; cf_codec_string(), cf_codec_bytes() or your own), in the
 *   process pool's frames. A frame larger than one MPI message can carry
 *   (an int count) travels as several messages.
 *
 * How it runs:
 * - One communication thread on the root is the only caller of MPI there.
 *   Submitters never call MPI: they queue the encoded task and wake it (a
 *   condition variable, so a sleeping thread wakes at once). It keeps
 *   several tasks in flight at each worker rank (`prefetch`, adaptive by
 *   default), so a rank starts its next task as soon as it sends a
 *   result. A task is running from
 *   the moment it is sent to a rank (it can no longer be cancelled).
 * - Waiting: Open MPI has no wait that sleeps (MPI_Wait, MPI_Probe and
 *   MPI_Recv spin), so the communication thread and idle worker ranks
 *   poll: MPI_Iprobe / MPI_Test in a tight loop for `spin` seconds after
 *   the last message sent or received (200 us by default: back-to-back
 *   tasks never sleep; 50 us measured 450-600 us round trips on a busy
 *   2-core VM, as a worker rank fell asleep between a result and the
 *   next task),
 *   then sleep between polls, the sleep doubling from 10 us up to
 *   `max_sleep` (1 ms by default). The price: a result (or, on a worker
 *   rank, a task) that arrives after a quiet spell waits up to `max_sleep`
 *   to be seen, and a polling thread costs a few thousand wake-ups per
 *   second at most. With nothing sent and nothing queued the root's
 *   thread sleeps without polling until a submit or a shutdown.
 *   A thread waiting for one of this executor's futures
 *   (cf_future_result(), cf_future_exception()) spins for up to 20 us
 *   before it sleeps, as for any future, but yields its CPU at each turn
 *   instead of pausing on it: the communication thread that completes
 *   the future polls, and on a machine with few cores a pausing waiter
 *   kept it off the CPU it needed for the whole spin (the round trip p50
 *   on 2 cores went from 36-50 us to 10 us; bench/mpi/README.md).
 * - Failure: Open MPI (as Debian ships it) has no fault tolerance (ULFM):
 *   a rank that dies ends the whole job. mpirun then stops every rank and
 *   exits non-zero, naming the dead rank ("process rank 1 ... exited on
 *   signal 9"); nothing hangs (run with MPIEXEC_TIMEOUT as a last
 *   resort). To survive crashing tasks, set `isolate`: each worker rank
 *   then runs its tasks in a one-worker cfutures process pool
 *   (survive_worker_death), so a task that crashes (a signal, abort,
 *   _exit, the OOM killer) fails only its own future, with
 *   CF_EBROKEN_PROCESS_POOL and a message naming the rank, the worker's
 *   pid and the signal, and the rank carries on (a task then costs a
 *   process pool's round trip more).
 * - Not yet: per-task time limits (cf_submit_options.timeout is
 *   CF_ENOTSUP at submit), cf_future_then_always() onto this executor
 *   (CF_ENOTSUP, as on a process pool); cf_call_cancel_requested() is
 *   always false on a worker rank. Monitoring (cf_executor_monitor)
 *   reports submits and finishes, as on a process pool.
 * - A failing initializer (nonzero, on any worker rank) breaks the
 *   executor: pending futures and later submits get CF_EBROKEN, the
 *   message naming the rank and the code.
 */
#ifndef CFUTURES_MPI_H
#define CFUTURES_MPI_H

#include <mpi.h>

#include "cfutures.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* The MPI executor                                                         */

typedef struct cf_mpi_options {
    /* Tasks (or map chunks) in flight at each worker rank: sent, result
     * not yet back. 0: adaptive, from 2 (long tasks) to 64 (tasks of a
     * few microseconds), enough to cover about 2 ms of the rank's work.
     * <0: CF_EINVAL. */
    int prefetch;
    /* Codec for tasks submitted without one. NULL: cf_codec_word(). */
    const cf_codec *codec;
    /* Runs once on each worker rank before its first task, with `initarg`
     * (a pointer value that crosses as is). Nonzero breaks the executor.
     * NULL: none. */
    int (*initializer)(void *initarg);
    void *initarg;
    /* Worker ranks run tasks in a one-worker process pool each, so a
     * crashing task fails only its future (see above). Default false. */
    bool isolate;
    /* Seconds to poll in a tight loop after the last message before
     * sleeping. 0: 200e-6. <0 or NaN: CF_EINVAL. */
    double spin;
    /* Longest sleep between polls, in seconds. 0: 1e-3. <0 or NaN:
     * CF_EINVAL. */
    double max_sleep;
    /* Largest MPI message, in bytes; longer frames are split. 0: 1 GiB
     * (below INT_MAX). For tests; at least 64. */
    size_t max_message;
    /* Spawn mode: the arguments each spawned worker's command gets,
     * without the command itself, NULL-terminated (MPI_Comm_spawn's argv;
     * borrowed for the call). NULL: none. */
    char *const *spawn_argv;
} cf_mpi_options;

/* On rank `root` of `comm`: creates the executor in `*out`. On every
 * other rank: serves tasks (cf_mpi_worker_serve()) until that executor
 * shuts down, then sets `*out` to NULL. Collective over `comm`. Returns
 * CF_OK; CF_EINVAL (NULL out, bad options, root out of range, a
 * communicator of one rank; on a worker rank: it runs another build than
 * the root); CF_ENOTSUP (MPI not initialised, or below
 * MPI_THREAD_SERIALIZED; a line on stderr says which); CF_ENOMEM,
 * CF_EAGAIN (no thread), CF_ESYS (an MPI call failed); on a worker rank
 * also CF_EBROKEN (its initializer failed). `opts` (NULL: defaults) are
 * read on the root only: the worker ranks learn them from it. Blocks on
 * worker ranks. */
CF_API int cf_mpi_comm_executor(MPI_Comm comm, int root,
                                const cf_mpi_options *opts,
                                cf_executor **out);

/* The root's half alone: an executor over every other rank of `comm`,
 * which must call cf_mpi_worker_serve(comm, root of this call = the
 * calling rank). Over an intercommunicator the workers are every rank of
 * the remote group, which call cf_mpi_worker_serve(comm, this process's
 * rank in its group). Collective. Returns as cf_mpi_comm_executor().
 * Does not block for long: the ranks' check-in runs on the executor's
 * thread. */
CF_API int cf_mpi_executor_new(MPI_Comm comm, const cf_mpi_options *opts,
                        cf_executor **out);

/* The worker ranks' half: serves the executor that rank `root` of `comm`
 * (of the remote group, for an intercommunicator) creates, until it
 * shuts down. Collective. Returns CF_OK once released,
 * or an error as cf_mpi_comm_executor() on a worker rank. Blocks. */
CF_API int cf_mpi_worker_serve(MPI_Comm comm, int root);

/* Spawn mode, as mpi4py's MPIPoolExecutor: starts `n_workers` processes
 * of `command` with MPI_Comm_spawn (NULL: this program again, from
 * /proc/self/exe) and creates the executor over them in `*out`. The
 * spawned program must run the same build (the check at start, as in
 * SPMD mode) and call cf_mpi_spawn_executor() as well, after
 * MPI_Init_thread(): in a process MPI_Comm_spawn started
 * (MPI_Comm_get_parent() is not MPI_COMM_NULL) the call serves its parent
 * until that executor shuts down, then sets `*out` to NULL and returns
 * CF_OK (or an error as on a worker rank of cf_mpi_comm_executor()); the
 * program then calls MPI_Finalize() and exits. So one program serves
 * both sides:
 *
 *     if (cf_mpi_spawn_executor(NULL, 4, &opts, &ex) != CF_OK) ...;
 *     if (ex) { ...submit, map, wait...; cf_executor_free(ex); }
 *     MPI_Finalize();
 *
 * Freeing the executor releases the workers and disconnects from them
 * (MPI_Comm_disconnect). Run the parent as `mpirun -n 1 ./prog` (Open MPI
 * 4.1 also spawns from a singleton, `./prog` alone, by starting its own
 * daemon); the workers go to the slots mpirun knows (a hostfile's, or
 * --oversubscribe). Returns CF_OK; CF_EINVAL (NULL out, n_workers < 1,
 * bad options, command NULL and the executable unknown); CF_ENOTSUP (as
 * cf_mpi_comm_executor()); CF_ESYS (the spawn failed: a line on stderr
 * says why, e.g. no such command, or not enough slots); CF_ENOMEM,
 * CF_EAGAIN. Blocks until the workers have started.
 *
 * Failure: as in SPMD mode, Open MPI 4.1 without ULFM cannot survive a
 * dead process: a spawned worker that dies (a signal, _exit) makes
 * mpirun abort the whole job, the parent included, naming the dead
 * process (test mpi.spawn.killed_worker_ends_job); there is no
 * timeout to turn into a broken executor, because the parent is gone.
 * Set `isolate` to survive crashing tasks. */
CF_API int cf_mpi_spawn_executor(const char *command, int n_workers,
                          const cf_mpi_options *opts, cf_executor **out);

/* True when this build of libcfutures_mpi was made against an MPI with
 * user-level fault mitigation (ULFM: MPIX_ERR_PROC_FAILED). Debian's Open
 * MPI 4.1 has none, so a dead rank ends the job (see above). */
CF_API bool cf_mpi_has_ulfm(void);

#ifdef __cplusplus
}
#endif

#endif /* CFUTURES_MPI_H */
