/* worker_program.c - a worker program of another binary than the test
 * (CF_START_PROGRAM), as a user would write one: register the tasks, then
 * serve. Options (after argv[0]):
 *   --init-fail   its own worker initializer fails (breaks the pool)
 *   --serve R W S N   serve on descriptors R, W (shared memory S, slot N)
 *                 with cf_process_worker_serve(), as a callback's child
 *   --only-square registers only "square" (a worker of an older build)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "named_tasks.h"

static int fail_init(void *arg)
{
    (void)arg;
    return 3;
}

int main(int argc, char **argv)
{
    cf_worker_options opts = {NULL, NULL};
    int serve = 0;
    bool only_square = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--init-fail") == 0)
            opts.initializer = fail_init;
        else if (strcmp(argv[i], "--only-square") == 0)
            only_square = true;
        else if (strcmp(argv[i], "--serve") == 0 && i + 4 < argc)
            serve = i + 1, i += 4;
    }
    int rc = only_square ? cf_task_register("square", named_square)
                         : named_tasks_register();
    if (rc != CF_OK) {
        fprintf(stderr, "worker_program: register: %s\n", cf_strerror(rc));
        return 2;
    }
    int status;
    if (serve) {
        cf_worker_channel ch = {atoi(argv[serve]), atoi(argv[serve + 1]),
                                atoi(argv[serve + 2]), atoi(argv[serve + 3])};
        rc = cf_process_worker_serve(&ch, &opts, &status);
    } else {
        rc = cf_process_worker_main(&opts, &status);
    }
    if (rc != CF_OK) {
        fprintf(stderr, "worker_program: not started by a process pool "
                        "(%s)\n", cf_strerror(rc));
        return 2;
    }
    return status;
}
