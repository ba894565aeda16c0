/* test_fault_limits.c - real resource limits, in a forked child.
 *
 * Unlike the sweeps, nothing is simulated here: the child lowers
 * RLIMIT_NOFILE (no descriptor can be opened) or RLIMIT_NPROC (no thread
 * or process can be started) and uses the pools. Every call must return a
 * documented code, nothing may hang, and the thread pool, which needs no
 * descriptor, must keep working without descriptors.
 */
#include "faulttest.h"

#include <fcntl.h>
#include <pwd.h>

/* Lowers the descriptor limit to the highest open one, then fills the
 * holes below it: after this any new descriptor fails with EMFILE. */
static void no_more_descriptors(void)
{
    int highest = 0;
    for (int fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            highest = fd;
    /* The soft limit only: valgrind refuses to move the hard one. */
    struct rlimit rl;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = (rlim_t)highest + 1;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
    while (open("/dev/null", O_RDONLY) >= 0)
        ; /* a hole below the limit: kept open until the child exits */
    ASSERT_EQ(errno, EMFILE);
}

static int child_without_descriptors(void *arg)
{
    (void)arg;
    no_more_descriptors();
    /* The thread pool needs no descriptor. */
    cf_executor *tp = pool_new(2);
    cf_future *f = submit(tp, task_double, (void *)21);
    ASSERT_EQ(result_of(f), 42);
    cf_future_release(f);
    cf_executor_free(tp);
    /* The process pool does: it fails cleanly, at creation or per task. */
    for (int method = 0; method < 2; method++) {
        cf_executor *pp;
        int rc = cf_process_pool_new(
            &(cf_process_pool_options){.max_workers = 2,
                                       .start_method =
                                           (cf_start_method)method},
            &pp);
        if (rc != CF_OK) {
            ASSERT_ONE_OF(rc, CF_ESYS, CF_EAGAIN, CF_ENOMEM);
            continue;
        }
        rc = cf_executor_submit(pp, task_double, (void *)1, &f);
        if (rc == CF_OK) {
            rc = cf_future_result(f, 10, NULL);
            ASSERT_ONE_OF(rc, CF_ESYS, CF_EAGAIN, CF_EBROKEN_PROCESS_POOL);
            cf_future_release(f);
        } else {
            ASSERT_ONE_OF(rc, CF_ESYS, CF_EAGAIN, CF_EBROKEN_PROCESS_POOL);
        }
        cf_executor_free(pp);
    }
    return 0;
}

TEST_TIMEOUT(no_descriptors_left, 60)
{
    ASSERT_CHILD_OK(reltest_in_child(child_without_descriptors, NULL, 30));
}

/* RLIMIT_NPROC counts every thread and process of the real user, and
 * root is exempt: the child becomes "nobody" with a limit of 1 (itself). */
static int child_without_threads(void *arg)
{
    (void)arg;
    if (getuid() == 0) {
        struct passwd *pw = getpwnam("nobody");
        if (!pw || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
            return 77;
    }
    struct rlimit rl = {1, 1};
    ASSERT_EQ(setrlimit(RLIMIT_NPROC, &rl), 0);
    cf_executor *tp = pool_new(2);
    cf_future *f = (void *)0x5e17;
    ASSERT_CODE(cf_executor_submit(tp, task_double, (void *)1, &f), CF_EAGAIN);
    ASSERT_PTR_EQ(f, (void *)0x5e17);
    void *args[] = {(void *)1};
    cf_map *m;
    ASSERT_CODE(cf_executor_map(tp, task_double, args, 1, NULL, &m),
                CF_EAGAIN);
    cf_executor_free(tp);
    cf_executor *pp;
    int rc = cf_process_pool_new(&(cf_process_pool_options){.max_workers = 1},
                                 &pp);
    ASSERT_ONE_OF(rc, CF_EAGAIN, CF_ESYS, CF_ENOMEM);
    return 0;
}

TEST_TIMEOUT(no_threads_or_processes_left, 60)
{
    if (RELTEST_TSAN || RELTEST_ASAN || harness_under_valgrind()) {
        /* Their runtimes start helper threads (or, valgrind, files of
         * the original user) of their own. */
        printf("skipped under sanitizers and valgrind\n");
        return;
    }
    int rc = reltest_in_child(child_without_threads, NULL, 30);
    if (rc == 77) {
        printf("skipped: cannot drop root to apply RLIMIT_NPROC\n");
        return;
    }
    ASSERT_CHILD_OK(rc);
}
