/* process_pool.c - ProcessPoolExecutor: bookkeeping and the manager thread.
 *
 * Design:
 *
 *   submit (any thread)                manager thread               workers
 *   -------------------                --------------               -------
 *   encode arg with codec  ---+
 *   frame a TASK message      |  queue   pop, set RUNNING   socket   decode,
 *   append to queue, wake  ---+-------> (skip cancelled) ---------> run fn,
 *                                        one task per               encode
 *   future <--- finish <--- decode <--- idle worker     <---------  result
 *                           result      poll(): wake fd,  socket
 *                                       sockets, pidfds
 *
 * The manager thread owns the workers (spawn, send, receive, reap) and is
 * the only thread that blocks on them; callers only touch the queue under
 * `lock`. A worker gets one task at a time, and its future turns RUNNING
 * when it is handed to that idle worker, so cf_future_running() means a
 * worker has the task and nothing is ahead of it; a queued task can still
 * be cancelled, and a cancelled one never reaches a worker. A map chunk is
 * one message and one task.
 *
 * The manager never blocks on a write: sockets are non-blocking and the
 * unsent rest of a message waits for POLLOUT, while results keep being
 * read, so a large payload in each direction cannot deadlock. A worker's
 * exit is seen on its pidfd (or, without pidfds, its socket's EOF); the
 * socket is drained first so results written just before death count. An
 * exit while a task was at the worker breaks the pool (or, with
 * survive_worker_death, fails that task only); an exit we did not ask for
 * breaks it too. Workers are reaped by pid, never waitpid(-1).
 *
 * Lock order: pool lock, then a future's lock (set_running only). Futures
 * are completed and cancelled with no pool lock held, since completion runs
 * callbacks.
 */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "platform/process.h"
#include "wire.h"

enum wstate {
    W_FREE = 0, /* slot unused */
    W_STARTING, /* INIT sent, READY not yet received */
    W_IDLE,
    W_BUSY,     /* a task is at the worker */
    W_EXITING,  /* EXIT sent (shutdown or max_tasks_per_child) */
};

typedef struct task {
    struct task *next;
    cf_future *f;          /* the pool's reference */
    cf__chunk *chunk;      /* map chunk (owned by the map iterator) or NULL */
    cf_fn fn;
    const cf_codec *codec; /* decodes the result */
    uint64_t seq;          /* submission number, the message id */
    cf_buffer msg;         /* the framed TASK or CHUNK message */
} task;

typedef struct wproc {
    cf__proc proc;
    enum wstate state;
    task *inflight;        /* the task at the worker, or NULL */
    size_t tasks_run;      /* tasks sent to this worker */
    cf_buffer ctl;         /* control frames not yet sent (INIT, EXIT) */
    size_t ctl_off;
    size_t msg_off;        /* bytes of inflight->msg already sent */
    cf_buffer in;          /* received bytes; frames start at in_pos */
    size_t in_pos;
    bool eof;              /* the socket reached EOF */
    bool send_failed;      /* the worker's end is gone */
    bool terminated;       /* sent SIGTERM/SIGKILL by terminate/kill */
    const char *lost;      /* why we gave up on it (killed), or NULL */
} wproc;

typedef struct process_pool {
    /* Immutable after creation. */
    cf_executor *ex;
    int max_workers;
    cf_start_method method;
    char *exe;             /* exec mode: the program to start */
    bool has_init;
    char *init_module;     /* initializer's module (copy) */
    uint64_t init_offset;
    void *initarg;
    size_t max_tasks_per_child;
    const cf_codec *codec;
    bool survive;
    pid_t owner;           /* the process that created the pool */
    int wake_fd;
    cf__thread manager;

    atomic_bool wake_pending; /* a wake-up is in flight: skip the write */
    atomic_uint_fast64_t next_seq;

    cf__mutex lock;
    cf__cond changed;      /* manager_done or n_alive changed */
    task *head, *tail;     /* guarded by lock: the queue */
    size_t n_queued;       /* guarded by lock */
    size_t n_inflight;     /* guarded by lock: tasks at workers */
    int n_alive;           /* guarded by lock: worker processes not reaped */
    bool shutdown;         /* guarded by lock */
    int terminate_sig;     /* guarded by lock: 0, SIGTERM or SIGKILL */
    bool broken;           /* guarded by lock */
    bool manager_done;     /* guarded by lock */
    bool manager_joined;   /* guarded by lock */

    /* Manager thread only. */
    wproc *workers;        /* max_workers slots */
    struct pollfd *pfds;   /* 1 + 2 * max_workers */
    int terminate_sent;    /* signal already sent to the workers */
    char *broken_msg;      /* why the pool broke (set once, then read-only) */
} process_pool;

static const cf_executor_ops process_pool_ops;

/* ------------------------------------------------------------------------ */
/* Tasks                                                                    */

static void task_free(task *t)
{
    if (!t)
        return;
    cf__buffer_destroy(&t->msg);
    cf_future_release(t->f);
    free(t);
}

static void describe_task(const task *t, char *buf, size_t n)
{
    char name[256];
    cf__addr_describe(cf__fn_addr((cf__any_fn)t->fn), name, sizeof name);
    snprintf(buf, n, "%s #%llu (%s)", t->chunk ? "map chunk" : "task",
             (unsigned long long)t->seq, name);
}

/* Fails a task's future with a pool error. The future may be PENDING
 * (queued) or RUNNING (at a worker); a cancelled one stays cancelled. */
static void task_fail(task *t, int code, const char *message)
{
    cf__future_finish(t->f, NULL, NULL, code, cf__strdup(message));
    task_free(t);
}

static int codec_to_wire(const cf_codec *codec, cf__wire_codec *out)
{
    if (codec == cf_codec_word()) {
        out->kind = CF__CODEC_WORD;
        return CF_OK;
    }
    if (codec == cf_codec_string()) {
        out->kind = CF__CODEC_STRING;
        return CF_OK;
    }
    out->kind = CF__CODEC_CUSTOM;
    /* The worker finds the codec where it finds functions: by module and
     * offset. A codec on the heap or the stack has no such address. */
    return cf__addr_to_ref(codec, &out->ref);
}

/* Builds a task and the head of its message (header, fn, codec). */
static int task_new(process_pool *pool, cf_future *f, cf_fn fn,
                    const cf_codec *codec, bool chunk, task **out)
{
    cf__wire_ref fn_ref;
    cf__wire_codec wc;
    if (cf__addr_to_ref(cf__fn_addr((cf__any_fn)fn), &fn_ref) != CF_OK ||
        codec_to_wire(codec, &wc) != CF_OK)
        return CF_EINVAL;
    task *t = calloc(1, sizeof *t);
    if (!t)
        return CF_ENOMEM;
    t->fn = fn;
    t->codec = codec;
    t->seq = atomic_fetch_add(&pool->next_seq, 1);
    cf__buffer_init(&t->msg);
    size_t start;
    int rc = cf__buffer_reserve(&t->msg, 96 + fn_ref.module_len);
    rc = rc ? rc : cf__wire_begin(&t->msg, chunk ? CF__MSG_CHUNK
                                                 : CF__MSG_TASK,
                                  t->seq, &start);
    rc = rc ? rc : cf__wire_put_ref(&t->msg, &fn_ref);
    rc = rc ? rc : cf__wire_put_codec(&t->msg, &wc);
    if (rc != CF_OK) {
        cf__buffer_destroy(&t->msg);
        free(t);
        return rc;
    }
    t->f = f;
    *out = t;
    return CF_OK;
}

/* ------------------------------------------------------------------------ */
/* Submitting                                                               */

static void wake_manager(process_pool *pool)
{
    /* One write per sleep of the manager, not one per submit. */
    if (!atomic_exchange(&pool->wake_pending, true))
        cf__wake_signal(pool->wake_fd);
}

/* Queues a built task. On error the task is not queued (caller frees). */
static int enqueue(process_pool *pool, task *t)
{
    cf__mutex_lock(&pool->lock);
    int rc = pool->broken     ? CF_EBROKEN_PROCESS_POOL
             : pool->shutdown ? CF_ESHUTDOWN
                              : CF_OK;
    if (rc == CF_OK) {
        cf_future_retain(t->f);
        t->next = NULL;
        if (pool->tail)
            pool->tail->next = t;
        else
            pool->head = t;
        pool->tail = t;
        pool->n_queued++;
    }
    cf__mutex_unlock(&pool->lock);
    if (rc == CF_OK)
        wake_manager(pool);
    return rc;
}

/* Rejects calls that cannot work here: from inside a worker (it would
 * wait for itself) or from a forked child of the creator (the manager and
 * the workers belong to the parent). */
static int check_caller(const process_pool *pool)
{
    if (cf__process_worker_active())
        return CF_EDEADLK;
    if (getpid() != pool->owner)
        return CF_EBROKEN_PROCESS_POOL;
    return CF_OK;
}

/* An argument that cannot be encoded fails that task's future only. */
static void fail_encode(cf_future *f, int rc, const char *what)
{
    char *msg = cf__format("could not encode the %s: %s", what,
                           cf_strerror(rc));
    cf__future_finish(f, NULL, NULL, rc, msg);
}

static int pool_submit(void *impl, cf_future *f, cf_fn fn, void *arg,
                       const cf_codec *codec)
{
    process_pool *pool = impl;
    int rc = check_caller(pool);
    if (rc != CF_OK)
        return rc;
    if (!codec)
        codec = pool->codec;
    task *t;
    if ((rc = task_new(pool, f, fn, codec, false, &t)) != CF_OK)
        return rc;
    size_t start = 0; /* the frame begins the message */
    int enc = codec->encode_arg(arg, &t->msg);
    if (enc != CF_OK) {
        /* Refuse a submit that would fail anyway on a broken pool. */
        t->f = NULL;
        task_free(t);
        cf__mutex_lock(&pool->lock);
        rc = pool->broken ? CF_EBROKEN_PROCESS_POOL
             : pool->shutdown ? CF_ESHUTDOWN : CF_OK;
        cf__mutex_unlock(&pool->lock);
        if (rc == CF_OK)
            fail_encode(f, enc, "task's argument");
        return rc;
    }
    cf__wire_end(&t->msg, start);
    if ((rc = enqueue(pool, t)) != CF_OK) {
        t->f = NULL;
        task_free(t);
    }
    return rc;
}

/* Native map chunks: the items cross as one CHUNK message. The chunk stays
 * owned by the map iterator; the pool writes the outcomes into it only
 * while the future is RUNNING, and completes the future with the chunk as
 * its (unowned) result. */
static int pool_submit_chunk(void *impl, cf_future *f, cf__chunk *chunk,
                             const cf_codec *codec)
{
    process_pool *pool = impl;
    int rc = check_caller(pool);
    if (rc != CF_OK)
        return rc;
    if (!codec)
        codec = pool->codec;
    task *t;
    if ((rc = task_new(pool, f, chunk->fn, codec, true, &t)) != CF_OK)
        return rc;
    t->chunk = chunk;
    int enc = cf__wire_put_u64(&t->msg, chunk->n);
    for (size_t i = 0; enc == CF_OK && i < chunk->n; i++) {
        size_t at;
        enc = cf__wire_put_placeholder(&t->msg, &at);
        enc = enc ? enc : codec->encode_arg(chunk->args[i], &t->msg);
        if (enc == CF_OK)
            cf__wire_patch_u64(&t->msg, at, t->msg.len - at - 8);
    }
    if (enc != CF_OK) {
        t->f = NULL;
        task_free(t);
        fail_encode(f, enc, "map chunk's arguments");
        return CF_OK;
    }
    cf__wire_end(&t->msg, 0);
    if ((rc = enqueue(pool, t)) != CF_OK) {
        t->f = NULL;
        task_free(t);
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Manager: workers                                                         */

static bool w_has_output(const wproc *w)
{
    return w->ctl_off < w->ctl.len ||
           (w->inflight && w->msg_off < w->inflight->msg.len);
}

/* Gives up on a worker whose socket failed or whose stream we cannot
 * follow (corrupt, or no memory for it): it is killed, so its end is seen
 * like any death (pidfd or EOF) and reported with `why`. Without this, a
 * live worker we no longer talk to would keep its task forever. */
static void w_lose(wproc *w, const char *why)
{
    if (!w->lost)
        w->lost = why;
    w->send_failed = true;
    w->eof = true;
    cf__proc_signal(&w->proc, SIGKILL);
}

/* Sends what the socket takes now; the rest waits for POLLOUT. */
static void w_flush(wproc *w)
{
    while (!w->send_failed && w_has_output(w)) {
        struct iovec iov[2];
        int n = 0;
        if (w->ctl_off < w->ctl.len)
            iov[n++] = (struct iovec){w->ctl.data + w->ctl_off,
                                      w->ctl.len - w->ctl_off};
        if (w->inflight && w->msg_off < w->inflight->msg.len)
            iov[n++] = (struct iovec){w->inflight->msg.data + w->msg_off,
                                      w->inflight->msg.len - w->msg_off};
        ptrdiff_t sent = cf__sock_send(w->proc.fd, iov, n);
        if (sent < 0) {
            w_lose(w, "sending to it failed");
            return;
        }
        if (sent == 0)
            return;
        size_t s = (size_t)sent;
        size_t c = w->ctl.len - w->ctl_off;
        if (s >= c && c > 0) {
            w->ctl.len = w->ctl_off = 0;
            s -= c;
        } else if (c > 0) {
            w->ctl_off += s;
            s = 0;
        }
        w->msg_off += s;
    }
    if (w->inflight && w->msg_off == w->inflight->msg.len &&
        w->inflight->msg.data) {
        /* Sent: free a large argument now, not when the result arrives. */
        cf__buffer_destroy(&w->inflight->msg);
        w->msg_off = 0;
    }
}

static int w_send_init(process_pool *pool, wproc *w)
{
    size_t start;
    int rc = cf__wire_begin(&w->ctl, CF__MSG_INIT, 0, &start);
    rc = rc ? rc : cf__wire_put_u32(&w->ctl, pool->has_init ? 1 : 0);
    if (rc == CF_OK && pool->has_init) {
        cf__wire_ref ref = {pool->init_module, strlen(pool->init_module),
                            pool->init_offset};
        rc = cf__wire_put_ref(&w->ctl, &ref);
    }
    rc = rc ? rc : cf__wire_put_u64(&w->ctl, (uint64_t)(uintptr_t)pool->initarg);
    if (rc == CF_OK)
        cf__wire_end(&w->ctl, start);
    return rc;
}

static void w_send_exit(wproc *w)
{
    size_t start;
    if (cf__wire_begin(&w->ctl, CF__MSG_EXIT, 0, &start) == CF_OK)
        cf__wire_end(&w->ctl, start);
    else
        cf__proc_signal(&w->proc, SIGKILL); /* out of memory: no goodbye */
    w->state = W_EXITING;
    w_flush(w);
}

/* Starts a worker in the free slot `w`. Its INIT message and its receive
 * buffer are allocated first, so once the process runs nothing it needs
 * can fail for want of memory. */
static int spawn_worker(process_pool *pool, wproc *w)
{
    memset(w, 0, sizeof *w);
    cf__buffer_init(&w->ctl);
    cf__buffer_init(&w->in);
    int rc = w_send_init(pool, w);
    rc = rc ? rc : cf__buffer_reserve(&w->in, 64u << 10);
    if (rc == CF_OK)
        rc = pool->method == CF_START_FORK
                 ? cf__proc_spawn_fork(cf__worker_main_forked, &w->proc)
                 : cf__proc_spawn_exec(pool->exe, &w->proc);
    if (rc != CF_OK) {
        cf__buffer_destroy(&w->ctl);
        cf__buffer_destroy(&w->in);
        return rc;
    }
    w->state = W_STARTING;
    cf__mutex_lock(&pool->lock);
    pool->n_alive++;
    cf__mutex_unlock(&pool->lock);
    w_flush(w);
    return CF_OK;
}

/* ------------------------------------------------------------------------ */
/* Manager: breaking the pool                                               */

static task *take_queue(process_pool *pool)
{
    task *q = pool->head;
    pool->head = pool->tail = NULL;
    pool->n_queued = 0;
    return q;
}

static void fail_list(task *q, int code, const char *message)
{
    while (q) {
        task *next = q->next;
        task_fail(q, code, message);
        q = next;
    }
}

/* Every pending and running future fails with `message`; every other
 * worker is killed, and later submits fail. */
static void break_pool(process_pool *pool, const char *why)
{
    char *message = cf__format("process pool is broken: %s", why);
    const char *m = message ? message : cf_strerror(CF_EBROKEN_PROCESS_POOL);
    cf__mutex_lock(&pool->lock);
    pool->broken = true;
    task *q = take_queue(pool);
    size_t lost = 0;
    for (int i = 0; i < pool->max_workers; i++)
        lost += pool->workers[i].inflight != NULL;
    pool->n_inflight -= lost;
    cf__mutex_unlock(&pool->lock);
    if (!pool->broken_msg)
        pool->broken_msg = message;
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        if (w->state == W_FREE)
            continue;
        if (w->inflight) {
            task_fail(w->inflight, CF_EBROKEN_PROCESS_POOL, m);
            w->inflight = NULL;
        }
        cf__proc_signal(&w->proc, SIGKILL);
        w->state = W_EXITING;
    }
    fail_list(q, CF_EBROKEN_PROCESS_POOL, m);
    if (pool->broken_msg != message)
        free(message);
}

/* ------------------------------------------------------------------------ */
/* Manager: results                                                         */

static void finish_inflight(process_pool *pool, wproc *w, void *value,
                            void (*free_value)(void *), int code, char *msg)
{
    task *t = w->inflight;
    w->inflight = NULL;
    w->msg_off = 0;
    cf__mutex_lock(&pool->lock);
    pool->n_inflight--;
    cf__mutex_unlock(&pool->lock);
    if (cf__future_finish(t->f, value, free_value, code, msg) != CF_OK &&
        free_value && value)
        free_value(value);
    task_free(t);
}

static void handle_result(process_pool *pool, wproc *w, const unsigned char *p,
                          size_t len)
{
    task *t = w->inflight;
    cf__wire_status st;
    if (cf__wire_decode_status(p, len, &st) != CF_OK) {
        finish_inflight(pool, w, NULL, NULL, CF_ECODEC,
                        cf__strdup("malformed result message"));
        return;
    }
    if (st.code != 0) {
        char *msg = malloc(st.len + 1);
        if (msg) {
            memcpy(msg, st.data, st.len);
            msg[st.len] = '\0';
        }
        finish_inflight(pool, w, NULL, NULL, st.code, msg);
        return;
    }
    void *value = NULL;
    int rc = t->codec->decode_result(st.data, st.len, &value);
    if (rc != CF_OK) {
        finish_inflight(pool, w, NULL, NULL, rc,
                        cf__format("could not decode the task's result: %s",
                                   cf_strerror(rc)));
        return;
    }
    finish_inflight(pool, w, value, t->codec->free_result, 0, NULL);
}

static void handle_chunk_result(process_pool *pool, wproc *w,
                                const unsigned char *p, size_t len)
{
    task *t = w->inflight;
    cf__chunk *c = t->chunk;
    cf__wire_reader r;
    cf__wire_reader_init(&r, p, len);
    if (cf__wire_get_u64(&r) != c->n || r.bad) {
        finish_inflight(pool, w, NULL, NULL, CF_ECODEC,
                        cf__strdup("malformed map chunk result"));
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        cf__chunk_item *it = &c->items[i];
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
        int rc = t->codec->decode_result(st.data, st.len, &it->value);
        if (rc != CF_OK) {
            it->value = NULL;
            it->code = rc;
            it->message = cf__format("could not decode the task's result: %s",
                                     cf_strerror(rc));
            continue;
        }
        it->free_value = t->codec->free_result;
    }
    finish_inflight(pool, w, c, NULL, 0, NULL);
}

/* The worker finished its task: retire it or make it available. */
static void after_task(process_pool *pool, wproc *w)
{
    if (pool->max_tasks_per_child &&
        w->tasks_run >= pool->max_tasks_per_child)
        w_send_exit(w);
    else
        w->state = W_IDLE;
}

/* Handles one frame from a worker. Returns false on a protocol error. */
static bool handle_frame(process_pool *pool, wproc *w,
                         const cf__wire_header *h, const unsigned char *p)
{
    switch (h->type) {
    case CF__MSG_READY:
        if (w->state != W_STARTING)
            return false;
        w->state = W_IDLE;
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
        break_pool(pool, why);
        return true;
    }
    case CF__MSG_RESULT:
    case CF__MSG_CHUNK_RESULT:
        if (!w->inflight || h->id != w->inflight->seq ||
            (h->type == CF__MSG_CHUNK_RESULT) != (w->inflight->chunk != NULL))
            return false;
        if (h->type == CF__MSG_RESULT)
            handle_result(pool, w, p, (size_t)h->len);
        else
            handle_chunk_result(pool, w, p, (size_t)h->len);
        if (w->state == W_BUSY)
            after_task(pool, w);
        return true;
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

/* Reads everything the socket has and handles complete frames. */
static void w_receive(process_pool *pool, wproc *w)
{
    while (!w->eof) {
        /* Handle complete frames first, so memory stays one frame deep. */
        for (;;) {
            size_t avail = w->in.len - w->in_pos;
            cf__wire_header h;
            int rc = cf__wire_header_decode(w->in.data + w->in_pos, avail, &h);
            if (rc == CF_EAGAIN)
                break;
            if (rc != CF_OK || h.type < CF__MSG_READY) {
                w_lose(w, "it sent a corrupt message");
                return;
            }
            if (avail - CF__WIRE_HEADER_SIZE < h.len) {
                size_t need = CF__WIRE_HEADER_SIZE + (size_t)h.len - avail;
                if (cf__buffer_reserve(&w->in, need) != CF_OK) {
                    w_lose(w, "no memory to receive its result");
                    return;
                }
                break;
            }
            const unsigned char *payload =
                w->in.data + w->in_pos + CF__WIRE_HEADER_SIZE;
            w->in_pos += CF__WIRE_HEADER_SIZE + (size_t)h.len;
            if (!handle_frame(pool, w, &h, payload)) {
                w_lose(w, "it sent a message out of turn");
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
            w_lose(w, "no memory to receive its result");
            return;
        }
        ptrdiff_t n = cf__sock_recv(w->proc.fd, w->in.data + w->in.len,
                                    w->in.cap - w->in.len);
        if (n == -1)
            return; /* nothing more for now */
        if (n == 0) {
            w->eof = true; /* it closed its end: its exit follows */
            return;
        }
        if (n < 0) {
            w_lose(w, "receiving from it failed");
            return;
        }
        w->in.len += (size_t)n;
    }
}

/* ------------------------------------------------------------------------ */
/* Manager: exits                                                           */

static void w_release(process_pool *pool, wproc *w)
{
    cf__buffer_destroy(&w->ctl);
    cf__buffer_destroy(&w->in);
    w->state = W_FREE;
    cf__mutex_lock(&pool->lock);
    pool->n_alive--;
    cf__mutex_unlock(&pool->lock);
    cf__cond_broadcast(&pool->changed);
}

/* The worker's process has ended (or is ending: EOF without pidfd). */
static void w_exited(process_pool *pool, wproc *w)
{
    if (!w->eof)
        w_receive(pool, w); /* results written before the end still count */
    pid_t pid = w->proc.pid;
    int status = cf__proc_reap(&w->proc);
    char how[128], what[300], why[640];
    cf__proc_describe_status(status, how, sizeof how);
    task *t = w->inflight;
    enum wstate state = w->state;
    bool terminated = w->terminated;
    const char *lost = w->lost;
    w->inflight = NULL;
    if (t) {
        cf__mutex_lock(&pool->lock);
        pool->n_inflight--;
        cf__mutex_unlock(&pool->lock);
    }
    w_release(pool, w);
    if (t)
        describe_task(t, what, sizeof what);
    else
        snprintf(what, sizeof what, "%s",
                 state == W_STARTING ? "before it was ready (in its "
                                       "initializer or at start-up)"
                                     : "while idle");
    if (lost)
        snprintf(why, sizeof why, "worker process %ld was given up (%s) "
                 "and killed %s%s", (long)pid, lost,
                 t ? "while running " : "", what);
    else
        snprintf(why, sizeof why, "worker process %ld %s %s%s", (long)pid,
                 how, t ? "while running " : "", what);
    if (terminated) {
        if (t) {
            char *m = cf__format("%s (terminate_workers/kill_workers)", why);
            cf__future_finish(t->f, NULL, NULL, CF_EBROKEN_PROCESS_POOL, m);
            task_free(t);
        }
        return;
    }
    if (state == W_EXITING && !t)
        return; /* asked to leave (shutdown, max_tasks_per_child, broken) */
    if (pool->survive && t && state != W_STARTING) {
        task_fail(t, CF_EBROKEN_PROCESS_POOL, why);
        return;
    }
    if (pool->survive && state == W_IDLE)
        return; /* nothing lost; a replacement starts when needed */
    if (t) {
        /* Fail the task at hand with the full story before the rest. */
        char *m = cf__format("process pool is broken: %s", why);
        cf__future_finish(t->f, NULL, NULL, CF_EBROKEN_PROCESS_POOL, m);
        task_free(t);
    }
    cf__mutex_lock(&pool->lock);
    bool already = pool->broken;
    cf__mutex_unlock(&pool->lock);
    if (!already)
        break_pool(pool, why);
}

/* ------------------------------------------------------------------------ */
/* Manager: the loop                                                        */

/* Pops the next task that is not cancelled, marked RUNNING. */
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
        }
        cf__mutex_unlock(&pool->lock);
        if (!t)
            return NULL;
        if (cf_future_set_running_or_notify_cancel(t->f) == CF_OK)
            return t;
        task_free(t); /* cancelled while queued: it never runs */
    }
}

static void dispatch(process_pool *pool)
{
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        if (w->state != W_IDLE)
            continue;
        task *t = next_task(pool);
        if (!t)
            return;
        cf__mutex_lock(&pool->lock);
        pool->n_inflight++;
        cf__mutex_unlock(&pool->lock);
        w->inflight = t;
        w->msg_off = 0;
        w->tasks_run++;
        w->state = W_BUSY;
        w_flush(w);
    }
}

/* Starts workers while queued tasks outnumber the workers able to take
 * them. With no worker at all and none startable, the queue fails. */
static void spawn_needed(process_pool *pool, size_t queued)
{
    int alive = 0, available = 0;
    for (int i = 0; i < pool->max_workers; i++) {
        enum wstate s = pool->workers[i].state;
        alive += s != W_FREE && s != W_EXITING;
        available += s == W_IDLE || s == W_STARTING;
    }
    for (int i = 0; i < pool->max_workers && (size_t)available < queued &&
                    alive < pool->max_workers;
         i++) {
        wproc *w = &pool->workers[i];
        if (w->state != W_FREE)
            continue;
        int rc = spawn_worker(pool, w);
        if (rc != CF_OK) {
            if (alive > 0)
                return; /* the running workers will get through it */
            char why[160];
            snprintf(why, sizeof why, "could not start a worker process: %s",
                     cf_strerror(rc));
            cf__mutex_lock(&pool->lock);
            task *q = take_queue(pool);
            cf__mutex_unlock(&pool->lock);
            fail_list(q, rc, why);
            return;
        }
        alive++;
        available++;
    }
}

/* Everything the manager does between two polls. Returns true when it is
 * time to leave: no work left, no worker left, and no more can come. */
static bool step(process_pool *pool)
{
    cf__mutex_lock(&pool->lock);
    size_t queued = pool->n_queued;
    bool closing = pool->shutdown || pool->broken;
    bool broken = pool->broken;
    int sig = pool->terminate_sig;
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
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        if (closing && queued == 0 && !w->inflight &&
            (w->state == W_IDLE || w->state == W_STARTING))
            w_send_exit(w);
        any |= w->state != W_FREE;
    }
    cf__mutex_lock(&pool->lock);
    bool done = closing && !any && pool->n_queued == 0;
    cf__mutex_unlock(&pool->lock);
    return done;
}

/* Fills the poll set: the wake-up fd, then per worker its socket and its
 * pidfd. Returns the number of entries. */
static int poll_set(process_pool *pool)
{
    struct pollfd *p = pool->pfds;
    int n = 0;
    p[n++] = (struct pollfd){pool->wake_fd, POLLIN, 0};
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        short ev = 0;
        if (w->state != W_FREE && !w->eof)
            ev |= POLLIN;
        if (w->state != W_FREE && !w->send_failed && w_has_output(w))
            ev |= POLLOUT;
        /* fd -1 makes poll skip an entry; indexes stay 1 + 2i. */
        p[n++] = (struct pollfd){ev ? w->proc.fd : -1, ev, 0};
        p[n++] = (struct pollfd){
            w->state != W_FREE ? w->proc.pidfd : -1, POLLIN, 0};
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
        short sock = pool->pfds[1 + 2 * i].revents;
        short pid = pool->pfds[2 + 2 * i].revents;
        if (w->state == W_FREE)
            continue;
        if (sock & POLLOUT)
            w_flush(w);
        if (sock & (POLLIN | POLLHUP | POLLERR))
            w_receive(pool, w);
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
    break_pool(pool, why);
    for (int i = 0; i < pool->max_workers; i++)
        if (pool->workers[i].state != W_FREE)
            w_exited(pool, &pool->workers[i]);
}

/* Waits for something to happen and handles it. A failing poll (ENOMEM
 * from the kernel) is retried for about a second before giving up. */
static void wait_and_handle(process_pool *pool)
{
    for (int failures = 0;;) {
        int n = poll_set(pool);
        if (poll(pool->pfds, (nfds_t)n, -1) >= 0) {
            handle_events(pool);
            return;
        }
        int err = errno;
        if (err == EINTR)
            continue;
        if (++failures > 1000) {
            give_up_polling(pool, err);
            return;
        }
        struct timespec pause = {0, 1000000}; /* 1 ms */
        nanosleep(&pause, NULL);
    }
}

static void *manager_main(void *arg)
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

/* ------------------------------------------------------------------------ */
/* Shutdown, terminate, destroy                                             */

static void cancel_list(task *q)
{
    while (q) {
        task *next = q->next;
        cf__future_cancel(q->f);
        task_free(q);
        q = next;
    }
}

/* Marks the pool shut down, optionally cancelling the queue. */
static void begin_shutdown(process_pool *pool, bool cancel_futures, int sig)
{
    cf__mutex_lock(&pool->lock);
    pool->shutdown = true;
    if (sig)
        pool->terminate_sig = sig;
    task *q = cancel_futures ? take_queue(pool) : NULL;
    cf__mutex_unlock(&pool->lock);
    cancel_list(q);
    wake_manager(pool);
}

static void join_manager(process_pool *pool)
{
    cf__mutex_lock(&pool->lock);
    bool join = pool->manager_done && !pool->manager_joined;
    pool->manager_joined |= join;
    cf__mutex_unlock(&pool->lock);
    if (join)
        cf__thread_join(pool->manager);
}

static int pool_shutdown(void *impl, double timeout, bool cancel_futures,
                         size_t *unfinished)
{
    process_pool *pool = impl;
    if (cf__process_worker_active())
        return CF_EDEADLK;
    if (getpid() != pool->owner)
        return CF_OK; /* a forked child's copy: the workers are not ours */
    begin_shutdown(pool, cancel_futures, 0);
    if (timeout == 0)
        return CF_OK;
    int64_t deadline;
    cf__deadline_from_timeout(timeout, &deadline);
    cf__mutex_lock(&pool->lock);
    while (!pool->manager_done) {
        if (!cf__cond_timedwait(&pool->changed, &pool->lock, deadline) &&
            !pool->manager_done) {
            if (unfinished)
                *unfinished = pool->n_queued + pool->n_inflight;
            cf__mutex_unlock(&pool->lock);
            return CF_ETIMEDOUT;
        }
    }
    cf__mutex_unlock(&pool->lock);
    join_manager(pool);
    return CF_OK;
}

static int terminate(cf_executor *ex, int sig)
{
    if (cf__process_worker_active())
        return CF_EDEADLK;
    if (!ex || ex->ops != &process_pool_ops)
        return CF_EINVAL;
    process_pool *pool = ex->impl;
    begin_shutdown(pool, true, sig);
    cf__mutex_lock(&pool->lock);
    while (pool->n_alive > 0 && !pool->manager_done)
        cf__cond_wait(&pool->changed, &pool->lock);
    cf__mutex_unlock(&pool->lock);
    return CF_OK;
}

int cf_process_pool_terminate_workers(cf_executor *ex)
{
    return terminate(ex, SIGTERM);
}

int cf_process_pool_kill_workers(cf_executor *ex)
{
    return terminate(ex, SIGKILL);
}

static void pool_destroy(void *impl)
{
    process_pool *pool = impl;
    if (getpid() == pool->owner)
        join_manager(pool);
    cf__fd_close(pool->wake_fd);
    cf__cond_destroy(&pool->changed);
    cf__mutex_destroy(&pool->lock);
    free(pool->broken_msg);
    free(pool->workers);
    free(pool->pfds);
    free(pool->init_module);
    free(pool->exe);
    free(pool);
}

static const cf_executor_ops process_pool_ops = {
    .kind = "process_pool",
    .submit = pool_submit,
    .shutdown = pool_shutdown,
    .destroy = pool_destroy,
};

/* ------------------------------------------------------------------------ */
/* Construction                                                             */

static int check_options(const cf_process_pool_options *o)
{
    if (o->max_workers < 0 ||
        (o->start_method != CF_START_EXEC && o->start_method != CF_START_FORK))
        return CF_EINVAL;
    return CF_OK;
}

/* Copies the options and resolves what the workers will need. */
static int configure(process_pool *pool, const cf_process_pool_options *o)
{
    pool->max_workers = o->max_workers ? o->max_workers : cf_cpu_count();
    pool->method = o->start_method;
    pool->max_tasks_per_child = o->max_tasks_per_child;
    pool->codec = o->codec ? o->codec : cf_codec_word();
    pool->survive = o->survive_worker_death;
    pool->initarg = o->initarg;
    pool->owner = getpid();
    pool->wake_fd = -1;
    cf__wire_codec wc;
    if (codec_to_wire(pool->codec, &wc) != CF_OK)
        return CF_EINVAL;
    if (o->initializer) {
        cf__wire_ref ref;
        if (cf__addr_to_ref(cf__fn_addr((cf__any_fn)o->initializer), &ref) != CF_OK)
            return CF_EINVAL;
        pool->init_module = cf__strdup(ref.module);
        if (!pool->init_module)
            return CF_ENOMEM;
        pool->init_offset = ref.offset;
        pool->has_init = true;
    }
    pool->workers = calloc((size_t)pool->max_workers, sizeof *pool->workers);
    pool->pfds = calloc(1 + 2 * (size_t)pool->max_workers,
                        sizeof *pool->pfds);
    if (!pool->workers || !pool->pfds)
        return CF_ENOMEM;
    if (pool->method == CF_START_EXEC)
        return cf__proc_self_exe(&pool->exe);
    return CF_OK;
}

static void free_config(process_pool *pool)
{
    free(pool->workers);
    free(pool->pfds);
    free(pool->init_module);
    free(pool->exe);
}

int cf_process_pool_new(const cf_process_pool_options *opts, cf_executor **out)
{
    static const cf_process_pool_options defaults = {0};
    if (cf__process_worker_active())
        return CF_EDEADLK;
    if (!out)
        return CF_EINVAL;
    if (!opts)
        opts = &defaults;
    int rc = check_options(opts);
    if (rc != CF_OK)
        return rc;
    process_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return CF_ENOMEM;
    if ((rc = configure(pool, opts)) != CF_OK)
        goto fail_config;
    if ((rc = cf__wake_open(&pool->wake_fd)) != CF_OK)
        goto fail_config;
    if ((rc = cf__mutex_init(&pool->lock)) != CF_OK)
        goto fail_lock;
    if ((rc = cf__cond_init(&pool->changed)) != CF_OK)
        goto fail_cond;
    if ((rc = cf_executor_new(&process_pool_ops, pool, &pool->ex)) != CF_OK)
        goto fail_executor;
    cf__executor_set_submit_chunk(pool->ex, pool_submit_chunk);
    if ((rc = cf__thread_create(&pool->manager, manager_main, pool,
                                "cfprocmgr")) != CF_OK)
        goto fail_thread;
    *out = pool->ex;
    return CF_OK;
fail_thread:
    free(pool->ex);
fail_executor:
    cf__cond_destroy(&pool->changed);
fail_cond:
    cf__mutex_destroy(&pool->lock);
fail_lock:
    cf__fd_close(pool->wake_fd);
fail_config:
    free_config(pool);
    free(pool);
    return rc;
}
