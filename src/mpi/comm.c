/* comm.c - the root's communication thread: the only caller of MPI on the
 * root once the executor exists (see root.h for the data flow).
 *
 * Its life: check every worker rank in (HELLO: the build hash, the
 * options; then the INIT frame with the initializer), then loop: receive
 * every frame that has arrived, complete sends, and send queued tasks to
 * the ready rank with the fewest in flight while it has fewer than
 * `prefetch`. It leaves once shut down (or broken) with nothing queued,
 * in flight or being sent, telling every worker rank EXIT.
 *
 * Prefetch: with `prefetch` 0 the number of tasks kept in flight at a
 * rank follows how long its tasks take: enough to cover about 2 ms of
 * work (so a rank never runs dry while this thread sleeps between polls,
 * and tiny tasks stream), at least 2 and at most 64; long tasks get 2, so
 * a slow task holds back at most one other while a rank falls idle.
 *
 * Waiting (cfutures_mpi.h): after the last event it polls tightly for
 * `spin`, then sleeps on the `wake` condition with a timeout doubling up
 * to `max_sleep` (submits and shutdown wake it at once; MPI cannot, so
 * the timeout bounds how late a result is seen); with nothing in flight
 * it sleeps until woken.
 */
#include "mpi/root.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A message being sent; its buffer is freed once MPI is done with it (a
 * task's result may come back before the send completes locally). */
typedef struct sending {
    struct sending *next;
    cf_buffer msg;
    MPI_Request *reqs;
    int n;
} sending;

typedef struct comm_state {
    mpi_exec *m;
    sending *sends;
    size_t seen_submits;
    bool maybe_queued;
    int ready; /* ranks READY */
} comm_state;

static void fail_break(mpi_exec *m, const char *fmt, int rank, const char *why)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, rank, why);
    cf__mpi_break(m, msg);
}

/* ------------------------------------------------------------------------ */
/* Check-in                                                                 */

static void check_in(comm_state *c)
{
    mpi_exec *m = c->m;
    uint64_t hash = 0;
    cf__remote_program_hash(&hash);
    uint64_t hello[CF__MPI_HELLO_WORDS] = {
        CF__MPI_MAGIC, hash, m->isolate ? CF__MPI_FLAG_ISOLATE : 0,
        (uint64_t)m->wait.spin_ns, (uint64_t)m->wait.max_sleep_ns,
        (uint64_t)m->max_message};
    for (int r = 0; r < m->size; r++)
        if (r != m->me)
            MPI_Send(hello, CF__MPI_HELLO_WORDS, MPI_UINT64_T, r,
                     CF__MPI_TAG_HELLO, m->comm);
    char why[256] = "";
    for (int i = 0; i < m->n_workers; i++) {
        MPI_Status st;
        uint64_t reply[CF__MPI_REPLY_WORDS] = {0};
        cf__mpi_wait_message(m->comm, MPI_ANY_SOURCE, CF__MPI_TAG_HELLO,
                             &m->wait, &st);
        MPI_Recv(reply, CF__MPI_REPLY_WORDS, MPI_UINT64_T, st.MPI_SOURCE,
                 CF__MPI_TAG_HELLO, m->comm, MPI_STATUS_IGNORE);
        m->ranks[st.MPI_SOURCE].pid = (long)reply[2];
        if ((reply[0] != CF__MPI_MAGIC || reply[1] != hash) && !why[0])
            snprintf(why, sizeof why, "MPI rank %d (pid %ld) runs another "
                     "build of the program than the root%s (executable "
                     "hash %016llx, the root's %016llx): every rank must "
                     "run the same binary", st.MPI_SOURCE, (long)reply[2],
                     m->me < 0 ? " (the spawning process)" : "",
                     (unsigned long long)reply[1], (unsigned long long)hash);
    }
    if (why[0]) {
        cf__mpi_break(m, why);
        return;
    }
    pthread_mutex_lock(&m->lock);
    bool release_only = m->shutdown && !m->q_head;
    pthread_mutex_unlock(&m->lock);
    cf_buffer init;
    cf__remote_buffer_init(&init);
    if (!release_only &&
        cf__remote_encode_init(&init, m->initializer, m->initarg) != CF_OK) {
        cf__mpi_break(m, "MPI executor: no memory for the INIT message");
        release_only = true;
    }
    for (int r = 0; r < m->size && !release_only; r++) {
        if (r == m->me)
            continue;
        cf__mpi_send(m->comm, r, init.data, init.len, m->max_message);
        m->ranks[r].state = R_INIT;
        m->n_pending_init++;
    }
    cf__remote_buffer_destroy(&init);
}

/* ------------------------------------------------------------------------ */
/* Receiving                                                                */

static void on_init_reply(comm_state *c, int r, const cf__wire_header *h,
                          const unsigned char *p)
{
    mpi_exec *m = c->m;
    mrank *rk = &m->ranks[r];
    if (rk->state != R_INIT) {
        fail_break(m, "MPI executor: rank %d answered INIT twice%s", r, "");
        return;
    }
    m->n_pending_init--;
    if (h->type == CF__MSG_READY) {
        rk->state = R_READY;
        c->ready++;
        c->maybe_queued = true;
        return;
    }
    rk->state = R_DONE;
    cf__wire_status st;
    char why[300] = "(malformed message)";
    if (cf__remote_decode_status(p, (size_t)h->len, &st) == CF_OK)
        snprintf(why, sizeof why, "%.*s", (int)(st.len > 250 ? 250 : st.len),
                 (const char *)st.data);
    char msg[400];
    snprintf(msg, sizeof msg, "MPI rank %d (pid %ld): the initializer "
             "failed: %s", r, rk->pid, why);
    cf__mpi_break(m, msg);
}

static void on_result(comm_state *c, int r, const cf__wire_header *h,
                      const unsigned char *p)
{
    mpi_exec *m = c->m;
    mrank *rk = &m->ranks[r];
    mtask *t = rk->head;
    if (!t || t->id != h->id) {
        fail_break(m, "MPI executor: rank %d sent a result for no task it "
                   "was given%s", r, "");
        return;
    }
    rk->head = t->next;
    if (!rk->head)
        rk->tail = NULL;
    /* While the rank had more queued, the gap between two results is the
     * time of one task there. */
    int64_t now = cf__mpi_now_ns();
    if (rk->in_flight > 1 && rk->last_result_ns) {
        double dt = (double)(now - rk->last_result_ns);
        rk->task_ns = rk->task_ns ? 0.8 * rk->task_ns + 0.2 * dt : dt;
    }
    rk->last_result_ns = now;
    rk->in_flight--;
    /* A future failed by a break meanwhile keeps that failure. */
    if (!cf_future_done(t->f))
        cf__remote_finish(t->f, h, p, t->codec, t->chunk);
    atomic_fetch_sub(&m->n_unfinished, 1);
    cf__mpi_task_free(t);
    c->maybe_queued = true;
}

static bool receive(comm_state *c)
{
    mpi_exec *m = c->m;
    bool any = false;
    for (;;) {
        int flag = 0;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, CF__MPI_TAG_FRAME, m->comm, &flag,
                       &st) != MPI_SUCCESS || !flag)
            return any;
        any = true;
        cf__wire_header h;
        int r = st.MPI_SOURCE;
        int rc = cf__mpi_recv_frame(m->comm, &st, &m->in, &h);
        if (rc != CF_OK) {
            fail_break(m, "MPI executor: could not receive a message from "
                       "rank %d: %s", r, cf_strerror(rc));
            continue;
        }
        const unsigned char *p = m->in.data + CF__WIRE_HEADER_SIZE;
        if (h.type == CF__MSG_READY || h.type == CF__MSG_INIT_FAILED)
            on_init_reply(c, r, &h, p);
        else
            on_result(c, r, &h, p);
        if (m->in.cap > ((size_t)4 << 20)) {
            cf__remote_buffer_destroy(&m->in); /* a huge result went by */
            cf__remote_buffer_init(&m->in);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Sending                                                                  */

static bool test_sends(comm_state *c)
{
    bool any = false;
    for (sending **link = &c->sends; *link;) {
        sending *s = *link;
        int done = 0;
        MPI_Testall(s->n, s->reqs, &done, MPI_STATUSES_IGNORE);
        if (!done) {
            link = &s->next;
            continue;
        }
        *link = s->next;
        cf__remote_buffer_destroy(&s->msg);
        free(s->reqs);
        free(s);
        any = true;
    }
    return any;
}

/* How many tasks rank `rk` may have in flight (see the file header). */
static int room_of(const mpi_exec *m, const mrank *rk)
{
    if (m->prefetch)
        return m->prefetch;
    if (rk->task_ns <= 0)
        return 8; /* not measured yet */
    double n = 2e6 / rk->task_ns;
    return n >= 64 ? 64 : n <= 2 ? 2 : (int)n;
}

/* The ready rank with the fewest tasks in flight, if it has room. */
static int pick_rank(const mpi_exec *m)
{
    int best = -1;
    for (int r = 0; r < m->size; r++) {
        const mrank *rk = &m->ranks[r];
        if (rk->state == R_READY && rk->in_flight < room_of(m, rk) &&
            (best < 0 || rk->in_flight < m->ranks[best].in_flight))
            best = r;
    }
    return best;
}

static mtask *pop_queue(mpi_exec *m, comm_state *c)
{
    pthread_mutex_lock(&m->lock);
    c->seen_submits = atomic_load(&m->n_submits);
    mtask *t = m->q_head;
    if (t) {
        m->q_head = t->next;
        if (!m->q_head)
            m->q_tail = NULL;
        m->n_queued--;
        t->next = NULL;
    }
    c->maybe_queued = m->q_head != NULL;
    pthread_mutex_unlock(&m->lock);
    return t;
}

static void send_task(comm_state *c, int r, mtask *t)
{
    mpi_exec *m = c->m;
    sending *s = calloc(1, sizeof *s);
    int rc = s ? cf__mpi_isend(m->comm, r, t->msg.data, t->msg.len,
                               m->max_message, &s->reqs, &s->n)
               : CF_ENOMEM;
    if (rc != CF_OK) {
        free(s);
        cf__remote_fail(t->f, rc, "MPI executor: could not send the task");
        atomic_fetch_sub(&m->n_unfinished, 1);
        cf__mpi_task_free(t);
        return;
    }
    s->msg = t->msg; /* the send owns the bytes now */
    cf__remote_buffer_init(&t->msg);
    s->next = c->sends;
    c->sends = s;
    mrank *rk = &m->ranks[r];
    if (rk->tail)
        rk->tail->next = t;
    else
        rk->head = t;
    rk->tail = t;
    rk->in_flight++;
}

static bool dispatch(comm_state *c)
{
    mpi_exec *m = c->m;
    bool any = false;
    for (;;) {
        int r = pick_rank(m);
        if (r < 0)
            return any;
        if (!c->maybe_queued && atomic_load(&m->n_submits) == c->seen_submits)
            return any;
        mtask *t = pop_queue(m, c);
        if (!t)
            return any;
        any = true;
        /* Cancelled while queued: it never runs. */
        if (cf_future_set_running_or_notify_cancel(t->f) != CF_OK) {
            atomic_fetch_sub(&m->n_unfinished, 1);
            cf__mpi_task_free(t);
            continue;
        }
        send_task(c, r, t);
    }
}

/* ------------------------------------------------------------------------ */
/* The loop                                                                 */

static bool outstanding(const comm_state *c)
{
    const mpi_exec *m = c->m;
    if (c->sends || m->n_pending_init)
        return true;
    for (int r = 0; r < m->size; r++)
        if (m->ranks[r].in_flight)
            return true;
    return false;
}

/* Done: shut down or broken, nothing queued or under way. */
static bool ending(comm_state *c)
{
    mpi_exec *m = c->m;
    if (outstanding(c))
        return false;
    pthread_mutex_lock(&m->lock);
    bool end = (m->shutdown || m->broken) &&
               (!m->q_head || m->broken || c->ready == 0);
    pthread_mutex_unlock(&m->lock);
    return end;
}

static void idle(comm_state *c)
{
    mpi_exec *m = c->m;
    bool busy = outstanding(c);
    /* Spinning also with nothing in flight: the next submit of a
     * back-to-back caller is then seen without a futex wake-up. */
    int64_t ns = cf__mpi_backoff_next(&m->wait);
    if (ns == 0)
        return; /* still spinning */
    if (!busy)
        ns = -1; /* nothing can arrive: sleep until a submit or shutdown */
    pthread_mutex_lock(&m->lock);
    bool work = m->q_head && pick_rank(m) >= 0;
    if (!work && !m->shutdown && !m->broken) {
        m->sleeping = true;
        if (ns < 0) {
            pthread_cond_wait(&m->wake, &m->lock);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t t = ts.tv_nsec + ns;
            ts.tv_sec += (time_t)(t / 1000000000);
            ts.tv_nsec = (long)(t % 1000000000);
            pthread_cond_timedwait(&m->wake, &m->lock, &ts);
        }
        m->sleeping = false;
    }
    pthread_mutex_unlock(&m->lock);
    if (!busy)
        cf__mpi_backoff_reset(&m->wait);
}

static void release_workers(mpi_exec *m)
{
    cf_buffer exit_msg;
    cf__remote_buffer_init(&exit_msg);
    if (cf__remote_encode_exit(&exit_msg) == CF_OK)
        for (int r = 0; r < m->size; r++)
            if (r != m->me)
                cf__mpi_send(m->comm, r, exit_msg.data, exit_msg.len,
                             m->max_message);
    cf__remote_buffer_destroy(&exit_msg);
}

void *cf__mpi_comm_main(void *arg)
{
    mpi_exec *m = arg;
    comm_state c = {.m = m, .maybe_queued = true};
    if (m->ex)
        cf__remote_enter_executor(m->ex);
    cf__mpi_backoff_reset(&m->wait);
    check_in(&c);
    for (;;) {
        bool any = receive(&c);
        any |= test_sends(&c);
        any |= dispatch(&c);
        if (ending(&c))
            break;
        if (any)
            cf__mpi_backoff_reset(&m->wait);
        else
            idle(&c);
    }
    release_workers(m);
    MPI_Comm_free(&m->comm);
    pthread_mutex_lock(&m->lock);
    m->finished = true;
    pthread_cond_broadcast(&m->finished_cond);
    pthread_mutex_unlock(&m->lock);
    return NULL;
}
