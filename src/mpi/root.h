/* root.h - the MPI executor on its root rank: state shared by executor.c
 * (the cf_executor face: create, submit, shutdown) and comm.c (the
 * communication thread, the only caller of MPI).
 *
 *   submit() --encode, lock, append--> queue --(comm thread)--> Isend
 *      ^ wakes the thread (cond)            rank r: in flight, in order
 *   future <--cf__remote_finish-- frame <--Iprobe/Recv-- rank r's result
 *
 * Locks: `lock` guards the queue and the flags marked so; the comm thread
 * owns everything else (ranks, in-flight lists, sends) without a lock.
 * No user code runs under `lock` (futures complete outside it).
 */
#ifndef CF_MPI_ROOT_H
#define CF_MPI_ROOT_H

#include <pthread.h>
#include <stdatomic.h>

#include "cfutures_mpi.h"
#include "mpi/link.h"

typedef struct mtask {
    struct mtask *next;
    cf_future *f;            /* one reference, the task's */
    const cf_codec *codec;
    cf__chunk *chunk;        /* a map chunk, owned by the map iterator */
    uint64_t id;
    cf_buffer msg;           /* the encoded frame */
    MPI_Request *reqs;       /* while being sent */
    int n_reqs;
} mtask;

enum rank_state { R_HELLO, R_INIT, R_READY, R_DONE };

typedef struct mrank {
    enum rank_state state;
    long pid;
    int in_flight;
    mtask *head, *tail; /* sent, result not back; results come in order */
    int64_t last_result_ns; /* when its last result came */
    double task_ns;         /* its time per task while busy (average) */
} mrank;

typedef struct mpi_exec {
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* the comm thread sleeps here */
    pthread_cond_t finished_cond;
    mtask *q_head, *q_tail;  /* submitted, not sent: guarded by lock */
    size_t n_queued;         /* lock */
    bool sleeping;           /* comm thread waits on `wake`: lock */
    bool shutdown;           /* lock */
    bool broken;             /* lock */
    char *broken_msg;        /* lock; set once */
    bool finished;           /* the comm thread is done: lock */
    atomic_size_t n_submits; /* bumped per submit: a polling thread looks */
    atomic_size_t n_unfinished; /* queued or in flight */
    atomic_uint_fast64_t next_id;

    /* Set at creation, then read-only. */
    MPI_Comm comm;
    /* Worker ranks are 0..size-1 except `me` (an intracommunicator), or
     * the whole remote group (an intercommunicator: `me` is -1). */
    int me, size;
    int n_workers;
    MPI_Comm spawned;        /* spawn mode: the intercommunicator to the
                              * spawned workers, disconnected at destroy */
    int prefetch; /* fixed by the options, or 0: adaptive (comm.c) */
    const cf_codec *codec;
    int (*initializer)(void *);
    void *initarg;
    bool isolate;
    size_t max_message;
    cf__mpi_backoff wait;
    pthread_t thread;
    bool thread_started;
    cf_executor *ex; /* set before the thread runs anything but check-in */

    /* The comm thread's own. */
    mrank *ranks;
    mtask *s_head;           /* being sent (any rank), in send order */
    int n_pending_init;      /* ranks not yet READY or failed */
    cf_buffer in;
} mpi_exec;

/* Creates the executor over `comm` (an intra- or intercommunicator),
 * which then owns `spawned` (MPI_COMM_NULL: none). As
 * cf_mpi_executor_new() (executor.c). */
int cf__mpi_executor_create(MPI_Comm comm, const cf_mpi_options *opts,
                            MPI_Comm spawned, cf_executor **out);
/* Lets spawned workers that were never checked in go, and disconnects
 * from them. */
void cf__mpi_release_spawned(MPI_Comm *inter);
/* Options are valid: CF_OK or CF_EINVAL. */
int cf__mpi_check_options(const cf_mpi_options *o);

/* The communication thread (comm.c). */
void *cf__mpi_comm_main(void *arg);

/* Frees a task and drops its future's reference. */
void cf__mpi_task_free(mtask *t);

/* Breaks the executor: refuses later submits, fails what is queued with
 * CF_EBROKEN and `why` (copied). Any thread; not under `lock`. */
void cf__mpi_break(mpi_exec *m, const char *why);

#endif /* CF_MPI_ROOT_H */
