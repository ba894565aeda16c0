/* worker.h - the worker side of the process pool (worker.c, and the ways
 * into it in worker_entry.c).
 *
 * Design: a worker process runs one loop that reads task frames from its
 * channel to the pool, runs each task and sends its result back; see
 * worker.c. The pool side only starts processes that run it.
 */
#ifndef CF_PROCESSES_WORKER_H
#define CF_PROCESSES_WORKER_H

#include "cfutures.h"

/* The environment variable that makes a program a worker:
 * "<auto|main>:<read fd>:<write fd>:<parent pid>:<shm fd>:<slot>" (shm fd
 * and slot -1 without shared memory). "auto": this same program, served by
 * the library's constructor before main(); "main": another program, which
 * calls cf_process_worker_main(). */
#define CF__WORKER_ENV "CF_PROCESS_WORKER"

/* A worker's ends of its channel, and its shared slot (a cf__shm_slot, or
 * NULL). */
typedef struct cf__worker_link {
    int read_fd;
    int write_fd;
    void *slot;
} cf__worker_link;

/* The worker loop; returns the process's exit code. `opts` may be NULL.
 * The _forked variant first drops stdio buffers copied from the parent. */
int cf__worker_main(const cf__worker_link *link,
                    const cf_worker_options *opts);
int cf__worker_main_forked(const cf__worker_link *link);

#endif /* CF_PROCESSES_WORKER_H */
