/* escalation.c - the manager's side of stopping running work: cancel
 * requests, per-task time limits, and the requests escalate.c's ladder
 * and shutdown report send it from other threads (kill the worker running
 * a task, list the unfinished futures), and cf_process_pool_pids().
 *
 * Cancel requests: a running task's cf_call_cancel_requested() reads a
 * flag in the worker's process, which the parent's cf_future_request_cancel()
 * cannot reach. So every step() looks at the flag of each worker's
 * running task (one load per busy worker) and passes a raised one on
 * once: over socket + shared memory it sets that task's stop flag in the
 * worker's cf__shm_slot, the very flag the task's cf_call polls (no cost
 * to the worker); without shared memory (pipes) it sends a STOP frame,
 * which the worker looks for when the task polls (rate-limited there, see
 * worker.c). cf_executor_cancel() and the shutdown report wake the
 * manager for it (stop_requested); a bare cf_future_request_cancel() is
 * passed on at the manager's next step (a result, a submit, any event).
 *
 * Design: manager thread only, except cf__pp_ask_manager(), which another
 * thread calls: it posts the request (req_* fields, under the pool lock,
 * one request at a time under req_lock), wakes the manager and waits on
 * `changed` for the answer; step() serves it. Lock order: req_lock, then
 * the pool lock. A worker is killed for its task only after what it sent
 * was read, so a result already there wins; its end then goes through
 * exits.c like any other.
 */
#include "processes/pool.h"

#include <signal.h>
#include <stdlib.h>

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

/* Tells `w` that its running task `t` was asked to stop: the task's stop
 * flag in the shared slot (the one its cf_call polls), or, without one, a
 * STOP frame the worker looks for when the task polls (worker.c). */
static void w_send_stop(wproc *w, task *t)
{
    t->stop_sent = true;
    if (w->slot) {
        atomic_store_explicit(&w->slot->stop[t->k % CF__CLAIM_RING], true,
                              memory_order_relaxed);
        return;
    }
    size_t start;
    if (cf__wire_begin(&w->out, CF__MSG_STOP, t->seq, &start) == CF_OK) {
        cf__wire_end(&w->out, start);
        cf__pp_w_flush(w);
    } /* else no memory: the grace period ends as if unheard */
}

void cf__pp_check_running(process_pool *pool)
{
    int64_t now = 0;
    bool stop_all = atomic_load_explicit(&pool->stop_running,
                                         memory_order_relaxed);
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        task *t = w->state == W_READY && !w->killed_for ? w_running_task(w)
                                                        : NULL;
        if (t && stop_all) /* shutdown(cancel_futures), as on threads */
            atomic_store_explicit(&t->f->cancel_requested, true,
                                  memory_order_relaxed);
        if (t && !t->stop_sent && !w->send_failed &&
            atomic_load_explicit(&t->f->cancel_requested,
                                 memory_order_relaxed))
            w_send_stop(w, t);
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

size_t cf__pp_list_pids(process_pool *pool, long *pids, size_t cap)
{
    size_t n = 0;
    for (int i = 0; i < pool->max_workers; i++) {
        const wproc *w = &pool->workers[i];
        if (w->state == W_FREE)
            continue;
        if (n < cap)
            pids[n] = (long)w->proc.pid;
        n++;
    }
    return n;
}

bool cf__pp_serve_request(process_pool *pool, bool after_dispatch)
{
    if (!atomic_load_explicit(&pool->req_pending, memory_order_acquire))
        return false;
    cf__mutex_lock(&pool->lock);
    pp_request *req = pool->req;
    cf__mutex_unlock(&pool->lock);
    /* The pids wait for this step's worker starts, which count the tasks
     * queued before the request (step() reads the queue after this). */
    if (req->kind == REQ_PIDS && !after_dispatch)
        return true;
    /* The asker waits, so its request is ours until we answer. */
    if (req->kind == REQ_KILL)
        req->rc = kill_for_cancel(pool, req->future);
    else if (req->kind == REQ_LIST)
        req->rc = list_unfinished(pool, &req->list, &req->n);
    else {
        req->n = cf__pp_list_pids(pool, req->pids, req->cap);
        req->rc = CF_OK;
    }
    cf__mutex_lock(&pool->lock);
    atomic_store(&pool->req_pending, false);
    cf__cond_broadcast(&pool->changed);
    cf__mutex_unlock(&pool->lock);
    return false;
}

int cf__pp_ask_manager(process_pool *pool, pp_request *req)
{
    req->list = NULL;
    req->n = 0;
    req->rc = CF_ESTATE; /* no manager left: nothing runs */
    cf__mutex_lock(&pool->req_lock);
    cf__mutex_lock(&pool->lock);
    pool->req = req;
    atomic_store(&pool->req_pending, true);
    cf__mutex_unlock(&pool->lock);
    cf__pp_wake_manager(pool);
    cf__mutex_lock(&pool->lock);
    while (atomic_load(&pool->req_pending) && !pool->manager_done)
        cf__cond_wait(&pool->changed, &pool->lock);
    atomic_store(&pool->req_pending, false);
    pool->req = NULL;
    cf__mutex_unlock(&pool->lock);
    cf__mutex_unlock(&pool->req_lock);
    return req->rc;
}
