/* spawn.c - starting a process pool's workers, in each of the four ways
 * (cf_start_method): exec of this program, fork, exec of another program,
 * or a caller's callback.
 *
 * Design: every way starts from the same channel (opened by the pool's
 * transport, transport.h: a socket pair, or two pipes) and ends with a
 * cf__proc the manager watches. What differs is only how the child gets
 * its ends and learns it is a worker:
 *
 *   exec     the child's ends and the shared memory are placed at fixed
 *   program  descriptors and named in CF__WORKER_ENV; an exec of this
 *            program is served by the library's constructor before main
 *            ("auto"), another program calls cf_process_worker_main()
 *            ("main");
 *   fork     the child runs the worker loop straight from fork();
 *   callback the caller's function starts the process and passes the
 *            descriptors itself; the child calls cf_process_worker_serve().
 *
 * Spawning runs on the pool's manager thread (see platform/process_posix.c
 * for why). The parent's copies of the child's ends are closed as soon as
 * the child has them, so the child's death shows as EOF.
 */
#include "processes/spawn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "processes/worker.h"

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */

static char *copy_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c)
        memcpy(c, s, n);
    return c;
}

/* A NULL-terminated copy of a NULL-terminated vector. */
static char **copy_vector(const char *const *v)
{
    size_t n = 0;
    while (v[n])
        n++;
    char **c = calloc(n + 1, sizeof *c);
    if (!c)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!(c[i] = copy_string(v[i]))) {
            for (size_t j = 0; j < i; j++)
                free(c[j]);
            free(c);
            return NULL;
        }
    }
    return c;
}

static void free_vector(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

int cf__spawn_configure(cf__spawn_config *cfg,
                        const cf_process_pool_options *o)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->method = o->start_method;
    cfg->transport = cf__transport_for(o->transport);
    if (!cfg->transport)
        return CF_EINVAL;
    switch (o->start_method) {
    case CF_START_EXEC:
        return cf__proc_self_exe(&cfg->exe);
    case CF_START_FORK:
        return CF_OK;
    case CF_START_PROGRAM:
        if (!o->program || !*o->program || (o->n_keep_fds && !o->keep_fds))
            return CF_EINVAL;
        for (size_t i = 0; i < o->n_keep_fds; i++)
            if (o->keep_fds[i] < 0 || o->keep_fds[i] >= 1024)
                return CF_EINVAL;
        /* "/proc/self/exe" names this program: resolved as CF_START_EXEC
         * does, so that under valgrind the worker is the program, not the
         * tool the kernel would find behind that link. */
        if (strcmp(o->program, "/proc/self/exe") == 0) {
            int rc = cf__proc_self_exe(&cfg->exe);
            if (rc != CF_OK)
                return rc;
        } else if (!(cfg->exe = copy_string(o->program))) {
            return CF_ENOMEM;
        }
        if (o->program_argv && !(cfg->argv = copy_vector(o->program_argv)))
            return CF_ENOMEM;
        if (o->n_keep_fds) {
            cfg->keep_fds = malloc(o->n_keep_fds * sizeof *cfg->keep_fds);
            if (!cfg->keep_fds)
                return CF_ENOMEM;
            memcpy(cfg->keep_fds, o->keep_fds,
                   o->n_keep_fds * sizeof *cfg->keep_fds);
            cfg->n_keep_fds = o->n_keep_fds;
        }
        return CF_OK;
    case CF_START_CALLBACK:
        if (!o->start_worker)
            return CF_EINVAL;
        cfg->start = o->start_worker;
        cfg->start_ctx = o->start_ctx;
        return CF_OK;
    default:
        return CF_EINVAL;
    }
}

void cf__spawn_describe_failure(const cf__spawn_config *cfg, int rc,
                                char *buf, size_t n)
{
    switch (cfg->method) {
    case CF_START_CALLBACK:
        snprintf(buf, n, "could not start a worker process: the start_worker "
                 "callback failed: %s", cf_strerror(rc));
        return;
    case CF_START_FORK:
        snprintf(buf, n, "could not start a worker process: fork: %s",
                 cf_strerror(rc));
        return;
    default:
        /* Checked after the fact, for the message only: the usual cause
         * of a failed exec. */
        if (cfg->exe && access(cfg->exe, X_OK) != 0)
            snprintf(buf, n, "could not start worker program %s: %s",
                     cfg->exe, strerror(errno));
        else
            snprintf(buf, n, "could not start worker program %s: %s",
                     cfg->exe ? cfg->exe : "?", cf_strerror(rc));
        return;
    }
}

void cf__spawn_config_destroy(cf__spawn_config *cfg)
{
    free(cfg->exe);
    free_vector(cfg->argv);
    free(cfg->keep_fds);
    memset(cfg, 0, sizeof *cfg);
}

bool cf__spawn_same_program(const cf__spawn_config *cfg)
{
    return cfg->method == CF_START_EXEC || cfg->method == CF_START_FORK;
}

/* ------------------------------------------------------------------------ */
/* The four ways                                                            */

/* The child's descriptors go just above every kept one (3 at least). */
static int fd_base(const cf__spawn_config *cfg)
{
    int base = 3;
    for (size_t i = 0; i < cfg->n_keep_fds; i++)
        if (cfg->keep_fds[i] >= base)
            base = cfg->keep_fds[i] + 1;
    return base;
}

static int spawn_exec(const cf__spawn_config *cfg, cf__channel *ch,
                      const cf__shm *shm, int slot, pid_t *pid)
{
    int base = fd_base(cfg);
    bool shared = shm && shm->base && slot >= 0;
    /* A socket is one descriptor both ways; pipes are two. */
    bool one = ch->child_read == ch->child_write;
    int fds[3], n = 0;
    fds[n++] = ch->child_read;
    if (!one)
        fds[n++] = ch->child_write;
    int shm_at = shared ? base + n : -1;
    if (shared)
        fds[n++] = shm->fd;
    char var[160];
    snprintf(var, sizeof var, CF__WORKER_ENV "=%s:%d:%d:%ld:%d:%d",
             cfg->method == CF_START_EXEC ? "auto" : "main", base,
             one ? base : base + 1, (long)getpid(), shm_at,
             shared ? slot : -1);
    cf__exec_spec spec = {
        .exe = cfg->exe,
        .argv = cfg->argv,
        .env_var = var,
        .keep_fds = cfg->keep_fds,
        .n_keep_fds = cfg->n_keep_fds,
        .fds = fds,
        .n_fds = n,
        .fd_base = base,
    };
    return cf__proc_spawn_exec(&spec, pid);
}

typedef struct fork_start {
    pid_t parent;
    void *slot;
} fork_start;

static int forked_main(const cf__channel *ch, void *ctx)
{
    const fork_start *start = ctx;
    if (!cf__die_with_parent(start->parent))
        return 1;
    cf__worker_link link = {ch->child_read, ch->child_write, start->slot};
    return cf__worker_main_forked(&link);
}

static int spawn_callback(const cf__spawn_config *cfg, cf__channel *ch,
                          const cf__shm *shm, int slot, pid_t *pid,
                          cf__spawned *out)
{
    bool shared = shm && shm->base && slot >= 0;
    cf_worker_channel wc = {ch->child_read, ch->child_write,
                            shared ? shm->fd : -1, shared ? slot : -1};
    cf_worker_process wp = {0, NULL};
    int rc = cfg->start(cfg->start_ctx, &wc, &wp);
    /* The callback broke its contract: no pid, or without a reap
     * function one that is not our child, which the pool could neither
     * reap nor safely signal (it may be anyone's). */
    if (rc == CF_OK &&
        (wp.pid <= 0 || (!wp.reap && !cf__proc_is_child((pid_t)wp.pid))))
        rc = CF_EINVAL;
    if (rc != CF_OK)
        return rc < 0 ? rc : CF_ESYS;
    *pid = (pid_t)wp.pid;
    out->reap = wp.reap;
    out->reap_ctx = cfg->start_ctx;
    return CF_OK;
}

int cf__spawn_worker(const cf__spawn_config *cfg, const cf__shm *shm,
                     int slot, cf__spawned *out)
{
    cf__channel ch;
    int rc = cfg->transport->open(&ch);
    if (rc != CF_OK)
        return rc;
    pid_t pid = -1;
    out->reap = NULL;
    out->reap_ctx = NULL;
    switch (cfg->method) {
    case CF_START_FORK: {
        fork_start start = {getpid(),
                            shm && shm->base && slot >= 0
                                ? (cf__shm_slot *)shm->base + slot
                                : NULL};
        rc = cf__proc_spawn_fork(&ch, forked_main, &start, &pid);
        break;
    }
    case CF_START_CALLBACK:
        rc = spawn_callback(cfg, &ch, shm, slot, &pid, out);
        break;
    default:
        rc = spawn_exec(cfg, &ch, shm, slot, &pid);
        break;
    }
    cf__channel_close_child(&ch);
    if (rc != CF_OK) {
        cf__channel_close(&ch);
        return rc;
    }
    cf__proc_from_channel(&ch, pid, &out->proc);
    return CF_OK;
}
