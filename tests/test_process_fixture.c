/* test_process_fixture.c - the process-pool tests' own fixtures
 * (procpool_test.h): a test that fails or is killed leaves no temporary
 * directory behind in /tmp. */
#include "procpool_test.h"

#include <sys/wait.h>

/* Runs `body` in a child; returns its wait status. */
static int in_child(void (*body)(tmpdir *), tmpdir *shared)
{
    int pipefd[2];
    ASSERT_EQ(pipe(pipefd), 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        close(pipefd[0]);
        tmpdir d;
        tmpdir_make(&d);
        /* The parent learns the path before the child ends. */
        if (write(pipefd[1], &d, sizeof d) != (ssize_t)sizeof d)
            _exit(3);
        body(&d);
        _exit(0);
    }
    close(pipefd[1]);
    ssize_t n = read(pipefd[0], shared, sizeof *shared);
    close(pipefd[0]);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_EQ(n, (ssize_t)sizeof *shared);
    return status;
}

static void fail_an_assertion(tmpdir *d)
{
    char p[600];
    tmpdir_file(d, "a.pid", p, sizeof p);
    touch(p);
    /* Not "FAIL" in the log of a test that passes. */
    ASSERT(freopen("/dev/null", "w", stderr) != NULL);
    ASSERT_EQ(1, 2); /* the failure under test: the fixture cleans up */
}

TEST(failing_test_removes_its_tmpdir)
{
    tmpdir d;
    int status = in_child(fail_an_assertion, &d);
    /* 1, or valgrind's error exit code: its leak check of the child
     * counts what a failed test leaves. */
    ASSERT(WIFEXITED(status));
    ASSERT_NE(WEXITSTATUS(status), 0);
    ASSERT(!file_exists(d.path));
}

static void die_by_sigkill(tmpdir *d)
{
    char p[600];
    tmpdir_file(d, "a.pid", p, sizeof p);
    touch(p);
    raise(SIGKILL); /* as ctest ends a test at its time limit */
}

TEST(killed_test_tmpdir_is_swept_by_the_next)
{
    tmpdir stale;
    int status = in_child(die_by_sigkill, &stale);
    ASSERT(WIFSIGNALED(status));
    ASSERT(file_exists(stale.path));
    tmpdir d;
    tmpdir_make(&d);
    ASSERT(!file_exists(stale.path));
    ASSERT(file_exists(d.path));
    tmpdir_remove(&d);
    ASSERT(!file_exists(d.path));
}
