/* spawn.h - starting a process pool's workers (spawn.c). */
#ifndef CF_PROCESSES_SPAWN_H
#define CF_PROCESSES_SPAWN_H

#include "core/core.h"
#include "platform/process.h"
#include "processes/shm_slot.h"
#include "processes/transport.h"

/* How a pool starts its workers, resolved from its options at creation. */
typedef struct cf__spawn_config {
    cf_start_method method;
    const cf__transport *transport; /* opens each worker's channel */
    char *exe;        /* exec and program: the program to start */
    char **argv;      /* program: its arguments, or NULL */
    int *keep_fds;    /* program: descriptors it keeps */
    size_t n_keep_fds;
    cf_start_worker_fn start; /* callback */
    void *start_ctx;
} cf__spawn_config;

/* A started worker: its process, and who reaps it. */
typedef struct cf__spawned {
    cf__proc proc;
    /* NULL: a child the pool reaps; else the callback's reaper. */
    int (*reap)(void *ctx, long pid, int *wait_status);
    void *reap_ctx;
} cf__spawned;

/* Checks and copies the options' start method. Returns CF_OK, CF_EINVAL,
 * CF_ENOMEM, CF_ESYS (no path for this program); on error whatever was
 * copied is left for cf__spawn_config_destroy(). */
int cf__spawn_configure(cf__spawn_config *cfg,
                        const cf_process_pool_options *o);
void cf__spawn_config_destroy(cf__spawn_config *cfg);

/* True if workers run this same program (code is found by address). */
bool cf__spawn_same_program(const cf__spawn_config *cfg);

/* Starts worker number `slot` (its place in `shm`, which may have no
 * memory). Returns CF_OK, CF_EAGAIN, CF_ENOMEM, CF_ESYS, or the
 * callback's error. */
int cf__spawn_worker(const cf__spawn_config *cfg, const cf__shm *shm,
                     int slot, cf__spawned *out);

/* Writes why a start failed with `rc`, for the futures that fail with
 * it: the program and what is wrong with it (missing, not executable),
 * or the callback or fork that failed, and the code's text. */
void cf__spawn_describe_failure(const cf__spawn_config *cfg, int rc,
                                char *buf, size_t n);

#endif /* CF_PROCESSES_SPAWN_H */
