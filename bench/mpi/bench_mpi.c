/* bench_mpi.c - the MPI executor's costs, one scenario per run, one line
 * of output (rank 0), for bench/mpi/run.sh:
 *
 *   mpirun -n 3 bench_mpi round_trip 2000   submit one task, wait, repeat:
 *                                           p50 of the round trip
 *   mpirun -n 3 bench_mpi round_trip_wait 2000   the same, waiting with
 *                                           cf_wait(FIRST_COMPLETED) (or
 *                                           round_trip_as_completed, with
 *                                           as_completed; round_trip_then,
 *                                           on an inline continuation's
 *                                           result) before the result
 *   mpirun -n 3 bench_mpi submit 100000     submit N tiny tasks, then take
 *                                           every result: tasks/s
 *   mpirun -n 3 bench_mpi map 100000        map over N items, chunksize
 *                                           100: tasks/s
 *   mpirun -n 3 bench_mpi ping_pong 20000   the floor: 1-byte MPI_Send /
 *                                           MPI_Recv between ranks 0 and 1,
 *                                           p50 of the round trip
 *   mpirun -n 1 bench_mpi round_trip 2000 spawn   (or submit, map) spawn
 *                                           mode: this process spawns the
 *                                           two workers (MPI_Comm_spawn)
 *
 * Ranks 1 and 2 are the two workers (the mpi4py peer has the same). The
 * task is the empty one: argument and result are words. BENCH_MPI_HIST=1:
 * the round trips also print p10, p90, p99 and a histogram in 1 us bins
 * (stderr), to tell the modes of a bimodal run apart.
 */
#define _POSIX_C_SOURCE 200809L
#include <cfutures_mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *identity(void *arg, cf_call *call)
{
    (void)call;
    return arg;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double p50(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static void histogram(double *sorted, int n)
{
    fprintf(stderr, "p10 %.1f p50 %.1f p90 %.1f p99 %.1f us\n",
            sorted[n / 10] * 1e6, sorted[n / 2] * 1e6,
            sorted[n * 9 / 10] * 1e6, sorted[n * 99 / 100] * 1e6);
    enum { BINS = 64 };
    int bin[BINS] = {0};
    for (int i = 0; i < n; i++) {
        int b = (int)(sorted[i] * 1e6);
        bin[b < BINS - 1 ? b : BINS - 1]++;
    }
    for (int b = 0; b < BINS; b++)
        if (bin[b])
            fprintf(stderr, "%3d%s us %6d\n", b, b == BINS - 1 ? "+" : " ",
                    bin[b]);
}

/* Waits for `f` the way `how` says, then takes its result. */
static int wait_then_result(cf_future *f, const char *how, void **v)
{
    if (strcmp(how, "wait") == 0) {
        size_t nd = 0;
        if (cf_wait(&f, 1, CF_FOREVER, CF_FIRST_COMPLETED, NULL, &nd, NULL,
                    NULL) != CF_OK || nd != 1)
            return 1;
    } else if (strcmp(how, "as_completed") == 0) {
        cf_as_completed *it;
        cf_future *got;
        if (cf_as_completed_new(&f, 1, CF_FOREVER, &it) != CF_OK)
            return 1;
        int rc = cf_as_completed_next(it, &got);
        cf_as_completed_free(it);
        if (rc != CF_OK)
            return 1;
        cf_future_release(got);
    } else if (strcmp(how, "then") == 0) {
        cf_future *d;
        if (cf_future_then(f, NULL, identity, &d) != CF_OK)
            return 1;
        int rc = cf_future_result(d, CF_FOREVER, v);
        cf_future_release(d);
        return rc == CF_OK ? 0 : 1;
    }
    return cf_future_result(f, CF_FOREVER, v) == CF_OK ? 0 : 1;
}

static int round_trip(cf_executor *ex, int n, const char *how)
{
    double *t = malloc((size_t)n * sizeof *t);
    for (int i = -n / 10; i < n; i++) { /* a tenth to warm up */
        double t0 = MPI_Wtime();
        cf_future *f;
        void *v;
        if (cf_executor_submit(ex, identity, (void *)(intptr_t)i, &f) != CF_OK ||
            wait_then_result(f, how, &v) != 0 || (intptr_t)v != i)
            return 1;
        cf_future_release(f);
        if (i >= 0)
            t[i] = MPI_Wtime() - t0;
    }
    printf("cfutures_mpi round_trip%s%s: p50 %.1f us (%d round trips)\n",
           *how ? "_" : "", how, p50(t, n) * 1e6, n);
    if (getenv("BENCH_MPI_HIST"))
        histogram(t, n);
    free(t);
    return 0;
}

static int submit_result(cf_executor *ex, int n)
{
    cf_future **fs = malloc((size_t)n * sizeof *fs);
    double t0 = MPI_Wtime();
    for (int i = 0; i < n; i++)
        if (cf_executor_submit(ex, identity, (void *)(intptr_t)i, &fs[i]) !=
            CF_OK)
            return 1;
    for (int i = 0; i < n; i++) {
        void *v;
        if (cf_future_result(fs[i], CF_FOREVER, &v) != CF_OK ||
            (intptr_t)v != i)
            return 1;
        cf_future_release(fs[i]);
    }
    double s = MPI_Wtime() - t0;
    printf("cfutures_mpi submit: %d tasks in %.3f s (%.0f/s)\n", n, s, n / s);
    free(fs);
    return 0;
}

static int map_chunks(cf_executor *ex, int n)
{
    void **args = malloc((size_t)n * sizeof *args);
    for (int i = 0; i < n; i++)
        args[i] = (void *)(intptr_t)i;
    cf_map_options mo = {.chunksize = 100};
    cf_map *m;
    double t0 = MPI_Wtime();
    if (cf_executor_map(ex, identity, args, (size_t)n, &mo, &m) != CF_OK)
        return 1;
    void *v;
    int i = 0;
    while (cf_map_next(m, &v, NULL) == CF_OK)
        if ((intptr_t)v != i++)
            return 1;
    double s = MPI_Wtime() - t0;
    cf_map_free(m);
    if (i != n)
        return 1;
    printf("cfutures_mpi map_chunksize_100: %d tasks in %.3f s (%.0f/s)\n", n,
           s, n / s);
    free(args);
    return 0;
}

static int ping_pong(int n)
{
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    char b = 0;
    double *t = rank == 0 ? malloc((size_t)n * sizeof *t) : NULL;
    for (int i = -n / 10; i < n && rank < 2; i++) {
        if (rank == 0) {
            double t0 = MPI_Wtime();
            MPI_Send(&b, 1, MPI_CHAR, 1, 0, MPI_COMM_WORLD);
            MPI_Recv(&b, 1, MPI_CHAR, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (i >= 0)
                t[i] = MPI_Wtime() - t0;
        } else {
            MPI_Recv(&b, 1, MPI_CHAR, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(&b, 1, MPI_CHAR, 0, 0, MPI_COMM_WORLD);
        }
    }
    if (rank == 0)
        printf("mpi ping_pong: p50 %.1f us (%d round trips, 1 byte)\n",
               p50(t, n) * 1e6, n);
    free(t);
    MPI_Barrier(MPI_COMM_WORLD);
    return 0;
}

int main(int argc, char **argv)
{
    int provided, rc = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
    if (argc < 3) {
        fprintf(stderr, "usage: bench_mpi round_trip[_wait|_as_completed|"
                "_then]|submit|map|ping_pong N [spawn]\n");
        MPI_Finalize();
        return 2;
    }
    const char *what = argv[1];
    int n = atoi(argv[2]);
    if (strcmp(what, "ping_pong") == 0) {
        rc = ping_pong(n);
    } else {
        cf_executor *ex = NULL;
        /* BENCH_MPI_SPIN: the executor's `spin` (seconds), for trying. */
        cf_mpi_options o = {0};
        if (getenv("BENCH_MPI_SPIN"))
            o.spin = atof(getenv("BENCH_MPI_SPIN"));
        /* Spawn mode: the workers run this program with these arguments
         * and serve from the same call. */
        bool spawn = argc > 3 && strcmp(argv[3], "spawn") == 0;
        char *args[] = {argv[1], argv[2], "spawn", NULL};
        o.spawn_argv = args;
        rc = spawn ? cf_mpi_spawn_executor(NULL, 2, &o, &ex)
                   : cf_mpi_comm_executor(MPI_COMM_WORLD, 0, &o, &ex);
        if (rc == CF_OK && ex) {
            rc = strcmp(what, "submit") == 0 ? submit_result(ex, n)
                 : strcmp(what, "map") == 0  ? map_chunks(ex, n)
                 : strncmp(what, "round_trip_", 11) == 0
                     ? round_trip(ex, n, what + 11)
                     : round_trip(ex, n, "");
            cf_executor_free(ex);
        }
    }
    if (rc != 0)
        fprintf(stderr, "bench_mpi %s: failed (%d)\n", what, rc);
    MPI_Finalize();
    return rc == 0 ? 0 : 1;
}
