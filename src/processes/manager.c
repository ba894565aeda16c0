/* manager.c - the process pool's manager thread: its loop.
 *
 * Design: the manager owns the workers (start, send, receive, reap) and
 * is the only thread that blocks on them. Each step() serves time limits
 * and requests (escalation.c), sizes the pool (sizing.c: starts workers
 * as work needs them, brings their number to max_workers, which
 * cf_executor_set_max_workers() may change, lets idle ones go after
 * idle_timeout), moves queued tasks to workers (dispatch() here, sending
 * in dispatch.c), retires workers past max_tasks_per_child, and lets them
 * go at shutdown; then it busy-waits briefly on the shared counters (new
 * tasks, results, claims) and sleeps in poll() on the wake fd and each
 * worker's descriptors (cf__transport_watch). A worker's end is seen on
 * its pidfd (or its channel's EOF) and handled in exits.c.
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

void (*_Atomic cf__process_pool_before_give)(cf_executor *ex);

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
                void (*hook)(cf_executor *) = atomic_load_explicit(
                    &cf__process_pool_before_give, memory_order_relaxed);
                if (hook)
                    hook(pool->ex);
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
            cf__pp_w_exited(pool, w);
    }
    for (int i = 0; i < pool->max_workers; i++)
        if (pool->workers[i].state != W_FREE)
            cf__pp_w_sync(pool, &pool->workers[i]); /* claims and cancels */
    cf__pp_check_running(pool);
    bool pids_asked = cf__pp_serve_request(pool, false);
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
            cf__pp_resize(pool, queued);
        else
            pool->lost = 0; /* no replacements for a pool closing */
        cf__pp_spawn_needed(pool, queued);
        dispatch(pool);
        /* dispatch() drops tasks cancelled while queued: recount, or an
         * idle worker would never be told to leave (and shutdown would
         * wait for a manager asleep in poll). */
        cf__mutex_lock(&pool->lock);
        queued = pool->n_queued;
        cf__mutex_unlock(&pool->lock);
    }
    if (pids_asked)
        cf__pp_serve_request(pool, true);
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

/* polled_at: the entry stands for pfds[k] and pfds[k + 1] (a socket). */
#define POLLED_BOTH (1 << 30)

/* Fills the poll set: the wake-up fd, then per worker its channel's read
 * end, its write end (the same socket, or a pipe) and its pidfd, at
 * 1 + 3i in pfds (fd -1 where there is nothing to watch); then packs the
 * entries in use into `polled` for poll(). Returns their number. */
static int poll_set(process_pool *pool)
{
    struct pollfd *p = pool->pfds;
    p[0] = (struct pollfd){pool->wake_fd, POLLIN, 0};
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        bool in = w->state != W_FREE && !w->eof;
        bool out =
            w->state != W_FREE && !w->send_failed && cf__pp_w_has_output(w);
        cf__transport_watch(&w->proc, in, out, w->state != W_FREE,
                            p + 1 + 3 * i);
    }
    /* A socket is both ends: one entry watches it both ways. */
    int n = 0;
    for (int k = 0; k < 1 + 3 * pool->max_workers; k++) {
        if (p[k].fd < 0)
            continue;
        if (k % 3 == 2 && n > 0 && pool->polled_at[n - 1] == k - 1 &&
            pool->polled[n - 1].fd == p[k].fd) {
            pool->polled[n - 1].events |= p[k].events;
            pool->polled_at[n - 1] |= POLLED_BOTH;
            continue;
        }
        pool->polled[n] = p[k];
        pool->polled_at[n++] = k;
    }
    return n;
}

/* Hands the events poll() found in `polled` back to their pfds entries;
 * a socket watched both ways gives its read end all but POLLOUT, its
 * write end all but POLLIN, as two entries would have had. */
static void poll_scatter(process_pool *pool, int n)
{
    for (int k = 0; k < 1 + 3 * pool->max_workers; k++)
        pool->pfds[k].revents = 0;
    for (int j = 0; j < n; j++) {
        int k = pool->polled_at[j] & ~POLLED_BOTH;
        short rev = pool->polled[j].revents;
        if (pool->polled_at[j] & POLLED_BOTH) {
            pool->pfds[k].revents = (short)(rev & ~POLLOUT);
            pool->pfds[k + 1].revents = (short)(rev & ~POLLIN);
        } else {
            pool->pfds[k].revents = rev;
        }
    }
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
            cf__pp_w_exited(pool, w);
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
            cf__pp_w_exited(pool, &pool->workers[i]);
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
    int a = poll_timeout_ms(pool), b = cf__pp_reap_timeout_ms(pool);
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
        if (poll(pool->polled, (nfds_t)n, sleep_ms(pool)) >= 0) {
            set_asleep(pool, false);
            atomic_store(&pool->mgr_sleeping, false);
            poll_scatter(pool, n);
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
