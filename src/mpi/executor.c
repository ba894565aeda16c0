/* executor.c - the MPI executor's face on the root rank: creation,
 * submit (tasks and map chunks), shutdown, destroy (see root.h for the
 * data flow and cfutures_mpi.h for the contract). Submitters encode the
 * task in their own thread, queue it under `lock` and wake the
 * communication thread; they never call MPI.
 */
#include "mpi/root.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cf__mpi_task_free(mtask *t)
{
    if (!t)
        return;
    cf_future_release(t->f);
    cf__remote_buffer_destroy(&t->msg);
    free(t->reqs);
    free(t);
}

/* Takes the queue (caller holds `lock`). */
static mtask *take_queue(mpi_exec *m)
{
    mtask *q = m->q_head;
    m->q_head = m->q_tail = NULL;
    m->n_queued = 0;
    return q;
}

void cf__mpi_break(mpi_exec *m, const char *why)
{
    pthread_mutex_lock(&m->lock);
    mtask *q = NULL;
    if (!m->broken) {
        m->broken = true;
        m->broken_msg = strdup(why);
        q = take_queue(m);
    }
    pthread_cond_broadcast(&m->wake);
    pthread_mutex_unlock(&m->lock);
    while (q) {
        mtask *next = q->next;
        cf__remote_fail(q->f, CF_EBROKEN, why);
        atomic_fetch_sub(&m->n_unfinished, 1);
        cf__mpi_task_free(q);
        q = next;
    }
}

static int refusal_locked(const mpi_exec *m)
{
    return m->broken ? CF_EBROKEN : m->shutdown ? CF_ESHUTDOWN : CF_OK;
}

/* Queues a task and wakes the comm thread. On error the task is freed
 * without touching its future (the caller's). */
static int enqueue(mpi_exec *m, mtask *t, cf_future *f)
{
    /* The comm thread polls for its result: a waiter must not hold the
     * CPU that thread needs (core/future_wait.c). Before the queue's
     * reference: the mark needs the submitter's to be the only one. */
    (void)cf__future_set_completer_polls(f);
    pthread_mutex_lock(&m->lock);
    int rc = refusal_locked(m);
    if (rc == CF_OK) {
        t->f = cf_future_retain(f);
        if (m->q_tail)
            m->q_tail->next = t;
        else
            m->q_head = t;
        m->q_tail = t;
        m->n_queued++;
        atomic_fetch_add(&m->n_unfinished, 1);
        atomic_fetch_add(&m->n_submits, 1);
        if (m->sleeping)
            pthread_cond_signal(&m->wake);
    }
    pthread_mutex_unlock(&m->lock);
    if (rc != CF_OK)
        cf__mpi_task_free(t);
    return rc;
}

static mtask *task_new(mpi_exec *m, const cf_codec *codec, cf__chunk *chunk)
{
    mtask *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->codec = codec;
    t->chunk = chunk;
    t->id = atomic_fetch_add(&m->next_id, 1);
    cf__remote_buffer_init(&t->msg);
    return t;
}

/* An argument that cannot be encoded fails only its future, unless the
 * executor refuses work anyway. */
static int fail_encoding(mpi_exec *m, mtask *t, cf_future *f, int arg_rc)
{
    cf__mpi_task_free(t);
    pthread_mutex_lock(&m->lock);
    int rc = refusal_locked(m);
    pthread_mutex_unlock(&m->lock);
    if (rc == CF_OK) {
        char msg[128];
        snprintf(msg, sizeof msg, "could not encode the task's argument: %s",
                 cf_strerror(arg_rc));
        cf__remote_fail(f, arg_rc, msg);
    }
    return rc;
}

static int mpi_submit(void *impl, cf_future *f, cf_fn fn, void *arg,
                      const cf_codec *codec)
{
    mpi_exec *m = impl;
    /* A rank cannot be told to stop a task yet: refuse rather than
     * accept a limit nobody enforces. */
    double limit = cf__remote_submit_timeout();
    if (limit > 0 && !isinf(limit))
        return CF_ENOTSUP;
    codec = codec ? codec : m->codec;
    mtask *t = task_new(m, codec, NULL);
    if (!t)
        return CF_ENOMEM;
    int arg_rc;
    int rc = cf__remote_encode_task(&t->msg, t->id, fn, codec, arg, &arg_rc);
    if (rc != CF_OK) {
        cf__mpi_task_free(t);
        return rc;
    }
    if (arg_rc != CF_OK)
        return fail_encoding(m, t, f, arg_rc);
    return enqueue(m, t, f);
}

static int mpi_submit_chunk(void *impl, cf_future *f, cf__chunk *chunk,
                            const cf_codec *codec)
{
    mpi_exec *m = impl;
    codec = codec ? codec : m->codec;
    mtask *t = task_new(m, codec, chunk);
    if (!t)
        return CF_ENOMEM;
    int arg_rc;
    int rc = cf__remote_encode_chunk(&t->msg, t->id, chunk, codec, &arg_rc);
    if (rc != CF_OK) {
        cf__mpi_task_free(t);
        return rc;
    }
    if (arg_rc != CF_OK)
        return fail_encoding(m, t, f, arg_rc);
    return enqueue(m, t, f);
}

static int mpi_shutdown(void *impl, double timeout, bool cancel_futures,
                        size_t *unfinished)
{
    mpi_exec *m = impl;
    pthread_mutex_lock(&m->lock);
    m->shutdown = true;
    mtask *q = cancel_futures ? take_queue(m) : NULL;
    pthread_cond_broadcast(&m->wake);
    pthread_mutex_unlock(&m->lock);
    while (q) {
        mtask *next = q->next;
        cf_future_cancel(q->f);
        atomic_fetch_sub(&m->n_unfinished, 1);
        cf__mpi_task_free(q);
        q = next;
    }
    if (timeout == 0)
        return CF_OK; /* no wait: the comm thread finishes on its own */
    bool own_thread = m->thread_started &&
                      pthread_equal(pthread_self(), m->thread);
    if (own_thread) {
        /* A callback on the comm thread: it cannot wait for itself. */
        if (unfinished)
            *unfinished = atomic_load(&m->n_unfinished);
        return CF_EDEADLK;
    }
    int64_t deadline = 0;
    bool forever = isinf(timeout);
    if (!forever)
        deadline = cf__mpi_now_ns() + (int64_t)(timeout > 0 ? timeout * 1e9
                                                            : 0);
    pthread_mutex_lock(&m->lock);
    while (!m->finished && (forever || cf__mpi_now_ns() < deadline)) {
        if (forever) {
            pthread_cond_wait(&m->finished_cond, &m->lock);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t left = deadline - cf__mpi_now_ns();
        int64_t ns = ts.tv_nsec + (left > 0 ? left : 0);
        ts.tv_sec += (time_t)(ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&m->finished_cond, &m->lock, &ts);
    }
    bool done = m->finished;
    pthread_mutex_unlock(&m->lock);
    if (unfinished)
        *unfinished = done ? 0 : atomic_load(&m->n_unfinished);
    return done ? CF_OK : CF_ETIMEDOUT;
}

static void mpi_destroy(void *impl)
{
    mpi_exec *m = impl;
    if (m->thread_started)
        pthread_join(m->thread, NULL);
    /* The workers disconnect too once released (spawn.c), then exit. */
    if (m->spawned != MPI_COMM_NULL)
        MPI_Comm_disconnect(&m->spawned);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->wake);
    pthread_cond_destroy(&m->finished_cond);
    free(m->broken_msg);
    free(m->ranks);
    cf__remote_buffer_destroy(&m->in);
    free(m);
}

static const cf_executor_ops mpi_ops = {
    .kind = "mpi",
    .submit = mpi_submit,
    .shutdown = mpi_shutdown,
    .destroy = mpi_destroy,
};

/* ------------------------------------------------------------------------ */
/* Creation                                                                 */

int cf__mpi_check_options(const cf_mpi_options *o)
{
    if (o->prefetch < 0 || isnan(o->spin) || o->spin < 0 ||
        isnan(o->max_sleep) || o->max_sleep < 0 ||
        (o->max_message != 0 && o->max_message < 64))
        return CF_EINVAL;
    return CF_OK;
}

static mpi_exec *exec_alloc(const cf_mpi_options *o, int size)
{
    mpi_exec *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->ranks = calloc((size_t)size, sizeof *m->ranks);
    if (!m->ranks) {
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->wake, NULL);
    pthread_cond_init(&m->finished_cond, NULL);
    atomic_init(&m->n_submits, 0);
    atomic_init(&m->n_unfinished, 0);
    atomic_init(&m->next_id, 1);
    m->size = size;
    m->comm = m->spawned = MPI_COMM_NULL;
    m->prefetch = o->prefetch;
    m->codec = o->codec ? o->codec : cf_codec_word();
    m->initializer = o->initializer;
    m->initarg = o->initarg;
    m->isolate = o->isolate;
    m->max_message = o->max_message ? o->max_message : (size_t)1 << 30;
    m->wait.spin_ns = (int64_t)((o->spin ? o->spin : 200e-6) * 1e9);
    double max_sleep = o->max_sleep ? o->max_sleep : 1e-3;
    m->wait.max_sleep_ns = (int64_t)(fmin(max_sleep, 1.0) * 1e9);
    cf__remote_buffer_init(&m->in);
    return m;
}

void cf__mpi_release_spawned(MPI_Comm *inter)
{
    /* A HELLO of zeros, on the duplicate they talk on (the dup is
     * collective): the workers leave without checking in. */
    uint64_t hello[CF__MPI_HELLO_WORDS] = {0};
    int n = 0;
    MPI_Comm dup;
    MPI_Comm_remote_size(*inter, &n);
    if (MPI_Comm_dup(*inter, &dup) == MPI_SUCCESS) {
        for (int r = 0; r < n; r++)
            MPI_Send(hello, CF__MPI_HELLO_WORDS, MPI_UINT64_T, r,
                     CF__MPI_TAG_HELLO, dup);
        MPI_Comm_free(&dup);
    }
    MPI_Comm_disconnect(inter);
}

int cf__mpi_executor_create(MPI_Comm comm, const cf_mpi_options *opts,
                            MPI_Comm spawned, cf_executor **out)
{
    static const cf_mpi_options defaults;
    const cf_mpi_options *o = opts ? opts : &defaults;
    int rc = CF_EINVAL;
    int size = 0, me = -1, inter = 0;
    mpi_exec *m = NULL;
    if (!out || cf__mpi_check_options(o) != CF_OK)
        goto refused;
    if ((rc = cf__mpi_check_thread_level()) != CF_OK)
        goto refused;
    rc = CF_EINVAL;
    if (MPI_Comm_test_inter(comm, &inter) != MPI_SUCCESS)
        goto refused;
    if (inter ? MPI_Comm_remote_size(comm, &size) != MPI_SUCCESS
              : MPI_Comm_size(comm, &size) != MPI_SUCCESS ||
                    MPI_Comm_rank(comm, &me) != MPI_SUCCESS)
        goto refused;
    /* No worker rank to run anything. */
    if (size < (inter ? 1 : 2))
        goto refused;
    rc = CF_ENOMEM;
    if (!(m = exec_alloc(o, size)))
        goto refused;
    m->me = me;
    m->n_workers = inter ? size : size - 1;
    m->spawned = spawned;
    /* Collective: the worker ranks dup in cf_mpi_worker_serve(). */
    if (MPI_Comm_dup(comm, &m->comm) != MPI_SUCCESS) {
        mpi_destroy(m);
        return CF_ESYS;
    }
    cf_executor *ex = NULL;
    rc = cf_executor_new(&mpi_ops, m, &ex);
    if (rc == CF_OK) {
        cf__remote_set_submit_chunk(ex, mpi_submit_chunk);
        m->ex = ex;
        m->thread_started =
            pthread_create(&m->thread, NULL, cf__mpi_comm_main, m) == 0;
        if (m->thread_started) {
            *out = ex;
            return CF_OK;
        }
        rc = CF_EAGAIN;
    }
    /* The worker ranks wait for their check-in: run the thread's whole
     * life here, shut down from the start, which checks them in and lets
     * them go. */
    m->shutdown = true;
    cf__mpi_comm_main(m);
    if (ex)
        cf_executor_free(ex); /* finished: frees m too */
    else
        mpi_destroy(m);
    return rc;
refused:
    if (spawned != MPI_COMM_NULL)
        cf__mpi_release_spawned(&spawned);
    return rc;
}

int cf_mpi_executor_new(MPI_Comm comm, const cf_mpi_options *opts,
                        cf_executor **out)
{
    return cf__mpi_executor_create(comm, opts, MPI_COMM_NULL, out);
}

int cf_mpi_comm_executor(MPI_Comm comm, int root, const cf_mpi_options *opts,
                         cf_executor **out)
{
    if (!out)
        return CF_EINVAL;
    int size = 0, me = 0;
    if (MPI_Comm_size(comm, &size) != MPI_SUCCESS ||
        MPI_Comm_rank(comm, &me) != MPI_SUCCESS || root < 0 || root >= size)
        return CF_EINVAL;
    if (me == root)
        return cf_mpi_executor_new(comm, opts, out);
    int rc = cf_mpi_worker_serve(comm, root);
    if (rc == CF_OK)
        *out = NULL;
    return rc;
}

bool cf_mpi_has_ulfm(void)
{
#if defined(MPIX_ERR_PROC_FAILED)
    return true;
#else
    return false;
#endif
}
