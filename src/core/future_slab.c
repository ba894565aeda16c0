/* future_slab.c - memory for futures: 2 MiB slabs of equal slots, cached
 * per thread.
 *
 * Why not malloc: a program that submits a million tasks holds a million
 * futures at once. malloc hands each one out from a heap that grows 4 KiB
 * page by 4 KiB page, and the first touch of every page is a fault: ~80 ns
 * per 104-byte future on our VMs, more than the rest of a submit. A slab is
 * 2 MiB aligned to 2 MiB; from a thread's second slab on it is advised as a
 * transparent huge page, one fault per ~32,000 futures, while the kernel
 * supplies huge pages cheaply (see `huge` below). A thread's first slab
 * stays on small pages, so a program with a handful of futures touches a
 * page or two, not 2 MiB.
 *
 * Design (after mimalloc's pages and their thread-free lists):
 *  - A slot finds its slab by masking its address. The slab header holds
 *    `remote`, one 64-bit word: the head of a list of freed slots (as an
 *    index), the list's length, two flags and an ownership tag.
 *  - At most one thread owns a slab and allocates from it: from its private
 *    free list (no atomics), else by taking the `remote` list whole (one
 *    exchange), else by carving a never-used slot.
 *  - The owner frees into its private list. Any other thread pushes onto
 *    `remote` with one CAS. Pushes only, and pops take the whole list, so
 *    the list itself has no ABA problem.
 *  - An owner whose slab is full abandons it: its private list joins
 *    `remote`, the word is marked ABANDONED, and the slab goes on a global
 *    list (under a mutex taken about once per 20,000 allocations). A thread
 *    that needs a slab adopts an abandoned one with at least 1/8 of its
 *    slots free, else takes a spare, else maps a new one. Adopting bumps the
 *    tag, so a push that read the word before the adoption fails its CAS.
 *  - The push that returns an abandoned slab's last slot also marks it
 *    RECLAIMING, in the same CAS: exactly one thread sees the slab empty. It
 *    unlinks it and keeps it as a spare (at most MAX_SPARES) or unmaps it,
 *    so memory goes back after a burst. Adoption skips RECLAIMING slabs.
 *  - A thread's exit abandons its slab (a pthread key destructor); fork()
 *    is guarded by atfork handlers on the global mutex. In a fork child,
 *    the slabs owned by the parent's other threads stay owned by threads
 *    that do not exist there: the child never reuses their slots (at most
 *    one slab per such thread, like the rest of their memory).
 *
 * CF_FUTURE_ALLOC=malloc in the environment (read once, at the first
 * future) makes every future a plain malloc, as GLib's G_SLICE=always-malloc
 * does, so leak checkers see each one. AddressSanitizer builds default to
 * it: ASan then finds a use of a released future.
 */
#include "core/core.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define CF__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CF__ASAN 1
#endif
#endif

enum {
    SLAB_SIZE = 2 << 20, /* a huge page on x86-64 and arm64 (4 KiB base) */
    SLAB_HEADER = 128,   /* two cache lines: `remote`, then the rest */
    /* A cache line a slot, although a future needs 56 bytes (its last
     * word, monitored_fn, serves monitoring only): two futures never
     * share a line, so a worker completing one does not fight over it
     * with the submitter writing the next (the future just freed, or just
     * carved, sits beside it). Warm W1: 80 vs 114 ns a task, for 14% more
     * memory (bench/RESULTS.md, 2026-12-03). */
    SLOT_SIZE = 64,
    SLAB_SLOTS = (SLAB_SIZE - SLAB_HEADER) / SLOT_SIZE,
    ADOPT_MIN_FREE = SLAB_SLOTS / 8,
    MAX_SPARES = 2,
};

/* The `remote` word. */
#define HEAD_MASK UINT64_C(0xffff) /* slot index + 1; 0: empty list */
#define COUNT_SHIFT 16             /* slots in the list */
#define COUNT_MASK UINT64_C(0xffff)
#define ABANDONED (UINT64_C(1) << 32)
#define RECLAIMING (UINT64_C(1) << 33)
#define TAG_SHIFT 34 /* bumped by every adoption; wraps harmlessly */
#define TAG_ONE (UINT64_C(1) << TAG_SHIFT)
#define TAG_MASK (~(TAG_ONE - 1))

_Static_assert(SLAB_SLOTS < HEAD_MASK, "slot indexes fit the word");
_Static_assert(_Alignof(cf_future) <= 8, "slots are 8-byte aligned");
_Static_assert(sizeof(cf_future) <= SLOT_SIZE, "a future fits a slot");
_Static_assert(SLAB_HEADER % SLOT_SIZE == 0, "slots are line-aligned");

typedef struct slot {
    struct slot *next;
} slot;

typedef struct slab {
    _Atomic uint64_t remote; /* see above; its own cache line */

    /* Slots carved so far. Written by the owner; frozen while abandoned,
     * when a freeing thread compares it with the list length. */
    _Alignas(64) atomic_uint carved;
    struct slab *prev, *next; /* abandoned or spare list; under slabs.lock */
} slab;

_Static_assert(sizeof(slab) <= SLAB_HEADER, "the header fits");

typedef struct slab_cache {
    slab *owned;      /* the slab this thread allocates from, or NULL */
    slot *free;       /* private free list, slots of `owned` */
    unsigned n_free;  /* its length */
    unsigned n_taken; /* slabs this thread has taken (the first: no THP) */
    bool exit_armed;  /* the thread-exit destructor will run */
} slab_cache;

/* initial-exec: a plain offset from the thread pointer, no call per access
 * (the library's few bytes of TLS fit glibc's reserve for dlopen). */
static _Thread_local slab_cache cache
    __attribute__((tls_model("initial-exec")));

static struct {
    pthread_mutex_t lock;
    slab *abandoned; /* doubly linked */
    slab *spares;    /* linked through next */
    size_t n_abandoned, n_spares, n_mapped;
    size_t n_takes; /* slabs taken by threads, ever */
} slabs = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0, 0, 0, 0};

/* Huge pages, while they are cheap. When the kernel has a free 2 MiB block
 * at hand, a huge slab costs one fault and ~0.1 ms of zeroing instead of
 * 512 faults. When it has none, it may compact memory first, or, in a VM
 * whose host took back the guest's free memory, fault every 4 KiB of the
 * block in again on the host: 4-7 ms a slab on our VMs, five times what
 * small pages cost there. So a fresh huge slab is populated at once and
 * the CPU time it took is measured; a slab slower than huge.slow_ns sends
 * new slabs to small pages for huge.backoff_ns, after which huge pages get
 * another try. The limit, 1 ms for 2 MiB, is ten times what a cheap huge
 * page costs and about what 512 small pages cost on a VM. */
static struct {
    _Atomic int64_t small_until; /* monotonic ns: small pages until then */
    _Atomic int64_t slow_ns;
    _Atomic int64_t backoff_ns;
    atomic_size_t n_huge, n_slow; /* huge slabs mapped; found slow */
} huge = {0, 1000000, 1000000000, 0, 0};

enum { MODE_UNSET, MODE_SLAB, MODE_MALLOC };
static atomic_int mode;
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;

/* ------------------------------------------------------------------------ */
/* Words and addresses                                                      */

static inline slab *slab_of(const void *p)
{
    return (slab *)((uintptr_t)p & ~(uintptr_t)(SLAB_SIZE - 1));
}

static inline slot *slot_at(slab *b, unsigned index)
{
    return (slot *)((char *)b + SLAB_HEADER + (size_t)index * SLOT_SIZE);
}

static inline unsigned slot_index(slab *b, const slot *s)
{
    return (unsigned)(((const char *)s - (char *)b - SLAB_HEADER) / SLOT_SIZE);
}

static inline slot *word_list(slab *b, uint64_t w)
{
    unsigned head = (unsigned)(w & HEAD_MASK);
    return head ? slot_at(b, head - 1) : NULL;
}

static inline unsigned word_count(uint64_t w)
{
    return (unsigned)((w >> COUNT_SHIFT) & COUNT_MASK);
}

static inline uint64_t make_word(slab *b, const slot *head, unsigned count,
                                 uint64_t flags_and_tag)
{
    uint64_t h = head ? (uint64_t)slot_index(b, head) + 1 : 0;
    return h | (uint64_t)count << COUNT_SHIFT | flags_and_tag;
}

/* ------------------------------------------------------------------------ */
/* Setup                                                                    */

static void before_fork(void)
{
    pthread_mutex_lock(&slabs.lock);
}

static void after_fork(void)
{
    pthread_mutex_unlock(&slabs.lock);
}

static void on_thread_exit(void *unused);

static void setup(void)
{
    const char *env = getenv("CF_FUTURE_ALLOC");
    int chosen = MODE_SLAB;
#ifdef CF__ASAN
    chosen = MODE_MALLOC;
#endif
    if (env && strcmp(env, "malloc") == 0)
        chosen = MODE_MALLOC;
    else if (env && strcmp(env, "slab") == 0)
        chosen = MODE_SLAB;
    /* Without a thread-exit hook, an exiting thread's slab would stay
     * owned forever: fall back to malloc rather than leak. */
    if (chosen == MODE_SLAB &&
        (pthread_key_create(&exit_key, on_thread_exit) != 0 ||
         pthread_atfork(before_fork, after_fork, after_fork) != 0))
        chosen = MODE_MALLOC;
    atomic_store_explicit(&mode, chosen, memory_order_release);
}

static inline int alloc_mode(void)
{
    int m = atomic_load_explicit(&mode, memory_order_acquire);
    if (m != MODE_UNSET)
        return m;
    pthread_once(&setup_once, setup);
    return atomic_load_explicit(&mode, memory_order_acquire);
}

/* ------------------------------------------------------------------------ */
/* Slabs, under slabs.lock                                                  */

static void unlink_abandoned(slab *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        slabs.abandoned = b->next;
    if (b->next)
        b->next->prev = b->prev;
    slabs.n_abandoned--;
}

/* An empty slab nobody else can reach: keep it as a spare, or unmap it. */
static void retire_locked(slab *b)
{
    if (slabs.n_spares < MAX_SPARES) {
        uint64_t w = atomic_load_explicit(&b->remote, memory_order_relaxed);
        atomic_store_explicit(&b->remote, (w & TAG_MASK) + TAG_ONE,
                              memory_order_relaxed);
        atomic_store_explicit(&b->carved, 0, memory_order_relaxed);
        b->next = slabs.spares;
        slabs.spares = b;
        slabs.n_spares++;
        return;
    }
    cf__pages_unmap(b, SLAB_SIZE);
    slabs.n_mapped--;
}

/* Tail of the private list (walked once per abandonment: rare). */
static slot *private_tail(slab_cache *c)
{
    slot *s = c->free;
    while (s && s->next)
        s = s->next;
    return s;
}

/* Gives up the thread's slab: onto the abandoned list, or retired if every
 * slot it ever carved is free again. */
static void abandon_locked(slab_cache *c)
{
    slab *b = c->owned;
    slot *tail = private_tail(c);
    uint64_t w = atomic_load_explicit(&b->remote, memory_order_acquire);
    for (;;) {
        unsigned n_free = word_count(w) + c->n_free;
        if (n_free ==
            atomic_load_explicit(&b->carved, memory_order_relaxed)) {
            /* No slot is out, so no push can be under way. */
            retire_locked(b);
            break;
        }
        slot *head = word_list(b, w);
        if (tail) {
            tail->next = head;
            head = c->free;
        }
        uint64_t abandoned = make_word(b, head, n_free,
                                       (w & TAG_MASK) | ABANDONED);
        if (atomic_compare_exchange_weak_explicit(&b->remote, &w, abandoned,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire)) {
            b->prev = NULL;
            b->next = slabs.abandoned;
            if (b->next)
                b->next->prev = b;
            slabs.abandoned = b;
            slabs.n_abandoned++;
            break;
        }
    }
    c->owned = NULL;
    c->free = NULL;
    c->n_free = 0;
}

/* Takes over an abandoned slab with enough free slots, its free list
 * becoming the thread's private list. */
static slab *adopt_locked(slab_cache *c)
{
    for (slab *b = slabs.abandoned; b; b = b->next) {
        uint64_t w = atomic_load_explicit(&b->remote, memory_order_acquire);
        while (!(w & RECLAIMING) && word_count(w) >= ADOPT_MIN_FREE) {
            uint64_t owned = (w & TAG_MASK) + TAG_ONE;
            if (atomic_compare_exchange_weak_explicit(
                    &b->remote, &w, owned, memory_order_acq_rel,
                    memory_order_acquire)) {
                unlink_abandoned(b);
                c->free = word_list(b, w);
                c->n_free = word_count(w);
                return b;
            }
        }
    }
    return NULL;
}

static slab *spare_locked(void)
{
    slab *b = slabs.spares;
    if (b) {
        slabs.spares = b->next;
        slabs.n_spares--;
    }
    return b;
}

/* Maps a slab, without the global lock: a huge one is populated here (see
 * `huge`). A thread's first slab stays on small pages. */
static slab *map_slab(const slab_cache *c)
{
    /* In: huge pages wanted; out: advised as huge pages. */
    bool is_huge = c->n_taken > 0 &&
                   cf__now_ns() >= atomic_load_explicit(&huge.small_until,
                                                        memory_order_relaxed);
    slab *b = cf__pages_map_aligned(SLAB_SIZE, &is_huge);
    if (!b)
        return NULL;
    if (is_huge) {
        atomic_fetch_add_explicit(&huge.n_huge, 1, memory_order_relaxed);
        int64_t cost = cf__pages_populate(b, SLAB_SIZE);
        if (cost > atomic_load_explicit(&huge.slow_ns, memory_order_relaxed)) {
            atomic_fetch_add_explicit(&huge.n_slow, 1, memory_order_relaxed);
            atomic_store_explicit(
                &huge.small_until,
                cf__now_ns() + atomic_load_explicit(&huge.backoff_ns,
                                                    memory_order_relaxed),
                memory_order_relaxed);
        }
    }
    atomic_init(&b->remote, 0);
    atomic_init(&b->carved, 0);
    return b;
}

/* Replaces the thread's slab. False when out of memory. */
static bool take_slab(slab_cache *c)
{
    pthread_mutex_lock(&slabs.lock);
    if (c->owned)
        abandon_locked(c);
    slab *b = adopt_locked(c);
    if (!b)
        b = spare_locked();
    if (b)
        slabs.n_takes++;
    pthread_mutex_unlock(&slabs.lock);
    if (!b) {
        b = map_slab(c);
        if (!b)
            return false;
        pthread_mutex_lock(&slabs.lock);
        slabs.n_mapped++;
        slabs.n_takes++;
        pthread_mutex_unlock(&slabs.lock);
    }
    c->owned = b;
    c->n_taken++;
    if (!c->exit_armed) {
        pthread_setspecific(exit_key, c);
        c->exit_armed = true;
    }
    return true;
}

static void on_thread_exit(void *unused)
{
    (void)unused;
    slab_cache *c = &cache;
    c->exit_armed = false;
    if (!c->owned)
        return;
    pthread_mutex_lock(&slabs.lock);
    abandon_locked(c);
    pthread_mutex_unlock(&slabs.lock);
}

/* The push that emptied an abandoned slab: nobody else will touch it. */
static void reclaim(slab *b)
{
    pthread_mutex_lock(&slabs.lock);
    unlink_abandoned(b);
    retire_locked(b);
    pthread_mutex_unlock(&slabs.lock);
}

/* ------------------------------------------------------------------------ */
/* Slots                                                                    */

static inline void *pop_private(slab_cache *c)
{
    slot *s = c->free;
    c->free = s->next;
    c->n_free--;
    return s;
}

/* Takes the slots other threads gave back. */
static bool collect_remote(slab_cache *c, slab *b)
{
    uint64_t w = atomic_load_explicit(&b->remote, memory_order_relaxed);
    if (!(w & HEAD_MASK))
        return false;
    /* Owned, the word's flags are clear and its tag is stable. */
    w = atomic_exchange_explicit(&b->remote, w & TAG_MASK,
                                 memory_order_acquire);
    c->free = word_list(b, w);
    c->n_free = word_count(w);
    return true;
}

/* How far ahead of the slot it hands out carve() asks for memory: about
 * as far as the few submits it takes to fetch a line from memory. */
enum { PREFETCH_SLOTS = 8 };

static void *carve(slab *b)
{
    unsigned n = atomic_load_explicit(&b->carved, memory_order_relaxed);
    if (n == SLAB_SLOTS)
        return NULL;
    atomic_store_explicit(&b->carved, n + 1, memory_order_relaxed);
    /* Never-used slots are fresh memory, written first by the caller: a
     * cache miss each, which the barrier of a submit's queue push would
     * wait out. Fetching the line a few slots ahead, for writing, overlaps
     * the miss with the submits in between. */
    if (n + PREFETCH_SLOTS < SLAB_SLOTS)
        __builtin_prefetch(slot_at(b, n + PREFETCH_SLOTS), 1, 3);
    return slot_at(b, n);
}

static void *alloc_slow(slab_cache *c)
{
    if (c->owned) {
        if (collect_remote(c, c->owned))
            return pop_private(c);
        void *p = carve(c->owned);
        if (p)
            return p;
    }
    if (!take_slab(c))
        return NULL;
    if (c->free)
        return pop_private(c);
    return carve(c->owned);
}

static void free_remote(slab *b, slot *s)
{
    uint64_t w = atomic_load_explicit(&b->remote, memory_order_acquire);
    for (;;) {
        s->next = word_list(b, w);
        unsigned count = word_count(w) + 1;
        uint64_t next = make_word(b, s, count, w & ~(HEAD_MASK |
                                               COUNT_MASK << COUNT_SHIFT));
        /* Abandoned, `carved` is frozen (and published by the abandoning
         * CAS this load acquired): equal counts mean the slab is empty. */
        bool emptied = (w & ABANDONED) &&
                       count == atomic_load_explicit(&b->carved,
                                                     memory_order_relaxed);
        if (emptied)
            next |= RECLAIMING;
        if (atomic_compare_exchange_weak_explicit(&b->remote, &w, next,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire)) {
            if (emptied)
                reclaim(b);
            return;
        }
    }
}

void *cf__future_mem_alloc(void)
{
    if (alloc_mode() == MODE_MALLOC)
        return malloc(SLOT_SIZE);
    slab_cache *c = &cache;
    if (c->free)
        return pop_private(c);
    return alloc_slow(c);
}

void cf__future_mem_free(void *p)
{
    if (!p)
        return;
    if (alloc_mode() == MODE_MALLOC) {
        free(p);
        return;
    }
    slab_cache *c = &cache;
    slot *s = p;
    slab *b = slab_of(p);
    if (b == c->owned) {
        s->next = c->free;
        c->free = s;
        c->n_free++;
        return;
    }
    free_remote(b, s);
}

void cf__future_mem_get_stats(cf__future_mem_stats *out)
{
    memset(out, 0, sizeof *out);
    out->slab_size = SLAB_SIZE;
    out->slots_per_slab = SLAB_SLOTS;
    if (alloc_mode() == MODE_MALLOC)
        return;
    out->slabs = true;
    pthread_mutex_lock(&slabs.lock);
    out->mapped = slabs.n_mapped;
    out->abandoned = slabs.n_abandoned;
    out->spares = slabs.n_spares;
    out->takes = slabs.n_takes;
    pthread_mutex_unlock(&slabs.lock);
    out->huge = atomic_load_explicit(&huge.n_huge, memory_order_relaxed);
    out->huge_slow = atomic_load_explicit(&huge.n_slow, memory_order_relaxed);
}

void cf__future_mem_tune_huge(int64_t slow_ns, int64_t backoff_ns)
{
    atomic_store(&huge.slow_ns, slow_ns);
    atomic_store(&huge.backoff_ns, backoff_ns);
    atomic_store(&huge.small_until, 0);
}
