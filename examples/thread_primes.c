/* thread_primes.c - the ProcessPoolExecutor example from the Python docs,
 * on a thread pool:
 *
 *     with ProcessPoolExecutor() as executor:
 *         for number, prime in zip(PRIMES, executor.map(is_prime, PRIMES)):
 *             print('%d is prime: %s' % (number, prime))
 *
 * C threads run in parallel (there is no GIL), so a thread pool already
 * spreads this CPU-bound work over the cores; examples/process_primes.c is
 * the same program on a process pool. cf_executor_map() returns results in
 * input order, so walking PRIMES alongside it is Python's zip(). */
#include <cfutures.h>
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

/* The task: the argument points at a number (a uint64_t may not fit in a
 * pointer on every platform); the result is the bool cast to a pointer. */
static void *is_prime_task(void *arg, cf_call *call)
{
    return (void *)(intptr_t)is_prime(*(const uint64_t *)arg);
}

int main(void)
{
    void *args[NPRIMES];
    cf_executor *executor = NULL;
    cf_map *results = NULL;
    int err, wrong = 0;
    size_t i = 0;

    for (size_t k = 0; k < NPRIMES; k++)
        args[k] = (void *)&PRIMES[k];
    if ((err = cf_thread_pool_new(NULL, &executor)) != CF_OK ||
        (err = cf_executor_map(executor, is_prime_task, args, NPRIMES, NULL,
                               &results)) != CF_OK)
        goto out;
    void *prime;
    for (; (err = cf_map_next(results, &prime, NULL)) == CF_OK; i++) {
        printf("%llu is prime: %s\n", (unsigned long long)PRIMES[i],
               prime ? "True" : "False");
        /* Check against a serial run in this thread. */
        if ((prime != NULL) != is_prime(PRIMES[i])) {
            fprintf(stderr, "wrong answer for %llu\n",
                    (unsigned long long)PRIMES[i]);
            wrong++;
        }
    }
    if (err == CF_EEND && i == NPRIMES) /* the end, and not too soon */
        err = CF_OK;
out:
    if (err != CF_OK)
        fprintf(stderr, "thread_primes: %s\n", cf_strerror(err));
    cf_map_free(results);
    cf_executor_free(executor);
    return err == CF_OK && wrong == 0 ? 0 : 1;
}
