/* worker.h - the worker side of the process pool (worker.c).
 *
 * Design: a worker process runs one loop that reads task frames from its
 * channel to the pool, runs each task and sends its result back; see
 * worker.c. The pool side (pool.c) only starts processes that call it.
 */
#ifndef CF_PROCESSES_WORKER_H
#define CF_PROCESSES_WORKER_H

/* The worker loop on socket `fd` (with its shared counters, a
 * cf__shm_slot or NULL); returns the process's exit code. The _forked
 * variant first drops stdio buffers copied from the parent. */
int cf__worker_main(int fd, void *shm_slot);
int cf__worker_main_forked(int fd, void *shm_slot);

#endif /* CF_PROCESSES_WORKER_H */
