/* monitor.c - stats and observers of an executor (cf_executor_monitor,
 * cf_executor_get_stats).
 *
 * Design: monitoring lives in the core, around ops->submit, so the
 * executors need no code for tasks. Off, a submit reads ex->monitor (NULL)
 * and nothing else. On, a task takes one of three paths.
 *
 * In place (a thread pool, whose workers run a task with cf__invoke() on
 * the task's own future; the common case): nothing is allocated and no
 * link is followed. The submit keeps the task's function in the future
 * (monitored_fn, the last word of its 64-byte slot), puts a data entry
 * (core.h) with the monitor's id and the submit time as the oldest entry
 * of the future's callback list, and submits `in_place_task` with the
 * task's own argument:
 *
 *   submit ---> SUBMIT; f->monitored_fn = fn; data {id, submit time}
 *   worker ---> in_place_task: data := {id, STARTED, worker} (under f's
 *               lock); START (queue wait); fn(arg); run time (last_run)
 *   f done ---> the data entry comes back in the completing thread:
 *               FINISH (outcome; run time if its worker completed it)
 *
 * The data is changed under the future's lock, as its completion detaches
 * the list under it: FINISH sees STARTED (and the worker) iff the start
 * came first, so a future cancelled while queued, or completed from
 * outside while (or just before) its task runs, is counted once, as
 * unstarted or started. The run time reaches FINISH in a thread-local
 * (last_run) when the worker completes the future itself, just after the
 * task returned; completed from outside while it ran, FINISH says 0, and
 * the run is still sampled when the task returns. A monitor's id (by_id,
 * 10 bits) finds it from the data; the 1,024th monitor alive at once and
 * later ones get no id, and their tasks go the record path.
 *
 * With a record (executors that share memory but call tasks their own way,
 * custom ones; a future others may see already, such as a continuation's):
 * the submit wraps the task in a `record` (a future slab's 64-byte slot)
 * and submits `monitored_task` instead, and a link (chain.c) on the task's
 * future reports its end:
 *
 *   submit ---> SUBMIT; record {fn, arg, future, submit time}; ops->submit
 *   worker ---> monitored_task: START (queue wait), fn(arg), run time
 *   future done --link--> FINISH (outcome, run time); counts; free record
 *
 * An executor whose tasks run in another process (a process pool) gets
 * no wrapper: it takes the record during its submit (cf__monitor_hold,
 * handed over in a thread-local) and reports the task's start and end
 * itself (cf__monitor_task_start/_end, from its manager thread), then
 * lets the record go (cf__monitor_release).
 *
 * The record's `word` holds four flags in its low bits: STARTED and
 * RUNNING, set by monitored_task (or the executor's start), DONE, set by
 * the link, and HELD, while an executor that took the record keeps it;
 * above them, the submit time in ns until the task starts, then the
 * index + 1 of the worker that runs it. A future is normally done only
 * after its task returned, but a task's future can be completed from
 * outside while the task still runs (cf_future_set_result on a running
 * future): whichever of monitored_task (or the release) and the link ends
 * second frees the record.
 *
 * Counters and time histograms are sharded, so threads that submit and
 * workers that finish do not write the same lines, and most threads own
 * theirs: a thread that first counts claims one of OWNED slots for its
 * life (a process-wide bitmap; its exit gives the slot back), and writes
 * shard [slot] of every monitor with a plain load and store, no atomic
 * read-modify-write: that is 7 fewer locked instructions per task. A
 * thread that finds every slot taken (or counts during its exit) shares
 * the last shard, SHARED, with atomic adds. get_stats sums the shards
 * with relaxed loads, as before. A slot's next owner sees the last one's
 * stores: the release of the bit and its claim order them. Histograms have
 * four buckets per power of two of nanoseconds: quantiles within 12.5%.
 * A start is counted by its queue-wait sample alone (their count is the
 * started tasks).
 *
 * The monitor lives from the first cf_executor_monitor() to the
 * executor's free, after its waited shutdown: records and data of tasks
 * under way point to it (its id is given back at the free). Observer
 * changes publish a new {fn, arg} pair; old pairs are kept until the
 * free, as an event in flight may still read one.
 */
#include "core/core.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

_Thread_local int cf__current_worker = -1;

enum {
    OWNED = 31,           /* shards a thread may own */
    SHARED = OWNED,       /* the shard of everyone else, atomic adds */
    SHARDS = OWNED + 1,
    SUB = 4,                  /* buckets per power of two */
    MAX_LOG = 42,             /* 2^42 ns: 73 minutes; longer clamps */
    BUCKETS = SUB * MAX_LOG,  /* values 0..3 take buckets 0..3 */
};

typedef struct histogram {
    atomic_uint_fast64_t bucket[BUCKETS]; /* their sum is the count */
    atomic_uint_fast64_t total_ns;
    atomic_int_fast64_t min_ns; /* INT64_MAX until the first sample */
    atomic_int_fast64_t max_ns;
} histogram;

typedef struct shard {
    _Alignas(64) atomic_uint_fast64_t submitted;
    atomic_uint_fast64_t ended_started;   /* done after they started */
    atomic_uint_fast64_t ended_unstarted; /* done without starting */
    atomic_uint_fast64_t failed;
    atomic_uint_fast64_t cancelled;
    histogram wait; /* one sample per start: its count is the started */
    histogram run;
} shard;

typedef struct observer {
    cf_observer_fn fn;
    void *arg;
    struct observer *older; /* kept until the monitor is freed */
} observer;

struct cf__monitor {
    cf_executor *ex;
    bool shares_memory; /* tasks run here: wrap them */
    unsigned id;        /* by_id[id] is this; 0: tasks get records */
    atomic_bool stats;
    _Atomic(observer *) observer; /* NULL or fn == NULL: none */
    cf__spinlock lock;            /* serialises cf_executor_monitor */
    shard shards[SHARDS];
};

/* The record's flags, in the low bits of `word` (a time in ns). */
enum { STARTED = 1, RUNNING = 2, DONE = 4, HELD = 8, FLAGS = 15, SHIFT = 4 };

typedef struct record {
    cf__link link;      /* on the task's future */
    cf_fn fn;           /* the task */
    union {
        void *arg;      /* until it runs */
        int64_t run_ns; /* once it ran (written before RUNNING clears);
                         * while a held record's task runs: its start */
    } u;
    cf_future *future;
    atomic_uint_fast64_t word; /* submit time or worker index | flags */
    cf__monitor *m;
} record;

_Static_assert(sizeof(record) <= sizeof(cf_future),
               "a record fits a future's slot");

/* ------------------------------------------------------------------------ */
/* Counting                                                                 */

/* Slots: bit i set while a thread owns shard i of every monitor. */
static atomic_uint_least32_t slots_taken;
static pthread_key_t slot_key;
static pthread_once_t slot_key_once = PTHREAD_ONCE_INIT;
static bool slot_key_made;
/* This thread's shard: -1 before its first count, SHARED without a slot. */
static _Thread_local int my_slot = -1;

_Static_assert(OWNED < 32, "the slots fit the bitmap");

/* The thread exits: its slot goes back (after its last plain store: the
 * release orders them before the next owner's claim). Counts it makes
 * later in its exit go to the shared shard. */
static void slot_release(void *value)
{
    unsigned slot = (unsigned)(uintptr_t)value - 1;
    my_slot = SHARED;
    atomic_fetch_and_explicit(&slots_taken, ~(UINT32_C(1) << slot),
                              memory_order_release);
}

static void slot_key_make(void)
{
    slot_key_made = pthread_key_create(&slot_key, slot_release) == 0;
}

/* Claims a slot for this thread (once), or settles for SHARED. */
static int slot_claim(void)
{
    my_slot = SHARED;
    pthread_once(&slot_key_once, slot_key_make);
    if (!slot_key_made)
        return SHARED;
    uint_least32_t taken = atomic_load_explicit(&slots_taken,
                                                memory_order_relaxed);
    for (;;) {
        uint_least32_t free_bits = ~taken & ((UINT32_C(1) << OWNED) - 1);
        if (!free_bits)
            return SHARED;
        unsigned slot = (unsigned)__builtin_ctz(free_bits);
        if (!atomic_compare_exchange_weak_explicit(
                &slots_taken, &taken, taken | (UINT32_C(1) << slot),
                memory_order_acquire, memory_order_relaxed))
            continue;
        if (pthread_setspecific(slot_key, (void *)(uintptr_t)(slot + 1))) {
            atomic_fetch_and_explicit(&slots_taken, ~(UINT32_C(1) << slot),
                                      memory_order_release);
            return SHARED;
        }
        my_slot = (int)slot;
        return my_slot;
    }
}

static shard *my_shard(cf__monitor *m)
{
    int slot = my_slot;
    if (slot < 0)
        slot = slot_claim();
    return &m->shards[slot];
}

/* Whether this thread alone writes `s`. */
static bool owns(const cf__monitor *m, const shard *s)
{
    return s != &m->shards[SHARED];
}

/* counter += v: by its owner, a plain load and store (relaxed atomics,
 * for the readers in get_stats); in the shared shard, an atomic add. */
static void add_n(atomic_uint_fast64_t *counter, uint_fast64_t v, bool own)
{
    if (own)
        atomic_store_explicit(
            counter,
            atomic_load_explicit(counter, memory_order_relaxed) + v,
            memory_order_relaxed);
    else
        atomic_fetch_add_explicit(counter, v, memory_order_relaxed);
}

static void add(atomic_uint_fast64_t *counter, bool own)
{
    add_n(counter, 1, own);
}

static unsigned bucket_of(int64_t ns)
{
    if (ns < SUB)
        return ns < 0 ? 0 : (unsigned)ns;
    unsigned log = 63 - (unsigned)__builtin_clzll((unsigned long long)ns);
    if (log >= MAX_LOG)
        return BUCKETS - 1;
    unsigned sub = (unsigned)(ns >> (log - 2)) & (SUB - 1);
    return SUB * (log - 1) + sub;
}

/* The smallest value of a bucket, and the one after its largest. */
static double bucket_low(unsigned b)
{
    if (b < SUB)
        return b;
    unsigned log = b / SUB + 1, sub = b % SUB;
    return (double)((uint64_t)(SUB + sub) << (log - 2));
}

/* Inline: a monitored task takes two samples, and its worker owns its
 * shard (the `own` branches) almost always. */
__attribute__((always_inline)) static inline void sample(histogram *h,
                                                         int64_t ns,
                                                         bool own)
{
    if (ns < 0)
        ns = 0;
    int_fast64_t seen = atomic_load_explicit(&h->min_ns, memory_order_relaxed);
    if (own) {
        if (ns < seen)
            atomic_store_explicit(&h->min_ns, ns, memory_order_relaxed);
        if (ns > atomic_load_explicit(&h->max_ns, memory_order_relaxed))
            atomic_store_explicit(&h->max_ns, ns, memory_order_relaxed);
    } else {
        while (ns < seen && !atomic_compare_exchange_weak_explicit(
                                &h->min_ns, &seen, ns, memory_order_relaxed,
                                memory_order_relaxed))
            ;
        seen = atomic_load_explicit(&h->max_ns, memory_order_relaxed);
        while (ns > seen && !atomic_compare_exchange_weak_explicit(
                                &h->max_ns, &seen, ns, memory_order_relaxed,
                                memory_order_relaxed))
            ;
    }
    add(&h->bucket[bucket_of(ns)], own);
    add_n(&h->total_ns, (uint_fast64_t)ns, own);
}

static bool counting(cf__monitor *m)
{
    return atomic_load_explicit(&m->stats, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* Events                                                                   */

/* Calls the observer, if any. `now` < 0: read the clock only then (event
 * times are CLOCK_MONOTONIC's; tasks are timed with the fast clock,
 * fast_clock.c, whose epoch differs). Out of line: with stats alone (no
 * observer) every event stops at the check in emit() below. */
__attribute__((noinline)) static void
emit_slow(cf__monitor *m, cf_event_kind kind, cf_future *f, int worker,
          int code, const char *message, int64_t now, int64_t duration_ns)
{
    observer *o = atomic_load_explicit(&m->observer, memory_order_acquire);
    if (!o->fn)
        return;
    if (now < 0)
        now = cf__now_ns();
    cf_event ev = {.kind = kind,
                   .executor = m->ex,
                   .future = f,
                   .worker = worker,
                   .code = code,
                   .message = message,
                   .time = (double)now / 1e9,
                   .duration = (double)duration_ns / 1e9};
    o->fn(&ev, o->arg);
}

static inline void emit(cf__monitor *m, cf_event_kind kind, cf_future *f,
                        int worker, int code, const char *message,
                        int64_t now, int64_t duration_ns)
{
    if (atomic_load_explicit(&m->observer, memory_order_relaxed))
        emit_slow(m, kind, f, worker, code, message, now, duration_ns);
}

void cf__monitor_worker_event(cf_executor *ex, cf_event_kind kind,
                              int worker, int code, const char *message)
{
    cf__monitor *m = atomic_load_explicit(&ex->monitor, memory_order_acquire);
    if (m)
        emit(m, kind, NULL, worker, code, message, -1, 0);
}

/* ------------------------------------------------------------------------ */
/* Tasks                                                                    */

/* Counts and reports the end of a task whose future is done: started (by
 * `worker`, after running `run` ns, 0 if it still runs) or not. */
__attribute__((always_inline)) static inline void task_ended(
    cf__monitor *m, cf_future *f, bool started, int worker, int64_t run)
{
    int code = cf__future_outcome(f);
    if (counting(m)) {
        shard *s = my_shard(m);
        bool own = owns(m, s);
        add(started ? &s->ended_started : &s->ended_unstarted, own);
        if (code == CF_ECANCELLED && cf_future_cancelled(f))
            add(&s->cancelled, own);
        else if (code != CF_OK)
            add(&s->failed, own);
    }
    emit(m, CF_EVENT_FINISH, f, started ? worker : -1, code, NULL, -1, run);
}

static void free_record(record *r)
{
    cf__future_mem_free(r);
}

/* What a monitored executor runs in place of the task. */
static void *monitored_task(void *arg, cf_call *call)
{
    record *r = arg;
    cf__monitor *m = r->m;
    int64_t start = cf__fast_now_ns();
    /* The submit time gives way to the worker's index, for FINISH. */
    uint_fast64_t word = atomic_load_explicit(&r->word, memory_order_relaxed);
    uint_fast64_t worker = (uint_fast64_t)(cf__current_worker + 1) << SHIFT;
    while (!atomic_compare_exchange_weak_explicit(
        &r->word, &word, (word & DONE) | STARTED | RUNNING | worker,
        memory_order_acq_rel, memory_order_relaxed))
        ;
    int64_t wait = start - (int64_t)(word & ~(uint_fast64_t)FLAGS);
    if (counting(m)) {
        shard *s = my_shard(m);
        bool own = owns(m, s);
        sample(&s->wait, wait, own);
    }
    emit(m, CF_EVENT_START, r->future, cf__current_worker, 0, NULL, -1,
         wait);
    cf_fn fn = r->fn;
    void *result = fn(r->u.arg, call);
    int64_t run = cf__fast_now_ns() - start;
    if (counting(m)) {
        shard *s = my_shard(m);
        sample(&s->run, run, owns(m, s));
    }
    r->u.run_ns = run;
    word = atomic_fetch_and_explicit(&r->word, ~(uint_fast64_t)RUNNING,
                                     memory_order_acq_rel);
    if (word & DONE)
        free_record(r); /* its future was completed from outside */
    return result;
}

/* The link on the task's future: it is done. */
static void task_done(cf__link *link)
{
    record *r = (record *)link;
    uint_fast64_t word = atomic_fetch_or_explicit(&r->word, DONE,
                                                  memory_order_acq_rel);
    bool ran = (word & STARTED) && !(word & RUNNING);
    task_ended(r->m, r->future, word & STARTED, (int)(word >> SHIFT) - 1,
               ran ? r->u.run_ns : 0);
    if (!(word & (RUNNING | HELD)))
        free_record(r);
}

/* ------------------------------------------------------------------------ */
/* Tasks run in place (thread pools)                                        */

/* A task's data entry (core.h): the monitor's id, STARTED, and above them
 * the submit time (ns, modulo 2^50: 13 days) until the task starts, then
 * the index + 1 of the worker that runs it. */
enum { ID_BITS = 10, IDS = 1 << ID_BITS, D_SHIFT = ID_BITS + 1 };
#define D_ID ((uint64_t)IDS - 1)
#define D_STARTED ((uint64_t)1 << ID_BITS)
#define D_PAYLOAD (CF__DATA_MAX >> D_SHIFT)

/* Monitors by id, so that a task's data finds its monitor; [0] unused
 * (0: a monitor without an id, whose tasks get records). */
static _Atomic(cf__monitor *) by_id[IDS];

static unsigned id_claim(cf__monitor *m)
{
    for (unsigned id = 1; id < IDS; id++) {
        cf__monitor *none = NULL;
        if (atomic_compare_exchange_strong_explicit(
                &by_id[id], &none, m, memory_order_relaxed,
                memory_order_relaxed))
            return id;
    }
    return 0;
}

static cf__monitor *monitor_of(uint64_t data)
{
    /* Stored before the monitor was published (cf_executor_monitor), and
     * the task's data reached this thread through its submit. */
    return atomic_load_explicit(&by_id[data & D_ID], memory_order_relaxed);
}

/* The task this worker last ran through in_place_task, and how long it
 * ran, for its FINISH (reported as its future completes, just after). */
static _Thread_local struct {
    cf_future *f;
    int64_t run_ns;
} last_run;

/* What a thread pool runs in place of a monitored task: its future holds
 * the task's function, the data entry its monitor and submit time. */
static void *in_place_task(void *arg, cf_call *call)
{
    cf_future *f = call->future;
    cf_fn fn = f->monitored_fn;
    int worker = cf__current_worker;
    last_run.f = NULL;
    int64_t start = cf__fast_now_ns();
    uint64_t data;
    if (!cf__future_update_data(f, D_ID,
                                D_STARTED | (uint64_t)(worker + 1) << D_SHIFT,
                                &data))
        return fn(arg, call); /* completed from outside: "never started" */
    cf__monitor *m = monitor_of(data);
    uint64_t wait = ((uint64_t)start - (data >> D_SHIFT)) & D_PAYLOAD;
    if (wait > D_PAYLOAD / 2)
        wait = 0; /* the submitter's clock read a little ahead of ours */
    /* One look at the stats flag and this thread's shard for the start
     * and the run (a task that runs as stats turn off still counts). */
    shard *s = counting(m) ? my_shard(m) : NULL;
    bool own = s && owns(m, s);
    if (s) {
        sample(&s->wait, (int64_t)wait, own);
    }
    emit(m, CF_EVENT_START, f, worker, 0, NULL, -1, (int64_t)wait);
    void *result = fn(arg, call);
    int64_t run = cf__fast_now_ns() - start;
    if (s)
        sample(&s->run, run, own);
    last_run.f = f;
    last_run.run_ns = run;
    return result;
}

void cf__monitor_data_done(cf_future *f, uint64_t data)
{
    bool started = data & D_STARTED;
    int worker = started ? (int)(data >> D_SHIFT) - 1 : -1;
    int64_t run = 0;
    /* Ran to its end here, and completed by its worker (not from outside
     * while it ran): the run time is the one it just measured. Only this
     * worker can have started it, so a stale last_run (its future
     * completed from outside) cannot be taken for another task's. */
    if (last_run.f == f && started && worker == cf__current_worker) {
        run = last_run.run_ns;
        last_run.f = NULL;
    }
    task_ended(monitor_of(data), f, started, worker, run);
}

/* A submit to an executor that runs its tasks in place (a thread pool),
 * of a future nobody else sees yet (so that its data entry can go on
 * without a lock). */
static bool in_place(const cf__monitor *m, cf_future *f)
{
    return m->id &&
           atomic_load_explicit(&f->refs, memory_order_relaxed) == 1 &&
           !f->end.lists.callbacks;
}

static int submit_in_place(cf__monitor *m, cf_executor *ex, cf_future *f,
                           cf_fn fn, void *arg, const cf_codec *codec)
{
    emit(m, CF_EVENT_SUBMIT, f, -1, 0, NULL, -1, 0);
    uint64_t now = (uint64_t)cf__fast_now_ns();
    f->monitored_fn = fn;
    cf__future_attach_data_new(f, (now & D_PAYLOAD) << D_SHIFT | m->id);
    int rc = ex->ops->submit(ex->impl, f, in_place_task, arg, codec);
    if (rc != CF_OK) {
        /* A refusing executor keeps no reference: nobody saw `f`. */
        cf__future_detach_data_new(f);
        emit(m, CF_EVENT_FINISH, f, -1, rc, NULL, -1, 0);
        return rc;
    }
    if (counting(m)) {
        shard *s = my_shard(m);
        add(&s->submitted, owns(m, s));
    }
    return CF_OK;
}

/* ------------------------------------------------------------------------ */
/* Tasks that run elsewhere (process pools)                                 */

_Thread_local cf__task_record *cf__monitor_handoff;

cf__task_record *cf__monitor_hold_slow(void)
{
    record *r = (record *)cf__monitor_handoff;
    cf__monitor_handoff = NULL;
    /* Not yet attached: no other thread sees the record. */
    atomic_fetch_or_explicit(&r->word, HELD, memory_order_relaxed);
    return (cf__task_record *)r;
}

void cf__monitor_task_start(cf__task_record *tr, int worker)
{
    record *r = (record *)tr;
    cf__monitor *m = r->m;
    int64_t start = cf__fast_now_ns();
    r->u.run_ns = start;
    uint_fast64_t word = atomic_load_explicit(&r->word, memory_order_relaxed);
    uint_fast64_t who = (uint_fast64_t)(worker + 1) << SHIFT;
    while (!atomic_compare_exchange_weak_explicit(
        &r->word, &word, (word & (DONE | HELD)) | STARTED | RUNNING | who,
        memory_order_acq_rel, memory_order_relaxed))
        ;
    int64_t wait = start - (int64_t)(word & ~(uint_fast64_t)FLAGS);
    if (counting(m)) {
        shard *s = my_shard(m);
        bool own = owns(m, s);
        sample(&s->wait, wait, own);
    }
    emit(m, CF_EVENT_START, r->future, worker, 0, NULL, -1, wait);
}

void cf__monitor_task_end(cf__task_record *tr)
{
    record *r = (record *)tr;
    if (!(atomic_load_explicit(&r->word, memory_order_relaxed) & RUNNING))
        return; /* never started, or ended already */
    int64_t run = cf__fast_now_ns() - r->u.run_ns;
    if (counting(r->m)) {
        shard *s = my_shard(r->m);
        sample(&s->run, run, owns(r->m, s));
    }
    r->u.run_ns = run;
    atomic_fetch_and_explicit(&r->word, ~(uint_fast64_t)RUNNING,
                              memory_order_acq_rel);
}

void cf__monitor_release(cf__task_record *tr)
{
    record *r = (record *)tr;
    cf__monitor_task_end(tr);
    uint_fast64_t word = atomic_fetch_and_explicit(
        &r->word, ~(uint_fast64_t)HELD, memory_order_acq_rel);
    if (word & DONE)
        free_record(r);
}

/* A task's record, made as its submit is reported; NULL (the failure
 * reported too) without memory. */
static record *record_new(cf__monitor *m, cf_future *f, cf_fn fn,
                          void *arg)
{
    int64_t now = cf__fast_now_ns();
    emit(m, CF_EVENT_SUBMIT, f, -1, 0, NULL, -1, 0);
    record *r = cf__future_mem_alloc();
    if (!r) {
        emit(m, CF_EVENT_FINISH, f, -1, CF_ENOMEM, NULL, -1, 0);
        return NULL;
    }
    r->link.run = task_done;
    r->fn = fn;
    r->u.arg = arg;
    r->future = f;
    atomic_init(&r->word, (uint_fast64_t)now & ~(uint_fast64_t)FLAGS);
    r->m = m;
    return r;
}

/* After the executor's answer `rc`: a refused task leaves no record and
 * reports its end; an accepted one is counted, and its record attached
 * (once the executor has the task, so a refusal leaves no link behind; a
 * task done already reports now). */
static int record_submitted(cf__monitor *m, cf_future *f, record *r, int rc)
{
    if (rc != CF_OK) {
        free_record(r);
        emit(m, CF_EVENT_FINISH, f, -1, rc, NULL, -1, 0);
        return rc;
    }
    if (counting(m)) {
        shard *s = my_shard(m);
        add(&s->submitted, owns(m, s));
    }
    if (!cf__future_attach(f, &r->link, false))
        cf__chain_fire(&r->link);
    return CF_OK;
}

/* Out of line: the thread pool's submits take the path above, and this
 * one's registers would slow them. */
__attribute__((noinline)) static int submit_with_record(
    cf__monitor *m, cf_executor *ex, cf_future *f, cf_fn fn, void *arg,
    const cf_codec *codec)
{
    record *r = record_new(m, f, fn, arg);
    if (!r)
        return CF_ENOMEM;
    int rc;
    if (m->shares_memory) {
        rc = ex->ops->submit(ex->impl, f, monitored_task, r, codec);
    } else {
        /* Offered for the call: the executor takes it if it accepts (a
         * submit nested in a codec or a callback restores ours). */
        cf__task_record *outer = cf__monitor_handoff;
        cf__monitor_handoff = (cf__task_record *)r;
        rc = ex->ops->submit(ex->impl, f, fn, arg, codec);
        /* A refusing executor keeps no record (cf__monitor_hold). */
        cf__monitor_handoff = outer;
    }
    return record_submitted(m, f, r, rc);
}

int cf__monitor_submit(cf__monitor *m, cf_executor *ex, cf_future *f,
                       cf_fn fn, void *arg, const cf_codec *codec)
{
    return in_place(m, f) ? submit_in_place(m, ex, f, fn, arg, codec)
                          : submit_with_record(m, ex, f, fn, arg, codec);
}

/* A map chunk shipped as one message (ex->submit_chunk, a process pool):
 * counted and reported as one task, as a chunk is on executors that run
 * it as a task (map.c's run_chunk). The executor holds the record as for
 * a task that runs elsewhere. */
int cf__monitor_submit_chunk(cf__monitor *m, cf_executor *ex, cf_future *f,
                             cf__chunk *c, const cf_codec *codec)
{
    record *r = record_new(m, f, NULL, c);
    if (!r)
        return CF_ENOMEM;
    cf__task_record *outer = cf__monitor_handoff;
    cf__monitor_handoff = (cf__task_record *)r;
    int rc = ex->submit_chunk(ex->impl, f, c, codec);
    cf__monitor_handoff = outer;
    return record_submitted(m, f, r, rc);
}

/* ------------------------------------------------------------------------ */
/* The API                                                                  */

static cf__monitor *monitor_new(cf_executor *ex)
{
    cf__monitor *m = aligned_alloc(64, (sizeof *m + 63) / 64 * 64);
    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    cf__fast_clock_init(); /* tasks are timed with it */
    m->ex = ex;
    m->shares_memory = cf__executor_shares_memory(ex);
    /* A data entry holds D_PAYLOAD bits of time on 64-bit targets only. */
    if (ex->invokes_in_place && D_PAYLOAD >= (UINT64_C(1) << 49))
        m->id = id_claim(m);
    atomic_init(&m->stats, false);
    atomic_init(&m->observer, NULL);
    atomic_init(&m->lock.held, false);
    for (int i = 0; i < SHARDS; i++) {
        atomic_init(&m->shards[i].wait.min_ns, INT64_MAX);
        atomic_init(&m->shards[i].run.min_ns, INT64_MAX);
    }
    return m;
}

/* Frees a monitor without observers, giving its id back. */
static void monitor_discard(cf__monitor *m)
{
    if (m->id)
        atomic_store_explicit(&by_id[m->id], NULL, memory_order_relaxed);
    free(m);
}

int cf_executor_monitor(cf_executor *ex, const cf_monitor_options *opts)
{
    static const cf_monitor_options off = {0};
    if (!ex)
        return CF_EINVAL;
    if (!opts)
        opts = &off;
    bool on = opts->stats || opts->observer;
    /* Made once, by the first call that turns monitoring on; a race of
     * two first calls keeps one monitor. */
    cf__monitor *m = atomic_load_explicit(&ex->monitor_mem,
                                          memory_order_acquire);
    if (!m && !on)
        return CF_OK;
    observer *o = NULL;
    if (opts->observer && !(o = malloc(sizeof *o)))
        return CF_ENOMEM;
    if (!m) {
        cf__monitor *made = monitor_new(ex);
        if (!made) {
            free(o);
            return CF_ENOMEM;
        }
        if (atomic_compare_exchange_strong_explicit(
                &ex->monitor_mem, &m, made, memory_order_acq_rel,
                memory_order_acquire))
            m = made;
        else
            monitor_discard(made); /* another first call won: `m` */
    }
    cf__spin_lock(&m->lock);
    if (o) {
        o->fn = opts->observer;
        o->arg = opts->observer_arg;
        o->older = atomic_load_explicit(&m->observer, memory_order_relaxed);
        atomic_store_explicit(&m->observer, o, memory_order_release);
    } else if (atomic_load_explicit(&m->observer, memory_order_relaxed)) {
        /* No observer now: an empty pair keeps the old ones reachable. */
        observer *none = malloc(sizeof *none);
        if (none) {
            *none = (observer){NULL, NULL, atomic_load_explicit(
                                               &m->observer,
                                               memory_order_relaxed)};
            atomic_store_explicit(&m->observer, none, memory_order_release);
        }
    }
    atomic_store_explicit(&m->stats, opts->stats, memory_order_relaxed);
    atomic_store_explicit(&ex->monitor, on ? m : NULL, memory_order_release);
    cf__spin_unlock(&m->lock);
    return CF_OK;
}

void cf__monitor_free(cf_executor *ex)
{
    cf__monitor *m = atomic_load_explicit(&ex->monitor_mem,
                                          memory_order_acquire);
    if (!m)
        return;
    observer *o = atomic_load_explicit(&m->observer, memory_order_relaxed);
    while (o) {
        observer *older = o->older;
        free(o);
        o = older;
    }
    monitor_discard(m);
}

static void summarize(const histogram *const *hs, cf_time_stats *out)
{
    uint64_t count = 0, total = 0, buckets[BUCKETS] = {0};
    int64_t min = INT64_MAX, max = 0;
    for (int i = 0; i < SHARDS; i++) {
        const histogram *h = hs[i];
        total += atomic_load_explicit(&h->total_ns, memory_order_relaxed);
        int64_t lo = atomic_load_explicit(&h->min_ns, memory_order_relaxed);
        int64_t hi = atomic_load_explicit(&h->max_ns, memory_order_relaxed);
        min = lo < min ? lo : min;
        max = hi > max ? hi : max;
        for (unsigned b = 0; b < BUCKETS; b++) {
            uint64_t k = atomic_load_explicit(&h->bucket[b],
                                              memory_order_relaxed);
            buckets[b] += k;
            count += k;
        }
    }
    memset(out, 0, sizeof *out);
    if (count == 0)
        return;
    if (min > max) /* a sample half recorded by another thread */
        min = max;
    out->count = count;
    out->total = (double)total / 1e9;
    out->min = (double)min / 1e9;
    out->max = (double)max / 1e9;
    /* A quantile is the middle of its bucket, kept within [min, max]. */
    const double qs[3] = {0.50, 0.90, 0.99};
    double *outs[3] = {&out->p50, &out->p90, &out->p99};
    uint64_t seen = 0;
    unsigned b = 0;
    for (int q = 0; q < 3; q++) {
        uint64_t rank = (uint64_t)(qs[q] * (double)(count - 1)) + 1;
        while (b < BUCKETS - 1 && seen + buckets[b] < rank)
            seen += buckets[b++];
        double mid = (bucket_low(b) + (b + 1 < BUCKETS ? bucket_low(b + 1)
                                                       : bucket_low(b))) /
                     2e9;
        *outs[q] = mid < out->min ? out->min : mid > out->max ? out->max : mid;
    }
}

static uint64_t left(uint64_t a, uint64_t b, uint64_t c)
{
    return a > b + c ? a - b - c : 0;
}

int cf_executor_get_stats(cf_executor *ex, cf_executor_stats *out)
{
    if (!ex || !out)
        return CF_EINVAL;
    cf_executor_stats st;
    memset(&st, 0, sizeof st);
    st.workers_alive = st.workers_idle = -1;
    if (ex->worker_counts)
        ex->worker_counts(ex->impl, &st.workers_alive, &st.workers_idle);
    cf__monitor *m = atomic_load_explicit(&ex->monitor_mem,
                                          memory_order_acquire);
    if (m) {
        uint64_t ended_started = 0, ended_unstarted = 0;
        const histogram *waits[SHARDS], *runs[SHARDS];
        for (int i = 0; i < SHARDS; i++) {
            shard *s = &m->shards[i];
#define SUM(field) atomic_load_explicit(&s->field, memory_order_relaxed)
            st.submitted += SUM(submitted);
            ended_started += SUM(ended_started);
            ended_unstarted += SUM(ended_unstarted);
            st.failed += SUM(failed);
            st.cancelled += SUM(cancelled);
#undef SUM
            waits[i] = &s->wait;
            runs[i] = &s->run;
        }
        summarize(waits, &st.queue_wait);
        summarize(runs, &st.run_time);
        /* A task that starts takes one sample of its queue wait: their
         * count is the count of started tasks. */
        uint64_t started = st.queue_wait.count;
        st.queued = left(st.submitted, started, ended_unstarted);
        st.running = left(started, ended_started, 0);
        st.finished = left(ended_started + ended_unstarted, st.cancelled, 0);
    }
    *out = st;
    return CF_OK;
}
