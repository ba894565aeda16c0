/* worker_init.c - a worker's answer to its INIT frame: the protocol
 * version, the task names the pool requires, the initializers (the
 * pool's, then the worker program's), and READY or INIT_FAILED.
 *
 * Design: worker side only, once per worker, before any task. Shared with
 * the MPI executor's worker ranks.
 */
#include "core/core.h"

#include <stdio.h>
#include <unistd.h>

#include "processes/registry.h"
#include "processes/wire.h"
#include "processes/worker.h"

static int fail_init(cf_buffer *out, int code, const char *msg)
{
    size_t start, len_at;
    int rc = cf__wire_begin(out, CF__MSG_INIT_FAILED, 0, &start);
    if (rc == CF_OK)
        rc = cf__wire_put_status(out, code, msg, false, &len_at);
    if (rc == CF_OK)
        cf__wire_end(out, start);
    return rc;
}

/* Checks that every task the pool requires is registered here. Returns
 * 0, or CF_EINVAL with the first missing name in `msg`. */
static int check_required(const cf__wire_init *init, char *msg, size_t n)
{
    cf__wire_reader r;
    cf__wire_reader_init(&r, init->required, init->required_len);
    for (uint32_t i = 0; i < init->n_required; i++) {
        cf__wire_ref ref = {NULL, 0, CF__WIRE_NAMED};
        cf__wire_next_name(&r, &ref.module, &ref.module_len); /* decoded */
        if (!cf__registry_find(CF__REG_TASK, ref.module, ref.module_len)) {
            cf__pp_not_found(&ref, "task function", msg, n);
            return CF_EINVAL;
        }
    }
    return 0;
}

/* Runs the pool's initializer, then the worker program's own. Returns 0,
 * or the failing one's code with a message in `msg`. */
static int run_initializers(cf__code_cache *cache,
                            const cf_worker_options *opts,
                            const cf__wire_init *init, char *msg, size_t n)
{
    int rc = 0;
    if (init->has_init) {
        int (*fn)(void *) = (int (*)(void *))cf__addr_fn(
            cf__code_cache_find(cache, &init->init, CF__REG_INITIALIZER));
        if (!fn) {
            cf__pp_not_found(&init->init, "initializer", msg, n);
            return CF_EINVAL;
        }
        cf__fork_hook_install();
        unsigned gen = cf__fork_generation();
        rc = fn((void *)(uintptr_t)init->initarg);
        cf__worker_end_forked_copy(gen);
        snprintf(msg, n, "the initializer returned %d", rc);
    }
    if (rc == 0 && opts && opts->initializer) {
        cf__fork_hook_install();
        unsigned gen = cf__fork_generation();
        rc = opts->initializer(opts->initarg);
        cf__worker_end_forked_copy(gen);
        snprintf(msg, n, "the worker program's initializer returned %d", rc);
    }
    return rc;
}

/* Shared with the MPI executor's worker ranks (worker.h). */
int cf__worker_run_init(cf__code_cache *cache, const cf_worker_options *opts,
                        const unsigned char *p, size_t len, cf_buffer *out)
{
    cf__wire_init init;
    if (cf__wire_decode_init(p, len, &init) != CF_OK)
        return CF_ECODEC;
    char msg[400];
    int rc = 0;
    if (init.version != CF__WIRE_VERSION) {
        snprintf(msg, sizeof msg, "worker process %ld speaks protocol %u, "
                 "the pool %u: the worker program was built with another "
                 "version of cfutures", (long)getpid(), CF__WIRE_VERSION,
                 (unsigned)init.version);
        rc = CF_EINVAL;
    }
    if (rc == 0)
        rc = check_required(&init, msg, sizeof msg);
    if (rc == 0)
        rc = run_initializers(cache, opts, &init, msg, sizeof msg);
    if (rc != 0) {
        fail_init(out, rc, msg);
        return CF_EINVAL; /* tell the loop to stop */
    }
    size_t start;
    rc = cf__wire_begin(out, CF__MSG_READY, 0, &start);
    if (rc == CF_OK && (rc = cf__wire_put_u64(out, (uint64_t)getpid())) ==
                           CF_OK)
        cf__wire_end(out, start);
    return rc;
}
