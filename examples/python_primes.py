"""The Python documentation's ThreadPoolExecutor and as_completed examples,
with `import cfutures as futures` in place of `from concurrent import
futures` (run by `make run` with the extension built for Debian's python3).
"""
import math

import cfutures as futures

PRIMES = [
    112272535095293,
    112582705942171,
    112272535095293,
    115280095190773,
    115797848077099,
    1099726899285419]


def is_prime(n):
    if n < 2:
        return False
    if n == 2:
        return True
    if n % 2 == 0:
        return False
    sqrt_n = int(math.floor(math.sqrt(n)))
    for i in range(3, sqrt_n + 1, 2):
        if n % i == 0:
            return False
    return True


def main():
    with futures.ThreadPoolExecutor(max_workers=4) as executor:
        for number, prime in zip(PRIMES, executor.map(is_prime, PRIMES)):
            print('%d is prime: %s' % (number, prime))
        by_future = {executor.submit(pow, 2, n): n for n in (10, 20, 30)}
        for future in futures.as_completed(by_future):
            print('2 ** %d = %d' % (by_future[future], future.result()))
        bad = executor.submit(int, 'not a number')
        done, _ = futures.wait([bad], return_when=futures.FIRST_EXCEPTION)
        print('failed as expected:', repr(bad.exception()))
    assert isinstance(bad, __import__('concurrent.futures').futures.Future)


if __name__ == '__main__':
    main()
