/* wait_and_as_completed.c - wait(), as_completed() and map() with their
 * return_when and timeout arguments, in the spirit of the Python docs:
 *
 *     done, not_done = wait(fs, return_when=FIRST_COMPLETED)
 *     done, not_done = wait(fs, return_when=FIRST_EXCEPTION)
 *     done, not_done = wait(fs, timeout=0.05)       # not an error
 *     for f in as_completed(fs, timeout=0.05): ...  # TimeoutError
 *     for r in executor.map(fn, args, timeout=0.05): ...  # TimeoutError
 *
 * One task waits on `gate`, a bare future no executor runs (Python's
 * Future() made by hand), so it stays unfinished until main() completes the
 * gate: every timeout below is certain, however slow the machine. */
#include <cfutures.h>
#include <stdint.h>
#include <stdio.h>

static cf_future *gate;

static void *wait_for_gate(void *arg, cf_call *call)
{
    int err = cf_future_result(gate, CF_FOREVER, NULL);
    return err ? cf_fail(call, err, "gate: %s", cf_strerror(err)) : arg;
}
static void *square(void *arg, cf_call *call)
{
    return (void *)((intptr_t)arg * (intptr_t)arg);
}
static void *boom(void *arg, cf_call *call)
{
    return cf_fail(call, 42, "boom %d", (int)(intptr_t)arg);
}

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                      \
        }                                                                    \
    } while (0)

int main(void)
{
    cf_thread_pool_options opts = {.max_workers = 3};
    cf_executor *ex = NULL;
    cf_future *fs[3] = {NULL}, *done[3], *not_done[3], *f = NULL;
    cf_as_completed *it = NULL;
    cf_map *m = NULL;
    void *args[2] = {(void *)(intptr_t)10, (void *)(intptr_t)20}, *value = NULL;
    size_t n_done = 0, n_not_done = 0, n_got = 0;
    int failures = 0, err = CF_OK;

    CHECK(cf_future_new(&gate) == CF_OK);
    CHECK(cf_thread_pool_new(&opts, &ex) == CF_OK);
    CHECK(cf_executor_submit(ex, wait_for_gate, (void *)(intptr_t)1,
                             &fs[0]) == CF_OK);
    CHECK(cf_executor_submit(ex, square, (void *)(intptr_t)7, &fs[1]) == CF_OK);
    if (failures)
        goto out;

    /* FIRST_COMPLETED: square finishes; the gated task cannot. */
    CHECK(cf_wait(fs, 2, CF_FOREVER, CF_FIRST_COMPLETED, done, &n_done,
                  not_done, &n_not_done) == CF_OK);
    CHECK(n_done == 1 && done[0] == fs[1] && not_done[0] == fs[0]);
    printf("FIRST_COMPLETED: %zu done, %zu not done\n", n_done, n_not_done);

    /* FIRST_EXCEPTION returns once a task fails, with the rest unfinished. */
    CHECK(cf_executor_submit(ex, boom, (void *)(intptr_t)3, &fs[2]) == CF_OK);
    CHECK(cf_wait(fs, 3, CF_FOREVER, CF_FIRST_EXCEPTION, done, &n_done,
                  not_done, &n_not_done) == CF_OK);
    CHECK(n_done == 2 && n_not_done == 1 && not_done[0] == fs[0]);
    printf("FIRST_EXCEPTION: %zu done, %zu not done\n", n_done, n_not_done);

    /* A timeout is no error for wait(): not_done says what is left. */
    CHECK(cf_wait(fs, 3, 0.05, CF_ALL_COMPLETED, NULL, &n_done, NULL,
                  &n_not_done) == CF_OK);
    CHECK(n_done == 2 && n_not_done == 1);
    printf("ALL_COMPLETED, timeout=0.05: %zu done, %zu not done\n", n_done,
           n_not_done);

    /* as_completed() yields the two finished futures, then times out. */
    CHECK(cf_as_completed_new(fs, 3, 0.05, &it) == CF_OK);
    while (it && (err = cf_as_completed_next(it, &f)) == CF_OK) {
        n_got++;
        cf_future_release(f);
    }
    CHECK(n_got == 2 && err == CF_ETIMEDOUT);
    printf("as_completed, timeout=0.05: %zu yielded, then %s: %zu (of 3) "
           "futures unfinished\n", n_got, cf_err_name(err), 3 - n_got);

    /* map() with a timeout: the first result is late. */
    cf_map_options map_opts = {.timeout = 0.05};
    CHECK(cf_executor_map(ex, wait_for_gate, args, 2, &map_opts, &m) == CF_OK);
    CHECK(m && (err = cf_map_next(m, &value, NULL)) == CF_ETIMEDOUT);
    printf("map, timeout=0.05: %s\n", cf_err_name(err));

    /* Open the gate: the waiting task now finishes with its argument. */
    CHECK(cf_future_set_result(gate, NULL) == CF_OK);
    CHECK(cf_future_result(fs[0], CF_FOREVER, &value) == CF_OK &&
          value == (void *)(intptr_t)1);
    printf("after the gate opened: result %d\n", (int)(intptr_t)value);
out:
    /* On an early exit the gate is still closed: open it so that the tasks
     * end. Then the `with` exit, before the gate they use is released. */
    if (gate && !cf_future_done(gate) && cf_future_set_result(gate, NULL))
        failures++;
    cf_map_free(m); /* cancels map calls not yet started */
    cf_executor_free(ex);
    cf_as_completed_free(it);
    for (size_t i = 0; i < 3; i++)
        cf_future_release(fs[i]);
    cf_future_release(gate);
    return failures == 0 ? 0 : 1;
}
