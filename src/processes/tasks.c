/* tasks.c - a process pool's tasks and how they are submitted: building
 * a task's frame (its function and codec by address or by name, its
 * argument through the codec), queueing it, waking the manager, and the
 * spare tasks kept for reuse.
 *
 * Design: submit runs on the caller's thread and touches only the queue,
 * under the pool lock; the frame is complete before the task is queued, so
 * the manager only copies bytes. An argument the codec cannot encode fails
 * that task's future, never the pool. The manager is woken through the
 * wake fd only when it sleeps (mgr_sleeping), so back-to-back submits to a
 * busy pool make no system call. Freed tasks go to a small spare list
 * (spare_lock) instead of free(): the manager frees what callers
 * allocated, and malloc's arena lock would otherwise make them wake each
 * other. spare_lock is a leaf: nothing else is taken while it is held.
 */
#include "processes/pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Tasks                                                                    */

/* Appends `t` to a FIFO list of tasks linked through next. */
void cf__pp_task_append(task **head, task **tail, task *t)
{
    t->next = NULL;
    if (*tail)
        (*tail)->next = t;
    else
        *head = t;
    *tail = t;
}

void cf__pp_task_free(task *t)
{
    if (!t)
        return;
    if (t->mon)
        cf__monitor_release(t->mon);
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

void cf__pp_free_spares(process_pool *pool)
{
    while (pool->spares) {
        task *t = pool->spares;
        pool->spares = t->next;
        cf__buffer_destroy(&t->msg);
        free(t);
    }
    pool->n_spares = 0;
}

void cf__pp_describe_task(const task *t, char *buf, size_t n)
{
    char name[256];
    cf__addr_describe(cf__fn_addr((cf__any_fn)t->fn), name, sizeof name);
    snprintf(buf, n, "%s #%llu (%s)", t->chunk ? "map chunk" : "task",
             (unsigned long long)t->seq, name);
}

/* Fails a task's future with a pool error. The future may be PENDING
 * (queued) or RUNNING (at a worker); a cancelled one stays cancelled. */
void cf__pp_task_fail(task *t, int code, const char *message)
{
    if (t->mon)
        cf__monitor_task_end(t->mon); /* before FINISH, which reports it */
    cf__future_finish(t->f, NULL, NULL, code, cf__strdup(message));
    cf__pp_task_free(t);
}

/* How workers will find the code at `addr`: by module and offset when
 * they run this same program, else by the name it was registered under
 * (CF_EINVAL when it has none). Code on the heap or the stack has no
 * module: CF_EINVAL too. */
int cf__pp_code_ref(const process_pool *pool, int kind, const void *addr,
                    cf__wire_ref *ref)
{
    if (!pool->by_name)
        return cf__addr_to_ref(addr, ref);
    ref->offset = CF__WIRE_NAMED;
    return cf__registry_name(kind, addr, &ref->module, &ref->module_len)
               ? CF_OK
               : CF_EINVAL;
}

int cf__pp_codec_to_wire(const process_pool *pool, const cf_codec *codec,
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
    return cf__pp_code_ref(pool, CF__REG_CODEC, codec, &out->ref);
}

/* Builds a task and the head of its message (header, fn, codec). */
static int task_new(process_pool *pool, cf_future *f, cf_fn fn,
                    const cf_codec *codec, uint32_t type, size_t extra,
                    task **out)
{
    cf__wire_ref fn_ref;
    cf__wire_codec wc;
    if (cf__pp_code_ref(pool, CF__REG_TASK, cf__fn_addr((cf__any_fn)fn),
                        &fn_ref) != CF_OK ||
        cf__pp_codec_to_wire(pool, codec, &wc) != CF_OK)
        return CF_EINVAL;
    task *t = task_alloc(pool);
    if (!t)
        return CF_ENOMEM;
    t->fn = fn;
    t->codec = codec;
    /* The submit's own limit (0: none given; infinite: none wanted),
     * else the pool's default. */
    double limit = cf__submit_timeout;
    t->limit = limit == 0 ? pool->task_timeout : isinf(limit) ? 0 : limit;
    t->seq = atomic_fetch_add(&pool->next_seq, 1);
    size_t start;
    int rc = extra > SIZE_MAX / 2 ? CF_ENOMEM
             : cf__buffer_reserve(&t->msg, 96 + fn_ref.module_len + extra);
    rc = rc ? rc : cf__wire_begin(&t->msg, type, t->seq, &start);
    rc = rc ? rc : cf__wire_put_ref(&t->msg, &fn_ref);
    rc = rc ? rc : cf__wire_put_codec(&t->msg, &wc);
    if (rc != CF_OK) {
        cf__pp_task_free(t);
        return rc;
    }
    t->f = f;
    *out = t;
    return CF_OK;
}

/* ------------------------------------------------------------------------ */
/* Submitting                                                               */

void cf__pp_wake_manager(process_pool *pool)
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
        /* A monitored submit's (or map chunk's) record, once the task is
         * surely ours. */
        t->mon = cf__monitor_hold();
        cf__pp_task_append(&pool->head, &pool->tail, t);
        pool->n_queued++;
        atomic_fetch_add(&pool->n_enqueued, 1);
    }
    cf__mutex_unlock(&pool->lock);
    /* A spinning manager sees n_enqueued move; only a sleeping one needs
     * the system call. Both sides use seq_cst (Dekker): the manager stores
     * mgr_sleeping then loads n_enqueued, we add to n_enqueued then load
     * mgr_sleeping, so one of us sees the other. */
    if (rc == CF_OK && atomic_load(&pool->mgr_sleeping))
        cf__pp_wake_manager(pool);
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
    cf__pp_task_free(t);
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

int cf__pp_pool_submit(void *impl, cf_future *f, cf_fn fn, void *arg,
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
int cf__pp_pool_submit_chunk(void *impl, cf_future *f, cf__chunk *chunk,
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
