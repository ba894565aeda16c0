/* test_future_slab.c - the memory behind futures (src/future_slab.c).
 *
 * What a user relies on without seeing it: a slot is never handed to two
 * futures at once, whichever thread frees it; memory comes back after a
 * burst; a thread that exits gives its slab up; a fork child can allocate;
 * running out of address space is CF_ENOMEM, not a crash. Most checks look
 * at the slabs themselves, so they skip themselves when futures come from
 * malloc (CF_FUTURE_ALLOC=malloc, AddressSanitizer builds) except where
 * they set the mode first: every test runs in a process of its own, so a
 * test that sets the variable before its first future chooses the mode.
 */
#include "reltest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>

#include "core/core.h"

static cf__future_mem_stats stats(void)
{
    cf__future_mem_stats s;
    cf__future_mem_get_stats(&s);
    return s;
}

/* Under ASan the default is malloc; these tests are about the slabs. */
static void use_slabs(void)
{
    ASSERT_EQ(setenv("CF_FUTURE_ALLOC", "slab", 1), 0);
    ASSERT(stats().slabs);
}

static cf_future **alloc_futures(size_t n)
{
    cf_future **fs = malloc(n * sizeof *fs);
    ASSERT(fs != NULL);
    for (size_t i = 0; i < n; i++)
        ASSERT_OK(cf_future_new(&fs[i]));
    return fs;
}

static void release_futures(cf_future **fs, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        cf_future_release(fs[i]);
}

TEST(environment_chooses_malloc)
{
    ASSERT_EQ(setenv("CF_FUTURE_ALLOC", "malloc", 1), 0);
    ASSERT(!stats().slabs);
    cf_future **fs = alloc_futures(1000);
    ASSERT_OK(cf_future_set_result(fs[0], (void *)7));
    void *v;
    ASSERT_OK(cf_future_result(fs[0], 0, &v));
    ASSERT_PTR_EQ(v, (void *)7);
    release_futures(fs, 0, 1000);
    free(fs);
}

TEST(freed_slot_is_reused_by_its_thread)
{
    use_slabs();
    cf_future *a, *b;
    ASSERT_OK(cf_future_new(&a));
    cf_future_release(a);
    ASSERT_OK(cf_future_new(&b));
    ASSERT_PTR_EQ(b, a); /* the private free list, most recent first */
    cf_future_release(b);
}

/* More than a few slabs' worth, allocated then released by the same
 * thread: the emptied slabs are reclaimed, not kept. */
TEST_TIMEOUT(memory_returns_after_a_burst, 60)
{
    use_slabs();
    size_t per_slab = stats().slots_per_slab;
    size_t n = 6 * per_slab;
    cf_future **fs = alloc_futures(n);
    cf__future_mem_stats full = stats();
    ASSERT(full.mapped >= 6);
    ASSERT(full.abandoned >= 5);
    release_futures(fs, 0, n);
    cf__future_mem_stats after = stats();
    ASSERT_EQ(after.abandoned, 0);
    /* The slab this thread still owns, plus at most two spares. */
    ASSERT(after.mapped <= 3);
    ASSERT(after.spares <= 2);

    free(fs);
    /* A second burst reuses what the first left. */
    fs = alloc_futures(per_slab);
    ASSERT(stats().mapped <= 3);
    release_futures(fs, 0, per_slab);
    free(fs);
}

/* Huge pages only while they are cheap: a huge slab that took longer than
 * the limit to populate sends new slabs to small pages until the backoff
 * ends. A zero limit makes every huge slab slow. */
TEST_TIMEOUT(slow_huge_pages_send_slabs_to_small_pages, 60)
{
    use_slabs();
    size_t per_slab = stats().slots_per_slab;
    cf__future_mem_tune_huge(0, INT64_C(3600000000000));
    /* Slab 1 (a thread's first: small), slab 2 (huge, found slow), and the
     * first future of slab 3. */
    size_t n = 2 * per_slab + 1;
    cf_future **fs = alloc_futures(n);
    if (stats().huge == 0) {
        printf("skipped: no transparent huge pages here\n");
        release_futures(fs, 0, n);
        free(fs);
        return;
    }
    ASSERT_EQ(stats().huge, 1);
    ASSERT_EQ(stats().huge_slow, 1);
    cf_future **more = alloc_futures(per_slab); /* slab 4: small too */
    ASSERT(stats().mapped >= 4);
    ASSERT_EQ(stats().huge, 1);
    /* Backoff over, no limit: huge pages again, and none slow. */
    cf__future_mem_tune_huge(INT64_MAX, 0);
    cf_future **again = alloc_futures(per_slab);
    ASSERT_EQ(stats().huge, 2);
    ASSERT_EQ(stats().huge_slow, 1);
    release_futures(fs, 0, n);
    release_futures(more, 0, per_slab);
    release_futures(again, 0, per_slab);
    free(fs);
    free(more);
    free(again);
}

typedef struct burst {
    size_t n;
    cf_future **fs;
} burst;

static void *allocate_burst(void *arg)
{
    burst *b = arg;
    b->fs = alloc_futures(b->n);
    return NULL;
}

static void *release_burst(void *arg)
{
    burst *b = arg;
    release_futures(b->fs, 0, b->n);
    return NULL;
}

static void run_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, fn, arg), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
}

/* Futures made on a thread that has exited, released here: the exiting
 * thread abandoned its slabs, and the last release reclaims each one. */
TEST_TIMEOUT(slabs_of_an_exited_thread_are_reclaimed, 60)
{
    use_slabs();
    size_t base = stats().mapped;
    burst b = {.n = 3 * stats().slots_per_slab + 17};
    run_thread(allocate_burst, &b);
    cf__future_mem_stats mid = stats();
    ASSERT(mid.mapped >= base + 4);
    ASSERT_EQ(mid.abandoned, mid.mapped - base); /* none owned any more */
    release_futures(b.fs, 0, b.n);
    free(b.fs);
    cf__future_mem_stats after = stats();
    ASSERT_EQ(after.abandoned, 0);
    ASSERT(after.mapped <= base + 2); /* spares only */
}

static void *touch_one_future(void *arg)
{
    (void)arg;
    cf_future *f;
    ASSERT_OK(cf_future_new(&f));
    cf_future_release(f);
    return NULL;
}

/* Short-lived threads that each make a future: every exit gives its slab
 * back, so the count stays flat instead of growing by one per thread. */
TEST(short_lived_threads_do_not_pin_slabs)
{
    use_slabs();
    run_thread(touch_one_future, NULL);
    size_t base = stats().mapped;
    for (int i = 0; i < 20; i++)
        run_thread(touch_one_future, NULL);
    ASSERT(stats().mapped <= base + 1);
    ASSERT_EQ(stats().abandoned, 0);
}

/* A slab abandoned full, then half released elsewhere, is adopted by the
 * next thread that needs one, instead of a new mapping. */
TEST_TIMEOUT(half_free_abandoned_slab_is_adopted, 60)
{
    use_slabs();
    size_t per_slab = stats().slots_per_slab;
    burst b = {.n = 2 * per_slab};
    run_thread(allocate_burst, &b);
    /* Find a slab that is wholly this burst's: the one holding fs[0] may
     * have been the thread's only partly (a spare reused), so take the
     * slab of the middle future and release every future in it. */
    uintptr_t mask = ~(uintptr_t)(stats().slab_size - 1);
    uintptr_t target = (uintptr_t)b.fs[per_slab] & mask;
    size_t released = 0;
    for (size_t i = 0; i < b.n; i++)
        if (((uintptr_t)b.fs[i] & mask) == target && released < per_slab / 2) {
            cf_future_release(b.fs[i]);
            b.fs[i] = NULL;
            released++;
        }
    ASSERT(released == per_slab / 2);

    burst one = {.n = 1};
    run_thread(allocate_burst, &one);
    cf_future *f = one.fs[0];
    free(one.fs);
    ASSERT_EQ((uintptr_t)f & mask, target);
    cf_future_release(f);
    for (size_t i = 0; i < b.n; i++)
        cf_future_release(b.fs[i]);
    free(b.fs);
    ASSERT_EQ(stats().abandoned, 0);
}

/* Threads allocate raw slots, fill each with one word repeated, and swap
 * them through shared mailboxes, so most slots are freed by a thread other
 * than the one that allocated them. A slot handed out twice would be
 * filled by two owners: its words would disagree. */
enum { MAILBOXES = 64, SWAPPERS = 4 };

typedef struct swap_ctx {
    _Atomic(uintptr_t *) box[MAILBOXES];
    atomic_bool corrupt;
    size_t rounds;
} swap_ctx;

typedef struct swapper {
    swap_ctx *ctx;
    unsigned id;
} swapper;

enum { SLOT_WORDS = sizeof(cf_future) / sizeof(uintptr_t) };

static bool intact(const uintptr_t *p)
{
    for (size_t i = 1; i < SLOT_WORDS; i++)
        if (p[i] != p[0])
            return false;
    return true;
}

static void *swap_slots(void *arg)
{
    swapper *s = arg;
    uint64_t rng = 0x9e3779b97f4a7c15u * (s->id + 1);
    for (size_t r = 0; r < s->ctx->rounds; r++) {
        uintptr_t *p = cf__future_mem_alloc();
        if (!p) {
            atomic_store(&s->ctx->corrupt, true);
            return NULL;
        }
        uintptr_t tag = ((uintptr_t)s->id << 48) | r;
        for (size_t i = 0; i < SLOT_WORDS; i++)
            p[i] = tag;
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        uintptr_t *old = atomic_exchange(&s->ctx->box[rng % MAILBOXES], p);
        if (old) {
            if (!intact(old))
                atomic_store(&s->ctx->corrupt, true);
            cf__future_mem_free(old);
        }
    }
    return NULL;
}

TEST_TIMEOUT(slots_are_never_shared_across_threads, 120)
{
    /* Both modes: the test holds for malloc too, and under ASan it is
     * the slab code that most needs the check. */
    use_slabs();
    static swap_ctx ctx;
    ctx.rounds = harness_scaled(400000, 2000);
    pthread_t t[SWAPPERS];
    swapper s[SWAPPERS];
    for (unsigned i = 0; i < SWAPPERS; i++) {
        s[i] = (swapper){.ctx = &ctx, .id = i};
        ASSERT_EQ(pthread_create(&t[i], NULL, swap_slots, &s[i]), 0);
    }
    for (unsigned i = 0; i < SWAPPERS; i++)
        ASSERT_EQ(pthread_join(t[i], NULL), 0);
    ASSERT(!atomic_load(&ctx.corrupt));
    for (size_t i = 0; i < MAILBOXES; i++) {
        uintptr_t *p = atomic_exchange(&ctx.box[i], NULL);
        if (p) {
            ASSERT(intact(p));
            cf__future_mem_free(p);
        }
    }
    /* Everything freed, the swappers gone: nothing left abandoned. */
    ASSERT_EQ(stats().abandoned, 0);
}

/* The producer/consumer shape of a thread pool: one thread allocates,
 * another frees everything, round after round. The allocator must recycle
 * what the other thread freed instead of mapping more. */
TEST_TIMEOUT(producer_consumer_memory_stays_flat, 120)
{
    use_slabs();
    size_t per_slab = stats().slots_per_slab;
    size_t rounds = harness_scaled(20, 3);
    size_t peak = 0;
    for (size_t r = 0; r < rounds; r++) {
        burst b = {.n = per_slab + per_slab / 2};
        b.fs = alloc_futures(b.n);
        run_thread(release_burst, &b);
        free(b.fs);
        size_t mapped = stats().mapped;
        peak = mapped > peak ? mapped : peak;
    }
    /* 1.5 slabs live at a time; owned + adopted + spares bound it. */
    ASSERT(peak <= 5);
}

/* The same with fewer futures than a slab holds: what the other thread
 * freed comes back to the allocating thread's own slab, which then never
 * fills up, however many rounds run. */
TEST(slots_freed_elsewhere_return_to_the_owner)
{
    use_slabs();
    size_t n = stats().slots_per_slab / 3;
    cf_future *first;
    ASSERT_OK(cf_future_new(&first)); /* this thread now owns a slab */
    size_t base = stats().mapped, takes = stats().takes;
    for (int r = 0; r < 10; r++) {
        burst b = {.n = n};
        b.fs = alloc_futures(n);
        run_thread(release_burst, &b);
        free(b.fs);
        ASSERT_EQ(stats().mapped, base);
        ASSERT_EQ(stats().takes, takes); /* never even a lap of the lock */
    }
    cf_future_release(first);
}

/* fork() while another thread holds the slabs' lock much of the time (the
 * statistics take it) and takes new slabs: the child must still be able
 * to allocate, which needs that lock. */
typedef struct churn {
    atomic_bool stop;
} churn;

static void *churn_slabs(void *arg)
{
    churn *c = arg;
    size_t n = stats().slots_per_slab + 1; /* crosses a slab every round */
    cf_future **fs = malloc(n * sizeof *fs);
    ASSERT(fs != NULL);
    while (!atomic_load(&c->stop)) {
        for (int i = 0; i < 1000; i++)
            (void)stats();
        for (size_t i = 0; i < n; i++)
            ASSERT_OK(cf_future_new(&fs[i]));
        release_futures(fs, 0, n);
    }
    free(fs);
    return NULL;
}

static int child_allocates(void *arg)
{
    (void)arg;
    size_t n = 3 * stats().slots_per_slab;
    cf_future **fs = malloc(n * sizeof *fs);
    if (!fs)
        return 2;
    for (size_t i = 0; i < n; i++)
        if (cf_future_new(&fs[i]) != CF_OK)
            return 3;
    release_futures(fs, 0, n);
    free(fs);
    return 0;
}

TEST_TIMEOUT(fork_child_can_allocate, 120)
{
    if (RELTEST_TSAN) {
        printf("skipped: TSan refuses threads in a multithreaded fork's child\n");
        return;
    }
    use_slabs();
    churn c = {0};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, churn_slabs, &c), 0);
    size_t forks = harness_scaled(100, 3);
    for (size_t i = 0; i < forks; i++)
        ASSERT_CHILD_OK(reltest_in_child(child_allocates, NULL, 10));
    atomic_store(&c.stop, true);
    ASSERT_EQ(pthread_join(t, NULL), 0);
}

/* Out of address space: CF_ENOMEM, and everything works again once memory
 * is back. In a child, under RLIMIT_AS. */
static int exhaust_address_space(void *arg)
{
    (void)arg;
    struct rlimit lim;
    if (getrlimit(RLIMIT_AS, &lim) != 0)
        return 2;
    size_t cap = 4u << 20; /* more futures than the limit has room for */
    cf_future **fs = malloc(cap * sizeof *fs);
    if (!fs)
        return 3;
    /* What is mapped now, plus room for a few slabs. */
    lim.rlim_cur = 64u << 20;
    FILE *st = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!st || fscanf(st, "%lu", &pages) != 1)
        return 4;
    fclose(st);
    lim.rlim_cur += pages * (unsigned long)sysconf(_SC_PAGESIZE);
    if (setrlimit(RLIMIT_AS, &lim) != 0)
        return 5;
    size_t n = 0;
    int rc = CF_OK;
    while (n < cap && (rc = cf_future_new(&fs[n])) == CF_OK)
        n++;
    if (rc != CF_ENOMEM || n == cap)
        return 6;
    release_futures(fs, 0, n);
    for (size_t i = 0; i < n; i++) /* the reclaimed memory serves again */
        if (cf_future_new(&fs[i]) != CF_OK)
            return 7;
    release_futures(fs, 0, n);
    free(fs);
    return 0;
}

TEST_TIMEOUT(out_of_address_space_is_enomem, 60)
{
    if (CORETEST_SANITIZED || RELTEST_TSAN || harness_under_valgrind()) {
        printf("skipped: sanitizers and valgrind reserve address space\n");
        return;
    }
    use_slabs();
    ASSERT_CHILD_OK(reltest_in_child(exhaust_address_space, NULL, 30));
}
