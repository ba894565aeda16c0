/* dispatch.c - the manager's side of sending: starting a worker, sending
 * its INIT, tasks and EXIT through the pool's transport, and the claims
 * that decide which worker runs a task.
 *
 * Design: see pool.c for the whole. A task sent to a worker gets a number
 * k there and waits PENDING in the worker's wait list (guarded by the pool
 * lock, since shutdown cancels from its own thread) until the worker
 * claims it in shared memory, or, without shared memory, is claimed by the
 * manager as it is sent to a free worker. Claimed tasks move to the run
 * list (manager thread only), whose order is the order of their results.
 * A worker falling idle takes back the oldest task waiting at a busy one.
 * Sending never blocks: what the channel does not take waits for POLLOUT.
 */
#include "processes/pool.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Manager: workers                                                         */

bool cf__pp_w_has_output(const wproc *w)
{
    return w->out_off < w->out.len;
}

/* Gives up on a worker whose socket failed or whose stream we cannot
 * follow (corrupt, or no memory for it): it is killed, so its end is seen
 * like any death (pidfd or EOF) and reported with `why`. Without this, a
 * live worker we no longer talk to would keep its task forever. */
void cf__pp_w_lose(wproc *w, const char *why)
{
    if (!w->lost)
        w->lost = why;
    w->send_failed = true;
    w->eof = true;
    cf__proc_signal(&w->proc, SIGKILL);
}

/* Sends what the channel takes now; the rest waits for POLLOUT. */
void cf__pp_w_flush(wproc *w)
{
    while (!w->send_failed && cf__pp_w_has_output(w)) {
        ptrdiff_t sent = w->transport->send(&w->proc,
                                            w->out.data + w->out_off,
                                            w->out.len - w->out_off);
        if (sent < 0) {
            cf__pp_w_lose(w, "sending to it failed");
            return;
        }
        if (sent == 0)
            return;
        if (w->slot)
            atomic_fetch_add_explicit(&w->slot->to_worker, 1,
                                      memory_order_release);
        w->out_off += (size_t)sent;
    }
    if (w->out_off == w->out.len) {
        w->out.len = w->out_off = 0;
        if (w->out.cap > (4u << 20))
            cf__buffer_destroy(&w->out); /* a huge argument went out */
    }
}

static int w_send_init(process_pool *pool, wproc *w)
{
    size_t start;
    int rc = cf__wire_begin(&w->out, CF__MSG_INIT, 0, &start);
    rc = rc ? rc : cf__wire_put_u32(&w->out, CF__WIRE_VERSION);
    rc = rc ? rc : cf__wire_put_u32(&w->out, pool->has_init ? 1 : 0);
    if (rc == CF_OK && pool->has_init) {
        cf__wire_ref ref = {pool->init_module, pool->init_len,
                            pool->init_offset};
        rc = cf__wire_put_ref(&w->out, &ref);
    }
    rc = rc ? rc
            : cf__wire_put_u64(&w->out, (uint64_t)(uintptr_t)pool->initarg);
    rc = rc ? rc : cf__wire_put_u32(&w->out, pool->n_required);
    rc = rc ? rc : cf_buffer_append(&w->out, pool->required.data,
                                    pool->required.len);
    if (rc == CF_OK)
        cf__wire_end(&w->out, start);
    return rc;
}

void cf__pp_w_send_exit(wproc *w)
{
    size_t start;
    if (cf__wire_begin(&w->out, CF__MSG_EXIT, 0, &start) == CF_OK)
        cf__wire_end(&w->out, start);
    else
        cf__proc_signal(&w->proc, SIGKILL); /* out of memory: no goodbye */
    w->state = W_EXITING;
    cf__pp_w_flush(w);
}

/* Starts a worker in the free slot `w`. Its INIT message and its receive
 * buffer are allocated first, so once the process runs nothing it needs
 * can fail for want of memory. */
int cf__pp_spawn_worker(process_pool *pool, wproc *w)
{
    int index = (int)(w - pool->workers);
    cf__mutex_lock(&pool->lock); /* the wait list is read under it */
    memset(w, 0, sizeof *w);
    cf__mutex_unlock(&pool->lock);
    cf__buffer_init(&w->out);
    cf__buffer_init(&w->in);
    /* The slot's previous worker has been reaped: no other writer. */
    w->slot = pool->shm.base ? (cf__shm_slot *)pool->shm.base + index : NULL;
    if (w->slot) {
        for (unsigned i = 0; i < CF__CLAIM_RING; i++)
            atomic_store(&w->slot->claim[i], 0);
        atomic_store(&w->slot->done, 0);
        atomic_store(&w->slot->asleep, 0);
        atomic_store(&w->slot->ring_head, 0);
        atomic_store(&w->slot->ring_tail, 0);
        w->seen_from = atomic_load(&w->slot->from_worker);
        /* Touch the ring's pages now: a first touch costs microseconds
         * on a VM, which results streaming through it should not pay. */
        memset(w->slot->ring, 0, CF__RING_BYTES);
    }
    int rc = w_send_init(pool, w);
    rc = rc ? rc : cf__buffer_reserve(&w->in, 64u << 10);
    rc = rc ? rc : cf__buffer_reserve(&w->out, 64u << 10);
    if (rc == CF_OK) { /* likewise */
        memset(w->in.data, 0, w->in.cap);
        memset(w->out.data + w->out.len, 0, w->out.cap - w->out.len);
    }
    cf__spawned started;
    if (rc == CF_OK)
        rc = cf__spawn_worker(&pool->spawn, &pool->shm,
                              w->slot ? index : -1, &started);
    if (rc == CF_OK) {
        w->proc = started.proc;
        w->transport = pool->spawn.transport;
        w->reap = started.reap;
        w->reap_ctx = started.reap_ctx;
    } else {
        cf__buffer_destroy(&w->out);
        cf__buffer_destroy(&w->in);
        return rc;
    }
    w->state = W_STARTING;
    cf__mutex_lock(&pool->lock);
    pool->n_alive++;
    cf__mutex_unlock(&pool->lock);
    cf__monitor_worker_event(pool->ex, CF_EVENT_WORKER_START, index, 0, NULL);
    cf__pp_w_flush(w);
    return CF_OK;
}

/* ------------------------------------------------------------------------ */
/* Manager: claiming tasks                                                  */

/* True when the worker has finished every task claimed on it, so the
 * next one may be claimed. Its result may still be on the way. */
bool cf__pp_w_free(const wproc *w)
{
    return w->busy_k == 0 ||
           (w->slot &&
            (int)(atomic_load_explicit(&w->slot->done, memory_order_acquire) -
                  w->busy_k) >= 0);
}

/* The future's cancel hook while its task waits at a worker: the cancel
 * and the worker race on the claim word, one compare-and-swap each. */
static bool task_cancel_hook(cf_future *f)
{
    task *t = f->start.cancel_hook.data;
    unsigned seen = CF__CLAIM(t->k, CF__CLAIM_PENDING);
    if (atomic_compare_exchange_strong(t->claim, &seen,
                                       CF__CLAIM(t->k, CF__CLAIM_SKIP)))
        return true;
    return seen != CF__CLAIM(t->k, CF__CLAIM_RUNNING);
}

/* Takes a waiting task back from its worker (to move or fail it): true
 * unless the worker claimed it first. Its cancel hook is removed. */
bool cf__pp_task_take_back(task *t)
{
    unsigned seen = CF__CLAIM(t->k, CF__CLAIM_PENDING);
    if (!atomic_compare_exchange_strong(t->claim, &seen,
                                        CF__CLAIM(t->k, CF__CLAIM_SKIP)) &&
        seen == CF__CLAIM(t->k, CF__CLAIM_RUNNING))
        return false;
    cf__future_set_cancel_hook(t->f, NULL, NULL);
    return true;
}

void cf__pp_run_push(process_pool *pool, wproc *w, task *t)
{
    if (t->mon)
        cf__monitor_task_start(t->mon, (int)(w - pool->workers));
    cf__pp_task_append(&w->run_head, &w->run_tail, t);
    w->n_running++;
    w->busy_k = t->k;
    w->tasks_run++;
    /* Its limit counts from its start: now, or when the manager caught up
     * with the worker's claim (a few microseconds later). */
    if (t->limit > 0)
        cf__deadline_from_timeout(t->limit, &t->deadline);
    /* Claimed: it will not move again. A modest buffer is kept for the
     * task's next use (task_free). */
    if (t->msg.cap > SPARE_MSG_BYTES)
        cf__buffer_destroy(&t->msg);
}

task *cf__pp_wait_pop(process_pool *pool, wproc *w)
{
    cf__mutex_lock(&pool->lock);
    task *t = w->wait_head;
    if (t) {
        w->wait_head = t->next;
        if (!w->wait_head)
            w->wait_tail = NULL;
        w->n_waiting--;
    }
    cf__mutex_unlock(&pool->lock);
    return t;
}

void cf__pp_inflight_add(process_pool *pool, long n)
{
    cf__mutex_lock(&pool->lock);
    pool->n_inflight = (size_t)((long)pool->n_inflight + n);
    cf__mutex_unlock(&pool->lock);
}

/* True if the worker has decided on its oldest waiting task. */
bool cf__pp_w_head_decided(const wproc *w)
{
    const task *t = w->wait_head;
    return t && w->slot &&
           atomic_load(t->claim) != CF__CLAIM(t->k, CF__CLAIM_PENDING);
}

/* Catches up with the worker's claims, oldest first: a claimed task turns
 * RUNNING (its result comes later, in order); a skipped one (cancelled)
 * is dropped. Stops at the first task the worker has not reached. */
void cf__pp_w_sync(process_pool *pool, wproc *w)
{
    while (cf__pp_w_head_decided(w)) {
        task *t = cf__pp_wait_pop(pool, w);
        if (atomic_load(t->claim) == CF__CLAIM(t->k, CF__CLAIM_RUNNING)) {
            /* CF_ESTATE if a cancel found it claimed and did this. */
            cf_future_set_running_or_notify_cancel(t->f);
            cf__pp_run_push(pool, w, t);
        } else {
            cf__pp_inflight_add(pool, -1);
            cf__pp_task_free(t); /* cancelled while waiting: it never runs */
        }
    }
}

/* Appends the task's frame to the worker's output as task number `k`. */
static int w_append(wproc *w, task *t)
{
    int rc = cf_buffer_append(&w->out, t->msg.data, t->msg.len);
    if (rc == CF_OK)
        w->next_k = t->k;
    return rc;
}

/* Returns true if a shutdown(cancel_futures) came while the task was on
 * its way here: it found the task neither queued nor waiting, so cancelling
 * it is left to the caller. */
static bool wait_push(process_pool *pool, wproc *w, task *t)
{
    cf__mutex_lock(&pool->lock);
    cf__pp_task_append(&w->wait_head, &w->wait_tail, t);
    w->n_waiting++;
    bool missed = atomic_load_explicit(&pool->stop_running,
                                       memory_order_relaxed);
    cf__mutex_unlock(&pool->lock);
    return missed;
}

/* Sends `t` (PENDING, counted in n_inflight, no cancel hook) to `w`:
 * claimed at once if the worker is free, else it waits there for the
 * worker to claim it, cancellable through its claim word. */
void cf__pp_w_give(process_pool *pool, wproc *w, task *t)
{
    /* A shutdown(cancel_futures) since the task left the queue (or another
     * worker) cancels it here: it has not started. */
    if (atomic_load_explicit(&pool->stop_running, memory_order_acquire))
        cf__future_cancel(t->f);
    bool claim_now = cf__pp_w_free(w) && !w->wait_head;
    w->idle_since = 0; /* busy: its idle time starts again after this */
    t->k = w->next_k + 1;
    t->claim = w->slot ? &w->slot->claim[t->k % CF__CLAIM_RING] : NULL;
    /* Its cancel flag there, cleared before the claim word's store
     * publishes the task (escalation.c raises it). */
    if (w->slot)
        atomic_store_explicit(&w->slot->stop[t->k % CF__CLAIM_RING], false,
                              memory_order_relaxed);
    if (claim_now) {
        if (cf_future_set_running_or_notify_cancel(t->f) != CF_OK) {
            cf__pp_inflight_add(pool, -1);
            cf__pp_task_free(t); /* cancelled: never sent */
            return;
        }
        if (t->claim)
            atomic_store(t->claim, CF__CLAIM(t->k, CF__CLAIM_RUNNING));
    } else {
        atomic_store(t->claim, CF__CLAIM(t->k, CF__CLAIM_PENDING));
        cf__future_set_cancel_hook(t->f, task_cancel_hook, t);
        /* A cancel before the hook was set left no mark on the word. */
        if (cf_future_cancelled(t->f)) {
            cf__pp_inflight_add(pool, -1);
            cf__pp_task_free(t); /* never sent; k goes to the next task */
            return;
        }
    }
    if (w_append(w, t) != CF_OK) {
        cf__pp_inflight_add(pool, -1);
        cf__pp_task_fail(t, CF_ENOMEM,
                  "no memory to send the task to a worker process");
        return;
    }
    if (claim_now)
        cf__pp_run_push(pool, w, t);
    else if (wait_push(pool, w, t))
        cf__future_cancel(t->f); /* through its hook: the worker skips it */
}

/* Whether `w` may be given another task now. Without the shared claim
 * word a task is sent only to a free worker. With it, a few more wait
 * there, within the budget of max_tasks_per_child. */
bool cf__pp_w_can_take(const process_pool *pool, const wproc *w,
                       bool free_only)
{
    if (w->state != W_READY || w->send_failed || w->retiring)
        return false;
    bool idle = cf__pp_w_free(w) && !w->wait_head;
    if (pool->max_tasks_per_child &&
        w->tasks_run + w->n_waiting >= pool->max_tasks_per_child)
        return false;
    if (idle)
        return true;
    if (free_only || !w->slot)
        return false;
    /* Claim words are reused only once the worker is past them. */
    unsigned done = atomic_load_explicit(&w->slot->done, memory_order_acquire);
    return w->n_waiting < WINDOW && w->next_k - done < CF__CLAIM_RING - 1 &&
           w->out.len - w->out_off < WINDOW_BYTES;
}
