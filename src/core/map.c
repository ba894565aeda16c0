/* map.c - Executor.map: results in input order, with chunks and a window.
 *
 * Design: the iterator keeps a FIFO ring of in-flight slots, one future per
 * slot. With chunksize 1 a slot is a plain submitted task. With chunksize k
 * a slot carries a cf__chunk of up to k arguments, run as one task: natively
 * by executors that ship a chunk as one message (ex->submit_chunk, the
 * process pool), otherwise by run_chunk() on the executor as a single task.
 *
 * Ownership of a chunk: the iterator owns it. If the iterator is freed while
 * the chunk's task still runs, ownership moves to the task's future through
 * a done-callback, so the task never writes into freed memory.
 *
 * Window: with buffersize b, at most b slots are in flight; consuming one
 * submits the next (Python 3.14). With b = 0 all input is submitted by the
 * call that creates the iterator, as Python does.
 *
 * Values returned by cf_map_next() are borrowed: the iterator keeps the
 * future (or chunk) they live in until the next call.
 */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

typedef struct slot {
    cf_future *future;
    cf__chunk *chunk; /* NULL when chunksize is 1 */
} slot;

struct cf_map {
    cf_executor *ex;
    cf_fn fn;
    const cf_codec *codec;
    size_t chunksize;
    size_t buffersize; /* 0: unbounded */
    int64_t deadline;

    /* Input: an array or a pull function. */
    void *const *args;
    size_t n_args, next_arg;
    cf_next_arg_fn next;
    void *ctx;
    bool input_done;
    int submit_error; /* a failed submit ends the input; reported in order */
    bool slow;        /* the last slot waited for came late (wait_slot) */

    /* In-flight slots, FIFO. */
    slot *ring;
    size_t cap, head, count;

    /* The slot being consumed item by item, and what the last returned
     * value lives in (kept until the next call). */
    slot current;
    size_t item;
    cf_future *held;
    cf__chunk *held_chunk;
};

/* ------------------------------------------------------------------------ */
/* Chunks                                                                   */

/* One block: the chunk, then its args. The items come only when needed
 * (cf__chunk_items): a native chunk of words never needs them, and the
 * memory a map touches as it takes its input is the memory it pays page
 * faults for. */
cf__chunk *cf__chunk_new(cf_fn fn, size_t n)
{
    if (n > (SIZE_MAX - sizeof(cf__chunk)) / sizeof(void *))
        return NULL;
    cf__chunk *c = malloc(sizeof *c + n * sizeof(void *));
    if (!c)
        return NULL;
    c->fn = fn;
    c->n = n;
    c->args = (void **)(void *)(c + 1);
    c->items = NULL;
    return c;
}

int cf__chunk_items(cf__chunk *c)
{
    if (!c->items && c->n)
        c->items = calloc(c->n, sizeof *c->items);
    return c->items || !c->n ? CF_OK : CF_ENOMEM;
}

void cf__chunk_free(void *chunk)
{
    cf__chunk *c = chunk;
    if (!c)
        return;
    for (size_t i = 0; c->items && i < c->n; i++) {
        if (c->items[i].free_value && c->items[i].value)
            c->items[i].free_value(c->items[i].value);
        free(c->items[i].message);
    }
    free(c->items);
    free(c);
}

/* The task that runs a chunk on executors without native chunks. */
static void *run_chunk(void *arg, cf_call *call)
{
    cf__chunk *c = arg;
    for (size_t i = 0; i < c->n; i++) {
        cf_call item = {.future = call->future,
                        .code = 0,
                        .message = NULL,
                        .cancel_flag = call->cancel_flag,
                        .cancel_poll = call->cancel_poll};
        void *value = c->fn(c->args[i], &item);
        c->items[i].code = item.code;
        c->items[i].message = item.message;
        if (item.code && item.free_result && value)
            item.free_result(value); /* failed: the value is not delivered */
        c->items[i].value = item.code ? NULL : value;
        c->items[i].free_value = item.code ? NULL : item.free_result;
    }
    return c;
}

static int free_chunk_when_done(cf_future *f, void *chunk)
{
    (void)f;
    cf__chunk_free(chunk);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Input and submission                                                     */

static bool pull(cf_map *m, void **arg)
{
    if (m->input_done)
        return false;
    if (m->next) {
        if (m->next(m->ctx, arg))
            return true;
    } else if (m->next_arg < m->n_args) {
        *arg = m->args[m->next_arg++];
        return true;
    }
    m->input_done = true;
    return false;
}

static int ring_push(cf_map *m, slot s)
{
    if (m->count == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        slot *ring = malloc(cap * sizeof *ring);
        if (!ring)
            return CF_ENOMEM;
        for (size_t i = 0; i < m->count; i++)
            ring[i] = m->ring[(m->head + i) % m->cap];
        free(m->ring);
        m->ring = ring;
        m->cap = cap;
        m->head = 0;
    }
    m->ring[(m->head + m->count) % m->cap] = s;
    m->count++;
    return CF_OK;
}

static slot ring_pop(cf_map *m)
{
    slot s = m->ring[m->head];
    m->head = (m->head + 1) % m->cap;
    m->count--;
    return s;
}

/* Pulls up to chunksize arguments into a new chunk sized by what came: a
 * huge chunksize means "all in one chunk", not a huge allocation. Returns
 * CF_OK, CF_EEND (no input left) or CF_ENOMEM. */
static int pull_chunk(cf_map *m, cf__chunk **out)
{
    if (!m->next) {
        /* An array: the chunk's size is known, fill it in place. */
        size_t k = m->n_args - m->next_arg;
        if (k > m->chunksize)
            k = m->chunksize;
        if (k == 0) {
            m->input_done = true;
            return CF_EEND;
        }
        cf__chunk *c = cf__chunk_new(m->fn, k);
        if (!c)
            return CF_ENOMEM;
        memcpy(c->args, m->args + m->next_arg, k * sizeof *c->args);
        m->next_arg += k;
        *out = c;
        return CF_OK;
    }
    size_t cap = m->chunksize < 64 ? m->chunksize : 64, k = 0;
    void **args = malloc(cap * sizeof *args);
    if (!args)
        return CF_ENOMEM;
    void *arg;
    while (k < m->chunksize && pull(m, &arg)) {
        if (k == cap) {
            size_t more = cap > m->chunksize / 2 ? m->chunksize : cap * 2;
            void **grown = realloc(args, more * sizeof *args);
            if (!grown) {
                free(args);
                return CF_ENOMEM;
            }
            args = grown;
            cap = more;
        }
        args[k++] = arg;
    }
    cf__chunk *c = k ? cf__chunk_new(m->fn, k) : NULL;
    if (c)
        memcpy(c->args, args, k * sizeof *args);
    free(args);
    if (!c)
        return k ? CF_ENOMEM : CF_EEND;
    *out = c;
    return CF_OK;
}

static int submit_chunk(cf_map *m, cf__chunk *c, cf_future **out)
{
    cf_executor *ex = m->ex;
    if (!ex->submit_chunk) {
        int rc = cf__chunk_items(c); /* run_chunk() fills them */
        return rc ? rc : cf_executor_submit_ex(ex, run_chunk, c, m->codec,
                                               out);
    }
    cf_future *f = cf__future_alloc();
    if (!f)
        return CF_ENOMEM;
    cf__monitor *mon = atomic_load_explicit(&ex->monitor,
                                            memory_order_acquire);
    int rc = mon ? cf__monitor_submit_chunk(mon, ex, f, c, m->codec)
                 : ex->submit_chunk(ex->impl, f, c, m->codec);
    if (rc != CF_OK) {
        cf_future_release(f);
        return rc;
    }
    *out = f;
    return CF_OK;
}

/* Submits the next slot. Returns CF_OK, CF_EEND when the input is used up,
 * or the submit error (which also ends the input). */
static int submit_next(cf_map *m)
{
    slot s = {NULL, NULL};
    void *arg;
    int rc;
    if (m->chunksize == 1) {
        if (!pull(m, &arg))
            return CF_EEND;
        rc = cf_executor_submit_ex(m->ex, m->fn, arg, m->codec, &s.future);
    } else {
        if ((rc = pull_chunk(m, &s.chunk)) != CF_OK)
            return rc;
        rc = submit_chunk(m, s.chunk, &s.future);
        if (rc != CF_OK)
            cf__chunk_free(s.chunk);
    }
    if (rc == CF_OK && (rc = ring_push(m, s)) != CF_OK) {
        cf_future_cancel(s.future);
        /* Its task may already run: the future keeps the chunk alive. */
        if (s.chunk && cf_future_add_done_callback(s.future,
                                                   free_chunk_when_done,
                                                   s.chunk) != CF_OK) {
            cf_future_result(s.future, CF_FOREVER, NULL);
            cf__chunk_free(s.chunk);
        }
        cf_future_release(s.future);
    }
    return rc;
}

/* Keeps the window full (or, unbounded, submits everything). */
static int fill(cf_map *m)
{
    while (!m->input_done && !m->submit_error &&
           (m->buffersize == 0 || m->count < m->buffersize)) {
        int rc = submit_next(m);
        if (rc == CF_EEND)
            break;
        if (rc != CF_OK) {
            m->submit_error = rc;
            m->input_done = true;
            return rc;
        }
    }
    return CF_OK;
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                               */

static void drop_slot(slot s)
{
    if (!s.future)
        return;
    cf_future_cancel(s.future);
    if (s.chunk && !cf_future_done(s.future)) {
        /* Running: its task still writes into the chunk. */
        if (cf_future_add_done_callback(s.future, free_chunk_when_done,
                                        s.chunk) != CF_OK) {
            cf_future_result(s.future, CF_FOREVER, NULL);
            cf__chunk_free(s.chunk);
        }
    } else {
        cf__chunk_free(s.chunk);
    }
    cf_future_release(s.future);
}

static void release_held(cf_map *m)
{
    cf__chunk_free(m->held_chunk);
    cf_future_release(m->held);
    m->held = NULL;
    m->held_chunk = NULL;
}

void cf_map_free(cf_map *m)
{
    if (!m)
        return;
    release_held(m);
    drop_slot(m->current);
    /* Cancel newest first, so a worker popping the queue meanwhile finds
     * cancelled futures rather than starting the ones we are about to drop. */
    while (m->count > 0) {
        m->count--;
        drop_slot(m->ring[(m->head + m->count) % m->cap]);
    }
    free(m->ring);
    free(m);
}

static int map_new(cf_executor *ex, cf_fn fn, const cf_map_options *opts,
                   cf_map **out)
{
    static const cf_map_options defaults = {0};
    if (cf__executor_refused_in_worker(ex))
        return CF_EDEADLK;
    if (!ex || !fn || !out)
        return CF_EINVAL;
    if (atomic_load(&ex->shut_down))
        return CF_ESHUTDOWN;
    if (!opts)
        opts = &defaults;
    if (isnan(opts->timeout) || opts->timeout < 0)
        return CF_EINVAL;
    cf_map *m = calloc(1, sizeof *m);
    if (!m)
        return CF_ENOMEM;
    m->ex = ex;
    m->fn = fn;
    m->codec = opts->codec;
    m->chunksize = opts->chunksize ? opts->chunksize : 1;
    m->buffersize = opts->buffersize;
    cf__deadline_from_timeout(opts->timeout > 0 ? opts->timeout : CF_FOREVER,
                              &m->deadline);
    *out = m;
    return CF_OK;
}

/* Fills the window; on a submit error nothing is left running and the
 * error is returned, as a failed map() call in Python raises. */
static int start(cf_map *m, cf_map **out)
{
    int rc = fill(m);
    if (rc != CF_OK) {
        cf_map_free(m);
        return rc;
    }
    *out = m;
    return CF_OK;
}

int cf_executor_map(cf_executor *ex, cf_fn fn, void *const *args, size_t n,
                    const cf_map_options *opts, cf_map **out)
{
    if ((n > 0 && !args) || !out)
        return CF_EINVAL;
    cf_map *m;
    int rc = map_new(ex, fn, opts, &m);
    if (rc != CF_OK)
        return rc;
    m->args = args;
    m->n_args = n;
    return start(m, out);
}

int cf_executor_map_stream(cf_executor *ex, cf_fn fn, cf_next_arg_fn next,
                           void *ctx, const cf_map_options *opts,
                           cf_map **out)
{
    if (!next || !out)
        return CF_EINVAL;
    cf_map *m;
    int rc = map_new(ex, fn, opts, &m);
    if (rc != CF_OK)
        return rc;
    m->next = next;
    m->ctx = ctx;
    return start(m, out);
}

/* ------------------------------------------------------------------------ */
/* Iteration                                                                */

static void set_error(cf_error *error, int code, const char *message)
{
    if (error) {
        error->code = code;
        error->message = message ? message : cf_strerror(code);
    }
}

/* Returns the next item of the current chunk slot. */
static int next_item(cf_map *m, void **result, cf_error *error)
{
    cf_future *f = m->current.future;
    cf__chunk *c = m->current.chunk;
    size_t i = m->item++;
    bool last = m->item == c->n;
    int rc = cf__future_outcome(f);
    if (rc == CF_OK && cf__future_result(f) == (void *)c->args) {
        if (result)
            *result = c->args[i]; /* results over the args: all words */
    } else if (rc == CF_OK) {
        const cf__chunk_item *it = &c->items[i];
        rc = it->code == 0 ? CF_OK : it->code < 0 ? it->code : CF_ETASK;
        if (rc == CF_OK && result)
            *result = it->value;
        else if (rc != CF_OK)
            set_error(error, it->code, it->message);
    } else if (rc != CF_ECANCELLED) {
        /* the whole chunk failed */
        set_error(error, cf__future_code(f), cf__future_message(f));
    }
    if (last) {
        m->held = f;
        m->held_chunk = c;
        m->current.future = NULL;
        m->current.chunk = NULL;
    }
    return rc;
}

/* How long cf_map_next() polls for the next slot, giving its CPU away
 * between polls, before it waits like cf_future_result(). The slots of a
 * map of small tasks come a few microseconds apart, from workers that
 * need the CPU this thread would otherwise spin on (or sleep and be woken
 * from, at tens of microseconds a wake-up on a VM). Once a slot took
 * longer than that, the map waits at once until one comes quickly again,
 * so long tasks do not pay for the polling. */
#define MAP_YIELD_NS 200000

/* Waits for the future of the oldest slot. Returns CF_OK once it is done,
 * CF_ETIMEDOUT once the deadline has passed, CF_EDEADLK from inside a task
 * whose wait would never end (see nested.c). A map with a timeout waits
 * as cf_future_result() does. */
static int wait_slot(cf_map *m, cf_future *f)
{
    if (m->deadline != CF__NO_DEADLINE)
        return cf__future_wait(f, m->deadline);
    if (m->slow || cf__running) {
        /* Inside a task, no polling: the wait runs the slot's task here if
         * it is queued in this thread's pool. */
        int64_t start = cf__now_ns();
        int rc = cf__future_wait(f, CF__NO_DEADLINE);
        m->slow = cf__now_ns() - start >= MAP_YIELD_NS;
        return rc;
    }
    int64_t until = 0;
    for (unsigned i = 0; !cf__state_done(cf__future_state(f)); i++) {
        if (!cf__spin_continue(i, &until, MAP_YIELD_NS)) {
            m->slow = true;
            return cf__future_wait(f, CF__NO_DEADLINE);
        }
        if ((i & 7) == 7)
            cf__yield();
    }
    return CF_OK;
}

int cf_map_next(cf_map *m, void **result, cf_error *error)
{
    if (!m)
        return CF_EINVAL;
    release_held(m);
    if (!m->current.future) {
        if (m->count == 0) {
            if (m->submit_error) {
                int rc = m->submit_error;
                m->submit_error = 0;
                set_error(error, rc, NULL);
                return rc;
            }
            return CF_EEND;
        }
        cf_future *f = m->ring[m->head].future;
        int rc = cf__state_done(cf__future_state(f)) ? CF_OK
                                                     : wait_slot(m, f);
        if (rc != CF_OK)
            return rc;
        m->current = ring_pop(m);
        m->item = 0;
        fill(m); /* a submit error is reported in order, after these */
    }
    if (m->current.chunk)
        return next_item(m, result, error);

    cf_future *f = m->current.future;
    m->current.future = NULL;
    m->held = f;
    int rc = cf__future_outcome(f);
    if (rc == CF_OK && result)
        *result = cf__future_result(f);
    else if (rc != CF_OK && rc != CF_ECANCELLED)
        set_error(error, cf__future_code(f), cf__future_message(f));
    return rc;
}
