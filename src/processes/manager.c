/* manager.c - the process pool's manager thread: its loop, and what it
 * does when a worker's process ends.
 *
 * Design: the manager owns the workers (start, send, receive, reap) and
 * is the only thread that blocks on them. Each step() moves queued tasks
 * to workers, starts workers as work needs them, retires workers past
 * max_tasks_per_child, brings their number to max_workers (which
 * cf_executor_set_max_workers() may change: surplus workers leave once
 * idle) and lets idle ones go after idle_timeout, and lets them go at
 * shutdown; then it busy-waits
 * briefly on the shared counters (new tasks, results, claims) and sleeps
 * in poll() on the wake fd and each worker's descriptors
 * (cf__transport_watch). A worker's end is seen on its pidfd (or its
 * channel's EOF); its ring and channel are drained first, so results
 * written just before death count, then it is reaped by pid (or by its
 * starter's reap callback), never waitpid(-1). An end while a task was
 * claimed breaks the pool, or with survive_worker_death fails that task
 * only and restarts the worker.
 */
#include "processes/pool.h"

#include "platform/crash.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Manager: exits                                                           */

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
static void requeue(process_pool *pool, task *list)
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
static void w_exited(process_pool *pool, wproc *w)
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
        requeue(pool, waiting);
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
        requeue(pool, waiting);
        return;
    }
    if (state == W_EXITING && !run) {
        requeue(pool, waiting); /* none: EXIT is sent to empty workers */
        return; /* asked to leave (shutdown, max_tasks_per_child, broken) */
    }
    if (run) {
        /* Fail the task at hand with the full story before the rest. */
        char *m = cf__format("process pool is broken: %s", why);
        cf__pp_fail_list(run, CF_EBROKEN_PROCESS_POOL, m ? m : why);
        free(m);
    }
    requeue(pool, waiting); /* failed with the queue by break_pool() */
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

/* ------------------------------------------------------------------------ */
/* Manager: the loop                                                        */

/* Pops the next queued task that is not cancelled (still PENDING), and
 * counts it as at a worker. */
static task *next_task(process_pool *pool)
{
    for (;;) {
        cf__mutex_lock(&pool->lock);
        task *t = pool->head;
        if (t) {
            pool->head = t->next;
            if (!pool->head)
                pool->tail = NULL;
            pool->n_queued--;
            pool->n_inflight++;
        }
        cf__mutex_unlock(&pool->lock);
        if (!t || !cf_future_cancelled(t->f))
            return t;
        cf__pp_inflight_add(pool, -1);
        cf__pp_task_free(t); /* cancelled while queued: it never runs */
    }
}

/* A free worker with nothing to do takes the oldest task waiting at the
 * busiest other worker (which skips it), so no task waits behind a long
 * one while a worker idles. */
static void steal(process_pool *pool, wproc *thief)
{
    wproc *victim = NULL;
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *v = &pool->workers[i];
        if (v != thief && v->wait_head && v->slot &&
            (!victim || v->n_waiting > victim->n_waiting))
            victim = v;
    }
    if (!victim)
        return;
    cf__pp_w_sync(pool, victim);
    task *t = victim->wait_head;
    if (!t || !cf__pp_task_take_back(t))
        return; /* the victim got to it first */
    cf__pp_wait_pop(pool, victim);
    cf__pp_w_give(pool, thief, t);
}

static void dispatch(process_pool *pool)
{
    /* Free workers first, then a few tasks waiting at each busy one, in
     * turn, so the work spreads. */
    for (int pass = 0; pass < 2; pass++) {
        bool more = true;
        while (more) {
            more = false;
            for (int i = 0; i < pool->max_workers; i++) {
                wproc *w = &pool->workers[i];
                if (!cf__pp_w_can_take(pool, w, pass == 0))
                    continue;
                task *t = next_task(pool);
                if (!t)
                    goto stolen;
                cf__pp_w_give(pool, w, t);
                more = true;
            }
        }
    }
stolen:
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        if (cf__pp_w_can_take(pool, w, true))
            steal(pool, w);
    }
    for (int i = 0; i < pool->max_workers; i++)
        if (pool->workers[i].state != W_FREE)
            cf__pp_w_flush(&pool->workers[i]);
}

/* Starts workers while queued tasks outnumber the workers able to take
 * them. With no worker at all and none startable, the queue fails. */
static void spawn_needed(process_pool *pool, size_t queued)
{
    int alive = 0, available = 0;
    int limit = pool->limit_seen;
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        alive += w->state != W_FREE && w->state != W_EXITING;
        /* Tasks waiting at a busy worker want a worker too once the pool
         * may grow (a new one takes them over: steal()). */
        if (alive < limit && !cf__pp_w_free(w))
            queued += w->n_waiting;
        available += !w->retiring &&
                     (w->state == W_STARTING ||
                      (w->state == W_READY && cf__pp_w_free(w) &&
                       !w->wait_head));
    }
    for (int i = 0; i < pool->max_workers && (size_t)available < queued &&
                    alive < limit;
         i++) {
        wproc *w = &pool->workers[i];
        if (w->state != W_FREE)
            continue;
        int rc = cf__pp_spawn_worker(pool, w);
        if (rc != CF_OK) {
            if (alive > 0)
                return; /* the running workers will get through it */
            char why[160];
            snprintf(why, sizeof why, "could not start a worker process: %s",
                     cf_strerror(rc));
            cf__mutex_lock(&pool->lock);
            task *q = cf__pp_take_queue(pool);
            cf__mutex_unlock(&pool->lock);
            cf__pp_fail_list(q, rc, why);
            return;
        }
        alive++;
        available++;
    }
}

/* ------------------------------------------------------------------------ */
/* Manager: time limits                                                     */

/* The task `w` runs now, or NULL: the last one claimed, unless the worker
 * has finished it (its result may still be on the way). */
static task *w_running_task(const wproc *w)
{
    return w->run_tail && !cf__pp_w_free(w) ? w->run_tail : NULL;
}

/* Kills `w` for its running task (`why`: KILL_TIMEOUT, KILL_CANCEL); its
 * end, seen like any other, then ends that task alone (w_exited). */
static void w_kill_for_task(wproc *w, int why)
{
    if (w->killed_for || w->state == W_FREE)
        return;
    w->killed_for = why;
    w->send_failed = true; /* nothing more is sent to it */
    cf__proc_signal(&w->proc, SIGKILL);
}

/* Kills the workers whose running task is past its limit, after reading
 * what they sent: a result already there counts. */
static void check_deadlines(process_pool *pool)
{
    int64_t now = 0;
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        task *t = w->state == W_READY && !w->killed_for ? w_running_task(w)
                                                        : NULL;
        if (!t || t->limit <= 0)
            continue;
        if (!now)
            now = cf__now_ns();
        if (t->deadline > now)
            continue;
        if (!w->eof)
            cf__pp_w_receive(pool, w);
        cf__pp_w_sync(pool, w);
        if (w->state == W_READY && w_running_task(w) == t)
            w_kill_for_task(w, KILL_TIMEOUT);
    }
}

int64_t cf__pp_next_deadline(process_pool *pool)
{
    int64_t next = CF__NO_DEADLINE;
    for (int i = 0; i < pool->max_workers; i++) {
        const wproc *w = &pool->workers[i];
        const task *t = w->state == W_READY && !w->killed_for
                            ? w_running_task(w)
                            : NULL;
        if (t && t->limit > 0 && t->deadline < next)
            next = t->deadline;
    }
    return next;
}

/* ------------------------------------------------------------------------ */
/* Manager: requests from other threads (escalation)                        */

/* Kills the worker running `f`'s task, after reading what it sent (a
 * result already there wins). CF_OK: killed; CF_EAGAIN: its end is on
 * the way (the task finished, its result not all read; or its worker is
 * being killed already); CF_ESTATE: it runs nowhere here. */
static int kill_for_cancel(process_pool *pool, cf_future *f)
{
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        bool here = false;
        for (task *t = w->state != W_FREE ? w->run_head : NULL; t && !here;
             t = t->next)
            here = t->f == f;
        if (!here)
            continue;
        if (w->killed_for)
            return CF_EAGAIN;
        if (!w->eof)
            cf__pp_w_receive(pool, w); /* may finish (and free) the task */
        cf__pp_w_sync(pool, w);
        task *t = w->state == W_READY ? w_running_task(w) : NULL;
        if (t && t->f == f) {
            w_kill_for_task(w, KILL_CANCEL);
            return CF_OK;
        }
        return cf_future_done(f) ? CF_ESTATE : CF_EAGAIN;
    }
    return CF_ESTATE;
}

/* New references to every future not finished: queued, waiting at a
 * worker, running. On the manager thread, the one that moves tasks
 * between these lists, so none is missed or counted twice. */
static int list_unfinished(process_pool *pool, cf_future ***out, size_t *n)
{
    size_t cap = 0, k = 0;
    for (int i = 0; i < pool->max_workers; i++)
        cap += pool->workers[i].n_running;
    cf__mutex_lock(&pool->lock);
    cap += pool->n_queued;
    for (int i = 0; i < pool->max_workers; i++)
        cap += pool->workers[i].n_waiting;
    cf_future **fs = malloc((cap ? cap : 1) * sizeof *fs);
    for (task *t = pool->head; fs && t; t = t->next)
        fs[k++] = cf_future_retain(t->f);
    for (int i = 0; fs && i < pool->max_workers; i++)
        for (task *t = pool->workers[i].wait_head; t; t = t->next)
            fs[k++] = cf_future_retain(t->f);
    cf__mutex_unlock(&pool->lock);
    if (!fs)
        return CF_ENOMEM;
    for (int i = 0; i < pool->max_workers; i++)
        for (task *t = pool->workers[i].run_head; t; t = t->next)
            fs[k++] = cf_future_retain(t->f);
    *out = fs;
    *n = k;
    return CF_OK;
}

void cf__pp_serve_request(process_pool *pool)
{
    if (!atomic_load_explicit(&pool->req_pending, memory_order_acquire))
        return;
    cf__mutex_lock(&pool->lock);
    int kind = pool->req_kind;
    cf_future *f = pool->req_future;
    cf__mutex_unlock(&pool->lock);
    cf_future **list = NULL;
    size_t n = 0;
    int rc = kind == REQ_KILL ? kill_for_cancel(pool, f)
                              : list_unfinished(pool, &list, &n);
    cf__mutex_lock(&pool->lock);
    pool->req_rc = rc;
    pool->req_list = list;
    pool->req_n = n;
    atomic_store(&pool->req_pending, false);
    cf__cond_broadcast(&pool->changed);
    cf__mutex_unlock(&pool->lock);
}

int cf__pp_ask_manager(process_pool *pool, int kind, cf_future *f,
                       cf_future ***list, size_t *n)
{
    cf__mutex_lock(&pool->req_lock);
    cf__mutex_lock(&pool->lock);
    pool->req_kind = kind;
    pool->req_future = f;
    pool->req_list = NULL;
    pool->req_n = 0;
    pool->req_rc = CF_ESTATE; /* no manager left: nothing runs */
    atomic_store(&pool->req_pending, true);
    cf__mutex_unlock(&pool->lock);
    cf__pp_wake_manager(pool);
    cf__mutex_lock(&pool->lock);
    while (atomic_load(&pool->req_pending) && !pool->manager_done)
        cf__cond_wait(&pool->changed, &pool->lock);
    atomic_store(&pool->req_pending, false);
    int rc = pool->req_rc;
    if (list) {
        *list = pool->req_list;
        *n = pool->req_n;
    }
    pool->req_list = NULL;
    cf__mutex_unlock(&pool->lock);
    cf__mutex_unlock(&pool->req_lock);
    return rc;
}

/* Takes the tasks waiting at a retiring worker back to the front of the
 * queue (those it has not claimed yet), so they run elsewhere. */
static void take_back_waiting(process_pool *pool, wproc *w)
{
    task *back = NULL, **tail = &back;
    cf__pp_w_sync(pool, w);
    for (task *t; (t = w->wait_head) && cf__pp_task_take_back(t);) {
        cf__pp_wait_pop(pool, w);
        cf__pp_inflight_add(pool, -1);
        *tail = t;
        tail = &t->next;
    }
    *tail = NULL;
    requeue(pool, back);
}

static bool w_idle(const wproc *w)
{
    return w->state == W_READY && cf__pp_w_free(w) && !w->wait_head;
}

/* Brings the workers to the pool's size: surplus ones (after a shrink)
 * leave, idle ones at once and busy ones once their task is done (none
 * gets a new one meanwhile); a grow first keeps retiring ones. Workers
 * idle longer than idle_timeout leave too, down to min_workers, unless
 * tasks are queued. */
static void resize(process_pool *pool, size_t queued)
{
    int limit = pool->limit_seen, active = 0;
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        if (w->state == W_STARTING || w->state == W_READY) {
            if (w->retiring && active < limit)
                w->retiring = false; /* grown again: it stays */
            active += !w->retiring;
        }
    }
    /* Idle ones first, then those starting, then busy ones. */
    for (int pass = 0; pass < 3 && active > limit; pass++)
        for (int i = 0; i < pool->max_workers && active > limit; i++) {
            wproc *w = &pool->workers[i];
            if (w->retiring || (pass == 0 && !w_idle(w)) ||
                (pass == 1 && w->state != W_STARTING) ||
                (w->state != W_STARTING && w->state != W_READY))
                continue;
            w->retiring = true;
            active--;
            if (pass == 2)
                take_back_waiting(pool, w);
        }
    int64_t now = pool->idle_ns ? cf__now_ns() : 0;
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        bool idle = w_idle(w);
        if (w->retiring && (idle || w->state == W_STARTING)) {
            cf__pp_w_send_exit(w); /* done with its last task */
            continue;
        }
        if (!pool->idle_ns || w->retiring)
            continue;
        if (!idle) {
            w->idle_since = 0;
        } else if (!w->idle_since) {
            w->idle_since = now;
        } else if (now - w->idle_since >= pool->idle_ns && queued == 0 &&
                   active > pool->min_workers) {
            cf__pp_w_send_exit(w);
            active--;
        }
    }
}

/* How long poll() may sleep before an idle worker's time is up: -1 (no
 * limit) without idle_timeout, else milliseconds, rounded up. */
static int reap_timeout_ms(const process_pool *pool)
{
    if (!pool->idle_ns)
        return -1;
    int64_t first = INT64_MAX;
    int active = 0;
    for (int i = 0; i < pool->max_workers; i++) {
        const wproc *w = &pool->workers[i];
        active += (w->state == W_STARTING || w->state == W_READY) &&
                  !w->retiring;
        if (w_idle(w) && !w->retiring && w->idle_since &&
            w->idle_since + pool->idle_ns < first)
            first = w->idle_since + pool->idle_ns;
    }
    if (first == INT64_MAX || active <= pool->min_workers)
        return -1;
    int64_t left = first - cf__now_ns();
    if (left <= 0)
        return 0;
    int64_t ms = (left + 999999) / 1000000;
    return ms > 1000000 ? 1000000 : (int)ms;
}

/* Everything the manager does between two polls. Returns true when it is
 * time to leave: no work left, no worker left, and no more can come. */
static bool step(process_pool *pool)
{
    /* Without a pidfd, EOF is the only sign of the end, and it may have
     * been seen outside handle_events() (while busy-waiting, or a worker
     * given up by w_lose()): nothing would wake poll() for it again. */
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        if (w->state != W_FREE && w->eof && w->proc.pidfd < 0)
            w_exited(pool, w);
    }
    for (int i = 0; i < pool->max_workers; i++)
        if (pool->workers[i].state != W_FREE)
            cf__pp_w_sync(pool, &pool->workers[i]); /* claims and cancels */
    check_deadlines(pool);
    cf__pp_serve_request(pool);
    pool->seen_enqueued = atomic_load(&pool->n_enqueued);
    cf__mutex_lock(&pool->lock);
    size_t queued = pool->n_queued;
    bool closing = pool->shutdown || pool->broken;
    bool broken = pool->broken;
    int sig = pool->terminate_sig;
    pool->limit_seen = pool->limit;
    cf__mutex_unlock(&pool->lock);

    if (sig && pool->terminate_sent != sig) {
        pool->terminate_sent = sig;
        for (int i = 0; i < pool->max_workers; i++)
            if (pool->workers[i].state != W_FREE) {
                pool->workers[i].terminated = true;
                cf__proc_signal(&pool->workers[i].proc, sig);
            }
    }
    if (!broken && !sig) {
        if (!closing)
            resize(pool, queued);
        spawn_needed(pool, queued);
        dispatch(pool);
        /* dispatch() drops tasks cancelled while queued: recount, or an
         * idle worker would never be told to leave (and shutdown would
         * wait for a manager asleep in poll). */
        cf__mutex_lock(&pool->lock);
        queued = pool->n_queued;
        cf__mutex_unlock(&pool->lock);
    }
    bool any = false;
    int idle = 0;
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        if (closing && queued == 0 && !w->run_head && !w->wait_head &&
            (w->state == W_READY || w->state == W_STARTING))
            cf__pp_w_send_exit(w);
        any |= w->state != W_FREE;
        idle += w->state == W_READY && !w->run_head && !w->wait_head;
    }
    /* For cf_executor_get_stats(): a relaxed snapshot is all it needs. */
    atomic_store_explicit(&pool->n_idle, idle, memory_order_relaxed);
    cf__mutex_lock(&pool->lock);
    bool done = closing && !any && pool->n_queued == 0;
    cf__mutex_unlock(&pool->lock);
    return done;
}

/* Fills the poll set: the wake-up fd, then per worker its channel's read
 * end, its write end (the same socket, or a pipe) and its pidfd. Returns
 * the number of entries. */
static int poll_set(process_pool *pool)
{
    struct pollfd *p = pool->pfds;
    int n = 0;
    p[n++] = (struct pollfd){pool->wake_fd, POLLIN, 0};
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        bool in = w->state != W_FREE && !w->eof;
        bool out =
            w->state != W_FREE && !w->send_failed && cf__pp_w_has_output(w);
        /* fd -1 makes poll skip an entry; indexes stay 1 + 3i. */
        cf__transport_watch(&w->proc, in, out, w->state != W_FREE, p + n);
        n += 3;
    }
    return n;
}

static void handle_events(process_pool *pool)
{
    if (pool->pfds[0].revents) {
        cf__wake_drain(pool->wake_fd);
        /* Cleared before step() reads the queue, so a submit after that
         * read writes again. */
        atomic_store(&pool->wake_pending, false);
    }
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        short in = pool->pfds[1 + 3 * i].revents;
        short out = pool->pfds[2 + 3 * i].revents;
        short pid = pool->pfds[3 + 3 * i].revents;
        if (w->state == W_FREE)
            continue;
        if (out)
            cf__pp_w_flush(
                w); /* POLLERR too: the send then fails and says so */
        if (in & (POLLIN | POLLHUP | POLLERR))
            cf__pp_w_receive(pool, w);
        /* Without a pidfd, EOF is the only sign of the end. */
        if (w->state != W_FREE && (pid || (w->eof && w->proc.pidfd < 0)))
            w_exited(pool, w);
    }
}

/* poll() itself failed for good (ENOMEM that does not pass): the manager
 * can no longer watch its workers, so it breaks the pool, and reaps the
 * workers it just killed without waiting on their descriptors. */
static void give_up_polling(process_pool *pool, int err)
{
    char why[160];
    snprintf(why, sizeof why,
             "the manager could not wait for its workers: poll failed (%s)",
             strerror(err));
    cf__pp_break_pool(pool, why);
    for (int i = 0; i < pool->max_workers; i++)
        if (pool->workers[i].state != W_FREE)
            w_exited(pool, &pool->workers[i]);
}

/* True once a task was queued after step() last read the queue. */
static bool queue_moved(process_pool *pool)
{
    return atomic_load(&pool->n_enqueued) != pool->seen_enqueued;
}

/* Receives from every worker whose shared counter says it wrote since we
 * last looked. Returns true if there was one, or if a worker finished a
 * task and has the next one waiting to be claimed. */
static bool receive_signalled(process_pool *pool)
{
    bool any = false;
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        if (w->state == W_FREE || !w->slot || w->eof)
            continue;
        if (cf__pp_w_head_decided(w))
            any = true; /* step() catches up with its claims */
        if (cf__pp_w_ring_ready(w)) {
            cf__pp_w_drain_ring(pool, w);
            any = true;
        }
        uint_fast64_t v = atomic_load_explicit(&w->slot->from_worker,
                                               memory_order_acquire);
        if (v == w->seen_from)
            continue;
        w->seen_from = v;
        cf__pp_w_receive(pool, w);
        any = true;
    }
    return any;
}

/* Tells the workers whether the manager sleeps (see cf__shm_slot). When
 * going to sleep, returns true if a worker claimed a task meanwhile: the
 * manager stays up for it (seq_cst on both sides, Dekker). */
static bool set_asleep(process_pool *pool, bool asleep)
{
    bool claimed = false;
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        /* Nothing more is read from a worker at EOF or given up: its
         * end comes through poll(). */
        if (w->state == W_FREE || !w->slot || w->eof)
            continue;
        atomic_store(&w->slot->asleep, asleep);
        claimed |=
            asleep && (cf__pp_w_head_decided(w) || cf__pp_w_ring_ready(w));
    }
    return claimed;
}

/* True if a worker without a pidfd has reached EOF (or was given up by
 * w_lose(), as when a send to it fails during step()'s dispatch) and waits
 * to be reaped: poll() has nothing to wake the manager for it, so the
 * manager must not sleep before step() reaps it. */
static bool reap_pending(const process_pool *pool)
{
    for (int i = 0; i < pool->max_workers; i++) {
        const wproc *w = &pool->workers[i];
        if (w->state != W_FREE && w->eof && w->proc.pidfd < 0)
            return true;
    }
    return false;
}

/* poll()'s timeout: until the nearest time limit of a running task (at
 * least 1 ms, rounded up so that it wakes past the limit), else none. */
static int poll_timeout_ms(process_pool *pool)
{
    int64_t next = cf__pp_next_deadline(pool);
    if (next == CF__NO_DEADLINE)
        return -1;
    int64_t ms = (next - cf__now_ns() + 999999) / 1000000;
    return ms < 1 ? 1 : ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* The sooner of the two: a time limit, or an idle worker's time up. */
static int sleep_ms(process_pool *pool)
{
    int a = poll_timeout_ms(pool), b = reap_timeout_ms(pool);
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

/* Budget of the manager's busy-wait before it sleeps in poll(): a sleeping
 * wake-up costs tens of microseconds on a virtual machine, while a worker
 * answers a small task in a few. */
#define MANAGER_SPIN_NS 30000

/* Waits for something to happen and handles it: first polling without
 * blocking for a short while (results, new tasks), then asleep in poll().
 * A failing poll (ENOMEM from the kernel) is retried for about a second
 * before giving up. */
static void wait_and_handle(process_pool *pool)
{
    int n;
    if (reap_pending(pool))
        return; /* step() reaps it now */
    int64_t until = 0;
    for (unsigned i = 0; cf__spin_continue(i, &until, MANAGER_SPIN_NS); i++) {
        if (queue_moved(pool) || receive_signalled(pool))
            return;
        if ((i & 15) == 15)
            sched_yield(); /* a worker waiting for a CPU goes first */
    }
    atomic_store(&pool->mgr_sleeping, true); /* seq_cst: see enqueue() */
    if (set_asleep(pool, true) || queue_moved(pool)) {
        set_asleep(pool, false);
        atomic_store(&pool->mgr_sleeping, false);
        return;
    }
    for (int failures = 0;;) {
        n = poll_set(pool);
        if (poll(pool->pfds, (nfds_t)n, sleep_ms(pool)) >= 0) {
            set_asleep(pool, false);
            atomic_store(&pool->mgr_sleeping, false);
            handle_events(pool);
            return;
        }
        int err = errno;
        if (err == EINTR)
            continue;
        if (++failures > 1000) {
            set_asleep(pool, false);
            atomic_store(&pool->mgr_sleeping, false);
            give_up_polling(pool, err);
            return;
        }
        struct timespec pause = {0, 1000000}; /* 1 ms */
        nanosleep(&pause, NULL);
    }
}

void *cf__pp_manager_main(void *arg)
{
    process_pool *pool = arg;
    /* A done-callback run here that shuts the pool down with wait would
     * wait for this very thread: executor.c refuses it by this mark. */
    cf__current_pool = pool->ex;
    while (!step(pool))
        wait_and_handle(pool);
    cf__mutex_lock(&pool->lock);
    pool->manager_done = true;
    cf__cond_broadcast(&pool->changed);
    cf__mutex_unlock(&pool->lock);
    return NULL;
}
