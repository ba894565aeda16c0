/* error.c - the error table's strings, version, and small string helpers.
 *
 * Design: CF_ERROR_MAP in cfutures.h is the single source of codes, names
 * and messages; everything here is generated from it, so a code added there
 * can't be forgotten here.
 */
#include "core/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cf_version(void)
{
    return CF_VERSION_STRING;
}

const char *cf_strerror(int code)
{
    switch (code) {
    case CF_OK:
        return "success";
#define CF__STRERROR_CASE(name, value, message) \
    case CF_##name:                             \
        return message;
        CF_ERROR_MAP(CF__STRERROR_CASE)
#undef CF__STRERROR_CASE
    }
    return code > 0 ? "the task failed" : "unknown error";
}

const char *cf_err_name(int code)
{
    switch (code) {
    case CF_OK:
        return "CF_OK";
#define CF__NAME_CASE(name, value, message) \
    case CF_##name:                         \
        return "CF_" #name;
        CF_ERROR_MAP(CF__NAME_CASE)
#undef CF__NAME_CASE
    }
    return "CF_UNKNOWN";
}

bool cf_error_is_broken(int code)
{
    return code == CF_EBROKEN || code == CF_EBROKEN_THREAD_POOL ||
           code == CF_EBROKEN_PROCESS_POOL;
}

int cf_cpu_count(void)
{
    return cf__cpu_count();
}

char *cf__vformat(const char *fmt, va_list ap)
{
    if (!fmt)
        return NULL;
    va_list copy;
    va_copy(copy, ap);
    int len = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (len < 0)
        return NULL;
    char *s = malloc((size_t)len + 1);
    if (s)
        vsnprintf(s, (size_t)len + 1, fmt, ap);
    return s;
}

char *cf__format(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = cf__vformat(fmt, ap);
    va_end(ap);
    return s;
}

char *cf__strdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy)
        memcpy(copy, s, n);
    return copy;
}
