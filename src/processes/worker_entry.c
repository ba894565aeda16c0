/* worker_entry.c - the ways into a worker's loop: the library's constructor
 * (an exec of this same program), cf_process_worker_main() (another
 * program that found CF__WORKER_ENV) and cf_process_worker_serve() (a
 * process started by a caller's callback).
 *
 * Design: an exec'd worker of this program never reaches main(): the
 * constructor below notices the variable, runs the worker loop and _exits,
 * so the caller's main needs no special code. Constructors of modules that
 * run later than this one (for the shared library: the main program's own)
 * have not run in such a worker. A worker program of another kind marks
 * itself "main" in the variable: the constructor leaves it alone, so its
 * main() can register its tasks before it serves.
 */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__GLIBC__)
#include <stdio_ext.h>
#endif

#include "platform/process.h"
#include "processes/shm_slot.h"
#include "processes/worker.h"

typedef struct worker_env {
    bool automatic; /* "auto": served by the constructor */
    int read_fd, write_fd;
    long parent;
    int shm_fd, slot;
} worker_env;

/* Parses CF__WORKER_ENV. False if it is absent or malformed. */
static bool env_parse(worker_env *e)
{
    const char *v = getenv(CF__WORKER_ENV);
    if (!v)
        return false;
    char mode[8];
    e->shm_fd = e->slot = -1;
    int n = sscanf(v, "%7[a-z]:%d:%d:%ld:%d:%d", mode, &e->read_fd,
                   &e->write_fd, &e->parent, &e->shm_fd, &e->slot);
    e->automatic = strcmp(mode, "auto") == 0;
    return n >= 4 && (e->automatic || strcmp(mode, "main") == 0) &&
           e->read_fd >= 0 && e->write_fd >= 0 && e->parent > 0;
}

/* The slot `index` in the shared memory behind `shm_fd`, or NULL (the
 * worker then just never busy-waits). */
static void *map_slot(int shm_fd, int index)
{
    if (shm_fd < 0 || index < 0)
        return NULL;
    cf__shm shm = cf__shm_map(shm_fd);
    if (!shm.base || shm.size / sizeof(cf__shm_slot) <= (size_t)index)
        return NULL; /* a short mapping stays: the process is a worker */
    return (cf__shm_slot *)shm.base + index;
}

/* Serves as the worker `e` describes; the variable is consumed first, so a
 * task that starts this program again does not make it a worker. */
static int serve_env(const worker_env *e, const cf_worker_options *opts)
{
    unsetenv(CF__WORKER_ENV);
    if (!cf__die_with_parent((pid_t)e->parent))
        return 1;
    /* Mapped before the descriptors are closed; the mapping stays. */
    cf__worker_link link = {e->read_fd, e->write_fd,
                            map_slot(e->shm_fd, e->slot)};
    /* A worker program keeps the descriptors below its channel's (the
     * pool's keep_fds); this same program keeps nothing else. */
    int keep[] = {e->read_fd, e->write_fd};
    int low = e->read_fd < e->write_fd ? e->read_fd : e->write_fd;
    cf__keep_only_fds(keep, 2, e->automatic ? 3 : low);
    return cf__worker_main(&link, opts);
}

/* A forked worker starts with copies of the parent's unwritten stdio
 * buffers: drop them, or they would be printed twice. */
int cf__worker_main_forked(const cf__worker_link *link)
{
#if defined(__GLIBC__)
    __fpurge(stdout);
    __fpurge(stderr);
#endif
    return cf__worker_main(link, NULL);
}

/* Referenced by the pool's spawn code (cf__worker_main_forked above), so
 * a static link always carries this constructor along. */
__attribute__((constructor)) static void worker_entry(void)
{
    worker_env e;
    if (env_parse(&e) && e.automatic)
        _exit(serve_env(&e, NULL));
}

int cf_process_worker_main(const cf_worker_options *opts, int *exit_status)
{
    worker_env e;
    if (!exit_status || !env_parse(&e) || e.automatic)
        return CF_EINVAL;
    *exit_status = serve_env(&e, opts);
    return CF_OK;
}

int cf_process_worker_serve(const cf_worker_channel *channel,
                            const cf_worker_options *opts, int *exit_status)
{
    if (!channel || !exit_status || channel->read_fd < 0 ||
        channel->write_fd < 0)
        return CF_EINVAL;
    /* Started from a pool's manager thread, which blocks every signal:
     * a worker must still end on SIGTERM. */
    cf__unblock_signals();
    cf__worker_link link = {channel->read_fd, channel->write_fd,
                            map_slot(channel->shm_fd, channel->slot)};
    *exit_status = cf__worker_main(&link, opts);
    return CF_OK;
}
