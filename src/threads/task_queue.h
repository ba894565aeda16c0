/* task_queue.h - the thread pool's queue of futures, as static inline
 * functions: submit and the workers spend most of their time here, and a
 * call that is not inlined would cost a measurable part of a task.
 *
 * Design: Vyukov's intrusive multi-producer queue. A future is its own
 * node, linked through f->next. A push links its future with one atomic
 * exchange of the tail and never takes a lock, so producers and consumers
 * do not contend. Consumers pop one at a time under their own lock (the
 * pool's pop_lock; these functions do not take it). A `stub` node keeps the
 * queue from ever being empty of nodes, so push and pop meet only when one
 * future is left.
 *
 * The tail, the head and the stub live where the owner puts them: the
 * pool keeps the tail on a cache line that every push exchanges, the head
 * beside its consumers' lock, and the stub apart, because a push writes the
 * stub's link when the queue was empty. So a cf__task_queue is a handle on
 * the three, built by the owner at each use; once inlined it costs nothing.
 */
#ifndef CF_TASK_QUEUE_H
#define CF_TASK_QUEUE_H

#include "core/core.h"

typedef struct cf__task_queue {
    _Atomic(cf_future *) *tail; /* written by every push */
    _Atomic(cf_future *) *head; /* written under the consumers' lock */
    cf_future *stub;            /* the placeholder node; only `next` used */
} cf__task_queue;

/* Sets up an empty queue: head and tail at the stub. */
static inline void cf__queue_init(cf__task_queue q)
{
    atomic_init(&q.stub->next, NULL);
    atomic_init(q.tail, q.stub);
    atomic_init(q.head, q.stub);
}

/* Appends the futures `first` to `last`, linked through `next`, as one
 * push: the links inside the chain are published by the release store
 * that links it in, so consumers see it whole, in order. Any thread, no
 * lock. */
static inline void cf__queue_push_chain(cf__task_queue q, cf_future *first,
                                        cf_future *last)
{
    atomic_store_explicit(&last->next, NULL, memory_order_relaxed);
    /* Sequentially consistent: this exchange is what publishes the future
     * to an idle worker's last look at the queue (see cf__queue_has_work). */
    cf_future *prev = atomic_exchange_explicit(q.tail, last,
                                               memory_order_seq_cst);
    atomic_store_explicit(&prev->next, first, memory_order_release);
}

/* Appends `f`. Any thread, no lock. */
static inline void cf__queue_push(cf__task_queue q, cf_future *f)
{
    cf__queue_push_chain(q, f, f);
}

/* The oldest node (the stub when nothing was pushed since the last pop
 * took the stub's successor). Consumers' lock held. */
static inline cf_future *cf__queue_head(cf__task_queue q)
{
    return atomic_load_explicit(q.head, memory_order_relaxed);
}

/* The link after `f` in the queue, or in a list detached from it. */
static inline cf_future *cf__queue_next(cf_future *f)
{
    return atomic_load_explicit(&f->next, memory_order_relaxed);
}

/* Pops one future, or NULL when the queue is empty or a push is half
 * done. Consumers' lock held. */
static inline cf_future *cf__queue_pop(cf__task_queue q)
{
    cf_future *head = cf__queue_head(q);
    cf_future *next = atomic_load_explicit(&head->next, memory_order_acquire);
    if (head == q.stub) {
        if (!next)
            return NULL;
        atomic_store_explicit(q.head, next, memory_order_relaxed);
        head = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (!next) {
        /* `head` may be the last node: put the stub behind it so it can be
         * taken. If a push is under way, wait for it instead. */
        if (atomic_load_explicit(q.tail, memory_order_acquire) != head)
            return NULL;
        cf__queue_push(q, q.stub);
        next = atomic_load_explicit(&head->next, memory_order_acquire);
        if (!next)
            return NULL;
    }
    atomic_store_explicit(q.head, next, memory_order_relaxed);
    return head;
}

/* True if a future is queued, counting one whose push is half done. The
 * head is a real future until it is popped; with the stub at the head, the
 * queue is empty only while the stub is also the tail, which every push
 * changes first. The tail is read last and only when the links show
 * nothing: searching workers poll the links, and leave the tail's line to
 * the submitters. Any thread, no lock. */
static inline bool cf__queue_has_work(cf__task_queue q)
{
    if (atomic_load(q.head) != q.stub ||
        atomic_load_explicit(&q.stub->next, memory_order_acquire) != NULL)
        return true;
    return atomic_load(q.tail) != q.stub;
}

/* Pops a future if the queue has one, retrying over half-done pushes.
 * Consumers' lock held. */
static inline cf_future *cf__queue_pop_available(cf__task_queue q)
{
    for (unsigned spins = 0; cf__queue_has_work(q); spins++) {
        cf_future *f = cf__queue_pop(q);
        if (f)
            return f;
        /* A submitter is between its exchange and its link: a few
         * instructions, unless it was preempted. */
        if (spins < 64)
            cf__cpu_relax();
        else
            cf__yield();
    }
    return NULL;
}

/* Detaches everything queued (a push still half done stays behind, for a
 * worker or a draining submit). Consumers' lock held. Returns a list
 * linked through next, oldest first, and its length in `*n` (may be
 * NULL). */
static inline cf_future *cf__queue_take_all(cf__task_queue q, int *n)
{
    cf_future *first = NULL, *last = NULL, *f;
    int count = 0;
    while ((f = cf__queue_pop_available(q)) != NULL) {
        atomic_store_explicit(&f->next, NULL, memory_order_relaxed);
        if (last)
            atomic_store_explicit(&last->next, f, memory_order_relaxed);
        else
            first = f;
        last = f;
        count++;
    }
    if (n)
        *n = count;
    return first;
}

#endif /* CF_TASK_QUEUE_H */
