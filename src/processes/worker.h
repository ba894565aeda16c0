/* worker.h - the worker side of the process pool: its loop (worker.c),
 * running a task (worker_run.c), INIT (worker_init.c), finding code
 * (worker_code.c), and the ways into it (worker_entry.c).
 *
 * Design: a worker process runs one loop that reads task frames from its
 * channel to the pool, runs each task and sends its result back; see
 * worker.c. The pool side only starts processes that run it.
 */
#ifndef CF_PROCESSES_WORKER_H
#define CF_PROCESSES_WORKER_H

#include "cfutures.h"

#include <stdint.h>

struct cf__wire_header;
struct cf__wire_codec;
struct cf__code_ref;

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

/* Where code named by module + offset was found lately (each lookup
 * walks the loaded modules), per worker. Zero-initialised means empty. */
#define CF__CODE_CACHE_SLOTS 16
typedef struct cf__code_cache_entry {
    char *module; /* malloc'd copy; NULL: empty slot */
    size_t module_len;
    uint64_t offset;
    void *addr;
} cf__code_cache_entry;
typedef struct cf__code_cache {
    cf__code_cache_entry e[CF__CODE_CACHE_SLOTS];
    unsigned next;
} cf__code_cache;
void cf__code_cache_destroy(cf__code_cache *cache);

/* Runs a TASK, CHUNK or WORDS frame (header `h`, payload `p`) and appends
 * its RESULT, CHUNK_RESULT or WORDS_RESULT frame, with the same id, to
 * `out`: what a worker process does with each task, and what an MPI worker
 * rank does too (src/mpi/). A task or codec not found answers with a
 * failure naming it. Returns CF_OK, CF_ECODEC (a malformed frame: nothing
 * appended worth sending) or CF_ENOMEM. */
int cf__worker_run_task(cf__code_cache *cache,
                        const struct cf__wire_header *h,
                        const unsigned char *p, cf_buffer *out);
/* The same, the task's cf_call polling `proto`'s cancel flag (and its
 * cancel_poll): cf_call_cancel_requested() in the task reads them.
 * cf__worker_run_task() gives a flag never raised. */
int cf__worker_run_task_call(cf__code_cache *cache,
                             const struct cf__wire_header *h,
                             const unsigned char *p, cf_buffer *out,
                             const cf_call *proto);

/* Handles an INIT frame's payload: checks the protocol version and the
 * required task names, runs the initializers (the pool's, then `opts`'s),
 * and appends READY or INIT_FAILED to `out`. Returns CF_OK (ready),
 * CF_EINVAL (INIT_FAILED appended) or CF_ECODEC (malformed). */
/* User code (a task, an initializer) that called fork() returns twice:
 * the child is a copy of this worker, sharing its channel, and would go
 * on serving the pool's frames (running tasks again, writing into the
 * parent's stream). So the copy ends here, with status 0, as a forked
 * child should: call with cf__fork_generation() from before the code
 * ran. The generation is read after cf__fork_hook_install(). */
void cf__worker_end_forked_copy(unsigned generation);

int cf__worker_run_init(cf__code_cache *cache, const cf_worker_options *opts,
                        const unsigned char *p, size_t len, cf_buffer *out);

/* The function, codec or initializer `ref` names (a registered name of
 * `kind`, enum cf__registry_kind, or module + offset), or NULL. */
void *cf__code_cache_find(cf__code_cache *cache,
                          const struct cf__code_ref *ref, int kind);
const cf_codec *cf__code_cache_codec(cf__code_cache *cache,
                                     const struct cf__wire_codec *c);

/* Says why `ref` (of a `what`: "task function", "codec", "initializer")
 * was not found, into `buf`: "the task function 'name' is not registered
 * in worker process 42 (cf_task_register)" or "... was not found in
 * worker process 42 (main+0x1234)". */
void cf__pp_not_found(const struct cf__code_ref *ref, const char *what,
                      char *buf, size_t n);

#endif /* CF_PROCESSES_WORKER_H */
