/* test_callbacks.c - done-callbacks: order, timing, thread, reentrancy and
 * failure reporting. */
#define _GNU_SOURCE
#include "coretest.h"

#include <fcntl.h>

typedef struct record {
    int order[16];
    atomic_int n;
} record;

typedef struct tagged {
    record *rec;
    int tag;
} tagged;

static int append_tag(cf_future *f, void *arg)
{
    (void)f;
    tagged *t = arg;
    int i = atomic_fetch_add(&t->rec->n, 1);
    if (i < 16)
        t->rec->order[i] = t->tag;
    return 0;
}

TEST(callbacks_run_in_order_added)
{
    cf_future *f = future_new();
    record rec = {.n = 0};
    tagged tags[5];
    for (int i = 0; i < 5; i++) {
        tags[i] = (tagged){&rec, i};
        ASSERT_OK(cf_future_add_done_callback(f, append_tag, &tags[i]));
    }
    ASSERT_EQ(atomic_load(&rec.n), 0);
    ASSERT_OK(cf_future_set_result(f, NULL));
    ASSERT_EQ(atomic_load(&rec.n), 5);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(rec.order[i], i);
    cf_future_release(f);
}

TEST(callback_runs_at_once_if_already_done)
{
    cf_future *f = future_done_with(NULL);
    record rec = {.n = 0};
    tagged t = {&rec, 7};
    ASSERT_OK(cf_future_add_done_callback(f, append_tag, &t));
    ASSERT_EQ(atomic_load(&rec.n), 1);
    ASSERT_EQ(rec.order[0], 7);
    cf_future_release(f);
}

static int note_thread(cf_future *f, void *arg)
{
    (void)f;
    *(pthread_t *)arg = pthread_self();
    return 0;
}

TEST(callback_on_done_future_runs_in_adding_thread)
{
    cf_future *f = future_done_with(NULL);
    pthread_t seen = 0;
    ASSERT_OK(cf_future_add_done_callback(f, note_thread, &seen));
    ASSERT(pthread_equal(seen, pthread_self()));
    cf_future_release(f);
}

static void *complete_future(helper *h)
{
    cf_future_set_result(h->ctx, NULL);
    return NULL;
}

TEST(callback_runs_in_completing_thread)
{
    cf_future *f = future_new();
    pthread_t seen = 0;
    ASSERT_OK(cf_future_add_done_callback(f, note_thread, &seen));
    helper h;
    helper_start(&h, complete_future, f);
    helper_join(&h);
    ASSERT(seen != 0);
    ASSERT(pthread_equal(seen, h.thread));
    cf_future_release(f);
}

TEST(callback_runs_once_on_cancel)
{
    cf_future *f = future_new();
    record rec = {.n = 0};
    tagged t = {&rec, 1};
    ASSERT_OK(cf_future_add_done_callback(f, append_tag, &t));
    ASSERT(cf_future_cancel(f));
    ASSERT(cf_future_cancel(f));
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ECANCELLED);
    ASSERT_EQ(atomic_load(&rec.n), 1);
    cf_future_release(f);
}

TEST(callback_runs_once_on_pool_task)
{
    cf_executor *ex = pool_new(2);
    latch l;
    latch_init(&l);
    cf_future *f = submit(ex, task_gate, &l);
    record rec = {.n = 0};
    tagged t = {&rec, 1};
    ASSERT_OK(cf_future_add_done_callback(f, append_tag, &t));
    latch_open(&l);
    result_of(f);
    cf_executor_free(ex); /* the callback ran before the worker finished */
    ASSERT_EQ(atomic_load(&rec.n), 1);
    cf_future_release(f);
    latch_destroy(&l);
}

/* ------------------------------------------------------------------------ */
/* Reentrancy: callbacks may call anything                                  */

typedef struct reentrant {
    int done_seen;
    int result_code;
    int exception_code;
    bool cancel_returned;
    int nested_ran;
    int add_code;
} reentrant;

static int nested(cf_future *f, void *arg)
{
    (void)f;
    ((reentrant *)arg)->nested_ran++;
    return 0;
}

static int use_own_future(cf_future *f, void *arg)
{
    reentrant *r = arg;
    cf_error e;
    r->done_seen = cf_future_done(f);
    r->result_code = cf_future_result(f, CF_FOREVER, NULL);
    r->exception_code = cf_future_exception(f, CF_FOREVER, &e);
    r->cancel_returned = cf_future_cancel(f);
    r->add_code = cf_future_add_done_callback(f, nested, r);
    cf_future_retain(f);
    cf_future_release(f);
    return 0;
}

TEST(callback_may_use_its_own_future)
{
    cf_future *f = future_new();
    reentrant r = {0};
    ASSERT_OK(cf_future_add_done_callback(f, use_own_future, &r));
    ASSERT_OK(cf_future_set_result(f, NULL));
    ASSERT_EQ(r.done_seen, 1);
    ASSERT_OK(r.result_code);
    ASSERT_OK(r.exception_code);
    ASSERT(!r.cancel_returned);
    ASSERT_OK(r.add_code);
    ASSERT_EQ(r.nested_ran, 1); /* ran at once: the future is done */
    cf_future_release(f);
}

TEST(callback_of_cancelled_future_may_use_it)
{
    cf_future *f = future_new();
    reentrant r = {0};
    ASSERT_OK(cf_future_add_done_callback(f, use_own_future, &r));
    ASSERT(cf_future_cancel(f));
    ASSERT_EQ(r.done_seen, 1);
    ASSERT_CODE(r.result_code, CF_ECANCELLED);
    ASSERT_CODE(r.exception_code, CF_ECANCELLED);
    ASSERT(r.cancel_returned);
    ASSERT_EQ(r.nested_ran, 1);
    cf_future_release(f);
}

typedef struct resubmit {
    cf_executor *ex;
    cf_future *child;
    atomic_int code; /* published after child */
} resubmit;

static int submit_from_callback(cf_future *f, void *arg)
{
    (void)f;
    resubmit *r = arg;
    int code = cf_executor_submit(r->ex, task_double, (void *)(intptr_t)5,
                                  &r->child);
    atomic_store(&r->code, code);
    return 0;
}

TEST(callback_in_worker_may_submit_to_same_pool)
{
    /* One worker: a callback run by it while the pool holds a lock would
     * deadlock on submit. */
    cf_executor *ex = pool_new(1);
    latch l;
    latch_init(&l);
    cf_future *f = submit(ex, task_gate, &l);
    resubmit r = {.ex = ex, .child = NULL, .code = 1};
    ASSERT_OK(cf_future_add_done_callback(f, submit_from_callback, &r));
    latch_open(&l);
    result_of(f);
    WAIT_UNTIL(atomic_load(&r.code) != 1, 10);
    ASSERT_OK(atomic_load(&r.code));
    ASSERT_EQ(result_of(r.child), 10);
    cf_future_release(r.child);
    cf_future_release(f);
    cf_executor_free(ex);
    latch_destroy(&l);
}

typedef struct canceller {
    cf_future *victim;
    bool cancelled;
    record rec;
    tagged t;
    int add_code;
} canceller;

static int cancel_other(cf_future *f, void *arg)
{
    (void)f;
    canceller *c = arg;
    c->add_code = cf_future_add_done_callback(c->victim, append_tag, &c->t);
    c->cancelled = cf_future_cancel(c->victim);
    return 0;
}

TEST(callback_in_worker_may_cancel_and_add_callbacks)
{
    cf_executor *ex = pool_new(1);
    latch l;
    latch_init(&l);
    cf_future *f = submit(ex, task_gate, &l);
    canceller c = {.victim = future_new(), .cancelled = false};
    c.rec.n = 0;
    c.t = (tagged){&c.rec, 3};
    ASSERT_OK(cf_future_add_done_callback(f, cancel_other, &c));
    latch_open(&l);
    result_of(f);
    WAIT_UNTIL(cf_future_cancelled(c.victim), 10);
    cf_executor_free(ex);
    ASSERT(c.cancelled);
    ASSERT_OK(c.add_code);
    ASSERT_EQ(atomic_load(&c.rec.n), 1);
    cf_future_release(c.victim);
    cf_future_release(f);
    latch_destroy(&l);
}

static int release_own_reference(cf_future *f, void *arg)
{
    (void)arg;
    cf_future_release(f);
    return 0;
}

TEST(callback_may_release_a_reference_it_owns)
{
    cf_future *f = future_new();
    cf_future_retain(f); /* the callback's reference */
    ASSERT_OK(cf_future_add_done_callback(f, release_own_reference, NULL));
    record rec = {.n = 0};
    tagged t = {&rec, 1};
    ASSERT_OK(cf_future_add_done_callback(f, append_tag, &t));
    ASSERT_OK(cf_future_set_result(f, NULL));
    ASSERT_EQ(atomic_load(&rec.n), 1);
    cf_future_release(f);
}

TEST(callback_from_pool_may_release_the_last_user_reference)
{
    cf_executor *ex = pool_new(1);
    latch l;
    latch_init(&l);
    cf_future *f = submit(ex, task_gate, &l);
    ASSERT_OK(cf_future_add_done_callback(f, release_own_reference, NULL));
    /* The callback now owns our reference. */
    latch_open(&l);
    cf_executor_free(ex);
    latch_destroy(&l);
}

/* ------------------------------------------------------------------------ */
/* Failing callbacks                                                        */

static int fail_callback(cf_future *f, void *arg)
{
    (void)f;
    return (int)(intptr_t)arg;
}

typedef struct reported {
    cf_future *f[4];
    int code[4];
    void *arg[4];
    int n;
} reported;

static void on_callback_error(cf_future *f, int code, void *arg)
{
    reported *r = arg;
    if (r->n < 4) {
        r->f[r->n] = f;
        r->code[r->n] = code;
        r->arg[r->n] = arg;
    }
    r->n++;
}

TEST(failing_callback_does_not_stop_the_others)
{
    reported rep = {.n = 0};
    cf_set_callback_error_handler(on_callback_error, &rep);
    cf_future *f = future_new();
    record rec = {.n = 0};
    tagged t0 = {&rec, 0}, t1 = {&rec, 1};
    ASSERT_OK(cf_future_add_done_callback(f, append_tag, &t0));
    ASSERT_OK(cf_future_add_done_callback(f, fail_callback,
                                          (void *)(intptr_t)-3));
    ASSERT_OK(cf_future_add_done_callback(f, append_tag, &t1));
    ASSERT_OK(cf_future_set_result(f, NULL));
    ASSERT_EQ(atomic_load(&rec.n), 2);
    ASSERT_EQ(rec.order[0], 0);
    ASSERT_EQ(rec.order[1], 1);
    cf_set_callback_error_handler(NULL, NULL);
    cf_future_release(f);
}

TEST(failing_callback_reaches_error_handler)
{
    reported rep = {.n = 0};
    cf_set_callback_error_handler(on_callback_error, &rep);
    cf_future *f = future_new();
    ASSERT_OK(cf_future_add_done_callback(f, fail_callback,
                                          (void *)(intptr_t)17));
    ASSERT_OK(cf_future_add_done_callback(f, fail_callback,
                                          (void *)(intptr_t)0)); /* ok */
    ASSERT_OK(cf_future_set_result(f, NULL));
    ASSERT_EQ(rep.n, 1);
    ASSERT_PTR_EQ(rep.f[0], f);
    ASSERT_EQ(rep.code[0], 17);
    ASSERT_PTR_EQ(rep.arg[0], &rep);
    /* Also for a callback that runs at once on a done future. */
    ASSERT_OK(cf_future_add_done_callback(f, fail_callback,
                                          (void *)(intptr_t)-2));
    ASSERT_EQ(rep.n, 2);
    ASSERT_EQ(rep.code[1], -2);
    cf_set_callback_error_handler(NULL, NULL);
    cf_future_release(f);
}

/* Runs `fn` with stderr captured; returns what was written (malloc'd). */
static char *capture_stderr(void (*fn)(void))
{
    fflush(stderr);
    int pipefd[2];
    ASSERT_EQ(pipe(pipefd), 0);
    int saved = dup(2);
    ASSERT(saved >= 0);
    ASSERT(dup2(pipefd[1], 2) == 2);
    close(pipefd[1]);
    fn();
    fflush(stderr);
    ASSERT(dup2(saved, 2) == 2);
    close(saved);
    char *buf = calloc(1, 4096);
    ASSERT(buf != NULL);
    size_t len = 0;
    ssize_t r;
    while (len < 4095 && (r = read(pipefd[0], buf + len, 4095 - len)) > 0)
        len += (size_t)r;
    close(pipefd[0]);
    return buf;
}

static void fail_one_callback(void)
{
    cf_future *f = future_new();
    if (cf_future_add_done_callback(f, fail_callback,
                                    (void *)(intptr_t)CF_ETIMEDOUT) == CF_OK)
        cf_future_set_result(f, NULL);
    cf_future_release(f);
}

TEST(default_callback_error_handler_writes_to_stderr)
{
    char *out = capture_stderr(fail_one_callback);
    ASSERT(strlen(out) > 0);
    ASSERT(strchr(out, '\n') != NULL);
    /* It names the code. */
    ASSERT(strstr(out, "CF_ETIMEDOUT") != NULL ||
           strstr(out, cf_strerror(CF_ETIMEDOUT)) != NULL ||
           strstr(out, "-3") != NULL);
    free(out);
}

TEST(null_handler_restores_default)
{
    reported rep = {.n = 0};
    cf_set_callback_error_handler(on_callback_error, &rep);
    cf_set_callback_error_handler(NULL, NULL);
    char *out = capture_stderr(fail_one_callback);
    ASSERT_EQ(rep.n, 0);
    ASSERT(strlen(out) > 0);
    free(out);
}

/* ------------------------------------------------------------------------ */
/* Races between adding and completing                                      */

static atomic_int race_calls;

static int count_call(cf_future *f, void *arg)
{
    (void)f;
    (void)arg;
    atomic_fetch_add(&race_calls, 1);
    return 0;
}

static void *add_callbacks(helper *h)
{
    cf_future **fs = h->ctx;
    for (int i = 0; i < 2000; i++)
        cf_future_add_done_callback(fs[i], count_call, NULL);
    return NULL;
}

TEST(callback_added_during_completion_runs_exactly_once)
{
    enum { N = 2000 };
    cf_future **fs = malloc(N * sizeof *fs);
    ASSERT(fs != NULL);
    for (int i = 0; i < N; i++)
        fs[i] = future_new();
    atomic_store(&race_calls, 0);
    helper h;
    helper_start(&h, add_callbacks, fs);
    for (int i = 0; i < N; i++)
        ASSERT_OK(cf_future_set_result(fs[i], NULL));
    helper_join(&h);
    ASSERT_EQ(atomic_load(&race_calls), N);
    for (int i = 0; i < N; i++)
        cf_future_release(fs[i]);
    free(fs);
}
