/* pool.h - the process pool's shared state and the functions its parts
 * call across files: pool.c (creation, shutdown; the design), tasks.c
 * (tasks, submitting), dispatch.c (sending to workers, claims), results.c
 * (results, crashes, breaking the pool), manager.c (the manager thread's
 * loop), exits.c (a worker's end), sizing.c (starting, retiring and
 * reaping workers), escalation.c (time limits, requests from other
 * threads). Workers are reached only through transport.h.
 * Private to src/processes/.
 */
#ifndef CF_PROCESSES_POOL_H
#define CF_PROCESSES_POOL_H

#include "core/core.h"

#include <poll.h>

#include "platform/process.h"
#include "processes/registry.h"
#include "processes/shm_slot.h"
#include "processes/spawn.h"
#include "processes/transport.h"
#include "processes/wire.h"

enum { KILL_TIMEOUT = 1, KILL_CANCEL = 2 };
enum { REQ_KILL = 1, REQ_LIST = 2, REQ_PIDS = 3 };

/* A request to the manager from another thread (cf__pp_ask_manager): the
 * asker's, on its stack, while it waits for the answer. */
typedef struct pp_request {
    int kind;          /* REQ_KILL, REQ_LIST or REQ_PIDS */
    cf_future *future; /* REQ_KILL: the task whose worker to kill */
    cf_future **list;  /* REQ_LIST answer: unfinished futures (malloc'd) */
    long *pids;        /* REQ_PIDS: room for `cap` pids of live workers */
    size_t cap;
    size_t n;          /* REQ_LIST, REQ_PIDS answer: how many there are */
    int rc;            /* the answer's code */
} pp_request;

enum wstate {
    W_FREE = 0, /* slot unused */
    W_STARTING, /* INIT sent, READY not yet received */
    W_READY,    /* takes tasks */
    W_EXITING,  /* EXIT sent (shutdown or max_tasks_per_child) */
};

/* Tasks waiting at one worker, not yet claimed: their bytes travel while
 * the worker runs the task before, so it never waits for a message, and
 * it claims one after another with no hand-off through the manager. A
 * longer window means fewer hand-offs for short tasks (8 -> 32 halved the
 * cost per tiny task on 2 CPUs); an idle worker still takes tasks waiting
 * at a busy one, so none waits long behind a long task. Below
 * CF__CLAIM_RING, whose words are reused. */
#define WINDOW 32
/* ... unless this many bytes are still unsent to it. */
#define WINDOW_BYTES (256u << 10)

typedef struct process_pool process_pool;

typedef struct task {
    struct task *next;
    process_pool *pool;    /* takes it back when freed */
    cf_future *f;          /* the pool's reference */
    cf__chunk *chunk;      /* map chunk (owned by the map iterator) or NULL */
    cf_fn fn;
    const cf_codec *codec; /* decodes the result */
    uint64_t seq;          /* submission number, the message id */
    unsigned k;            /* its number on the worker it was sent to */
    atomic_uint *claim;    /* its claim word there (cf__shm_slot), or NULL */
    double limit;          /* run-time limit in seconds; 0: none */
    int64_t deadline;      /* claimed: when the limit ends (manager only) */
    bool stop_sent;        /* its cancel request went to the worker
                              (manager only) */
    cf__task_record *mon;  /* its monitoring record (monitor.c), or NULL */
    cf_buffer msg;         /* the framed TASK or CHUNK message; kept until
                              claimed, so a waiting task can move */
} task;

typedef struct wproc {
    cf__proc proc;
    const cf__transport *transport; /* the pool's */
    /* Who reaps it: NULL for our own child (waitpid), else the start
     * callback's reaper (see cf_worker_process). */
    int (*reap)(void *ctx, long pid, int *wait_status);
    void *reap_ctx;
    enum wstate state;
    /* Claimed tasks (RUNNING), oldest first; their results come in this
     * order. Manager thread only. */
    task *run_head, *run_tail;
    size_t n_running;
    /* Sent, not yet claimed (PENDING), in the order sent. Guarded by the
     * pool lock: shutdown(cancel_futures) cancels them from its thread. */
    task *wait_head, *wait_tail;
    size_t n_waiting;
    unsigned next_k;       /* number of the last task sent */
    unsigned busy_k;       /* number of the task claimed last; 0: none */
    size_t tasks_run;      /* tasks claimed on this worker */
    cf_buffer out;         /* frames not yet sent (INIT, tasks, EXIT) */
    size_t out_off;
    cf_buffer in;          /* received bytes; frames start at in_pos */
    size_t in_pos;
    bool eof;              /* the socket reached EOF */
    bool send_failed;      /* the worker's end is gone */
    bool terminated;       /* sent SIGTERM/SIGKILL by terminate/kill */
    const char *lost;      /* why we gave up on it (killed), or NULL */
    /* Killed by the pool for its running task (manager only): the task's
     * time limit ended (KILL_TIMEOUT), or a cancel escalated to a kill
     * (KILL_CANCEL). Its end then fails or cancels that task only. */
    int killed_for;
    cf__shm_slot *slot;    /* shared counters and claim word, or NULL */
    uint_fast64_t seen_from; /* slot->from_worker when last received */
    bool draining;         /* in w_drain_ring() */
    int64_t idle_since;    /* when it was last seen idle (ns); 0: busy */
    bool retiring;         /* surplus after a shrink: no new tasks; EXIT
                              once its current one is done */
    unsigned char *crash;  /* its CRASH frame's record (malloc'd), or NULL */
    size_t crash_len;
} wproc;

/* Freed tasks kept for reuse, with their message buffers: the manager
 * frees what submitting threads allocated, and malloc's arena lock then
 * makes the two sleep and wake each other (measured with map). */
#define SPARE_TASKS 128
#define SPARE_MSG_BYTES (16u << 10) /* at most 2 MiB kept */

struct process_pool {
    /* Immutable after creation. */
    cf_executor *ex;
    /* Slots for workers: the most max_workers can be raised to (the
     * options' max_workers_limit); `limit` is max_workers now. */
    int max_workers;
    int min_workers;       /* idle reaping stops there */
    int64_t idle_ns;       /* idle_timeout; 0: workers never idle out */
    cf__spawn_config spawn; /* how workers start, over which transport */
    bool by_name;          /* workers run another program: code by name */
    bool has_init;
    char *init_module;     /* initializer's module or name (copy) */
    size_t init_len;
    uint64_t init_offset;  /* CF__WIRE_NAMED for a name */
    void *initarg;
    cf_buffer required;    /* the required task names, as INIT lists them */
    uint32_t n_required;
    size_t max_tasks_per_child;
    const cf_codec *codec;
    bool survive;
    double task_timeout;   /* default limit of a task, seconds; 0: none */
    pid_t owner;           /* the process that created the pool */
    unsigned fork_gen;     /* cf__fork_generation() there */
    int wake_fd;
    cf__shm shm;           /* one shared slot per worker (may be absent) */
    cf__thread manager;

    atomic_bool wake_pending; /* a wake-up is in flight: skip the write */
    atomic_bool mgr_sleeping; /* the manager is (about to be) in poll(-1) */
    atomic_uint_fast64_t n_enqueued; /* tasks queued so far, ever */
    atomic_uint_fast64_t next_seq;
    atomic_int n_idle;     /* workers waiting for work, at the last step() */

    cf__mutex lock;
    cf__cond changed;      /* manager_done or n_alive changed */
    task *head, *tail;     /* guarded by lock: the queue */
    size_t n_queued;       /* guarded by lock */
    size_t n_inflight;     /* guarded by lock: tasks at workers */
    /* max_workers * WINDOW: room to copy the futures waiting at workers
     * out of the lock, for a shutdown that finds no memory of its own;
     * cancel_buf_busy while one uses it. */
    cf_future **cancel_buf;
    atomic_bool cancel_buf_busy;
    int n_alive;           /* guarded by lock: worker processes not reaped */
    int limit;             /* guarded by lock: max_workers now */
    bool shutdown;         /* guarded by lock */
    /* shutdown(cancel_futures): the manager raises the flag of every task
     * it finds running from then on (escalation.c). */
    atomic_bool stop_running;
    int terminate_sig;     /* guarded by lock: 0, SIGTERM or SIGKILL */
    bool broken;           /* guarded by lock */
    bool manager_done;     /* guarded by lock */
    bool manager_joined;   /* guarded by lock */

    /* A request to the manager from another thread (escalation.c: see
     * cf__pp_ask_manager), one at a time (req_lock held by the asker).
     * req_pending tells the manager without a lock; `req` is guarded by
     * lock. */
    cf__mutex req_lock;
    atomic_bool req_pending;
    pp_request *req;

    /* Manager thread only. */
    wproc *workers;        /* max_workers slots */
    /* Per worker slot i, its channel's read end, write end and pidfd at
     * 1 + 3i (0: the wake fd), with the events poll() found; poll()
     * itself is given only the descriptors in use, packed into `polled`
     * (poll() refuses more entries than RLIMIT_NOFILE, which the slots
     * of a large max_workers_limit would pass), with each entry's index
     * into pfds in `polled_at`. All 1 + 3 * max_workers long. */
    struct pollfd *pfds;
    struct pollfd *polled;
    int *polled_at;
    int terminate_sent;    /* signal already sent to the workers */
    int limit_seen;        /* `limit` when step() last read it */
    int lost;              /* workers killed for their task or dead under
                              survive_worker_death, not yet replaced */
    uint_fast64_t seen_enqueued; /* n_enqueued when step() last looked */
    /* Why the pool broke: set once, with `broken` under lock, then
     * read-only until the pool is freed (others read it after `broken`). */
    char *broken_msg;

    cf__spinlock spare_lock;
    task *spares;          /* guarded by spare_lock */
    size_t n_spares;       /* guarded by spare_lock */
};

/* Tasks and submitting (tasks.c) */
int cf__pp_code_ref(const process_pool *pool, int kind, const void *addr,
                    cf__wire_ref *ref);
int cf__pp_codec_to_wire(const process_pool *pool, const cf_codec *codec,
                         cf__wire_codec *out);
void cf__pp_describe_task(const task *t, char *buf, size_t n);
void cf__pp_free_spares(process_pool *pool);
int cf__pp_pool_submit(void *impl, cf_future *f, cf_fn fn, void *arg,
                       const cf_codec *codec);
int cf__pp_pool_submit_chunk(void *impl, cf_future *f, cf__chunk *chunk,
                             const cf_codec *codec);
void cf__pp_task_append(task **head, task **tail, task *t);
void cf__pp_task_fail(task *t, int code, const char *message);
void cf__pp_task_free(task *t);
void cf__pp_wake_manager(process_pool *pool);

/* Sending to workers and claiming (dispatch.c) */
void cf__pp_inflight_add(process_pool *pool, long n);
void cf__pp_run_push(process_pool *pool, wproc *w, task *t);
int cf__pp_spawn_worker(process_pool *pool, wproc *w);
bool cf__pp_task_take_back(task *t);
bool cf__pp_w_can_take(const process_pool *pool, const wproc *w,
                       bool free_only);
void cf__pp_w_flush(wproc *w);
bool cf__pp_w_free(const wproc *w);
void cf__pp_w_give(process_pool *pool, wproc *w, task *t);

/* For tests: called (when set) by the manager with a task it has taken
 * from the queue and not yet given to a worker, with no lock held: the
 * window in which a shutdown(cancel_futures) finds the task in neither
 * place. NULL in normal use. */
extern void (*_Atomic cf__process_pool_before_give)(cf_executor *ex);
bool cf__pp_w_has_output(const wproc *w);
bool cf__pp_w_head_decided(const wproc *w);
void cf__pp_w_lose(wproc *w, const char *why);
void cf__pp_w_send_exit(wproc *w);
void cf__pp_w_sync(process_pool *pool, wproc *w);
task *cf__pp_wait_pop(process_pool *pool, wproc *w);

/* Results and breaking the pool (results.c) */
void cf__pp_break_pool(process_pool *pool, const char *why);
void cf__pp_fail_list(task *q, int code, const char *message);
task *cf__pp_take_queue(process_pool *pool);
void cf__pp_w_drain_ring(process_pool *pool, wproc *w);
void cf__pp_w_receive(process_pool *pool, wproc *w);
bool cf__pp_w_ring_ready(const wproc *w);
task *cf__pp_w_take_all(process_pool *pool, wproc *w, task **waiting);

/* Resizing (pool.c). The options' max_workers and max_workers_limit are
 * at most this: each slot is a shared ring (64 KiB, touched only when
 * used) and three pfds entries the manager scans at each step. */
#define CF__PP_MAX_WORKERS_LIMIT 4096
int cf__pp_set_max_workers(void *impl, int max_workers);

/* A worker's end (exits.c) */
/* Puts tasks that waited at a dead or retiring worker (never claimed,
 * still PENDING) back at the front of the queue, in order. */
void cf__pp_requeue(process_pool *pool, task *list);
void cf__pp_cancel_tasks(task *q);
/* The worker's process has ended (or is ending: EOF without pidfd):
 * reaps it and ends, fails or requeues its tasks. */
void cf__pp_w_exited(process_pool *pool, wproc *w);

/* How many workers run (sizing.c) */
/* Starts workers while queued tasks outnumber the workers able to take
 * them, and replaces lost ones at once below min_workers. With no worker
 * at all and none startable, the queue fails. */
void cf__pp_spawn_needed(process_pool *pool, size_t queued);
/* Retires surplus workers after a shrink, and idle ones past
 * idle_timeout (down to min_workers) unless tasks are queued. */
void cf__pp_resize(process_pool *pool, size_t queued);
/* How long poll() may sleep before an idle worker's time is up: -1 (no
 * limit) without idle_timeout, else milliseconds, rounded up. */
int cf__pp_reap_timeout_ms(const process_pool *pool);

/* Time limits and requests from other threads (escalation.c) */
/* Passes the cancel requests of running tasks (their futures' flags) on
 * to their workers, and kills the workers whose running task is past its
 * limit, after reading what they sent: a result already there counts. */
void cf__pp_check_running(process_pool *pool);
/* The nearest time limit of a running task, or CF__NO_DEADLINE. */
int64_t cf__pp_next_deadline(process_pool *pool);
/* Asks the manager (REQ_KILL: to kill the worker running req->future's
 * task; REQ_LIST: for the unfinished futures; REQ_PIDS: for the live
 * workers' pids, once it has started the workers the tasks queued so far
 * need) and waits for its answer, in *req: its code, or CF_ESTATE once
 * the manager is gone. Not on the manager thread. */
int cf__pp_ask_manager(process_pool *pool, pp_request *req);
/* Manager thread: the live workers' pids, as many as fit in `cap`; the
 * count of all. */
size_t cf__pp_list_pids(process_pool *pool, long *pids, size_t cap);
/* Serves a pending request, if any (step(), before it reads the queue).
 * A REQ_PIDS request waits for the workers this step starts: true then,
 * and step() calls again with after_dispatch once it has started them. */
bool cf__pp_serve_request(process_pool *pool, bool after_dispatch);

/* The manager thread (manager.c) */
void *cf__pp_manager_main(void *arg);

#endif /* CF_PROCESSES_POOL_H */
