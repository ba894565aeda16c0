/* event_loop.c - futures in an epoll loop through a completion queue.
 *
 * An event loop that also serves sockets, timers or a GUI cannot block in
 * cf_future_result(). It watches the queue's descriptor with the rest of
 * its descriptors instead, and drains the finished futures when it turns
 * readable: here results of a thread pool and of a hand-made future that
 * the loop itself completes when a "timer" fires (a pipe another thread
 * writes to, standing in for any other event source).
 */
#include <cfutures.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

enum { TASKS = 8 };

static void *square(void *arg, cf_call *call)
{
    (void)call;
    return (void *)((intptr_t)arg * (intptr_t)arg);
}

int main(void)
{
    cf_executor *ex = NULL;
    cf_completion_queue *q = NULL;
    cf_future *timer_future = NULL;
    int ep = -1, timer[2] = {-1, -1}, failures = 0;
    intptr_t sum = 0;

    if (cf_thread_pool_new(NULL, &ex) != CF_OK ||
        cf_completion_queue_new(&q) != CF_OK ||
        cf_future_new(&timer_future) != CF_OK || pipe(timer) != 0 ||
        (ep = epoll_create1(0)) < 0)
        return 1;
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.fd = cf_completion_queue_fd(q);
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ev.data.fd, &ev) != 0)
        return 1;
    ev.data.fd = timer[0];
    if (epoll_ctl(ep, EPOLL_CTL_ADD, timer[0], &ev) != 0)
        return 1;

    for (intptr_t i = 1; i <= TASKS; i++) {
        cf_future *f;
        if (cf_executor_submit(ex, square, (void *)i, &f) != CF_OK ||
            cf_completion_queue_add(q, f) != CF_OK)
            return 1;
        cf_future_release(f); /* the queue holds its own reference */
    }
    if (cf_completion_queue_add(q, timer_future) != CF_OK ||
        write(timer[1], "t", 1) != 1) /* the timer "fires" */
        return 1;

    int reported = 0;
    while (reported < TASKS + 1) {
        struct epoll_event got[2];
        int n = epoll_wait(ep, got, 2, 10000);
        if (n <= 0) {
            fprintf(stderr, "epoll_wait: nothing for 10 s\n");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (got[i].data.fd == timer[0]) { /* another event source */
                char c;
                if (read(timer[0], &c, 1) != 1 ||
                    cf_future_set_result(timer_future, (void *)-1) != CF_OK)
                    failures++;
                continue;
            }
            cf_future *done[16]; /* level-triggered: one drain per wake */
            size_t k = 0;
            if (cf_completion_queue_drain(q, done, 16, &k) != CF_OK)
                return 1;
            for (size_t j = 0; j < k; j++) {
                void *v = NULL;
                if (cf_future_result(done[j], 0, &v) != CF_OK)
                    failures++;
                else if (done[j] == timer_future)
                    printf("timer future done\n");
                else
                    sum += (intptr_t)v;
                cf_future_release(done[j]);
                reported++;
            }
        }
    }
    printf("%d futures reported, sum of squares %ld\n", reported, (long)sum);
    if (sum != TASKS * (TASKS + 1) * (2 * TASKS + 1) / 6)
        failures++;
    close(ep);
    close(timer[0]);
    close(timer[1]);
    cf_completion_queue_free(q);
    cf_future_release(timer_future);
    cf_executor_free(ex);
    return failures ? 1 : 0;
}
