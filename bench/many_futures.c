/* many_futures.c - W3: as_completed or wait(ALL_COMPLETED) over many futures,
 * either all done already or completing meanwhile.
 *
 *     bench_many_futures N as_completed|wait done|live
 *
 * The futures are bare (cf_future_new), so the figure is the cost of the
 * waiting machinery alone, not of a pool. `done`: every future is finished
 * before the clock starts. `live`: a second thread starts completing them,
 * in order, at the moment the clock starts, so the call sees most of them
 * complete while it runs. The clock stops when the iterator is exhausted
 * and freed, or when cf_wait returns. CPython's line uses the same shape.
 */
#include <pthread.h>

#include "cfutures.h"

#include "bench.h"

typedef struct batch {
    cf_future **fs;
    long n;
} batch;

static void *complete_all(void *arg)
{
    const batch *b = arg;
    for (long i = 0; i < b->n; i++)
        BENCH_CHECK(cf_future_set_result(b->fs[i], NULL));
    return NULL;
}

static long iterate_as_completed(const batch *b)
{
    cf_as_completed *it;
    cf_future *f;
    long count = 0;
    int err;
    BENCH_CHECK(cf_as_completed_new(b->fs, (size_t)b->n, CF_FOREVER, &it));
    while ((err = cf_as_completed_next(it, &f)) == CF_OK) {
        cf_future_release(f);
        count++;
    }
    if (err != CF_EEND)
        bench_die("cf_as_completed_next: %s", cf_err_name(err));
    cf_as_completed_free(it);
    return count;
}

static long wait_all(const batch *b)
{
    size_t n_done = 0;
    BENCH_CHECK(cf_wait(b->fs, (size_t)b->n, CF_FOREVER, CF_ALL_COMPLETED,
                        NULL, &n_done, NULL, NULL));
    return (long)n_done;
}

int main(int argc, char **argv)
{
    long n = bench_arg(argc, argv, 1, 100000);
    const char *mode = argc > 2 ? argv[2] : "as_completed";
    const char *state = argc > 3 ? argv[3] : "done";
    bool as_completed = strcmp(mode, "as_completed") == 0;
    bool live = strcmp(state, "live") == 0;
    if ((!as_completed && strcmp(mode, "wait") != 0) ||
        (!live && strcmp(state, "done") != 0))
        bench_die("usage: bench_many_futures N as_completed|wait done|live");

    batch b = {bench_xmalloc((size_t)n * sizeof(cf_future *)), n};
    for (long i = 0; i < n; i++)
        BENCH_CHECK(cf_future_new(&b.fs[i]));
    if (!live)
        complete_all(&b);

    pthread_t completer;
    int64_t t0 = bench_now_ns();
    if (live && pthread_create(&completer, NULL, complete_all, &b) != 0)
        bench_die("pthread_create");
    long count = as_completed ? iterate_as_completed(&b) : wait_all(&b);
    int64_t t1 = bench_now_ns();
    if (live)
        pthread_join(completer, NULL);

    if (count != n)
        bench_die("%ld of %ld futures seen", count, n);
    double s = (double)(t1 - t0) / 1e9;
    printf("w3 cfutures n=%ld mode=%s state=%s seconds=%.4f "
           "ns_per_future=%.1f\n",
           n, mode, state, s, s * 1e9 / (double)n);
    for (long i = 0; i < n; i++)
        cf_future_release(b.fs[i]);
    free(b.fs);
    return 0;
}
