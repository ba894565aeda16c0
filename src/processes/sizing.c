/* sizing.c - how many workers the process pool runs: starting them as
 * work needs them, shrinking to max_workers after
 * cf_executor_set_max_workers(), and letting idle ones go after
 * idle_timeout (down to min_workers).
 *
 * Design: manager thread only, called from step() with the limit it read
 * under the pool lock (limit_seen). Surplus workers retire: an idle one
 * leaves at once, a busy one gets no new task and leaves once its current
 * one is done, its waiting tasks moved back to the queue. A grow first
 * keeps retiring ones. Locks: the pool lock, briefly, for the queue.
 */
#include "processes/pool.h"

#include <stdio.h>

/* True while a worker the pool lost (killed for its task, or dead under
 * survive_worker_death) is owed a replacement now: fewer than min_workers
 * would be alive without it. Workers are not started in advance, so a
 * loss above min_workers waits for work (which starts one at once). */
static bool replacement_owed(process_pool *pool, int alive, int limit)
{
    int floor = pool->min_workers < limit ? pool->min_workers : limit;
    if (pool->lost > 0 && alive < floor)
        return true;
    pool->lost = 0; /* paid, or not owed */
    return false;
}

void cf__pp_spawn_needed(process_pool *pool, size_t queued)
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
    for (int i = 0; i < pool->max_workers && alive < limit &&
                    ((size_t)available < queued ||
                     replacement_owed(pool, alive, limit));
         i++) {
        wproc *w = &pool->workers[i];
        if (w->state != W_FREE)
            continue;
        int rc = cf__pp_spawn_worker(pool, w);
        if (rc != CF_OK) {
            if (alive > 0)
                return; /* the running workers will get through it */
            char why[320];
            cf__spawn_describe_failure(&pool->spawn, rc, why, sizeof why);
            cf__mutex_lock(&pool->lock);
            task *q = cf__pp_take_queue(pool);
            cf__mutex_unlock(&pool->lock);
            cf__pp_fail_list(q, rc, why);
            return;
        }
        alive++;
        available++;
        if (pool->lost > 0)
            pool->lost--;
    }
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
    cf__pp_requeue(pool, back);
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
void cf__pp_resize(process_pool *pool, size_t queued)
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
int cf__pp_reap_timeout_ms(const process_pool *pool)
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
