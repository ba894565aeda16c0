/* worker_code.c - how a worker finds the code a frame names: a task
 * function, codec or initializer, by module + offset (wire.h; each lookup
 * walks the loaded modules through dl_iterate_phdr, so the last few are
 * cached per worker) or by the name it was registered under (registry.c)
 * when the worker runs another program than its pool.
 *
 * Design: worker side only, one thread; the cache (cf__code_cache) is the
 * worker's own. Shared with the MPI executor's worker ranks.
 */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "platform/crash.h"
#include "processes/registry.h"
#include "processes/wire.h"
#include "processes/worker.h"

/* The code `ref` names: a registered name of `kind`, or an address. */
static void *resolve(cf__code_cache *cache, const cf__wire_ref *ref, int kind)
{
    if (cf__wire_ref_named(ref))
        return (void *)cf__registry_find(kind, ref->module, ref->module_len);
    for (int i = 0; i < CF__CODE_CACHE_SLOTS; i++) {
        cf__code_cache_entry *e = &cache->e[i];
        if (e->module && e->offset == ref->offset &&
            e->module_len == ref->module_len &&
            memcmp(e->module, ref->module, ref->module_len) == 0)
            return e->addr;
    }
    void *addr = cf__ref_to_addr(ref);
    /* The lookup may have loaded a module: crash traces must know it. */
    cf__crash_trap_refresh();
    if (!addr)
        return NULL;
    cf__code_cache_entry *e =
        &cache->e[cache->next++ % CF__CODE_CACHE_SLOTS];
    char *copy = malloc(ref->module_len + 1);
    if (copy) {
        free(e->module);
        memcpy(copy, ref->module, ref->module_len);
        copy[ref->module_len] = '\0';
        e->module = copy;
        e->module_len = ref->module_len;
        e->offset = ref->offset;
        e->addr = addr;
    }
    return addr;
}

static const cf_codec *resolve_codec(cf__code_cache *cache,
                                     const cf__wire_codec *c)
{
    switch (c->kind) {
    case CF__CODEC_WORD:
        return cf_codec_word();
    case CF__CODEC_STRING:
        return cf_codec_string();
    case CF__CODEC_BYTES:
        return cf_codec_bytes();
    default:
        return resolve(cache, &c->ref, CF__REG_CODEC);
    }
}

/* Says why `ref` was not found: "'name' is not registered in worker
 * process 42" or "main+0x1234 is not in worker process 42". */
void cf__pp_not_found(const cf__wire_ref *ref, const char *what, char *buf,
                      size_t n)
{
    int len = (int)(ref->module_len > 200 ? 200 : ref->module_len);
    if (cf__wire_ref_named(ref))
        snprintf(buf, n, "the %s '%.*s' is not registered in worker "
                 "process %ld (cf_%s_register)", what, len, ref->module,
                 (long)getpid(),
                 strcmp(what, "task function") == 0 ? "task"
                 : strcmp(what, "codec") == 0       ? "codec"
                                                    : "initializer");
    else
        snprintf(buf, n, "the %s was not found in worker process %ld "
                 "(%.*s+0x%llx)", what, (long)getpid(), len,
                 ref->module_len ? ref->module : "main",
                 (unsigned long long)ref->offset);
}

void cf__code_cache_destroy(cf__code_cache *cache)
{
    for (int i = 0; i < CF__CODE_CACHE_SLOTS; i++)
        free(cache->e[i].module);
}

void *cf__code_cache_find(cf__code_cache *cache, const cf__code_ref *ref,
                          int kind)
{
    return resolve(cache, ref, kind);
}

const cf_codec *cf__code_cache_codec(cf__code_cache *cache,
                                     const struct cf__wire_codec *c)
{
    return resolve_codec(cache, c);
}
