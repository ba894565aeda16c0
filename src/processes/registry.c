/* registry.c - names for tasks, codecs and initializers, so a worker that
 * runs another program (a Python interpreter, a separate worker binary)
 * can find the code a parent means.
 *
 * Design: one process-wide table of (kind, name, address), append-only:
 * a registration lasts for the life of the process, so a lookup can hand
 * out the name or the address without copying. The parent looks an address
 * up (cf__registry_name) on every submit to a pool whose workers run
 * another program; the worker looks a name up (cf__registry_find) once per
 * task frame. The table is small and registrations are rare, so it is a
 * plain array under a mutex, with an atomic count that lets a process that
 * registered nothing skip the lock. Lock order: the registry lock is a
 * leaf (nothing is called while it is held).
 */
#include "processes/registry.h"

#include <stdlib.h>
#include <string.h>

typedef struct entry {
    int kind; /* enum cf__registry_kind */
    char *name;
    size_t name_len;
    const void *addr;
} entry;

static struct {
    cf__mutex lock;
    entry *items;
    size_t n, cap;
    atomic_size_t count; /* n, readable without the lock */
} registry = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0};

static bool valid_name(const char *name, size_t *len)
{
    if (!name)
        return false;
    size_t n = strnlen(name, CF__REGISTRY_NAME_MAX + 1);
    *len = n;
    return n > 0 && n <= CF__REGISTRY_NAME_MAX;
}

int cf__registry_add(int kind, const char *name, const void *addr)
{
    size_t len;
    if (!valid_name(name, &len) || !addr)
        return CF_EINVAL;
    int rc = CF_OK;
    cf__mutex_lock(&registry.lock);
    for (size_t i = 0; i < registry.n; i++) {
        const entry *e = &registry.items[i];
        if (e->kind != kind)
            continue;
        bool same_name = e->name_len == len && memcmp(e->name, name, len) == 0;
        if (same_name || e->addr == addr) {
            /* The same pair again is fine; one name for two functions,
             * or two names for one, would make a lookup ambiguous. */
            rc = same_name && e->addr == addr ? CF_OK : CF_EINVAL;
            goto out;
        }
    }
    if (registry.n == registry.cap) {
        size_t cap = registry.cap ? 2 * registry.cap : 16;
        entry *items = realloc(registry.items, cap * sizeof *items);
        if (!items) {
            rc = CF_ENOMEM;
            goto out;
        }
        registry.items = items;
        registry.cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        rc = CF_ENOMEM;
        goto out;
    }
    memcpy(copy, name, len + 1);
    registry.items[registry.n++] = (entry){kind, copy, len, addr};
    atomic_store(&registry.count, registry.n);
out:
    cf__mutex_unlock(&registry.lock);
    return rc;
}

bool cf__registry_name(int kind, const void *addr, const char **name,
                       size_t *len)
{
    if (atomic_load_explicit(&registry.count, memory_order_acquire) == 0)
        return false;
    bool found = false;
    cf__mutex_lock(&registry.lock);
    for (size_t i = 0; i < registry.n && !found; i++) {
        const entry *e = &registry.items[i];
        if (e->kind == kind && e->addr == addr) {
            *name = e->name; /* never freed: entries are never removed */
            *len = e->name_len;
            found = true;
        }
    }
    cf__mutex_unlock(&registry.lock);
    return found;
}

const void *cf__registry_find(int kind, const char *name, size_t len)
{
    if (atomic_load_explicit(&registry.count, memory_order_acquire) == 0)
        return NULL;
    const void *addr = NULL;
    cf__mutex_lock(&registry.lock);
    for (size_t i = 0; i < registry.n && !addr; i++) {
        const entry *e = &registry.items[i];
        if (e->kind == kind && e->name_len == len &&
            memcmp(e->name, name, len) == 0)
            addr = e->addr;
    }
    cf__mutex_unlock(&registry.lock);
    return addr;
}

int cf_task_register(const char *name, cf_fn fn)
{
    return cf__registry_add(CF__REG_TASK, name,
                            fn ? cf__fn_addr((cf__any_fn)fn) : NULL);
}

int cf_codec_register(const char *name, const cf_codec *codec)
{
    return cf__registry_add(CF__REG_CODEC, name, codec);
}

int cf_initializer_register(const char *name, int (*initializer)(void *))
{
    return cf__registry_add(
        CF__REG_INITIALIZER, name,
        initializer ? cf__fn_addr((cf__any_fn)initializer) : NULL);
}
