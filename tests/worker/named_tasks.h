/* named_tasks.h - tasks known by name to both the test program and the
 * worker program (tests/worker/worker_program.c), which each compile their
 * own copy and register it under the same names: the situation of a
 * program whose workers run another binary (CF_START_PROGRAM) or are
 * started by a callback (CF_START_CALLBACK).
 */
#ifndef CF_TEST_NAMED_TASKS_H
#define CF_TEST_NAMED_TASKS_H

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cfutures.h>

static void *named_square(void *arg, cf_call *call)
{
    (void)call;
    intptr_t x = (intptr_t)arg;
    return (void *)(x * x);
}

static void *named_pid(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    return (void *)(intptr_t)getpid();
}

static void *named_fail(void *arg, cf_call *call)
{
    return cf_fail(call, 42, "failed on %ld", (long)(intptr_t)arg);
}

static void *named_abort(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    abort();
}

/* 1 if descriptor `arg` is open in the worker. */
static void *named_fd_open(void *arg, cf_call *call)
{
    (void)call;
    return (void *)(intptr_t)(fcntl((int)(intptr_t)arg, F_GETFD) >= 0);
}

/* cf_codec_bytes: the bytes reversed (NULL stays NULL). */
static void *named_reverse(void *arg, cf_call *call)
{
    const cf_bytes *in = arg;
    if (!in)
        return NULL;
    cf_bytes *out = cf_bytes_new(NULL, in->len);
    if (!out)
        return cf_fail(call, CF_ENOMEM, "out of memory");
    for (size_t i = 0; i < in->len; i++)
        out->data[i] = in->data[in->len - 1 - i];
    return out;
}

/* Set by the pool's initializer, read by named_seen_init. */
static intptr_t named_init_value;

static int named_init(void *initarg)
{
    named_init_value = (intptr_t)initarg;
    return initarg == (void *)-1 ? 7 : 0;
}

static void *named_seen_init(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    return (void *)named_init_value;
}

/* A custom codec by name: a word that crosses plus one each way. */
static int plus_encode(const void *v, cf_buffer *out)
{
    int64_t x = (int64_t)(intptr_t)v + 1;
    return cf_buffer_append(out, &x, sizeof x);
}

static int plus_decode(const void *data, size_t len, void **v)
{
    int64_t x;
    if (len != sizeof x)
        return CF_ECODEC;
    memcpy(&x, data, sizeof x);
    *v = (void *)(intptr_t)x;
    return CF_OK;
}

static const cf_codec named_plus_codec = {
    plus_encode, plus_decode, NULL, plus_encode, plus_decode, NULL,
};

/* Registers everything above; both programs call it. Returns CF_OK or the
 * first failure. */
static inline int named_tasks_register(void)
{
    struct {
        const char *name;
        cf_fn fn;
    } tasks[] = {
        {"square", named_square},   {"pid", named_pid},
        {"fail", named_fail},       {"abort", named_abort},
        {"fd_open", named_fd_open}, {"reverse", named_reverse},
        {"seen_init", named_seen_init},
    };
    for (size_t i = 0; i < sizeof tasks / sizeof *tasks; i++) {
        int rc = cf_task_register(tasks[i].name, tasks[i].fn);
        if (rc != CF_OK)
            return rc;
    }
    int rc = cf_initializer_register("init", named_init);
    return rc ? rc : cf_codec_register("plus", &named_plus_codec);
}

#endif
