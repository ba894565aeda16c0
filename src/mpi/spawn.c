/* spawn.c - spawn mode: cf_mpi_spawn_executor().
 *
 * Design: the parent starts `n_workers` copies of `command` with
 * MPI_Comm_spawn (from MPI_COMM_SELF: the calling process alone is the
 * parent group) and runs the ordinary executor over the
 * intercommunicator it gets (executor.c, comm.c: over an
 * intercommunicator the worker ranks are the whole remote group). Each
 * spawned process calls cf_mpi_spawn_executor() too, as the same program
 * does on a worker rank in SPMD mode: MPI_Comm_get_parent() tells it it
 * was spawned, so it serves its parent (serve.c) until released, then
 * disconnects and returns with *out NULL. The parent disconnects when the
 * executor is freed (mpi_destroy), so the workers are free to finalise
 * and exit; nothing stays connected.
 *
 * Everything that can refuse is checked before anything is spawned:
 * after the spawn, a failure must still let the workers go
 * (cf__mpi_release_spawned), or they would wait for their check-in
 * forever.
 */
#include "mpi/root.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The worker's side: serve the parent, then disconnect from it. */
static int serve_parent(MPI_Comm parent, cf_executor **out)
{
    int rc = cf_mpi_worker_serve(parent, 0);
    MPI_Comm_disconnect(&parent);
    if (rc == CF_OK)
        *out = NULL;
    return rc;
}

static int spawn(const char *command, char *const *argv, int n,
                 MPI_Comm *inter)
{
    int *codes = malloc((size_t)n * sizeof *codes);
    if (!codes)
        return CF_ENOMEM;
    /* Errors of MPI_Comm_spawn are raised on MPI_COMM_SELF: returned
     * rather than fatal for this call. */
    MPI_Errhandler old;
    MPI_Comm_get_errhandler(MPI_COMM_SELF, &old);
    MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
    int mrc = MPI_Comm_spawn(command, argv ? (char **)argv : MPI_ARGV_NULL,
                             n, MPI_INFO_NULL, 0, MPI_COMM_SELF, inter,
                             codes);
    MPI_Comm_set_errhandler(MPI_COMM_SELF, old);
    MPI_Errhandler_free(&old);
    int failed = mrc != MPI_SUCCESS ? mrc : MPI_SUCCESS;
    for (int i = 0; i < n && failed == MPI_SUCCESS; i++)
        if (codes[i] != MPI_SUCCESS)
            failed = codes[i];
    free(codes);
    if (failed == MPI_SUCCESS)
        return CF_OK;
    char why[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(failed, why, &len);
    fprintf(stderr, "cfutures_mpi: could not spawn %d worker%s of %s: %s\n",
            n, n == 1 ? "" : "s", command, why);
    if (mrc == MPI_SUCCESS && *inter != MPI_COMM_NULL)
        cf__mpi_release_spawned(inter); /* some started: let them go */
    return CF_ESYS;
}

int cf_mpi_spawn_executor(const char *command, int n_workers,
                          const cf_mpi_options *opts, cf_executor **out)
{
    if (!out)
        return CF_EINVAL;
    int rc = cf__mpi_check_thread_level();
    if (rc != CF_OK)
        return rc;
    MPI_Comm parent = MPI_COMM_NULL;
    if (MPI_Comm_get_parent(&parent) != MPI_SUCCESS)
        return CF_ESYS;
    if (parent != MPI_COMM_NULL)
        return serve_parent(parent, out);
    if (n_workers < 1 || (opts && cf__mpi_check_options(opts) != CF_OK))
        return CF_EINVAL;
    char self[PATH_MAX];
    if (!command) {
        /* This program (Linux: the link names the executable). */
        ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
        if (len <= 0)
            return CF_EINVAL;
        self[len] = '\0';
        command = self;
    }
    /* Open MPI 4.1 ends the whole job, this process included, when the
     * command cannot be started: refuse a path that cannot run here. A
     * bare name is searched in PATH on the node that starts it. */
    if (strchr(command, '/') && access(command, X_OK) != 0) {
        fprintf(stderr, "cfutures_mpi: cannot spawn %s: not an executable "
                "file\n", command);
        return CF_EINVAL;
    }
    MPI_Comm inter = MPI_COMM_NULL;
    rc = spawn(command, opts ? opts->spawn_argv : NULL, n_workers, &inter);
    if (rc != CF_OK)
        return rc;
    return cf__mpi_executor_create(inter, opts, inter, out);
}
