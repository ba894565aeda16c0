/* mpi_primes.c - the ProcessPoolExecutor example from the Python docs, on
 * the ranks of an MPI job:
 *
 *     with concurrent.futures.ProcessPoolExecutor() as executor:
 *         for number, prime in zip(PRIMES, executor.map(is_prime, PRIMES)):
 *             print('%d is prime: %s' % (number, prime))
 *
 * Run it with one command (after `make`):
 *
 *     mpirun -n 3 build/examples/mpi_primes
 *
 * (add --oversubscribe where the machine has fewer cores than ranks).
 * Every rank runs this program. cf_mpi_comm_executor() gives rank 0 an
 * executor and makes ranks 1 and 2 serve its tasks until it is freed; the
 * rest is process_primes.c with another constructor.
 */
#include <cfutures_mpi.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

static const uint64_t PRIMES[] = {
    112272535095293, 112582705942171, 112272535095293,
    115280095190773, 115797848077099, 1099726899285419,
};
#define NPRIMES (sizeof PRIMES / sizeof PRIMES[0])

static bool is_prime(uint64_t n)
{
    if (n < 2)
        return false;
    if (n == 2)
        return true;
    if (n % 2 == 0)
        return false;
    uint64_t sqrt_n = (uint64_t)floor(sqrt((double)n));
    for (uint64_t i = 3; i <= sqrt_n; i += 2)
        if (n % i == 0)
            return false;
    return true;
}

/* Runs on a worker rank: the number itself is the argument. */
static void *is_prime_task(void *arg, cf_call *call)
{
    (void)call;
    return (void *)(intptr_t)is_prime((uint64_t)(uintptr_t)arg);
}

/* Rank 0: the Python example. */
static int run(cf_executor *executor)
{
    void *args[NPRIMES];
    cf_map *results = NULL;
    cf_map_options opts = {.chunksize = 2};
    size_t i = 0;
    for (size_t k = 0; k < NPRIMES; k++)
        args[k] = (void *)(uintptr_t)PRIMES[k];
    int err = cf_executor_map(executor, is_prime_task, args, NPRIMES, &opts,
                              &results);
    void *prime;
    cf_error why = {0, ""};
    for (; err == CF_OK && (err = cf_map_next(results, &prime, &why)) == CF_OK;
         i++)
        printf("%llu is prime: %s\n", (unsigned long long)PRIMES[i],
               prime ? "True" : "False");
    if (err == CF_EEND && i == NPRIMES) /* the end, and not too soon */
        err = CF_OK;
    if (err != CF_OK)
        fprintf(stderr, "mpi_primes: %s %s\n", cf_strerror(err), why.message);
    cf_map_free(results);
    return err;
}

int main(int argc, char **argv)
{
    int provided;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided) !=
        MPI_SUCCESS)
        return 1;
    cf_executor *executor = NULL;
    int err = cf_mpi_comm_executor(MPI_COMM_WORLD, 0, NULL, &executor);
    if (err == CF_OK && executor) /* rank 0; the others have served */
        err = run(executor);
    else if (err != CF_OK)
        fprintf(stderr, "mpi_primes: %s\n", cf_strerror(err));
    cf_executor_free(executor); /* lets the other ranks return */
    MPI_Finalize();
    return err == CF_OK ? 0 : 1;
}
