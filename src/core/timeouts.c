/* timeouts.c - per-task run-time limits (cf_submit_options.timeout, the
 * pools' task_timeout option).
 *
 * Design: a limit counts from the task's start, never from its submit, so
 * nothing happens until a worker runs it. For an executor whose tasks run
 * in this process (a thread pool, a custom executor) the core wraps the
 * task, as monitoring does: `limited_task` runs in the worker, registers
 * an `alarm` (on its own stack) with the executor's timer, runs the task,
 * and takes the alarm back. The timer is one thread per executor, started
 * at the first limited task and joined when the executor is freed; it
 * sleeps until the nearest deadline among the registered alarms and
 * raises the cancel flag of each task past its limit (a thread cannot be
 * stopped safely: the task decides). A task that returns after its limit
 * fails with CF_ETASK_TIMEOUT, whatever it returned: the alarm says so,
 * under the timer's lock, whether the timer or the clock found it late,
 * so a limit that expires as the task returns gives one answer.
 *
 * The wrapper's record (fn, arg, limit) is freed by whichever ends second
 * of the task and a link on its future (a task cancelled while queued
 * never runs: the link frees it), the monitor's scheme. Only the alarms of
 * running tasks are registered, so the timer's scan is over at most the
 * executor's workers (and the tasks they run in place).
 *
 * An executor whose tasks run elsewhere (a process pool) enforces limits
 * itself: the core hands it the limit in cf__submit_timeout for the
 * length of its submit call.
 *
 * Lock order: the timer's lock is a leaf (a flag store under it).
 */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

#include "platform/process.h"

_Thread_local double cf__submit_timeout;

/* A running task's registration with the timer. */
typedef struct alarm {
    struct alarm *next, *prev;
    int64_t deadline;   /* CLOCK_MONOTONIC ns */
    atomic_bool *flag;  /* the future's cancel flag */
    bool fired;         /* guarded by the timer's lock */
} alarm;

typedef struct cf__timer {
    cf__mutex lock;
    cf__cond changed; /* an alarm came, or stop */
    alarm *alarms;    /* guarded by lock */
    bool stop;        /* guarded by lock */
    cf__thread thread;
} cf__timer;

/* ------------------------------------------------------------------------ */
/* The timer thread                                                         */

/* Raises the flags of alarms past their deadline; returns the nearest
 * deadline left. lock held. */
static int64_t fire_due(cf__timer *tm, int64_t now)
{
    int64_t next = CF__NO_DEADLINE;
    for (alarm *a = tm->alarms; a; a = a->next) {
        if (a->fired)
            continue;
        if (a->deadline <= now) {
            a->fired = true;
            atomic_store_explicit(a->flag, true, memory_order_relaxed);
        } else if (a->deadline < next) {
            next = a->deadline;
        }
    }
    return next;
}

static void *timer_main(void *arg)
{
    cf__timer *tm = arg;
    cf__mutex_lock(&tm->lock);
    while (!tm->stop) {
        int64_t next = fire_due(tm, cf__now_ns());
        if (next == CF__NO_DEADLINE)
            cf__cond_wait(&tm->changed, &tm->lock);
        else
            cf__cond_timedwait(&tm->changed, &tm->lock, next);
    }
    cf__mutex_unlock(&tm->lock);
    return NULL;
}

static cf__timer *timer_new(void)
{
    cf__timer *tm = calloc(1, sizeof *tm);
    if (!tm)
        return NULL;
    if (cf__mutex_init(&tm->lock) != CF_OK)
        goto fail_lock;
    if (cf__cond_init(&tm->changed) != CF_OK)
        goto fail_cond;
    if (cf__thread_create(&tm->thread, timer_main, tm, "cftimer") != CF_OK)
        goto fail_thread;
    return tm;
fail_thread:
    cf__cond_destroy(&tm->changed);
fail_cond:
    cf__mutex_destroy(&tm->lock);
fail_lock:
    free(tm);
    return NULL;
}

static void timer_free(cf__timer *tm)
{
    cf__mutex_lock(&tm->lock);
    tm->stop = true;
    cf__cond_signal(&tm->changed);
    cf__mutex_unlock(&tm->lock);
    cf__thread_join(tm->thread);
    cf__cond_destroy(&tm->changed);
    cf__mutex_destroy(&tm->lock);
    free(tm);
}

/* ex's timer, started by the first caller. NULL if none can be (no
 * thread or memory): limits are then still reported, not signalled. */
static cf__timer *executor_timer(cf_executor *ex)
{
    cf__timer *tm = atomic_load_explicit(&ex->timer, memory_order_acquire);
    if (tm)
        return tm;
    cf__timer *mine = timer_new();
    if (!mine)
        return NULL;
    if (atomic_compare_exchange_strong(&ex->timer, &tm, mine))
        return mine;
    timer_free(mine); /* another task's start won */
    return tm;
}

void cf__executor_timer_free(cf_executor *ex)
{
    cf__timer *tm = atomic_exchange(&ex->timer, NULL);
    if (tm)
        timer_free(tm);
}

static void alarm_add(cf__timer *tm, alarm *a)
{
    cf__mutex_lock(&tm->lock);
    a->prev = NULL;
    a->next = tm->alarms;
    if (a->next)
        a->next->prev = a;
    tm->alarms = a;
    cf__cond_signal(&tm->changed); /* it may be the nearest deadline */
    cf__mutex_unlock(&tm->lock);
}

/* Takes the alarm back. Returns true if the task is late: the timer fired
 * it, or its deadline has passed by now. */
static bool alarm_remove(cf__timer *tm, alarm *a)
{
    cf__mutex_lock(&tm->lock);
    if (a->prev)
        a->prev->next = a->next;
    else
        tm->alarms = a->next;
    if (a->next)
        a->next->prev = a->prev;
    bool late = a->fired || cf__now_ns() >= a->deadline;
    cf__mutex_unlock(&tm->lock);
    return late;
}

/* ------------------------------------------------------------------------ */
/* The wrapper                                                              */

enum { RUNNING = 1, DONE = 2 };

typedef struct limited {
    cf__link link; /* on the future: frees the record (see the design) */
    cf_fn fn;
    void *arg;
    double limit;
    cf_executor *ex;
    atomic_uint flags;
} limited;

/* The future is done: frees the record unless its task still runs (a
 * future completed from outside meanwhile); the task then does. */
static void limited_done(cf__link *link)
{
    limited *r = (limited *)link;
    if (!(atomic_fetch_or(&r->flags, DONE) & RUNNING))
        free(r);
}

static void *limited_task(void *arg, cf_call *call)
{
    limited *r = arg;
    atomic_fetch_or(&r->flags, RUNNING);
    cf_fn fn = r->fn;
    double limit = r->limit;
    alarm a = {.flag = call->future ? &call->future->cancel_requested : NULL};
    int64_t start = cf__now_ns();
    cf__deadline_from_timeout(limit, &a.deadline);
    cf__timer *tm = a.flag ? executor_timer(r->ex) : NULL;
    if (tm)
        alarm_add(tm, &a);
    void *result = fn(r->arg, call);
    bool late = tm ? alarm_remove(tm, &a) : cf__now_ns() >= a.deadline;
    /* The record may be freed from here on. */
    unsigned before = atomic_fetch_and(&r->flags, ~(unsigned)RUNNING);
    if (before & DONE)
        free(r);
    if (!late)
        return result;
    if (result && call->free_result)
        call->free_result(result);
    call->free_result = NULL;
    char name[256];
    cf__addr_describe(cf__fn_addr((cf__any_fn)fn), name, sizeof name);
    return cf_fail(call, CF_ETASK_TIMEOUT,
                   "task %s ran past its time limit of %g s (%.3f s)", name,
                   limit, (double)(cf__now_ns() - start) / 1e9);
}

int cf__submit_limited(cf_executor *ex, cf_future *f, cf_fn fn, void *arg,
                       const cf_codec *codec, double limit)
{
    if (!(limit > 0) || isinf(limit))
        limit = 0;
    if (!cf__executor_shares_memory(ex)) {
        /* Of those, only the process pool enforces limits itself. */
        if (limit > 0 && strcmp(cf_executor_kind(ex), "process_pool") != 0)
            return CF_ENOTSUP;
        double outer = cf__submit_timeout;
        cf__submit_timeout = limit > 0 ? limit : (double)INFINITY;
        int rc = cf__executor_dispatch(ex, f, fn, arg, codec);
        cf__submit_timeout = outer;
        return rc;
    }
    if (limit == 0)
        return cf__executor_dispatch(ex, f, fn, arg, codec);
    limited *r = malloc(sizeof *r);
    if (!r)
        return CF_ENOMEM;
    r->link.run = limited_done;
    r->fn = fn;
    r->arg = arg;
    r->limit = limit;
    r->ex = ex;
    atomic_init(&r->flags, 0);
    int rc = cf__executor_dispatch(ex, f, limited_task, r, codec);
    if (rc != CF_OK) {
        free(r);
        return rc;
    }
    if (!cf__future_attach(f, &r->link, false))
        cf__chain_fire(&r->link);
    return CF_OK;
}

void cf__executor_set_task_timeout(cf_executor *ex, double seconds)
{
    ex->task_timeout = seconds > 0 && !isinf(seconds) ? seconds : 0;
}
