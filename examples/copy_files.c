/* copy_files.c - the `with` statement, from the Python docs:
 *
 *     import shutil
 *     with ThreadPoolExecutor(max_workers=4) as e:
 *         e.submit(shutil.copy, 'src1.txt', 'dest1.txt')
 *         ...
 *         e.submit(shutil.copy, 'src4.txt', 'dest4.txt')
 *
 * CF_SCOPED_EXECUTOR is the `with`: leaving the block shuts the pool down
 * and waits for the copies. Unlike the Python snippet, the program keeps the
 * futures to check each copy's outcome, and works in a fresh temporary
 * directory that it removes afterwards. */
#define _POSIX_C_SOURCE 200809L
#include <cfutures.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NFILES 4

struct copy_job {
    char src[256], dst[256];
};

/* shutil.copy(src, dst): a failure becomes the future's exception. */
static void *copy_file(void *arg, cf_call *call)
{
    const struct copy_job *job = arg;
    FILE *in = fopen(job->src, "rb");
    FILE *out = in ? fopen(job->dst, "wb") : NULL;
    char buf[8192];
    size_t n;
    int err = out ? 0 : errno;
    while (err == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            err = errno ? errno : EIO;
    if (err == 0 && ferror(in))
        err = EIO;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0 && err == 0)
        err = errno;
    if (err != 0)
        return cf_fail(call, err, "copy %s: %s", job->src, strerror(err));
    return (void *)job->dst; /* shutil.copy returns the destination */
}

/* File i holds 10000 * 4^i bytes of a pattern that depends on i. Writes it,
 * or with `check` compares `path` with it byte for byte. Returns 0 or -1. */
static int pattern_file(const char *path, int i, bool check)
{
    size_t size = (size_t)10000 << (2 * i);
    FILE *f = fopen(path, check ? "rb" : "wb");
    int bad = f == NULL;
    for (size_t k = 0; !bad && k < size; k++) {
        int c = 'a' + (int)((k * 7 + (size_t)i) % 26);
        bad = check ? getc(f) != c : putc(c, f) == EOF;
    }
    if (!bad && check)
        bad = getc(f) != EOF; /* no extra bytes either */
    if (f && fclose(f) != 0)
        bad = 1;
    return bad ? -1 : 0;
}

int main(void)
{
    char dir[] = "/tmp/cf_copy_files.XXXXXX";
    struct copy_job jobs[NFILES];
    cf_future *fs[NFILES] = {NULL};
    int failures = 0;

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    for (int i = 0; i < NFILES; i++) {
        snprintf(jobs[i].src, sizeof jobs[i].src, "%s/src%d.txt", dir, i + 1);
        snprintf(jobs[i].dst, sizeof jobs[i].dst, "%s/dest%d.txt", dir, i + 1);
    }
    for (int i = 0; i < NFILES && failures == 0; i++)
        if (pattern_file(jobs[i].src, i, false) != 0)
            failures++;
    if (failures == 0) {
        CF_SCOPED_EXECUTOR e = NULL;
        cf_thread_pool_options opts = {.max_workers = 4};
        int err = cf_thread_pool_new(&opts, &e);
        for (int i = 0; err == CF_OK && i < NFILES; i++)
            err = cf_executor_submit(e, copy_file, &jobs[i], &fs[i]);
        if (err != CF_OK) {
            fprintf(stderr, "copy_files: %s\n", cf_strerror(err));
            failures++;
        }
    } /* `with` exit: e is shut down here, waiting for every copy */
    for (int i = 0; i < NFILES && fs[i]; i++) {
        cf_error exc;
        int err;
        /* Timeout 0: after the `with` block every future must be done. */
        if ((err = cf_future_exception(fs[i], 0, &exc)) != CF_OK || exc.code) {
            fprintf(stderr, "dest%d.txt: %s\n", i + 1,
                    err ? cf_strerror(err) : exc.message);
            failures++;
        } else if (pattern_file(jobs[i].dst, i, true) != 0) {
            fprintf(stderr, "%s differs from its source\n", jobs[i].dst);
            failures++;
        } else {
            printf("copied src%d.txt to dest%d.txt\n", i + 1, i + 1);
        }
        cf_future_release(fs[i]);
    }
    for (int i = 0; i < NFILES; i++) {
        unlink(jobs[i].src); /* may not exist after an early failure */
        unlink(jobs[i].dst);
    }
    if (rmdir(dir) != 0) {
        perror("rmdir");
        failures++;
    }
    return failures == 0 ? 0 : 1;
}
