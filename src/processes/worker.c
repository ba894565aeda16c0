/* worker.c - the worker side of the process pool: the loop that runs
 * tasks.
 *
 * Design: a worker is a process started by its pool in one of the ways of
 * spawn.c, which reaches this loop through worker_entry.c (or straight
 * from fork()). It reads frames from its channel (a socket, or a pipe each
 * way) and writes results back.
 *
 * The loop is strictly serial: read frames, run each task, append its
 * result, and flush the results before waiting for anything, so a burst
 * of small results costs one write. With the pool's shared slot, a task
 * frame is only started once this worker claimed it in shared memory
 * (skipped if it was cancelled or moved to another worker meanwhile); see
 * cf__shm_slot. Waiting for input busy-waits briefly before it sleeps.
 * Running a task is worker_run.c's job, INIT worker_init.c's, finding the
 * code a frame names worker_code.c's. The worker keeps only its socket;
 * its parent's death ends it (EOF on the socket, and PR_SET_PDEATHSIG).
 * A task that kills it with SIGSEGV, SIGBUS, SIGFPE, SIGILL or SIGABRT
 * first sends its backtrace as a CRASH frame on the channel
 * (platform/crash.h: armed for the worker loop's life, so a worker
 * program's own code before and after keeps its handlers); the pool
 * names it in the task's error.
 * cf__process_worker_active() is true on its thread, so a task calling
 * back into an executor gets CF_EDEADLK.
 */
#include "core/core.h"

#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "platform/crash.h"
#include "platform/process.h"
#include "processes/registry.h"
#include "processes/shm_slot.h"
#include "processes/wire.h"
#include "processes/worker.h"

typedef struct worker {
    int read_fd;
    int write_fd;
    const cf_worker_options *opts; /* the worker program's, or NULL */
    cf__shm_slot *slot; /* shared counters, or NULL */
    uint_fast64_t seen_to; /* slot->to_worker when we last read */
    unsigned k;    /* number of the last task frame (claim words) */
    cf_buffer in;  /* bytes received; frames start at in_pos */
    size_t in_pos;
    cf_buffer out; /* results not yet written */
    unsigned char nudge[CF__WIRE_HEADER_SIZE]; /* a CLAIMED frame */
    bool ready;    /* INIT handled */
    cf__code_cache cache;
    /* The running task's cancel flag without a shared slot (the pool's
     * STOP frame raises it; with a slot the flag lives there), the id of
     * that task, and where stop_poll() has got to: frames after the
     * task's own in `in` (in_scan), bytes read from the channel while the
     * task runs (peek, scanned up to peek_scan; they join `in` after the
     * task), and when it may look at the channel again. */
    atomic_bool stop;
    uint64_t stop_id;
    size_t in_scan;
    cf_buffer peek;
    size_t peek_scan;
    int64_t next_poll;
} worker;

/* The worker whose task runs on this thread, for stop_poll(). */
static _Thread_local worker *polled;

static int handle_init(worker *w, const unsigned char *p, size_t len)
{
    int rc = cf__worker_run_init(&w->cache, w->opts, p, len, &w->out);
    w->ready = rc == CF_OK;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The loop                                                                 */

enum { KEEP_GOING = 0, STOP_CLEAN = 1, STOP_ERROR = 2 };

/* How long a worker busy-waits for its next task before it sleeps: a
 * sleeping wake-up costs tens of microseconds on a virtual machine, the
 * next task of a busy pool is usually closer. */
#define WORKER_SPIN_NS 40000

static bool flush(worker *w);

/* Wakes a sleeping pool: the socket is what its poll() watches. */
static bool nudge_if_asleep(worker *w)
{
    /* seq_cst, after the seq_cst store of ring_head or claim: the pool
     * stores asleep, then reads those (Dekker), so one of us sees it. */
    if (!atomic_load(&w->slot->asleep))
        return true;
    return cf__fd_write_all(w->write_fd, w->nudge, sizeof w->nudge);
}

/* Publishes `len` bytes of frames in the shared ring (see cf__shm_slot).
 * False if they do not fit now. */
static bool ring_put(cf__shm_slot *s, const unsigned char *data, size_t len)
{
    uint64_t head = atomic_load_explicit(&s->ring_head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&s->ring_tail, memory_order_acquire);
    size_t need = 8 + ((len + 7) & ~(size_t)7);
    size_t pos = (size_t)(head % CF__RING_BYTES);
    size_t skip = need > CF__RING_BYTES - pos ? CF__RING_BYTES - pos : 0;
    if (need > CF__RING_BYTES || head + skip + need - tail > CF__RING_BYTES)
        return false;
    if (skip) {
        uint64_t wrap = CF__RING_WRAP;
        memcpy(s->ring + pos, &wrap, 8);
        pos = 0;
    }
    uint64_t n = len;
    memcpy(s->ring + pos, &n, 8);
    memcpy(s->ring + pos + 8, data, len);
    atomic_store(&s->ring_head, head + skip + need); /* seq_cst: see nudge */
    return true;
}

/* Sends the results gathered so far and tells the pool so: through the
 * shared ring if they fit, else the socket. */
static bool send_results(worker *w)
{
    if (!w->out.len)
        return true;
    if (w->slot && ring_put(w->slot, w->out.data, w->out.len)) {
        w->out.len = 0;
        return nudge_if_asleep(w);
    }
    if (!flush(w))
        return false;
    if (w->slot)
        atomic_fetch_add_explicit(&w->slot->from_worker, 1,
                                  memory_order_release);
    return true;
}

/* Claims task `k` (see cf__shm_slot): true if this worker may run it,
 * false if it was cancelled or taken back. Before a claimed task runs,
 * the results so far go out (callers want them, and they tell the pool
 * the task started); a sleeping manager with nothing to read gets a
 * CLAIMED frame. */
static int claim(worker *w, unsigned k, bool *run)
{
    cf__shm_slot *s = w->slot;
    atomic_uint *word = &s->claim[k % CF__CLAIM_RING];
    unsigned seen = CF__CLAIM(k, CF__CLAIM_PENDING);
    /* seq_cst, then `asleep` is read: the manager stores asleep, then
     * reads the claim words (Dekker), so one of us sees the other. */
    bool mine = atomic_compare_exchange_strong(
        word, &seen, CF__CLAIM(k, CF__CLAIM_RUNNING));
    *run = mine || seen == CF__CLAIM(k, CF__CLAIM_RUNNING);
    if (!*run) {
        atomic_store_explicit(&s->done, k, memory_order_release);
        return CF_OK;
    }
    if (w->out.len)
        return send_results(w) ? CF_OK : CF_ESYS;
    /* A task the pool claimed for us as it sent it needs no word. */
    if (mine)
        return nudge_if_asleep(w) ? CF_OK : CF_ESYS;
    return CF_OK;
}

/* ------------------------------------------------------------------------ */
/* Cancel requests without shared memory                                    */

/* How often a task polling its flag in a loop may look at the channel:
 * one poll() system call per interval, a clock read per call between. */
#define STOP_POLL_NS 1000000

/* Raises the flag if complete frames in data[*pos, len) hold a STOP for
 * the running task; *pos ends at the first incomplete frame. */
static void scan_for_stop(worker *w, const unsigned char *data, size_t len,
                          size_t *pos)
{
    cf__wire_header h;
    while (cf__wire_header_decode(data + *pos, len - *pos, &h) == CF_OK &&
           len - *pos - CF__WIRE_HEADER_SIZE >= h.len) {
        if (h.type == CF__MSG_STOP && h.id == w->stop_id)
            atomic_store_explicit(&w->stop, true, memory_order_relaxed);
        *pos += CF__WIRE_HEADER_SIZE + (size_t)h.len;
    }
}

/* The task's cf_call_cancel_requested() read false: looks for a STOP
 * among the frames already read, then (at most every STOP_POLL_NS) reads
 * what the channel holds, without blocking, into `peek`. Bytes of a frame
 * cut at the end of `in` move to `peek` first, so frames stay whole; the
 * task's own frame, before in_scan, never moves. */
static void stop_poll(const cf_call *call)
{
    (void)call;
    worker *w = polled;
    if (!w)
        return;
    int64_t now = cf__now_ns();
    if (now < w->next_poll)
        return;
    w->next_poll = now + STOP_POLL_NS;
    if (w->peek.len == 0)
        scan_for_stop(w, w->in.data, w->in.len, &w->in_scan);
    struct pollfd p = {w->read_fd, POLLIN, 0};
    if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
        return;
    if (w->peek.len == 0 && w->in_scan < w->in.len) {
        if (cf_buffer_append(&w->peek, w->in.data + w->in_scan,
                             w->in.len - w->in_scan) != CF_OK)
            return;
        w->in.len = w->in_scan;
    }
    if (cf__buffer_reserve(&w->peek, 4096) != CF_OK)
        return;
    ptrdiff_t n = cf__fd_read_some(w->read_fd, w->peek.data + w->peek.len,
                                   w->peek.cap - w->peek.len);
    if (n <= 0)
        return; /* EOF or an error: the loop sees it after the task */
    w->peek.len += (size_t)n;
    scan_for_stop(w, w->peek.data, w->peek.len, &w->peek_scan);
}

/* Runs a task frame with the cancel flag the pool can raise: its entry
 * in the shared slot, or the STOP frames stop_poll() looks for. */
static int run_task(worker *w, const cf__wire_header *h,
                    const unsigned char *payload, unsigned k)
{
    cf_call proto = {.future = NULL};
    if (w->slot) {
        proto.cancel_flag = &w->slot->stop[k % CF__CLAIM_RING];
        return cf__worker_run_task_call(&w->cache, h, payload, &w->out,
                                        &proto);
    }
    atomic_store_explicit(&w->stop, false, memory_order_relaxed);
    w->stop_id = h->id;
    w->in_scan = w->in_pos; /* the frames after this one */
    w->next_poll = 0;
    proto.cancel_flag = &w->stop;
    proto.cancel_poll = stop_poll;
    polled = w;
    int rc = cf__worker_run_task_call(&w->cache, h, payload, &w->out,
                                      &proto);
    polled = NULL;
    /* What was read meanwhile goes on where it was cut (its STOP frames
     * are stale now: handle_frame() skips them). */
    if (w->peek.len && rc == CF_OK)
        rc = cf_buffer_append(&w->in, w->peek.data, w->peek.len);
    w->peek.len = 0;
    w->peek_scan = 0;
    return rc;
}

static int handle_frame(worker *w, const cf__wire_header *h,
                        const unsigned char *payload)
{
    int rc;
    switch (h->type) {
    case CF__MSG_INIT:
        if (w->ready)
            return STOP_ERROR;
        rc = handle_init(w, payload, h->len);
        return rc == CF_OK ? KEEP_GOING : STOP_ERROR;
    case CF__MSG_TASK:
    case CF__MSG_CHUNK:
    case CF__MSG_WORDS: {
        if (!w->ready)
            return STOP_ERROR;
        unsigned k = ++w->k;
        if (w->slot) {
            bool run;
            if (claim(w, k, &run) != CF_OK)
                return STOP_ERROR;
            if (!run)
                return KEEP_GOING; /* cancelled or moved: not a word */
        }
        if (run_task(w, h, payload, k) != CF_OK)
            return STOP_ERROR;
        if (w->slot)
            atomic_store_explicit(&w->slot->done, k, memory_order_release);
        /* A long run of ready tasks still sends results now and then. */
        if (w->out.len > (64u << 10) && !send_results(w))
            return STOP_ERROR;
        return KEEP_GOING;
    }
    case CF__MSG_EXIT:
        return STOP_CLEAN;
    case CF__MSG_STOP:
        return KEEP_GOING; /* for a task already done (or seen running) */
    default:
        return STOP_ERROR;
    }
}

/* Handles every complete frame in the input. */
static int drain_frames(worker *w, size_t *need)
{
    *need = CF__WIRE_HEADER_SIZE;
    for (;;) {
        size_t avail = w->in.len - w->in_pos;
        cf__wire_header h;
        int rc = cf__wire_header_decode(w->in.data + w->in_pos, avail, &h);
        if (rc == CF_EAGAIN)
            return KEEP_GOING;
        if (rc != CF_OK)
            return STOP_ERROR;
        if (avail - CF__WIRE_HEADER_SIZE < h.len) {
            *need = CF__WIRE_HEADER_SIZE + (size_t)h.len;
            return KEEP_GOING;
        }
        const unsigned char *payload =
            w->in.data + w->in_pos + CF__WIRE_HEADER_SIZE;
        w->in_pos += CF__WIRE_HEADER_SIZE + (size_t)h.len;
        int stop = handle_frame(w, &h, payload);
        if (stop != KEEP_GOING)
            return stop;
    }
}

static bool flush(worker *w)
{
    bool ok = cf__fd_write_all(w->write_fd, w->out.data, w->out.len);
    w->out.len = 0;
    /* Keep a modest buffer around, not the largest result ever sent. */
    if (w->out.cap > (4u << 20))
        cf__buffer_destroy(&w->out);
    return ok;
}

/* Moves unread bytes to the front and makes room for `need` of them. */
static bool make_room(worker *w, size_t need)
{
    size_t left = w->in.len - w->in_pos;
    if (w->in_pos > 0) {
        memmove(w->in.data, w->in.data + w->in_pos, left);
        w->in.len = left;
        w->in_pos = 0;
    }
    if (w->in.cap > (4u << 20) && left == 0 && need < (64u << 10))
        cf__buffer_destroy(&w->in);
    size_t want = need > left ? need - left : 0;
    if (want < (64u << 10))
        want = 64u << 10;
    return cf__buffer_reserve(&w->in, want) == CF_OK;
}

/* Waits without a system call until the pool says it has sent something
 * (or the budget runs out). Either way a blocking read follows, so a
 * missed or early signal only costs a sleep, never a message. */
static void spin_for_input(worker *w)
{
    if (!w->slot)
        return;
    int64_t until = 0;
    for (unsigned i = 0;; i++) {
        uint_fast64_t v = atomic_load_explicit(&w->slot->to_worker,
                                               memory_order_acquire);
        if (v != w->seen_to) {
            w->seen_to = v;
            return;
        }
        if (!cf__spin_continue(i, &until, WORKER_SPIN_NS))
            return;
        if ((i & 15) == 15)
            sched_yield(); /* the pool's threads may need this CPU */
    }
}

static int worker_loop(worker *w)
{
    for (;;) {
        size_t need;
        int stop = drain_frames(w, &need);
        if (!send_results(w))
            return 1; /* the parent is gone */
        if (stop != KEEP_GOING)
            return stop == STOP_CLEAN ? 0 : 1;
        if (!make_room(w, need))
            return 1;
        spin_for_input(w);
        ptrdiff_t n = cf__fd_read_some(w->read_fd, w->in.data + w->in.len,
                                       w->in.cap - w->in.len);
        if (n <= 0)
            return 0; /* EOF: the pool let us go, or the parent died */
        w->in.len += (size_t)n;
    }
}

/* Builds the CLAIMED frame once, so waking the pool never allocates. */
static bool make_nudge(worker *w)
{
    cf_buffer b;
    cf__buffer_init(&b);
    size_t start;
    bool ok = cf__wire_begin(&b, CF__MSG_CLAIMED, 0, &start) == CF_OK;
    if (ok) {
        cf__wire_end(&b, start);
        ok = b.len == sizeof w->nudge;
        if (ok)
            memcpy(w->nudge, b.data, sizeof w->nudge);
    }
    cf__buffer_destroy(&b);
    return ok;
}

int cf__worker_main(const cf__worker_link *link, const cf_worker_options *opts)
{
    worker w;
    memset(&w, 0, sizeof w);
    w.read_fd = link->read_fd;
    w.write_fd = link->write_fd;
    w.slot = link->slot;
    w.opts = opts;
    if (w.slot)
        w.seen_to = atomic_load(&w.slot->to_worker);
    cf__buffer_init(&w.in);
    cf__buffer_init(&w.out);
    cf__buffer_init(&w.peek);
    if (!make_nudge(&w) || cf__buffer_reserve(&w.in, 64u << 10) != CF_OK ||
        cf__buffer_reserve(&w.out, 64u << 10) != CF_OK) {
        cf__buffer_destroy(&w.in);
        cf__buffer_destroy(&w.out);
        return 1;
    }
    /* Touch the pages tasks and results go through now, not while they
     * stream (a first touch costs microseconds on a VM). The pool reads
     * nothing of the ring before ring_head moves. */
    memset(w.in.data, 0, w.in.cap);
    memset(w.out.data, 0, w.out.cap);
    if (w.slot)
        memset(w.slot->ring, 0, CF__RING_BYTES);
    /* The CRASH frame's header; the record follows it. Without a trap
     * (no unwinder here) a crash is reported as before, without trace. */
    unsigned char crash_header[CF__WIRE_HEADER_SIZE];
    cf__wire_store_u64(crash_header, CF__MSG_CRASH); /* type, flags 0 */
    cf__wire_store_u64(crash_header + 8, sizeof(cf__crash_record));
    cf__wire_store_u64(crash_header + 16, 0);
    bool trapped = cf__crash_trap_arm(w.write_fd, crash_header,
                                      sizeof crash_header);
    cf__in_process_worker = true;
    int code = worker_loop(&w);
    cf__in_process_worker = false;
    if (trapped)
        cf__crash_trap_disarm();
    cf__buffer_destroy(&w.in);
    cf__buffer_destroy(&w.out);
    cf__buffer_destroy(&w.peek);
    cf__code_cache_destroy(&w.cache);
    /* What tasks printed must not be lost to _exit. */
    fflush(NULL);
    return code;
}
