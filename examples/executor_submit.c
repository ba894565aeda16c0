/* executor_submit.c - Executor.submit(), from the Python docs:
 *
 *     with ThreadPoolExecutor(max_workers=1) as executor:
 *         future = executor.submit(pow, 323, 1235)
 *         print(future.result())
 *
 * C has no big integers, so the task computes 323**1235 exactly with a
 * small schoolbook bignum and returns it as a malloc'd decimal string. A
 * thread pool hands the result pointer back as is: after cf_future_result()
 * the caller owns the string and frees it (the future never does).
 * main() then checks the answer independently, so a wrong result fails. */
#include <cfutures.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIMB_BASE 1000000000u /* base 10^9: each limb prints as 9 digits */

struct pow_args {
    uint32_t base, exp;
};

/* pow(base, exp) as a decimal string: limbs little-endian in base 10^9,
 * multiplied by `base` exp times (small exponents; no squaring needed). */
static void *big_pow(void *arg, cf_call *call)
{
    const struct pow_args *a = arg;
    size_t cap = (size_t)(a->exp * log10(a->base + 1.0) / 9) + 2, n = 1;
    uint32_t *limb = malloc(cap * sizeof *limb);
    char *text = malloc(cap * 9 + 1);
    if (limb == NULL || text == NULL) {
        free(limb);
        free(text);
        return cf_fail(call, CF_ENOMEM, "no memory for %zu limbs", cap);
    }
    limb[0] = 1;
    for (uint32_t e = 0; e < a->exp; e++) {
        uint64_t carry = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t v = (uint64_t)limb[i] * a->base + carry;
            limb[i] = (uint32_t)(v % LIMB_BASE);
            carry = v / LIMB_BASE;
        }
        if (carry != 0)
            limb[n++] = (uint32_t)carry; /* base < 10^9: one limb suffices */
    }
    /* Most significant limb without padding, the others as 9 digits. */
    int len = sprintf(text, "%u", (unsigned)limb[n - 1]);
    for (size_t i = n - 1; i-- > 0;)
        len += sprintf(text + len, "%09u", (unsigned)limb[i]);
    free(limb);
    return text;
}

/* base**exp mod m by square-and-multiply (m < 2^32, so no overflow). */
static uint64_t pow_mod(uint64_t base, uint32_t exp, uint64_t m)
{
    uint64_t r = 1 % m;
    for (base %= m; exp != 0; exp >>= 1, base = base * base % m)
        if (exp & 1)
            r = r * base % m;
    return r;
}

/* The decimal string's value mod m (m < 2^32), digit by digit. */
static uint64_t text_mod(const char *digits, uint64_t m)
{
    uint64_t r = 0;
    for (; *digits; digits++)
        r = (r * 10 + (uint64_t)(*digits - '0')) % m;
    return r;
}

int main(void)
{
    struct pow_args args = {323, 1235};
    cf_thread_pool_options opts = {.max_workers = 1};
    cf_executor *executor = NULL;
    cf_future *future = NULL;
    void *value = NULL;
    int err;

    if ((err = cf_thread_pool_new(&opts, &executor)) != CF_OK ||
        (err = cf_executor_submit(executor, big_pow, &args, &future)) ||
        (err = cf_future_result(future, CF_FOREVER, &value)) != CF_OK) {
        fprintf(stderr, "executor_submit: %s\n", cf_strerror(err));
        cf_future_release(future);
        cf_executor_free(executor);
        return 1;
    }
    cf_future_release(future);
    cf_executor_free(executor); /* the `with` block ends: shutdown(wait) */

    char *digits = value; /* ours now: the thread pool passed it as is */
    puts(digits);

    /* Check independently of the bignum: the digit count and leading
     * digits from logarithms, and the whole value modulo three numbers
     * (10^9 gives the last 9 digits) by modular exponentiation. */
    static const uint64_t moduli[] = {1000000000, 2147483647, 4294967291};
    double lg = args.exp * log10(args.base);
    size_t want_len = (size_t)floor(lg) + 1, len = strlen(digits);
    char head[16];
    snprintf(head, sizeof head, "%.0f", floor(pow(10.0, lg - floor(lg) + 5)));
    int ok = len == want_len && strspn(digits, "0123456789") == len &&
             strncmp(digits, head, strlen(head)) == 0;
    for (size_t i = 0; i < sizeof moduli / sizeof moduli[0]; i++)
        ok = ok && text_mod(digits, moduli[i]) ==
                       pow_mod(args.base, args.exp, moduli[i]);
    if (!ok)
        fprintf(stderr, "wrong: %zu digits (want %zu, starting %s)\n", len,
                want_len, head);
    free(digits);
    return ok ? 0 : 1;
}
