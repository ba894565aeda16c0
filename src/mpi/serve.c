/* serve.c - a worker rank: cf_mpi_worker_serve().
 *
 * Design: strictly serial, one thread (plus, with `isolate`, the process
 * pool's manager, which never calls MPI). Check in with the root (HELLO:
 * compare the build, learn the options), then read frames from the root
 * and answer each: INIT with READY or INIT_FAILED (the worker process's
 * own code, cf__remote_run_init), a TASK / CHUNK / WORDS frame with its
 * result (cf__remote_run_task, the worker process's loop body; or, with
 * `isolate`, each item through a one-worker process pool), EXIT by
 * returning. Tasks the root sends ahead (prefetch) wait in MPI's buffers
 * until this loop reaches them. Results go back with blocking sends: the
 * root's thread always receives, so they complete.
 */
#include "cfutures_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi/link.h"

typedef struct server {
    MPI_Comm comm;
    int root, me;
    size_t max_message;
    cf__mpi_backoff wait;
    cf__code_cache cache;
    cf_buffer in, out;
    cf_executor *pool; /* with isolate: the one-worker process pool */
    bool wrong_build, init_failed;
    bool released; /* let go before check-in (a refused spawn) */
} server;

static int check_in(server *s)
{
    MPI_Status st;
    int rc = cf__mpi_wait_message(s->comm, s->root, CF__MPI_TAG_HELLO,
                                  &s->wait, &st);
    uint64_t hello[CF__MPI_HELLO_WORDS] = {0};
    if (rc != CF_OK || MPI_Recv(hello, CF__MPI_HELLO_WORDS, MPI_UINT64_T,
                                s->root, CF__MPI_TAG_HELLO, s->comm,
                                MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return CF_ESYS;
    if (hello[0] == 0) {
        s->released = true;
        return CF_OK;
    }
    uint64_t mine = 0;
    cf__remote_program_hash(&mine); /* 0 when unreadable: a mismatch */
    uint64_t reply[CF__MPI_REPLY_WORDS] = {CF__MPI_MAGIC, mine,
                                           (uint64_t)getpid()};
    if (MPI_Send(reply, CF__MPI_REPLY_WORDS, MPI_UINT64_T, s->root,
                 CF__MPI_TAG_HELLO, s->comm) != MPI_SUCCESS)
        return CF_ESYS;
    if (hello[0] != CF__MPI_MAGIC || hello[1] != mine) {
        fprintf(stderr, "cfutures_mpi: rank %d runs another build of the "
                "program than the root, rank %d (executable hash %016llx, "
                "the root's %016llx): every rank must run the same "
                "binary\n", s->me, s->root, (unsigned long long)mine,
                (unsigned long long)hello[1]);
        s->wrong_build = true;
    }
    s->wait.spin_ns = (int64_t)hello[3];
    s->wait.max_sleep_ns = (int64_t)hello[4];
    s->max_message = (size_t)hello[5];
    if (!s->wrong_build && (hello[2] & CF__MPI_FLAG_ISOLATE)) {
        cf_process_pool_options po = {.max_workers = 1,
                                      .survive_worker_death = true};
        rc = cf_process_pool_new(&po, &s->pool);
        if (rc != CF_OK)
            return rc;
    }
    return CF_OK;
}

/* Answers one frame from the root; *done once it said EXIT. */
static int handle(server *s, const cf__wire_header *h, bool *done)
{
    const unsigned char *p = s->in.data + CF__WIRE_HEADER_SIZE;
    s->out.len = 0;
    int rc;
    switch (h->type) {
    case CF__MSG_EXIT:
        *done = true;
        return CF_OK;
    case CF__MSG_INIT:
        rc = cf__remote_run_init(&s->cache, p, (size_t)h->len, &s->out);
        if (rc == CF_EINVAL)
            s->init_failed = true;
        else if (rc != CF_OK)
            return rc;
        break;
    case CF__MSG_TASK:
    case CF__MSG_CHUNK:
    case CF__MSG_WORDS:
        if (s->pool) {
            char where[64];
            snprintf(where, sizeof where, "MPI rank %d", s->me);
            rc = cf__remote_run_task_in(s->pool, &s->cache, h, p, &s->out,
                                        where);
        } else {
            rc = cf__remote_run_task(&s->cache, h, p, &s->out);
        }
        if (rc != CF_OK)
            return rc;
        break;
    default:
        return CF_ECODEC;
    }
    return cf__mpi_send(s->comm, s->root, s->out.data, s->out.len,
                        s->max_message);
}

static int serve_frames(server *s)
{
    for (;;) {
        MPI_Status st;
        cf__wire_header h;
        bool done = false;
        int rc = cf__mpi_wait_message(s->comm, s->root, CF__MPI_TAG_FRAME,
                                      &s->wait, &st);
        rc = rc ? rc : cf__mpi_recv_frame(s->comm, &st, &s->in, &h);
        rc = rc ? rc : handle(s, &h, &done);
        /* The next task usually follows a result closely: poll tightly
         * from the result on, not from the task's arrival. */
        cf__mpi_backoff_reset(&s->wait);
        if (rc != CF_OK) {
            /* The root would wait forever for an answer that cannot come:
             * end the job, saying why. */
            fprintf(stderr, "cfutures_mpi: rank %d cannot go on: %s\n",
                    s->me, cf_strerror(rc));
            MPI_Abort(s->comm, 70);
            return rc;
        }
        if (done)
            return CF_OK;
    }
}

int cf_mpi_worker_serve(MPI_Comm comm, int root)
{
    int rc = cf__mpi_check_thread_level();
    if (rc != CF_OK)
        return rc;
    int size = 0, inter = 0;
    server s;
    memset(&s, 0, sizeof s);
    s.root = root;
    /* Over an intercommunicator (spawn mode) the root is a rank of the
     * other group. */
    if (MPI_Comm_test_inter(comm, &inter) != MPI_SUCCESS ||
        (inter ? MPI_Comm_remote_size(comm, &size)
               : MPI_Comm_size(comm, &size)) != MPI_SUCCESS ||
        MPI_Comm_rank(comm, &s.me) != MPI_SUCCESS)
        return CF_EINVAL;
    if (root < 0 || root >= size || (!inter && root == s.me))
        return CF_EINVAL;
    if (MPI_Comm_dup(comm, &s.comm) != MPI_SUCCESS)
        return CF_ESYS;
    s.wait.spin_ns = 200000;
    s.wait.max_sleep_ns = 1000000;
    cf__mpi_backoff_reset(&s.wait);
    cf__remote_buffer_init(&s.in);
    cf__remote_buffer_init(&s.out);
    rc = check_in(&s);
    if (rc != CF_OK) {
        fprintf(stderr, "cfutures_mpi: rank %d cannot serve: %s\n", s.me,
                cf_strerror(rc));
        MPI_Abort(s.comm, 70); /* the root would wait for it forever */
    }
    rc = rc || s.released ? rc : serve_frames(&s);
    cf_executor_free(s.pool);
    cf__remote_buffer_destroy(&s.in);
    cf__remote_buffer_destroy(&s.out);
    cf__remote_code_cache_destroy(&s.cache);
    MPI_Comm_free(&s.comm);
    if (rc == CF_OK && s.wrong_build)
        rc = CF_EINVAL;
    else if (rc == CF_OK && s.init_failed)
        rc = CF_EBROKEN;
    return rc;
}
