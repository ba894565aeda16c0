/* exits.c - what the process pool's manager does when a worker's process
 * ends: reaps it, tells why, and decides the fate of its tasks.
 *
 * Design: manager thread only. A worker's end is seen on its pidfd (or
 * its channel's EOF, see manager.c); its ring and channel are drained
 * first, so results written just before death count, then it is reaped
 * by pid (or by its starter's reap callback), never waitpid(-1). The task
 * it ran when it died, if any, is the oldest claimed without a result.
 * A worker the pool killed for its task (time limit, escalated cancel)
 * ends that task alone; a worker asked to leave ends nothing; otherwise
 * an end while a task was claimed breaks the pool, or with
 * survive_worker_death fails that task only. Tasks that waited there,
 * never claimed, go back to the front of the queue.
 * Locks: the pool lock, briefly, for the queue and n_alive.
 */
#include "processes/pool.h"

#include "platform/crash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for a crashed worker's backtrace, named (48 frames fit). */
#define TRACE_BYTES (16u << 10)

static void w_release(process_pool *pool, wproc *w)
{
    cf__buffer_destroy(&w->out);
    cf__buffer_destroy(&w->in);
    free(w->crash);
    w->crash = NULL;
    w->crash_len = 0;
    w->retiring = false;
    w->idle_since = 0;
    w->state = W_FREE;
    cf__mutex_lock(&pool->lock);
    pool->n_alive--;
    cf__mutex_unlock(&pool->lock);
    cf__cond_broadcast(&pool->changed);
}

/* Puts tasks that waited at a dead worker (never claimed, still PENDING)
 * back at the front of the queue, in order. */
void cf__pp_requeue(process_pool *pool, task *list)
{
    if (!list)
        return;
    size_t n = 1;
    task *last = list;
    while (last->next) {
        last = last->next;
        n++;
    }
    cf__mutex_lock(&pool->lock);
    last->next = pool->head;
    pool->head = list;
    if (!pool->tail)
        pool->tail = last;
    pool->n_queued += n;
    cf__mutex_unlock(&pool->lock);
}

void cf__pp_cancel_tasks(task *q)
{
    while (q) {
        task *next = q->next;
        cf__future_cancel(q->f);
        cf__pp_task_free(q);
        q = next;
    }
}

/* Ends the task `run` (and any claimed after it: none, as a worker runs
 * one at a time) of a worker the pool killed for it. */
static void ended_by_pool(process_pool *pool, int why, task *run, pid_t pid)
{
    (void)pool;
    while (run) {
        task *next = run->next;
        if (why == KILL_CANCEL) {
            cf__future_cancel_running(run->f);
            cf__pp_task_free(run);
        } else {
            char what[300];
            cf__pp_describe_task(run, what, sizeof what);
            char *m = cf__format("%s ran past its time limit of %g s: its "
                                 "worker process %ld was killed",
                                 what, run->limit, (long)pid);
            cf__pp_task_fail(run, CF_ETASK_TIMEOUT,
                             m ? m : cf_strerror(CF_ETASK_TIMEOUT));
            free(m);
        }
        run = next;
    }
}

/* The worker's process has ended (or is ending: EOF without pidfd). */
void cf__pp_w_exited(process_pool *pool, wproc *w)
{
    if (!w->eof)
        cf__pp_w_receive(pool,
                         w); /* results written before the end still count */
    else
        cf__pp_w_drain_ring(pool, w);
    pid_t pid = w->proc.pid;
    char how[128], what[300], why[640 + TRACE_BYTES];
    int status = 0;
    if (!w->reap) {
        status = cf__proc_reap(&w->proc);
        cf__proc_describe_status(status, how, sizeof how);
    } else {
        bool known = w->reap(w->reap_ctx, (long)pid, &status) == 0;
        cf__proc_forget(&w->proc);
        if (known)
            cf__proc_describe_status(status, how, sizeof how);
        else
            snprintf(how, sizeof how, "ended (status unknown)");
    }
    enum wstate state = w->state;
    bool terminated = w->terminated;
    /* A worker that died on its own may also have failed a read (a peer
     * dying with unread data resets the socket): its status tells more. */
    const char *lost = cf__proc_status_sigkill(status) ? w->lost : NULL;
    task *waiting;
    task *run = cf__pp_w_take_all(pool, w, &waiting);
    /* The oldest claimed task without a result is the one it was on. */
    task *t = run;
    /* A fatal signal's backtrace, as the worker sent it before dying. */
    char trace[TRACE_BYTES];
    if (!w->crash || terminated ||
        !cf__crash_describe(w->crash, w->crash_len, trace, sizeof trace))
        trace[0] = '\0';
    w_release(pool, w);
    int index = (int)(w - pool->workers);
    cf__monitor_worker_event(pool->ex, CF_EVENT_WORKER_EXIT, index, 0, NULL);
    if (t)
        cf__pp_describe_task(t, what, sizeof what);
    else
        snprintf(what, sizeof what, "%s",
                 state == W_STARTING ? "before it was ready (in its "
                                       "initializer or at start-up)"
                                     : "while idle");
    if (lost)
        snprintf(why, sizeof why, "worker process %ld %s, given up by the "
                 "pool (%s), %s%s", (long)pid, how, lost,
                 t ? "while running " : "", what);
    else
        snprintf(why, sizeof why, "worker process %ld %s %s%s", (long)pid,
                 how, t ? "while running " : "", what);
    if (trace[0]) {
        size_t used = strlen(why);
        snprintf(why + used, sizeof why - used, "; backtrace:%s", trace);
    }
    if (w->killed_for) {
        /* Killed by the pool for its task (time limit, escalated cancel):
         * that task alone ends; the ones waiting there move on. */
        ended_by_pool(pool, w->killed_for, run, pid);
        cf__pp_requeue(pool, waiting);
        pool->lost++; /* replaced at once if needed (sizing.c) */
        return;
    }
    if (terminated) {
        char *m = cf__format("%s (terminate_workers/kill_workers)", why);
        cf__pp_fail_list(run, CF_EBROKEN_PROCESS_POOL, m ? m : why);
        free(m);
        cf__pp_cancel_tasks(
            waiting); /* terminate cancels what has not started */
        return;
    }
    if (pool->survive && state != W_STARTING) {
        /* Only its own task is lost; the ones waiting there move on. */
        if (run || state != W_EXITING)
            cf__monitor_worker_event(pool->ex, CF_EVENT_CRASH, index,
                                     CF_EBROKEN_PROCESS_POOL, why);
        cf__pp_fail_list(run, CF_EBROKEN_PROCESS_POOL, why);
        cf__pp_requeue(pool, waiting);
        pool->lost += state != W_EXITING;
        return;
    }
    if (state == W_EXITING && !run) {
        cf__pp_requeue(pool, waiting); /* none: EXIT is sent to empty workers */
        return; /* asked to leave (shutdown, max_tasks_per_child, broken) */
    }
    if (run) {
        /* Fail the task at hand with the full story before the rest. */
        char *m = cf__format("process pool is broken: %s", why);
        cf__pp_fail_list(run, CF_EBROKEN_PROCESS_POOL, m ? m : why);
        free(m);
    }
    cf__pp_requeue(pool, waiting); /* failed with the queue by break_pool() */
    cf__mutex_lock(&pool->lock);
    bool already = pool->broken;
    task *q = already ? cf__pp_take_queue(pool) : NULL;
    cf__mutex_unlock(&pool->lock);
    if (!already)
        cf__pp_break_pool(pool, why);
    else
        cf__pp_fail_list(q, CF_EBROKEN_PROCESS_POOL,
                  pool->broken_msg ? pool->broken_msg
                                   : cf_strerror(CF_EBROKEN_PROCESS_POOL));
}
