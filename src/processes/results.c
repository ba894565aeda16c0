/* results.c - what comes back from workers: reading frames from the
 * transport and the shared result ring, completing futures, and breaking
 * the pool when a worker is lost.
 *
 * Design: results name their task, so the ring and the channel need no
 * common order; a claimed task turns RUNNING before its result is
 * handled. Futures are completed with no pool lock held (completion runs
 * callbacks). A frame that does not decode, or a worker we cannot read
 * from any more, loses that worker (it is killed and its end reported as
 * a crash). Breaking the pool fails the queue, every task at a worker and
 * later submits with CF_EBROKEN_PROCESS_POOL and the reason, once.
 */
#include "processes/pool.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Manager: breaking the pool                                               */

task *cf__pp_take_queue(process_pool *pool)
{
    task *q = pool->head;
    pool->head = pool->tail = NULL;
    pool->n_queued = 0;
    return q;
}

void cf__pp_fail_list(task *q, int code, const char *message)
{
    while (q) {
        task *next = q->next;
        cf__pp_task_fail(q, code, message);
        q = next;
    }
}

/* Takes every task at `w` (claimed, then waiting) off it; the caller
 * owns them. A waiting task is taken back first (the worker will skip it)
 * unless the worker claimed it: then it is claimed, and goes with the run
 * list. Counts them out of n_inflight. */
task *cf__pp_w_take_all(process_pool *pool, wproc *w, task **waiting)
{
    cf__pp_w_sync(pool, w);
    cf__mutex_lock(&pool->lock);
    task *list = w->wait_head;
    w->wait_head = w->wait_tail = NULL;
    w->n_waiting = 0;
    cf__mutex_unlock(&pool->lock);
    task *back = NULL, **tail = &back;
    size_t n = 0;
    while (list) {
        task *t = list;
        list = t->next;
        if (!t->claim || cf__pp_task_take_back(t)) {
            *tail = t;
            tail = &t->next;
            n++;
        } else {
            cf_future_set_running_or_notify_cancel(t->f);
            cf__pp_run_push(pool, w, t);
        }
    }
    *tail = NULL;
    *waiting = back;
    task *run = w->run_head;
    w->run_head = w->run_tail = NULL;
    n += w->n_running;
    w->n_running = 0;
    w->busy_k = 0;
    cf__mutex_lock(&pool->lock);
    pool->n_inflight -= n;
    cf__mutex_unlock(&pool->lock);
    return run;
}

/* Every pending and running future fails with `message`; every other
 * worker is killed, and later submits fail. */
void cf__pp_break_pool(process_pool *pool, const char *why)
{
    char *message = cf__format("process pool is broken: %s", why);
    const char *m = message ? message : cf_strerror(CF_EBROKEN_PROCESS_POOL);
    cf__mutex_lock(&pool->lock);
    bool was_broken = pool->broken;
    pool->broken = true;
    /* With the flag, under the lock: cf_executor_broken() reads both. */
    if (!pool->broken_msg)
        pool->broken_msg = message;
    task *q = cf__pp_take_queue(pool);
    cf__mutex_unlock(&pool->lock);
    if (!was_broken)
        cf__monitor_worker_event(pool->ex, CF_EVENT_CRASH, -1,
                                 CF_EBROKEN_PROCESS_POOL, m);
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        if (w->state == W_FREE)
            continue;
        task *waiting;
        task *run = cf__pp_w_take_all(pool, w, &waiting);
        cf__pp_fail_list(run, CF_EBROKEN_PROCESS_POOL, m);
        cf__pp_fail_list(waiting, CF_EBROKEN_PROCESS_POOL, m);
        cf__proc_signal(&w->proc, SIGKILL);
        w->state = W_EXITING;
    }
    cf__pp_fail_list(q, CF_EBROKEN_PROCESS_POOL, m);
    if (pool->broken_msg != message)
        free(message);
}

/* ------------------------------------------------------------------------ */
/* Manager: results                                                         */

/* The claimed task of `w` with submission number `seq`, or NULL. Results
 * come in order through each channel (shared ring, socket), not across
 * them. */
static task *w_find_running(const wproc *w, uint64_t seq)
{
    for (task *t = w->run_head; t; t = t->next)
        if (t->seq == seq)
            return t;
    return NULL;
}

/* Completes the claimed task `t` of `w` (the one this result is for). */
static void finish_task(process_pool *pool, wproc *w, task *t, void *value,
                        void (*free_value)(void *), int code, char *msg)
{
    task **link = &w->run_head, *prev = NULL;
    while (*link != t) {
        prev = *link;
        link = &prev->next;
    }
    *link = t->next;
    if (w->run_tail == t)
        w->run_tail = prev;
    w->n_running--;
    if (t->k == w->busy_k)
        w->busy_k = 0;
    cf__pp_inflight_add(pool, -1);
    if (t->mon)
        cf__monitor_task_end(t->mon); /* before FINISH, which reports it */
    if (cf__future_finish(t->f, value, free_value, code, msg) != CF_OK &&
        free_value && value)
        free_value(value);
    cf__pp_task_free(t);
}

static void handle_result(process_pool *pool, wproc *w, task *t,
                          const unsigned char *p, size_t len)
{
    cf__wire_status st;
    if (cf__wire_decode_status(p, len, &st) != CF_OK) {
        finish_task(pool, w, t, NULL, NULL, CF_ECODEC,
                    cf__strdup("malformed result message"));
        return;
    }
    if (st.code != 0) {
        char *msg = malloc(st.len + 1);
        if (msg) {
            memcpy(msg, st.data, st.len);
            msg[st.len] = '\0';
        }
        finish_task(pool, w, t, NULL, NULL, st.code, msg);
        return;
    }
    void *value = NULL;
    int rc = t->codec->decode_result(st.data, st.len, &value);
    if (rc != CF_OK) {
        finish_task(pool, w, t, NULL, NULL, rc,
                    cf__format("could not decode the task's result: %s",
                               cf_strerror(rc)));
        return;
    }
    finish_task(pool, w, t, value, t->codec->free_result, 0, NULL);
}

static void handle_chunk_result(process_pool *pool, wproc *w, task *t,
                                const unsigned char *p, size_t len)
{
    cf__chunk *c = t->chunk;
    cf__wire_reader r;
    cf__wire_reader_init(&r, p, len);
    if (cf__wire_get_u64(&r) != c->n || r.bad) {
        finish_task(pool, w, t, NULL, NULL, CF_ECODEC,
                    cf__strdup("malformed map chunk result"));
        return;
    }
    if (cf__chunk_items(c) != CF_OK) {
        finish_task(pool, w, t, NULL, NULL, CF_ENOMEM,
                    cf__strdup("no memory for the map chunk's outcomes"));
        return;
    }
    bool words = t->codec == cf_codec_word();
    for (size_t i = 0; i < c->n; i++) {
        cf__chunk_item *it = &c->items[i];
        const unsigned char *q = r.p + r.pos;
        if (words && r.len - r.pos >= 24 && cf__wire_load_u64(q) == 0 &&
            cf__wire_load_u64(q + 8) == 8) {
            /* Success and a word (status 0, length 8): read in place. */
            it->value = (void *)(uintptr_t)cf__wire_load_u64(q + 16);
            r.pos += 24;
            continue;
        }
        cf__wire_status st;
        if (cf__wire_next_status(&r, &st) != CF_OK) {
            it->code = CF_ECODEC;
            it->message = cf__strdup("malformed map chunk result");
            continue;
        }
        if (st.code != 0) {
            it->code = st.code;
            it->message = malloc(st.len + 1);
            if (it->message) {
                memcpy(it->message, st.data, st.len);
                it->message[st.len] = '\0';
            }
            continue;
        }
        int rc;
        if (t->codec == cf_codec_word() && st.len == 8) {
            it->value = (void *)(uintptr_t)cf__wire_load_u64(st.data);
            rc = CF_OK;
        } else {
            rc = t->codec->decode_result(st.data, st.len, &it->value);
        }
        if (rc != CF_OK) {
            it->value = NULL;
            it->code = rc;
            it->message = cf__format("could not decode the task's result: %s",
                                     cf_strerror(rc));
            continue;
        }
        it->free_value = t->codec->free_result;
    }
    finish_task(pool, w, t, c, NULL, 0, NULL);
}

/* A WORDS_RESULT: every item of a WORDS chunk gave a plain word. The
 * words go over the chunk's args (see pool_submit_chunk). */
static void handle_words_result(process_pool *pool, wproc *w, task *t,
                                const unsigned char *p, size_t len)
{
    cf__chunk *c = t->chunk;
    uint64_t n;
    const unsigned char *words;
    if (cf__wire_decode_words_result(p, len, &n, &words) != CF_OK ||
        n != c->n) {
        finish_task(pool, w, t, NULL, NULL, CF_ECODEC,
                    cf__strdup("malformed map chunk result"));
        return;
    }
    for (size_t i = 0; i < c->n; i++)
        c->args[i] = (void *)(uintptr_t)cf__wire_load_u64(words + 8 * i);
    finish_task(pool, w, t, c->args, NULL, 0, NULL);
}

/* A worker that has run its share (max_tasks_per_child) leaves once
 * nothing of it is left. */
static void after_task(process_pool *pool, wproc *w)
{
    if (pool->max_tasks_per_child && !w->run_head && !w->wait_head &&
        w->tasks_run >= pool->max_tasks_per_child)
        cf__pp_w_send_exit(w);
}

/* Handles one frame from a worker. Returns false on a protocol error. */
static bool handle_frame(process_pool *pool, wproc *w,
                         const cf__wire_header *h, const unsigned char *p)
{
    switch (h->type) {
    case CF__MSG_READY:
        if (w->state != W_STARTING)
            return false;
        w->state = W_READY;
        return true;
    case CF__MSG_INIT_FAILED: {
        cf__wire_status st;
        if (w->state != W_STARTING ||
            cf__wire_decode_status(p, h->len, &st) != CF_OK)
            return false;
        char why[512];
        snprintf(why, sizeof why,
                 "the initializer failed in worker process %ld: %.*s",
                 (long)w->proc.pid, (int)(st.len > 300 ? 300 : st.len),
                 (const char *)st.data);
        cf__pp_break_pool(pool, why);
        return true;
    }
    case CF__MSG_CRASH: {
        /* Its dying words: kept for the report of its exit. */
        unsigned char *copy = malloc(h->len ? (size_t)h->len : 1);
        if (copy) { /* no memory: the report goes without the trace */
            memcpy(copy, p, (size_t)h->len);
            free(w->crash);
            w->crash = copy;
            w->crash_len = (size_t)h->len;
        }
        return true;
    }
    case CF__MSG_CLAIMED:
        /* A wake-up: results in the ring, or a claim. */
        cf__pp_w_drain_ring(pool, w);
        cf__pp_w_sync(pool, w);
        return true;
    case CF__MSG_RESULT:
    case CF__MSG_CHUNK_RESULT:
    case CF__MSG_WORDS_RESULT: {
        /* The worker claimed the task before it wrote this. */
        task *t = w_find_running(w, h->id);
        if (!t) {
            cf__pp_w_sync(pool, w);
            t = w_find_running(w, h->id);
        }
        if (!t || (h->type != CF__MSG_RESULT) != (t->chunk != NULL) ||
            (h->type == CF__MSG_WORDS_RESULT &&
             t->codec != cf_codec_word()))
            return false;
        if (h->type == CF__MSG_RESULT)
            handle_result(pool, w, t, p, (size_t)h->len);
        else if (h->type == CF__MSG_WORDS_RESULT)
            handle_words_result(pool, w, t, p, (size_t)h->len);
        else
            handle_chunk_result(pool, w, t, p, (size_t)h->len);
        if (w->state == W_READY)
            after_task(pool, w);
        return true;
    }
    default:
        return false;
    }
}

/* Gives back the memory of a huge result once it is handled (best effort:
 * if realloc fails, the large buffer stays). */
static void shrink_input(wproc *w)
{
    unsigned char *data = realloc(w->in.data, 64u << 10);
    if (data) {
        w->in.data = data;
        w->in.cap = 64u << 10;
    }
}

/* Handles the frames of one ring record. False if they are corrupt or
 * out of turn (then the worker has been given up). */
static bool handle_record(process_pool *pool, wproc *w, const unsigned char *p,
                          size_t len)
{
    size_t off = 0;
    while (off < len) {
        cf__wire_header h;
        if (cf__wire_header_decode(p + off, len - off, &h) != CF_OK ||
            h.type < CF__MSG_READY ||
            h.len > len - off - CF__WIRE_HEADER_SIZE) {
            cf__pp_w_lose(w, "it sent a corrupt message");
            return false;
        }
        const unsigned char *payload = p + off + CF__WIRE_HEADER_SIZE;
        off += CF__WIRE_HEADER_SIZE + (size_t)h.len;
        if (!handle_frame(pool, w, &h, payload)) {
            cf__pp_w_lose(w, "it sent a message out of turn");
            return false;
        }
        if (w->state == W_FREE || w->lost)
            return false; /* given up meanwhile */
    }
    return true;
}

/* Handles what the worker published in the shared ring (cf__shm_slot). */
void cf__pp_w_drain_ring(process_pool *pool, wproc *w)
{
    cf__shm_slot *s = w->slot;
    if (!s || w->draining)
        return; /* a CLAIMED frame met while draining: nothing to add */
    w->draining = true;
    uint64_t tail = atomic_load_explicit(&s->ring_tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&s->ring_head, memory_order_acquire);
    /* Not stopped by EOF: results published before an exit count. */
    while (tail != head && w->state != W_FREE && !w->lost) {
        size_t pos = (size_t)(tail % CF__RING_BYTES);
        uint64_t len;
        memcpy(&len, s->ring + pos, 8);
        if (len == CF__RING_WRAP) {
            tail += CF__RING_BYTES - pos;
        } else if (len > CF__RING_BYTES - pos - 8 || head - tail < 8 + len) {
            cf__pp_w_lose(w, "it sent a corrupt message");
            break;
        } else {
            bool ok = handle_record(pool, w, s->ring + pos + 8, (size_t)len);
            tail += 8 + ((len + 7) & ~(uint64_t)7);
            if (!ok)
                break;
        }
        atomic_store_explicit(&s->ring_tail, tail, memory_order_release);
        if (tail == head)
            head = atomic_load_explicit(&s->ring_head, memory_order_acquire);
    }
    atomic_store_explicit(&s->ring_tail, tail, memory_order_release);
    w->draining = false;
}

/* True if the worker published results the pool has not handled. */
bool cf__pp_w_ring_ready(const wproc *w)
{
    /* seq_cst: set_asleep() relies on it (Dekker with ring_put). */
    return w->slot && atomic_load(&w->slot->ring_head) !=
                          atomic_load_explicit(&w->slot->ring_tail,
                                               memory_order_relaxed);
}

/* Reads everything the ring and the socket have and handles complete
 * frames. */
void cf__pp_w_receive(process_pool *pool, wproc *w)
{
    cf__pp_w_drain_ring(pool, w);
    while (!w->eof) {
        /* Handle complete frames first, so memory stays one frame deep. */
        for (;;) {
            size_t avail = w->in.len - w->in_pos;
            cf__wire_header h;
            int rc = cf__wire_header_decode(w->in.data + w->in_pos, avail, &h);
            if (rc == CF_EAGAIN)
                break;
            if (rc != CF_OK || h.type < CF__MSG_READY) {
                cf__pp_w_lose(w, "it sent a corrupt message");
                return;
            }
            if (avail - CF__WIRE_HEADER_SIZE < h.len) {
                size_t need = CF__WIRE_HEADER_SIZE + (size_t)h.len - avail;
                if (cf__buffer_reserve(&w->in, need) != CF_OK) {
                    cf__pp_w_lose(w, "no memory to receive its result");
                    return;
                }
                break;
            }
            const unsigned char *payload =
                w->in.data + w->in_pos + CF__WIRE_HEADER_SIZE;
            w->in_pos += CF__WIRE_HEADER_SIZE + (size_t)h.len;
            if (!handle_frame(pool, w, &h, payload)) {
                cf__pp_w_lose(w, "it sent a message out of turn");
                return;
            }
            if (w->state == W_FREE || w->eof)
                return; /* the pool broke meanwhile */
        }
        if (w->in_pos == w->in.len) {
            w->in.len = w->in_pos = 0;
            if (w->in.cap > (4u << 20))
                shrink_input(w);
        } else if (w->in_pos > 0 && w->in.cap - w->in.len < (16u << 10)) {
            memmove(w->in.data, w->in.data + w->in_pos, w->in.len - w->in_pos);
            w->in.len -= w->in_pos;
            w->in_pos = 0;
        }
        /* The buffer was sized at spawn; it grows only for frames larger
         * than it, so a failure here is that frame's (handled above). */
        if (w->in.cap - w->in.len < 4096 &&
            cf__buffer_reserve(&w->in, 64u << 10) != CF_OK) {
            cf__pp_w_lose(w, "no memory to receive its result");
            return;
        }
        ptrdiff_t n = w->transport->recv(&w->proc, w->in.data + w->in.len,
                                         w->in.cap - w->in.len);
        if (n == -1)
            return; /* nothing more for now */
        if (n == 0) {
            w->eof = true; /* it closed its end: its exit follows */
            return;
        }
        if (n < 0) {
            cf__pp_w_lose(w, "receiving from it failed");
            return;
        }
        w->in.len += (size_t)n;
    }
}
