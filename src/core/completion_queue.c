/* completion_queue.c - futures reported through a descriptor an event loop
 * polls (cf_completion_queue_*).
 *
 * Design: the queue is a waiter (core.h) with one wait node per future
 * added, the same machinery as as_completed: a completing future notifies
 * the queue under its own lock, and the notification appends the node to
 * the queue's done list (under the queue's spinlock), so the list is in
 * completion order and each added future is on it once. The descriptor
 * (platform/wakefd.h: an eventfd, or a pipe) is readable while the list
 * is not empty:
 *
 *   notify:  lock; was_empty = list empty; append; unlock;
 *            if was_empty: signal fd; signalled = true
 *   drain:   if exchange(signalled, false): clear fd
 *            lock; take up to `cap`; left = list not empty; unlock;
 *            if left: signal fd; signalled = true
 *
 * No lost wake-up: the fd is cleared *before* the take, so a future
 * appended after the take finds the list empty and signals after the
 * clear, and one appended before it is taken (or left, and re-signalled).
 * No busy loop: every signal is followed by `signalled = true`, so a
 * drain after it clears the fd; a stale readiness lasts one wake-up at
 * most. Signals happen only when the list turns non-empty, so a burst of
 * completions costs one system call, not one each.
 *
 * Entries not yet drained are on `entries` (doubly linked) so that free
 * can find them: it removes each node from its future under that future's
 * lock, after which no completer touches the queue. A drain does the same
 * for each entry it takes: a completer may still be between its append
 * and its signal, which it makes while holding the future's lock.
 *
 * Lock order: future lock, then queue lock (notifications); the draining
 * thread takes them one at a time.
 */
#include "core/core.h"
#include "platform/wakefd.h"

#include <stddef.h>
#include <stdlib.h>

typedef struct entry {
    cf__wait_node node;
    struct entry *prev, *next; /* in q->entries; guarded by q->w.lock */
} entry;

struct cf_completion_queue {
    cf__waiter w;              /* lock, notify and the done list */
    entry *entries;            /* added, not yet drained */
    size_t size;               /* their number; guarded by w.lock */
    atomic_bool signalled;     /* the fd may be readable */
    cf__wakefd fd;
};

static cf_completion_queue *queue_of(cf__waiter *w)
{
    return (cf_completion_queue *)((char *)w -
                                   offsetof(cf_completion_queue, w));
}

static void signal_fd(cf_completion_queue *q)
{
    cf__wakefd_signal(&q->fd);
    atomic_store(&q->signalled, true);
}

/* Appends a done entry; signals if the list was empty. */
static void append_done(cf_completion_queue *q, cf__wait_node *node)
{
    node->done_next = NULL;
    cf__spin_lock(&q->w.lock);
    bool was_empty = q->w.done_head == NULL;
    if (q->w.done_tail)
        q->w.done_tail->done_next = node;
    else
        q->w.done_head = node;
    q->w.done_tail = node;
    cf__spin_unlock(&q->w.lock);
    if (was_empty)
        signal_fd(q);
}

/* Called under the future's lock; a non-blocking write at most. */
static void notify_queue(cf__waiter *w, cf__wait_node *node, cf_future *f)
{
    (void)f;
    append_done(queue_of(w), node);
}

int cf__completion_queue_open(bool use_pipe, cf_completion_queue **out)
{
    if (!out)
        return CF_EINVAL;
    cf_completion_queue *q = calloc(1, sizeof *q);
    if (!q)
        return CF_ENOMEM;
    int rc = cf__wakefd_open(&q->fd, use_pipe);
    if (rc != CF_OK) {
        free(q);
        return rc;
    }
    cf__event_init(&q->w.event); /* unused, but part of every waiter */
    atomic_init(&q->w.lock.held, false);
    atomic_init(&q->signalled, false);
    q->w.notify = notify_queue;
    *out = q;
    return CF_OK;
}

int cf_completion_queue_new(cf_completion_queue **out)
{
    return cf__completion_queue_open(false, out);
}

int cf_completion_queue_fd(const cf_completion_queue *q)
{
    return q ? q->fd.read_fd : CF_EINVAL;
}

size_t cf_completion_queue_size(cf_completion_queue *q)
{
    if (!q)
        return 0;
    cf__spin_lock(&q->w.lock);
    size_t n = q->size;
    cf__spin_unlock(&q->w.lock);
    return n;
}

int cf_completion_queue_add(cf_completion_queue *q, cf_future *f)
{
    if (!q || !f)
        return CF_EINVAL;
    entry *e = malloc(sizeof *e);
    if (!e)
        return CF_ENOMEM;
    e->node.waiter = &q->w;
    e->prev = NULL;
    cf_future_retain(f);
    /* On the entries list before the node can be notified, so that a
     * concurrent drain that takes it finds it there to unlink. */
    cf__spin_lock(&q->w.lock);
    e->next = q->entries;
    if (e->next)
        e->next->prev = e;
    q->entries = e;
    q->size++;
    cf__spin_unlock(&q->w.lock);
    if (!cf__wait_node_install(f, &e->node))
        append_done(q, &e->node); /* done already */
    return CF_OK;
}

/* Takes up to `cap` done entries off the list. Returns how many; sets
 * *left when more remain. */
static size_t take(cf_completion_queue *q, entry **taken, size_t cap,
                   bool *left)
{
    size_t n = 0;
    cf__spin_lock(&q->w.lock);
    while (n < cap && q->w.done_head) {
        cf__wait_node *node = q->w.done_head;
        q->w.done_head = node->done_next;
        entry *e = (entry *)node; /* node is the entry's first member */
        if (e->prev)
            e->prev->next = e->next;
        else
            q->entries = e->next;
        if (e->next)
            e->next->prev = e->prev;
        taken[n++] = e;
    }
    if (!q->w.done_head)
        q->w.done_tail = NULL;
    q->size -= n;
    *left = q->w.done_head != NULL;
    cf__spin_unlock(&q->w.lock);
    return n;
}

int cf_completion_queue_drain(cf_completion_queue *q, cf_future **out,
                              size_t cap, size_t *n_out)
{
    if (!q || !out || !n_out || cap == 0)
        return CF_EINVAL;
    if (atomic_exchange(&q->signalled, false))
        cf__wakefd_clear(&q->fd);
    size_t total = 0;
    bool left = false;
    do {
        /* Entries are collected in small batches: the `out` array holds
         * futures, and each entry is freed only after its node is
         * removed, outside the queue's lock. */
        entry *batch[64];
        size_t want = cap - total < 64 ? cap - total : 64;
        size_t n = take(q, batch, want, &left);
        for (size_t i = 0; i < n; i++) {
            /* Waits out a completer still signalling under its lock. */
            cf__wait_node_remove(&batch[i]->node);
            out[total + i] = batch[i]->node.future; /* the queue's ref */
            free(batch[i]);
        }
        total += n;
        if (n < want)
            break;
    } while (left && total < cap);
    if (left)
        signal_fd(q);
    *n_out = total;
    return CF_OK;
}

void cf_completion_queue_free(cf_completion_queue *q)
{
    if (!q)
        return;
    entry *e = q->entries;
    while (e) {
        entry *next = e->next;
        /* After this the future never notifies the queue again. */
        cf__wait_node_remove(&e->node);
        cf_future_release(e->node.future);
        free(e);
        e = next;
    }
    cf__event_destroy(&q->w.event);
    cf__wakefd_close(&q->fd);
    free(q);
}
