/* registry.h - names for code that crosses into other programs (see
 * registry.c; the public face is cf_task_register() & co in cfutures.h).
 */
#ifndef CF_PROCESSES_REGISTRY_H
#define CF_PROCESSES_REGISTRY_H

#include "core/core.h"
#include "platform/process.h"

/* What a name stands for: each kind has its own names. */
enum cf__registry_kind {
    CF__REG_TASK = 1,
    CF__REG_CODEC = 2,
    CF__REG_INITIALIZER = 3,
};

/* Longest name, in bytes. */
#define CF__REGISTRY_NAME_MAX 255

/* Registers `addr` under `name`. Returns CF_OK (also for the same pair
 * again), CF_EINVAL (bad name, NULL addr, the name or the address already
 * registered with another partner), CF_ENOMEM. */
int cf__registry_add(int kind, const char *name, const void *addr);

/* The name `addr` was registered under: true with `*name` (valid for the
 * life of the process, not NUL-terminated in `*len`), or false. */
bool cf__registry_name(int kind, const void *addr, const char **name,
                       size_t *len);

/* The address registered under the `len` bytes of `name`, or NULL. */
const void *cf__registry_find(int kind, const char *name, size_t len);

#endif /* CF_PROCESSES_REGISTRY_H */
