/* test_errors.c - the error table, cf_strerror/cf_err_name, the broken
 * family, and misuse of every core function (NULLs return an error or
 * false, never crash, and leave out-parameters alone). */
#define _GNU_SOURCE
#include "coretest.h"

#include <limits.h>
#include <math.h>

typedef struct entry {
    int code;
    const char *name;
    const char *message;
} entry;

static const entry table[] = {
#define ENTRY(name, value, message) {CF_##name, "CF_" #name, message},
    CF_ERROR_MAP(ENTRY)
#undef ENTRY
};
enum { N_ENTRIES = sizeof table / sizeof table[0] };

TEST(every_code_has_its_name_and_message)
{
    for (int i = 0; i < N_ENTRIES; i++) {
        ASSERT_STR_EQ(cf_err_name(table[i].code), table[i].name);
        ASSERT_STR_EQ(cf_strerror(table[i].code), table[i].message);
    }
}

TEST(codes_are_distinct_and_negative)
{
    for (int i = 0; i < N_ENTRIES; i++) {
        ASSERT(table[i].code < 0);
        for (int j = i + 1; j < N_ENTRIES; j++)
            ASSERT_NE(table[i].code, table[j].code);
    }
}

TEST(ok_is_success)
{
    ASSERT_STR_EQ(cf_strerror(CF_OK), "success");
    ASSERT_STR_EQ(cf_err_name(CF_OK), "CF_OK");
}

TEST(strerror_is_never_null)
{
    int codes[] = {-18, -100, -1000, INT_MIN, INT_MAX, 1, 2, 42, 255};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = cf_strerror(codes[i]);
        ASSERT(s != NULL);
        ASSERT(s[0] != '\0');
    }
}

TEST(strerror_of_task_code_is_the_task_failed)
{
    ASSERT_STR_EQ(cf_strerror(42), "the task failed");
    ASSERT_STR_EQ(cf_strerror(1), "the task failed");
    ASSERT_STR_EQ(cf_strerror(INT_MAX), "the task failed");
}

TEST(err_name_of_unknown_code_is_cf_unknown)
{
    int codes[] = {-18, -1000, INT_MIN, INT_MAX, 5};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        ASSERT_STR_EQ(cf_err_name(codes[i]), "CF_UNKNOWN");
}

TEST(error_is_broken_matches_the_broken_family)
{
    for (int i = 0; i < N_ENTRIES; i++) {
        int c = table[i].code;
        bool broken = c == CF_EBROKEN || c == CF_EBROKEN_THREAD_POOL ||
                      c == CF_EBROKEN_PROCESS_POOL;
        ASSERT_EQ(cf_error_is_broken(c), broken);
    }
    ASSERT(!cf_error_is_broken(CF_OK));
    ASSERT(!cf_error_is_broken(4));
    ASSERT(!cf_error_is_broken(-1000));
}

TEST(version_matches_header)
{
    ASSERT_STR_EQ(cf_version(), CF_VERSION_STRING);
}

/* ------------------------------------------------------------------------ */
/* Misuse                                                                   */

static int never_called(cf_future *f, void *arg)
{
    (void)f;
    (void)arg;
    return 0;
}

TEST(future_functions_reject_null)
{
    ASSERT_CODE(cf_future_new(NULL), CF_EINVAL);
    ASSERT_PTR_EQ(cf_future_retain(NULL), NULL);
    cf_future_release(NULL);
    ASSERT(!cf_future_cancel(NULL));
    ASSERT(!cf_future_request_cancel(NULL));
    ASSERT(!cf_future_cancelled(NULL));
    ASSERT(!cf_future_running(NULL));
    ASSERT(!cf_future_done(NULL));
    void *v = (void *)0x1;
    ASSERT_CODE(cf_future_result(NULL, 0, &v), CF_EINVAL);
    ASSERT_CODE(cf_future_result(NULL, CF_FOREVER, &v), CF_EINVAL);
    ASSERT_PTR_EQ(v, (void *)0x1);
    cf_error e = {.code = 5, .message = "untouched"};
    ASSERT_CODE(cf_future_exception(NULL, CF_FOREVER, &e), CF_EINVAL);
    ASSERT_EQ(e.code, 5);
    ASSERT_CODE(cf_future_add_done_callback(NULL, never_called, NULL),
                CF_EINVAL);
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(NULL), CF_EINVAL);
    ASSERT_CODE(cf_future_set_result(NULL, NULL), CF_EINVAL);
    ASSERT_CODE(cf_future_set_result_owned(NULL, NULL, free), CF_EINVAL);
    ASSERT_CODE(cf_future_set_exception(NULL, 1, "x"), CF_EINVAL);
    ASSERT_CODE(cf_future_run(NULL, task_identity, NULL), CF_EINVAL);
}

TEST(future_functions_reject_null_function_arguments)
{
    cf_future *f = future_new();
    ASSERT_CODE(cf_future_add_done_callback(f, NULL, NULL), CF_EINVAL);
    ASSERT_CODE(cf_future_run(f, NULL, NULL), CF_EINVAL);
    /* The misuse changed nothing. */
    ASSERT(!cf_future_done(f));
    ASSERT(!cf_future_running(f));
    ASSERT_OK(cf_future_set_result(f, NULL));
    cf_future_release(f);
}

TEST(call_functions_accept_null)
{
    ASSERT(!cf_call_cancel_requested(NULL));
    ASSERT_PTR_EQ(cf_fail(NULL, 1, "nobody %s", "listens"), NULL);
}

TEST(wait_functions_reject_null)
{
    size_t n = 7;
    ASSERT_CODE(cf_wait(NULL, 1, 0, CF_ALL_COMPLETED, NULL, &n, NULL, NULL),
                CF_EINVAL);
    ASSERT_EQ(n, 7);
    cf_as_completed *it = (cf_as_completed *)0x1;
    ASSERT_CODE(cf_as_completed_new(NULL, 1, 0, &it), CF_EINVAL);
    ASSERT_PTR_EQ(it, (cf_as_completed *)0x1);
    cf_future *f = (cf_future *)0x1;
    ASSERT_CODE(cf_as_completed_next(NULL, &f), CF_EINVAL);
    ASSERT_PTR_EQ(f, (cf_future *)0x1);
    cf_as_completed_free(NULL);
}

TEST(executor_functions_reject_null)
{
    cf_future *f = (cf_future *)0x1;
    ASSERT_CODE(cf_executor_submit(NULL, task_identity, NULL, &f), CF_EINVAL);
    ASSERT_CODE(cf_executor_submit_ex(NULL, task_identity, NULL, NULL, &f),
                CF_EINVAL);
    ASSERT_PTR_EQ(f, (cf_future *)0x1);
    ASSERT_CODE(cf_executor_shutdown(NULL, true, false), CF_EINVAL);
    size_t u = 5;
    ASSERT_CODE(cf_executor_shutdown_timeout(NULL, 1, false, &u), CF_EINVAL);
    ASSERT_EQ(u, 5);
    cf_executor_free(NULL);
    cf_executor_freep(NULL);
    cf_executor *none = NULL;
    cf_executor_freep(&none);
    (void)cf_executor_kind(NULL); /* any answer, but no crash */
    cf_map *m = (cf_map *)0x1;
    void *args[1] = {NULL};
    ASSERT_CODE(cf_executor_map(NULL, task_identity, args, 1, NULL, &m),
                CF_EINVAL);
    ASSERT_PTR_EQ(m, (cf_map *)0x1);
    void *v = (void *)0x1;
    ASSERT_CODE(cf_map_next(NULL, &v, NULL), CF_EINVAL);
    ASSERT_PTR_EQ(v, (void *)0x1);
    cf_map_free(NULL);
    ASSERT_CODE(cf_thread_pool_new(NULL, NULL), CF_EINVAL);
    ASSERT_CODE(cf_executor_new(NULL, NULL, NULL), CF_EINVAL);
    ASSERT_CODE(cf_buffer_append(NULL, "x", 1), CF_EINVAL);
}

TEST(executor_functions_reject_null_arguments_on_a_live_pool)
{
    cf_executor *ex = pool_new(1);
    cf_future *f = (cf_future *)0x1;
    ASSERT_CODE(cf_executor_submit(ex, NULL, NULL, &f), CF_EINVAL);
    ASSERT_CODE(cf_executor_submit_ex(ex, NULL, NULL, NULL, &f), CF_EINVAL);
    ASSERT_PTR_EQ(f, (cf_future *)0x1);
    ASSERT_CODE(cf_executor_submit(ex, task_identity, NULL, NULL), CF_EINVAL);
    ASSERT_CODE(cf_executor_shutdown_timeout(ex, NAN, false, NULL), CF_EINVAL);
    /* The pool still works after all that. */
    cf_future *g = submit(ex, task_identity, (void *)(intptr_t)6);
    ASSERT_EQ(result_of(g), 6);
    cf_future_release(g);
    cf_executor_free(ex);
}

TEST(executor_new_rejects_incomplete_ops)
{
    static const cf_executor_ops no_submit = {.kind = "broken",
                                              .submit = NULL};
    cf_executor *ex = (cf_executor *)0x1;
    ASSERT_CODE(cf_executor_new(&no_submit, NULL, &ex), CF_EINVAL);
    ASSERT_PTR_EQ(ex, (cf_executor *)0x1);
}
