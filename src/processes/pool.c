/* process_pool.c - ProcessPoolExecutor: bookkeeping and the manager thread.
 *
 * Design:
 *
 *   submit (any thread)            manager thread                 workers
 *   -------------------            --------------                 -------
 *   encode arg with codec  --+
 *   frame a TASK message     | queue  pop (drop cancelled),  socket  claim k
 *   append to queue          +------> send to a worker  ---------->  (CAS in
 *   (wake fd if it sleeps)            window, claim word            shm), or
 *                                     k: PENDING                    skip it;
 *                                     claims seen: RUNNING          decode,
 *   future <--- finish <--- decode <--------------------------------  run fn,
 *                           result   busy-wait on shm counters, then  encode
 *                                    poll(): wake fd, sockets, pidfds result
 *
 * The manager thread owns the workers (spawn, send, receive, reap) and is
 * the only thread that blocks on them; callers only touch the queue under
 * `lock`. Each task sent to a worker gets a number k on it. Up to WINDOW
 * tasks wait at a busy worker, their bytes already there, but PENDING: the
 * worker starts task k only after it won the claim word of k in shared
 * memory (PENDING -> RUNNING, see cf__shm_slot); a cancel races it on the
 * same word (PENDING -> SKIP) through the future's cancel hook, so a
 * cancelled task never runs and a claimed one cannot be cancelled (the
 * cancel turns it RUNNING instead). The manager catches up with the claims
 * (a claimed task turns RUNNING before its result is read: the worker
 * sends its earlier results, or a CLAIMED frame when the manager sleeps,
 * after claiming) and drops skipped tasks. So cf_future_running() still
 * means a worker has started the task, with no round trip through the
 * manager between two tasks. A task sent to an idle worker is claimed by
 * the manager as it is sent. A worker falling idle takes the oldest task
 * waiting at another (taken back by the same compare-and-swap), so
 * nothing waits behind a long task while a worker idles. Without shared
 * memory (no memfd) a task is sent only to a free worker and claimed as it
 * is sent. A map chunk is one message and one task.
 *
 * Results come back through a byte ring in the worker's shared slot, with
 * no system call on either side while the manager is awake (the socket
 * carries what does not fit; a result names its task, so the two channels
 * need no common order). Tasks go out on the socket, in batches.
 *
 * Hand-offs: a sleeping wake-up costs tens of microseconds on a VM, so
 * the manager busy-waits briefly (new tasks: n_enqueued; results, claims
 * and finished tasks: the workers' shared slots) before it sleeps in
 * poll(), and an idle worker likewise before it sleeps in read().
 * Callers write the wake fd only when the manager sleeps.
 *
 * The manager never blocks on a write: sockets are non-blocking and the
 * unsent rest waits for POLLOUT, while results keep being read, so a large
 * payload in each direction cannot deadlock. A worker's exit is seen on its
 * pidfd (or, without pidfds, its socket's EOF); its ring and socket are
 * drained first so results written just before death count. An exit while
 * a task was claimed at the worker breaks the pool (or, with
 * survive_worker_death, fails that task only and sends the tasks waiting
 * there elsewhere); an exit we did not ask for breaks it too. A worker we
 * cannot talk to any more (failed send or receive, corrupt stream, no
 * memory for its result) is killed and reported the same way. Workers are
 * reaped by pid, never waitpid(-1).
 *
 * Lock order: the pool lock, then a future's lock
 * (set_running only); a future's lock is held while its cancel hook runs,
 * which takes no other lock. Futures are completed and cancelled with no pool
 * lock held, since completion runs callbacks.
 */
#include "core/core.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "platform/process.h"
#include "processes/registry.h"
#include "processes/shm_slot.h"
#include "processes/spawn.h"
#include "processes/wire.h"
#include "processes/worker.h"

enum wstate {
    W_FREE = 0, /* slot unused */
    W_STARTING, /* INIT sent, READY not yet received */
    W_READY,    /* takes tasks */
    W_EXITING,  /* EXIT sent (shutdown or max_tasks_per_child) */
};

/* Tasks waiting at one worker, not yet claimed: their bytes travel while
 * the worker runs the task before, so it never waits for a message, and
 * it claims one after another with no hand-off through the manager. A
 * longer window means fewer hand-offs for short tasks (8 -> 32 halved the
 * cost per tiny task on 2 CPUs); an idle worker still takes tasks waiting
 * at a busy one, so none waits long behind a long task. Below
 * CF__CLAIM_RING, whose words are reused. */
#define WINDOW 32
/* ... unless this many bytes are still unsent to it. */
#define WINDOW_BYTES (256u << 10)

typedef struct process_pool process_pool;

typedef struct task {
    struct task *next;
    process_pool *pool;    /* takes it back when freed */
    cf_future *f;          /* the pool's reference */
    cf__chunk *chunk;      /* map chunk (owned by the map iterator) or NULL */
    cf_fn fn;
    const cf_codec *codec; /* decodes the result */
    uint64_t seq;          /* submission number, the message id */
    unsigned k;            /* its number on the worker it was sent to */
    atomic_uint *claim;    /* its claim word there (cf__shm_slot), or NULL */
    cf_buffer msg;         /* the framed TASK or CHUNK message; kept until
                              claimed, so a waiting task can move */
} task;

typedef struct wproc {
    cf__proc proc;
    /* Who reaps it: NULL for our own child (waitpid), else the start
     * callback's reaper (see cf_worker_process). */
    int (*reap)(void *ctx, long pid, int *wait_status);
    void *reap_ctx;
    enum wstate state;
    /* Claimed tasks (RUNNING), oldest first; their results come in this
     * order. Manager thread only. */
    task *run_head, *run_tail;
    size_t n_running;
    /* Sent, not yet claimed (PENDING), in the order sent. Guarded by the
     * pool lock: shutdown(cancel_futures) cancels them from its thread. */
    task *wait_head, *wait_tail;
    size_t n_waiting;
    unsigned next_k;       /* number of the last task sent */
    unsigned busy_k;       /* number of the task claimed last; 0: none */
    size_t tasks_run;      /* tasks claimed on this worker */
    cf_buffer out;         /* frames not yet sent (INIT, tasks, EXIT) */
    size_t out_off;
    cf_buffer in;          /* received bytes; frames start at in_pos */
    size_t in_pos;
    bool eof;              /* the socket reached EOF */
    bool send_failed;      /* the worker's end is gone */
    bool terminated;       /* sent SIGTERM/SIGKILL by terminate/kill */
    const char *lost;      /* why we gave up on it (killed), or NULL */
    cf__shm_slot *slot;    /* shared counters and claim word, or NULL */
    uint_fast64_t seen_from; /* slot->from_worker when last received */
    bool draining;         /* in w_drain_ring() */
} wproc;

/* Freed tasks kept for reuse, with their message buffers: the manager
 * frees what submitting threads allocated, and malloc's arena lock then
 * makes the two sleep and wake each other (measured with map). */
#define SPARE_TASKS 128
#define SPARE_MSG_BYTES (16u << 10) /* at most 2 MiB kept */

struct process_pool {
    /* Immutable after creation. */
    cf_executor *ex;
    int max_workers;
    cf__spawn_config spawn; /* how workers start */
    bool by_name;          /* workers run another program: code by name */
    bool has_init;
    char *init_module;     /* initializer's module or name (copy) */
    size_t init_len;
    uint64_t init_offset;  /* CF__WIRE_NAMED for a name */
    void *initarg;
    cf_buffer required;    /* the required task names, as INIT lists them */
    uint32_t n_required;
    size_t max_tasks_per_child;
    const cf_codec *codec;
    bool survive;
    pid_t owner;           /* the process that created the pool */
    unsigned fork_gen;     /* cf__fork_generation() there */
    int wake_fd;
    cf__shm shm;           /* one shared slot per worker (may be absent) */
    cf__thread manager;

    atomic_bool wake_pending; /* a wake-up is in flight: skip the write */
    atomic_bool mgr_sleeping; /* the manager is (about to be) in poll(-1) */
    atomic_uint_fast64_t n_enqueued; /* tasks queued so far, ever */
    atomic_uint_fast64_t next_seq;

    cf__mutex lock;
    cf__cond changed;      /* manager_done or n_alive changed */
    task *head, *tail;     /* guarded by lock: the queue */
    size_t n_queued;       /* guarded by lock */
    size_t n_inflight;     /* guarded by lock: tasks at workers */
    /* max_workers * WINDOW: room to copy the futures waiting at workers
     * out of the lock, for a shutdown that finds no memory of its own;
     * cancel_buf_busy while one uses it. */
    cf_future **cancel_buf;
    atomic_bool cancel_buf_busy;
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
    uint_fast64_t seen_enqueued; /* n_enqueued when step() last looked */
    char *broken_msg;      /* why the pool broke (set once, then read-only) */

    cf__spinlock spare_lock;
    task *spares;          /* guarded by spare_lock */
    size_t n_spares;       /* guarded by spare_lock */
};

static const cf_executor_ops process_pool_ops;

/* ------------------------------------------------------------------------ */
/* Tasks                                                                    */

/* Appends `t` to a FIFO list of tasks linked through next. */
static void task_append(task **head, task **tail, task *t)
{
    t->next = NULL;
    if (*tail)
        (*tail)->next = t;
    else
        *head = t;
    *tail = t;
}

static void task_free(task *t)
{
    if (!t)
        return;
    cf_future_release(t->f);
    process_pool *pool = t->pool;
    if (t->msg.cap <= SPARE_MSG_BYTES) {
        cf__spin_lock(&pool->spare_lock);
        bool keep = pool->n_spares < SPARE_TASKS;
        if (keep) {
            t->next = pool->spares;
            pool->spares = t;
            pool->n_spares++;
        }
        cf__spin_unlock(&pool->spare_lock);
        if (keep)
            return;
    }
    cf__buffer_destroy(&t->msg);
    free(t);
}

/* A cleared task, reused or new; its message buffer may have room. */
static task *task_alloc(process_pool *pool)
{
    cf__spin_lock(&pool->spare_lock);
    task *t = pool->spares;
    if (t) {
        pool->spares = t->next;
        pool->n_spares--;
    }
    cf__spin_unlock(&pool->spare_lock);
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t)
            return NULL;
        cf__buffer_init(&t->msg);
    }
    cf_buffer msg = t->msg;
    memset(t, 0, sizeof *t);
    t->msg = msg;
    t->msg.len = 0;
    t->pool = pool;
    return t;
}

static void free_spares(process_pool *pool)
{
    while (pool->spares) {
        task *t = pool->spares;
        pool->spares = t->next;
        cf__buffer_destroy(&t->msg);
        free(t);
    }
    pool->n_spares = 0;
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

/* How workers will find the code at `addr`: by module and offset when
 * they run this same program, else by the name it was registered under
 * (CF_EINVAL when it has none). Code on the heap or the stack has no
 * module: CF_EINVAL too. */
static int code_ref(const process_pool *pool, int kind, const void *addr,
                    cf__wire_ref *ref)
{
    if (!pool->by_name)
        return cf__addr_to_ref(addr, ref);
    ref->offset = CF__WIRE_NAMED;
    return cf__registry_name(kind, addr, &ref->module, &ref->module_len)
               ? CF_OK
               : CF_EINVAL;
}

static int codec_to_wire(const process_pool *pool, const cf_codec *codec,
                         cf__wire_codec *out)
{
    if (codec == cf_codec_word()) {
        out->kind = CF__CODEC_WORD;
        return CF_OK;
    }
    if (codec == cf_codec_string()) {
        out->kind = CF__CODEC_STRING;
        return CF_OK;
    }
    if (codec == cf_codec_bytes()) {
        out->kind = CF__CODEC_BYTES;
        return CF_OK;
    }
    out->kind = CF__CODEC_CUSTOM;
    return code_ref(pool, CF__REG_CODEC, codec, &out->ref);
}

/* Builds a task and the head of its message (header, fn, codec). */
static int task_new(process_pool *pool, cf_future *f, cf_fn fn,
                    const cf_codec *codec, uint32_t type, size_t extra,
                    task **out)
{
    cf__wire_ref fn_ref;
    cf__wire_codec wc;
    if (code_ref(pool, CF__REG_TASK, cf__fn_addr((cf__any_fn)fn), &fn_ref) !=
            CF_OK ||
        codec_to_wire(pool, codec, &wc) != CF_OK)
        return CF_EINVAL;
    task *t = task_alloc(pool);
    if (!t)
        return CF_ENOMEM;
    t->fn = fn;
    t->codec = codec;
    t->seq = atomic_fetch_add(&pool->next_seq, 1);
    size_t start;
    int rc = extra > SIZE_MAX / 2 ? CF_ENOMEM
             : cf__buffer_reserve(&t->msg, 96 + fn_ref.module_len + extra);
    rc = rc ? rc : cf__wire_begin(&t->msg, type, t->seq, &start);
    rc = rc ? rc : cf__wire_put_ref(&t->msg, &fn_ref);
    rc = rc ? rc : cf__wire_put_codec(&t->msg, &wc);
    if (rc != CF_OK) {
        task_free(t);
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

/* Why the pool takes no new work now: CF_OK (it does),
 * CF_EBROKEN_PROCESS_POOL or CF_ESHUTDOWN. pool lock held. */
static int refusal_locked(const process_pool *pool)
{
    return pool->broken     ? CF_EBROKEN_PROCESS_POOL
           : pool->shutdown ? CF_ESHUTDOWN
                            : CF_OK;
}

/* Queues a built task. On error the task is not queued (caller frees). */
static int enqueue(process_pool *pool, task *t)
{
    cf__mutex_lock(&pool->lock);
    int rc = refusal_locked(pool);
    if (rc == CF_OK) {
        cf_future_retain(t->f);
        task_append(&pool->head, &pool->tail, t);
        pool->n_queued++;
        atomic_fetch_add(&pool->n_enqueued, 1);
    }
    cf__mutex_unlock(&pool->lock);
    /* A spinning manager sees n_enqueued move; only a sleeping one needs
     * the system call. Both sides use seq_cst (Dekker): the manager stores
     * mgr_sleeping then loads n_enqueued, we add to n_enqueued then load
     * mgr_sleeping, so one of us sees the other. */
    if (rc == CF_OK && atomic_load(&pool->mgr_sleeping))
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
    /* Not getpid(): a system call on every submit. */
    if (cf__fork_generation() != pool->fork_gen)
        return CF_EBROKEN_PROCESS_POOL;
    return CF_OK;
}

/* Frees a task that was never queued; its future stays the caller's. */
static void discard_task(task *t)
{
    t->f = NULL; /* not retained yet: enqueue() takes the reference */
    task_free(t);
}

/* Closes the task's frame and queues it; on error it is discarded. */
static int send_task(process_pool *pool, task *t)
{
    cf__wire_end(&t->msg, 0); /* the frame begins the message */
    int rc = enqueue(pool, t);
    if (rc != CF_OK)
        discard_task(t);
    return rc;
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
    codec = codec ? codec : pool->codec;
    task *t;
    if ((rc = task_new(pool, f, fn, codec, CF__MSG_TASK, 0, &t)) != CF_OK)
        return rc;
    int enc = codec->encode_arg(arg, &t->msg);
    if (enc != CF_OK) {
        /* Refuse a submit that would fail anyway on a broken pool. */
        discard_task(t);
        cf__mutex_lock(&pool->lock);
        rc = refusal_locked(pool);
        cf__mutex_unlock(&pool->lock);
        if (rc == CF_OK)
            fail_encode(f, enc, "task's argument");
        return rc;
    }
    return send_task(pool, t);
}

/* Native map chunks: the items cross as one CHUNK message, or, with the
 * word codec, as a WORDS message (8 bytes an item each way). The chunk
 * stays owned by the map iterator; the pool writes the outcomes into it
 * only while the future is RUNNING, and completes the future either with
 * the chunk (outcomes in its items, allocated then) or, when a
 * WORDS_RESULT came back (every item a plain word), with the chunk's args
 * array, overwritten by the results in order (no items at all). */
static int pool_submit_chunk(void *impl, cf_future *f, cf__chunk *chunk,
                             const cf_codec *codec)
{
    process_pool *pool = impl;
    int rc = check_caller(pool);
    if (rc != CF_OK)
        return rc;
    codec = codec ? codec : pool->codec;
    bool words = codec == cf_codec_word();
    task *t;
    /* Room for the items, as words take it (others may need more). */
    size_t each = words ? 8 : 16;
    size_t room = chunk->n <= SIZE_MAX / 32 ? 8 + chunk->n * each : SIZE_MAX;
    if ((rc = task_new(pool, f, chunk->fn, codec,
                       words ? CF__MSG_WORDS : CF__MSG_CHUNK, room, &t)) !=
        CF_OK)
        return rc;
    t->chunk = chunk;
    int enc = cf__wire_put_u64(&t->msg, chunk->n);
    /* Each item is at least its length and 8 bytes (a word alone). */
    if (enc == CF_OK && chunk->n <= SIZE_MAX / 32)
        enc = cf__buffer_reserve(&t->msg, chunk->n * each);
    if (enc == CF_OK && words) {
        /* The common case: the words, with no call per item. */
        unsigned char *p = t->msg.data + t->msg.len;
        for (size_t i = 0; i < chunk->n; i++, p += 8)
            cf__wire_store_u64(p, (uint64_t)(uintptr_t)chunk->args[i]);
        t->msg.len += chunk->n * 8;
    }
    for (size_t i = 0; enc == CF_OK && !words && i < chunk->n; i++) {
        size_t at;
        enc = cf__wire_put_placeholder(&t->msg, &at);
        enc = enc ? enc : codec->encode_arg(chunk->args[i], &t->msg);
        if (enc == CF_OK)
            cf__wire_patch_u64(&t->msg, at, t->msg.len - at - 8);
    }
    if (enc != CF_OK) {
        discard_task(t);
        fail_encode(f, enc, "map chunk's arguments");
        return CF_OK;
    }
    return send_task(pool, t);
}

/* ------------------------------------------------------------------------ */
/* Manager: workers                                                         */

static bool w_has_output(const wproc *w)
{
    return w->out_off < w->out.len;
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
        struct iovec iov = {w->out.data + w->out_off,
                            w->out.len - w->out_off};
        ptrdiff_t sent = w->proc.socket
                             ? cf__sock_send(w->proc.write_fd, &iov, 1)
                             : cf__pipe_write(w->proc.write_fd, iov.iov_base,
                                              iov.iov_len);
        if (sent < 0) {
            w_lose(w, "sending to it failed");
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
    rc = rc ? rc : cf__wire_put_u64(&w->out, (uint64_t)(uintptr_t)pool->initarg);
    rc = rc ? rc : cf__wire_put_u32(&w->out, pool->n_required);
    rc = rc ? rc : cf_buffer_append(&w->out, pool->required.data,
                                    pool->required.len);
    if (rc == CF_OK)
        cf__wire_end(&w->out, start);
    return rc;
}

static void w_send_exit(wproc *w)
{
    size_t start;
    if (cf__wire_begin(&w->out, CF__MSG_EXIT, 0, &start) == CF_OK)
        cf__wire_end(&w->out, start);
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
    w_flush(w);
    return CF_OK;
}

/* ------------------------------------------------------------------------ */
/* Manager: claiming tasks                                                  */

/* True when the worker has finished every task claimed on it, so the
 * next one may be claimed. Its result may still be on the way. */
static bool w_free(const wproc *w)
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
static bool task_take_back(task *t)
{
    unsigned seen = CF__CLAIM(t->k, CF__CLAIM_PENDING);
    if (!atomic_compare_exchange_strong(t->claim, &seen,
                                        CF__CLAIM(t->k, CF__CLAIM_SKIP)) &&
        seen == CF__CLAIM(t->k, CF__CLAIM_RUNNING))
        return false;
    cf__future_set_cancel_hook(t->f, NULL, NULL);
    return true;
}

static void run_push(process_pool *pool, wproc *w, task *t)
{
    (void)pool;
    task_append(&w->run_head, &w->run_tail, t);
    w->n_running++;
    w->busy_k = t->k;
    w->tasks_run++;
    /* Claimed: it will not move again. A modest buffer is kept for the
     * task's next use (task_free). */
    if (t->msg.cap > SPARE_MSG_BYTES)
        cf__buffer_destroy(&t->msg);
}

static task *wait_pop(process_pool *pool, wproc *w)
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

static void inflight_add(process_pool *pool, long n)
{
    cf__mutex_lock(&pool->lock);
    pool->n_inflight = (size_t)((long)pool->n_inflight + n);
    cf__mutex_unlock(&pool->lock);
}

/* True if the worker has decided on its oldest waiting task. */
static bool w_head_decided(const wproc *w)
{
    const task *t = w->wait_head;
    return t && w->slot &&
           atomic_load(t->claim) != CF__CLAIM(t->k, CF__CLAIM_PENDING);
}

/* Catches up with the worker's claims, oldest first: a claimed task turns
 * RUNNING (its result comes later, in order); a skipped one (cancelled)
 * is dropped. Stops at the first task the worker has not reached. */
static void w_sync(process_pool *pool, wproc *w)
{
    while (w_head_decided(w)) {
        task *t = wait_pop(pool, w);
        if (atomic_load(t->claim) == CF__CLAIM(t->k, CF__CLAIM_RUNNING)) {
            /* CF_ESTATE if a cancel found it claimed and did this. */
            cf_future_set_running_or_notify_cancel(t->f);
            run_push(pool, w, t);
        } else {
            inflight_add(pool, -1);
            task_free(t); /* cancelled while waiting: it never runs */
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

static void wait_push(process_pool *pool, wproc *w, task *t)
{
    cf__mutex_lock(&pool->lock);
    task_append(&w->wait_head, &w->wait_tail, t);
    w->n_waiting++;
    cf__mutex_unlock(&pool->lock);
}

/* Sends `t` (PENDING, counted in n_inflight, no cancel hook) to `w`:
 * claimed at once if the worker is free, else it waits there for the
 * worker to claim it, cancellable through its claim word. */
static void w_give(process_pool *pool, wproc *w, task *t)
{
    bool claim_now = w_free(w) && !w->wait_head;
    t->k = w->next_k + 1;
    t->claim = w->slot ? &w->slot->claim[t->k % CF__CLAIM_RING] : NULL;
    if (claim_now) {
        if (cf_future_set_running_or_notify_cancel(t->f) != CF_OK) {
            inflight_add(pool, -1);
            task_free(t); /* cancelled: never sent */
            return;
        }
        if (t->claim)
            atomic_store(t->claim, CF__CLAIM(t->k, CF__CLAIM_RUNNING));
    } else {
        atomic_store(t->claim, CF__CLAIM(t->k, CF__CLAIM_PENDING));
        cf__future_set_cancel_hook(t->f, task_cancel_hook, t);
        /* A cancel before the hook was set left no mark on the word. */
        if (cf_future_cancelled(t->f)) {
            inflight_add(pool, -1);
            task_free(t); /* never sent; k goes to the next task */
            return;
        }
    }
    if (w_append(w, t) != CF_OK) {
        inflight_add(pool, -1);
        task_fail(t, CF_ENOMEM,
                  "no memory to send the task to a worker process");
        return;
    }
    if (claim_now)
        run_push(pool, w, t);
    else
        wait_push(pool, w, t);
}

/* Whether `w` may be given another task now. Without the shared claim
 * word a task is sent only to a free worker. With it, a few more wait
 * there, within the budget of max_tasks_per_child. */
static bool w_can_take(const process_pool *pool, const wproc *w, bool free_only)
{
    if (w->state != W_READY || w->send_failed)
        return false;
    bool idle = w_free(w) && !w->wait_head;
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

/* Takes every task at `w` (claimed, then waiting) off it; the caller
 * owns them. A waiting task is taken back first (the worker will skip it)
 * unless the worker claimed it: then it is claimed, and goes with the run
 * list. Counts them out of n_inflight. */
static task *w_take_all(process_pool *pool, wproc *w, task **waiting)
{
    w_sync(pool, w);
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
        if (!t->claim || task_take_back(t)) {
            *tail = t;
            tail = &t->next;
            n++;
        } else {
            cf_future_set_running_or_notify_cancel(t->f);
            run_push(pool, w, t);
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
static void break_pool(process_pool *pool, const char *why)
{
    char *message = cf__format("process pool is broken: %s", why);
    const char *m = message ? message : cf_strerror(CF_EBROKEN_PROCESS_POOL);
    cf__mutex_lock(&pool->lock);
    pool->broken = true;
    task *q = take_queue(pool);
    cf__mutex_unlock(&pool->lock);
    if (!pool->broken_msg)
        pool->broken_msg = message;
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        if (w->state == W_FREE)
            continue;
        task *waiting;
        task *run = w_take_all(pool, w, &waiting);
        fail_list(run, CF_EBROKEN_PROCESS_POOL, m);
        fail_list(waiting, CF_EBROKEN_PROCESS_POOL, m);
        cf__proc_signal(&w->proc, SIGKILL);
        w->state = W_EXITING;
    }
    fail_list(q, CF_EBROKEN_PROCESS_POOL, m);
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
    inflight_add(pool, -1);
    if (cf__future_finish(t->f, value, free_value, code, msg) != CF_OK &&
        free_value && value)
        free_value(value);
    task_free(t);
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
        w_send_exit(w);
}

static void w_drain_ring(process_pool *pool, wproc *w);

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
        break_pool(pool, why);
        return true;
    }
    case CF__MSG_CLAIMED:
        /* A wake-up: results in the ring, or a claim. */
        w_drain_ring(pool, w);
        w_sync(pool, w);
        return true;
    case CF__MSG_RESULT:
    case CF__MSG_CHUNK_RESULT:
    case CF__MSG_WORDS_RESULT: {
        /* The worker claimed the task before it wrote this. */
        task *t = w_find_running(w, h->id);
        if (!t) {
            w_sync(pool, w);
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
            w_lose(w, "it sent a corrupt message");
            return false;
        }
        const unsigned char *payload = p + off + CF__WIRE_HEADER_SIZE;
        off += CF__WIRE_HEADER_SIZE + (size_t)h.len;
        if (!handle_frame(pool, w, &h, payload)) {
            w_lose(w, "it sent a message out of turn");
            return false;
        }
        if (w->state == W_FREE || w->lost)
            return false; /* given up meanwhile */
    }
    return true;
}

/* Handles what the worker published in the shared ring (cf__shm_slot). */
static void w_drain_ring(process_pool *pool, wproc *w)
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
            w_lose(w, "it sent a corrupt message");
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
static bool w_ring_ready(const wproc *w)
{
    /* seq_cst: set_asleep() relies on it (Dekker with ring_put). */
    return w->slot && atomic_load(&w->slot->ring_head) !=
                          atomic_load_explicit(&w->slot->ring_tail,
                                               memory_order_relaxed);
}

/* Reads everything the ring and the socket have and handles complete
 * frames. */
static void w_receive(process_pool *pool, wproc *w)
{
    w_drain_ring(pool, w);
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
        ptrdiff_t n = w->proc.socket
                          ? cf__sock_recv(w->proc.fd, w->in.data + w->in.len,
                                          w->in.cap - w->in.len)
                          : cf__pipe_read(w->proc.fd, w->in.data + w->in.len,
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
    cf__buffer_destroy(&w->out);
    cf__buffer_destroy(&w->in);
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

static void cancel_tasks(task *q)
{
    while (q) {
        task *next = q->next;
        cf__future_cancel(q->f);
        task_free(q);
        q = next;
    }
}

/* The worker's process has ended (or is ending: EOF without pidfd). */
static void w_exited(process_pool *pool, wproc *w)
{
    if (!w->eof)
        w_receive(pool, w); /* results written before the end still count */
    else
        w_drain_ring(pool, w);
    pid_t pid = w->proc.pid;
    char how[128], what[300], why[640];
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
    task *run = w_take_all(pool, w, &waiting);
    /* The oldest claimed task without a result is the one it was on. */
    task *t = run;
    w_release(pool, w);
    if (t)
        describe_task(t, what, sizeof what);
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
    if (terminated) {
        char *m = cf__format("%s (terminate_workers/kill_workers)", why);
        fail_list(run, CF_EBROKEN_PROCESS_POOL, m ? m : why);
        free(m);
        cancel_tasks(waiting); /* terminate cancels what has not started */
        return;
    }
    if (pool->survive && state != W_STARTING) {
        /* Only its own task is lost; the ones waiting there move on. */
        fail_list(run, CF_EBROKEN_PROCESS_POOL, why);
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
        fail_list(run, CF_EBROKEN_PROCESS_POOL, m ? m : why);
        free(m);
    }
    requeue(pool, waiting); /* failed with the queue by break_pool() */
    cf__mutex_lock(&pool->lock);
    bool already = pool->broken;
    task *q = already ? take_queue(pool) : NULL;
    cf__mutex_unlock(&pool->lock);
    if (!already)
        break_pool(pool, why);
    else
        fail_list(q, CF_EBROKEN_PROCESS_POOL,
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
        inflight_add(pool, -1);
        task_free(t); /* cancelled while queued: it never runs */
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
    w_sync(pool, victim);
    task *t = victim->wait_head;
    if (!t || !task_take_back(t))
        return; /* the victim got to it first */
    wait_pop(pool, victim);
    w_give(pool, thief, t);
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
                if (!w_can_take(pool, w, pass == 0))
                    continue;
                task *t = next_task(pool);
                if (!t)
                    goto stolen;
                w_give(pool, w, t);
                more = true;
            }
        }
    }
stolen:
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        if (w_can_take(pool, w, true))
            steal(pool, w);
    }
    for (int i = 0; i < pool->max_workers; i++)
        if (pool->workers[i].state != W_FREE)
            w_flush(&pool->workers[i]);
}

/* Starts workers while queued tasks outnumber the workers able to take
 * them. With no worker at all and none startable, the queue fails. */
static void spawn_needed(process_pool *pool, size_t queued)
{
    int alive = 0, available = 0;
    for (int i = 0; i < pool->max_workers; i++) {
        wproc *w = &pool->workers[i];
        alive += w->state != W_FREE && w->state != W_EXITING;
        available += w->state == W_STARTING ||
                     (w->state == W_READY && w_free(w) && !w->wait_head);
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
            w_sync(pool, &pool->workers[i]); /* claims and cancels */
    pool->seen_enqueued = atomic_load(&pool->n_enqueued);
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
        if (closing && queued == 0 && !w->run_head && !w->wait_head &&
            (w->state == W_READY || w->state == W_STARTING))
            w_send_exit(w);
        any |= w->state != W_FREE;
    }
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
        bool out = w->state != W_FREE && !w->send_failed && w_has_output(w);
        /* fd -1 makes poll skip an entry; indexes stay 1 + 3i. */
        p[n++] = (struct pollfd){in ? w->proc.fd : -1, POLLIN, 0};
        p[n++] = (struct pollfd){out ? w->proc.write_fd : -1, POLLOUT, 0};
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
        short in = pool->pfds[1 + 3 * i].revents;
        short out = pool->pfds[2 + 3 * i].revents;
        short pid = pool->pfds[3 + 3 * i].revents;
        if (w->state == W_FREE)
            continue;
        if (out)
            w_flush(w); /* POLLERR too: the send then fails and says so */
        if (in & (POLLIN | POLLHUP | POLLERR))
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
        if (w_head_decided(w))
            any = true; /* step() catches up with its claims */
        if (w_ring_ready(w)) {
            w_drain_ring(pool, w);
            any = true;
        }
        uint_fast64_t v = atomic_load_explicit(&w->slot->from_worker,
                                               memory_order_acquire);
        if (v == w->seen_from)
            continue;
        w->seen_from = v;
        w_receive(pool, w);
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
        claimed |= asleep && (w_head_decided(w) || w_ring_ready(w));
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
        if (poll(pool->pfds, (nfds_t)n, -1) >= 0) {
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

/* Marks the pool shut down, optionally cancelling every task not yet
 * started: the queue, and the tasks waiting at workers unclaimed (the
 * manager skips them when it finds them cancelled). */
static void begin_shutdown(process_pool *pool, bool cancel_futures, int sig)
{
    /* The futures are cancelled with no lock held, since cancelling runs
     * callbacks and a callback may shut this very pool down again. Those
     * waiting at workers are copied out first, into memory of this call's
     * own or else the pool's spare buffer; with neither, they are left to
     * run (as CPython leaves its call queue), the queue is still
     * cancelled. */
    size_t cap = cancel_futures ? (size_t)pool->max_workers * WINDOW : 0;
    cf_future **buf = cap ? malloc(cap * sizeof *buf) : NULL;
    bool spare = false;
    if (cap && !buf && !atomic_exchange(&pool->cancel_buf_busy, true)) {
        buf = pool->cancel_buf;
        spare = true;
    }
    size_t n = 0;
    cf__mutex_lock(&pool->lock);
    pool->shutdown = true;
    if (sig)
        pool->terminate_sig = sig;
    task *q = cancel_futures ? take_queue(pool) : NULL;
    for (int i = 0; buf && i < pool->max_workers; i++)
        for (task *t = pool->workers[i].wait_head; t && n < cap; t = t->next)
            buf[n++] = cf_future_retain(t->f);
    cf__mutex_unlock(&pool->lock);
    cancel_tasks(q);
    for (size_t i = 0; i < n; i++) {
        cf__future_cancel(buf[i]);
        cf_future_release(buf[i]);
    }
    if (spare)
        atomic_store(&pool->cancel_buf_busy, false);
    else
        free(buf);
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

static void free_config(process_pool *pool)
{
    cf__shm_destroy(&pool->shm);
    free(pool->cancel_buf);
    free(pool->workers);
    free(pool->pfds);
    free(pool->init_module);
    cf__buffer_destroy(&pool->required);
    cf__spawn_config_destroy(&pool->spawn);
}

static void pool_destroy(void *impl)
{
    process_pool *pool = impl;
    if (getpid() == pool->owner)
        join_manager(pool);
    free_spares(pool);
    cf__fd_close(pool->wake_fd);
    cf__cond_destroy(&pool->changed);
    cf__mutex_destroy(&pool->lock);
    free(pool->broken_msg);
    free_config(pool);
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
    if (o->max_workers < 0 || (unsigned)o->start_method > CF_START_CALLBACK ||
        (unsigned)o->transport > CF_TRANSPORT_PIPES)
        return CF_EINVAL;
    return CF_OK;
}

/* The INIT message's list of names every worker must know. */
static int configure_required(process_pool *pool,
                              const cf_process_pool_options *o)
{
    cf__buffer_init(&pool->required);
    for (size_t i = 0; o->required_tasks && o->required_tasks[i]; i++) {
        const char *name = o->required_tasks[i];
        size_t len = strlen(name);
        if (len == 0 || len > CF__REGISTRY_NAME_MAX)
            return CF_EINVAL;
        int rc = cf__wire_put_name(&pool->required, name, len);
        if (rc != CF_OK)
            return rc;
        pool->n_required++;
    }
    return CF_OK;
}

static int configure_initializer(process_pool *pool,
                                 const cf_process_pool_options *o)
{
    if (!o->initializer)
        return CF_OK;
    cf__wire_ref ref;
    if (code_ref(pool, CF__REG_INITIALIZER,
                 cf__fn_addr((cf__any_fn)o->initializer), &ref) != CF_OK)
        return CF_EINVAL;
    pool->init_module = malloc(ref.module_len + 1);
    if (!pool->init_module)
        return CF_ENOMEM;
    memcpy(pool->init_module, ref.module, ref.module_len);
    pool->init_module[ref.module_len] = '\0';
    pool->init_len = ref.module_len;
    pool->init_offset = ref.offset;
    pool->has_init = true;
    return CF_OK;
}

/* Copies the options and resolves what the workers will need. */
static int configure(process_pool *pool, const cf_process_pool_options *o)
{
    pool->max_workers = o->max_workers ? o->max_workers : cf_cpu_count();
    pool->max_tasks_per_child = o->max_tasks_per_child;
    pool->codec = o->codec ? o->codec : cf_codec_word();
    pool->survive = o->survive_worker_death;
    pool->initarg = o->initarg;
    pool->owner = getpid();
    pool->wake_fd = -1;
    pool->shm.fd = -1;
    int rc = cf__spawn_configure(&pool->spawn, o);
    if (rc != CF_OK)
        return rc;
    pool->by_name = !cf__spawn_same_program(&pool->spawn);
    cf__wire_codec wc;
    if (codec_to_wire(pool, pool->codec, &wc) != CF_OK)
        return CF_EINVAL;
    if ((rc = configure_initializer(pool, o)) != CF_OK ||
        (rc = configure_required(pool, o)) != CF_OK)
        return rc;
    /* Without shared slots (no memfd, or the pipes transport) the pool
     * works the same, only without busy-waiting on the workers. */
    if (o->transport == CF_TRANSPORT_SHARED_MEMORY)
        cf__shm_create((size_t)pool->max_workers * sizeof(cf__shm_slot),
                       &pool->shm);
    pool->workers = calloc((size_t)pool->max_workers, sizeof *pool->workers);
    pool->pfds = calloc(1 + 3 * (size_t)pool->max_workers,
                        sizeof *pool->pfds);
    pool->cancel_buf = calloc((size_t)pool->max_workers * WINDOW,
                              sizeof *pool->cancel_buf);
    if (!pool->workers || !pool->pfds || !pool->cancel_buf)
        return CF_ENOMEM;
    return CF_OK;
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
    atomic_init(&pool->spare_lock.held, false);
    atomic_init(&pool->cancel_buf_busy, false);
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
    pool->fork_gen = cf__fork_generation(); /* the hook is installed now */
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
