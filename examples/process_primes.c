/* process_primes.c - the ProcessPoolExecutor example from the Python docs:
 *
 *     with concurrent.futures.ProcessPoolExecutor() as executor:
 *         for number, prime in zip(PRIMES, executor.map(is_prime, PRIMES)):
 *             print('%d is prime: %s' % (number, prime))
 *
 * Workers are fresh processes of this same program; main() needs no special
 * code for them. Arguments and results cross as bytes through the pool's
 * codec: the default one carries the pointer value itself, so each number
 * travels as an integer cast to a pointer (64-bit platforms), and is_prime's
 * answer comes back the same way. chunksize 2 ships two numbers per message.
 */
#include <cfutures.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

_Static_assert(sizeof(uintptr_t) >= sizeof(uint64_t),
               "the numbers travel as pointer-sized words");

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

/* Runs in a worker process: the number itself is the argument. */
static void *is_prime_task(void *arg, cf_call *call)
{
    (void)call;
    return (void *)(intptr_t)is_prime((uint64_t)(uintptr_t)arg);
}

int main(void)
{
    void *args[NPRIMES];
    cf_executor *executor = NULL;
    cf_map *results = NULL;
    cf_map_options opts = {.chunksize = 2};
    int err;
    size_t i = 0;

    for (size_t k = 0; k < NPRIMES; k++)
        args[k] = (void *)(uintptr_t)PRIMES[k];
    if ((err = cf_process_pool_new(NULL, &executor)) != CF_OK ||
        (err = cf_executor_map(executor, is_prime_task, args, NPRIMES, &opts,
                               &results)) != CF_OK)
        goto out;
    void *prime;
    cf_error why;
    for (; (err = cf_map_next(results, &prime, &why)) == CF_OK; i++)
        printf("%llu is prime: %s\n", (unsigned long long)PRIMES[i],
               prime ? "True" : "False");
    if (err == CF_EEND && i == NPRIMES) /* the end, and not too soon */
        err = CF_OK;
    else if (err != CF_EEND)
        fprintf(stderr, "process_primes: %s\n", why.message);
out:
    if (err != CF_OK)
        fprintf(stderr, "process_primes: %s\n", cf_strerror(err));
    cf_map_free(results);
    cf_executor_free(executor);
    return err == CF_OK ? 0 : 1;
}
