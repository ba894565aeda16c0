/* cfutures.h - Python's concurrent.futures for C11.
 *
 * Submit a function to an executor, get a future, wait on it, iterate the
 * futures as they complete, and move from threads to processes by changing
 * the constructor alone.
 *
 *     cf_executor *pool;
 *     cf_future *f;
 *     void *value;
 *     if (cf_thread_pool_new(NULL, &pool) == CF_OK &&
 *         cf_executor_submit(pool, square, (void *)(intptr_t)7, &f) == CF_OK) {
 *         if (cf_future_result(f, CF_FOREVER, &value) == CF_OK)
 *             printf("%ld\n", (long)(intptr_t)value);
 *         cf_future_release(f);
 *     }
 *     cf_executor_free(pool);          // shutdown(wait=true), then free
 *
 * Conventions that hold for every function below:
 *
 * - Ownership. A function that hands you a `cf_future *` gives you one
 *   reference; drop it with cf_future_release(). A function that takes one
 *   borrows it for the call and takes its own reference if it keeps it.
 *   Every `_release`/`_free` accepts NULL. An executor has a single owner;
 *   futures never point back to their executor, so they may outlive it.
 * - Errors. Functions return `int`: CF_OK (0) or a negative CF_E* code from
 *   CF_ERROR_MAP below. Out-parameters are written only on success. Misuse
 *   (NULL, bad sizes, NaN timeouts, wrong state) returns an error code, never
 *   aborts. A task's own failure is not an error of the call that reports
 *   it: it is data the future keeps (cf_future_exception()).
 * - Timeouts are `double` seconds. CF_FOREVER means no limit, a value <= 0
 *   polls once, NaN is CF_EINVAL. A timeout counts from the call that takes
 *   it (for map and as_completed: from the call that created the iterator).
 * - Threads. Every function is thread-safe unless its comment says
 *   otherwise. Comments say "Blocks." where a call may sleep.
 * - Options structs. A zero field means the documented default, so `{0}` and
 *   NULL both mean "all defaults". Fields are only ever appended.
 * - Memory. A future takes a 64-byte slot, a cache line of its own, in a
 *   per-thread 2 MiB slab, not one malloc each: a freed future's memory
 *   serves the next one, from a thread's second slab on as a transparent
 *   huge page (one page fault per ~32,000 futures) while huge pages come
 *   cheaply (one that takes over 1 ms to fault in sends new slabs to small
 *   pages for a second), and emptied
 *   slabs go back to the OS (two are kept as spares). Any thread may
 *   release a future another made. CF_FUTURE_ALLOC=malloc in the environment
 *   (read at the first future; the default in AddressSanitizer builds) makes
 *   each future its own malloc, so leak checkers such as valgrind see them.
 */
#ifndef CFUTURES_H
#define CFUTURES_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CF_BUILDING_LIBRARY) && defined(__GNUC__)
#define CF_API __attribute__((visibility("default")))
#else
#define CF_API
#endif

#if defined(__GNUC__)
#define CF_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define CF_PRINTF(fmt, args)
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                  */

#define CF_VERSION_MAJOR 0
#define CF_VERSION_MINOR 1
#define CF_VERSION_PATCH 0
#define CF_VERSION_STRING "0.1.0"

/* Returns CF_VERSION_STRING of the library actually loaded. Cannot fail. */
CF_API const char *cf_version(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

/* The one error table. Values are the same on every platform and are never
 * renumbered; new codes are appended. Python's exceptions map as noted. */
#define CF_ERROR_MAP(XX)                                                      \
    XX(EINVAL, -1, "invalid argument")                  /* ValueError */     \
    XX(ECANCELLED, -2, "future was cancelled")          /* CancelledError */ \
    XX(ETIMEDOUT, -3, "timed out")                      /* TimeoutError */   \
    XX(EBROKEN, -4, "executor is broken")               /* BrokenExecutor */ \
    XX(EBROKEN_THREAD_POOL, -5,                                               \
       "thread pool is broken: a worker failed to initialize")                \
    XX(EBROKEN_PROCESS_POOL, -6,                                              \
       "process pool is broken: a worker process ended abruptly")             \
    XX(ESTATE, -7, "operation not allowed in the future's current state")     \
    XX(ESHUTDOWN, -8, "executor is shut down")          /* RuntimeError */   \
    XX(ENOMEM, -9, "out of memory")                                           \
    XX(ETASK, -10, "the task failed")                                         \
    XX(EEND, -11, "no more items")                      /* StopIteration */  \
    XX(EAGAIN, -12, "could not start a thread or process (resource limit)")   \
    XX(ESYS, -13, "a system call failed")                                     \
    XX(EDEADLK, -14, "a task would wait for itself (its own executor)")       \
    XX(ECODEC, -15, "could not encode or decode a value")                     \
    XX(ENOTSUP, -16, "not supported by this executor")                     \
    XX(ETASK_TIMEOUT, -17, "the task ran past its time limit")

typedef enum cf_errno {
    CF_OK = 0,
#define CF__ERRNO_ENUM(name, value, message) CF_##name = (value),
    CF_ERROR_MAP(CF__ERRNO_ENUM)
#undef CF__ERRNO_ENUM
} cf_errno;

/* Returns a message for `code`: one of CF_ERROR_MAP's, "success" for CF_OK,
 * "the task failed" for a task's own positive codes. Never NULL;
 * the string is static. Cannot fail. */
CF_API const char *cf_strerror(int code);

/* Returns the code's name ("CF_ETIMEDOUT"), or "CF_UNKNOWN" for codes not
 * in the table. Never NULL; static. Cannot fail. */
CF_API const char *cf_err_name(int code);

/* True for CF_EBROKEN and its refinements CF_EBROKEN_THREAD_POOL and
 * CF_EBROKEN_PROCESS_POOL, as Python's BrokenExecutor hierarchy. */
CF_API bool cf_error_is_broken(int code);

/* A failure a future holds: Python's exception object.
 * `code` > 0 is the task's own code (cf_fail()); `code` < 0 is a CF_E* code
 * set by an executor (a broken pool, a failed decode, ...). `message` is never
 * NULL and stays valid while you hold a reference to the future (or, for
 * cf_map_next(), until the next call on the iterator). */
typedef struct cf_error {
    int code;
    const char *message;
} cf_error;

/* ------------------------------------------------------------------------ */
/* Timeouts                                                                 */

/* No time limit. Any timeout >= this (or any infinity) waits forever. */
#define CF_FOREVER ((double)INFINITY)

/* ------------------------------------------------------------------------ */
/* Tasks                                                                    */

typedef struct cf_future cf_future;
typedef struct cf_executor cf_executor;

/* The running call, handed to a task. Valid only during the task. */
typedef struct cf_call cf_call;

/* A task: computes from `arg` and returns its result. To fail, it returns
 * cf_fail(call, code, ...), the C analogue of raising.
 *
 * On a thread pool `arg` and the result are passed as they are, no copy.
 * On a process pool they cross as bytes through the executor's cf_codec;
 * the default codec carries the pointer value itself, so tasks that take and
 * return integers cast to pointers (intptr_t) run unchanged on both. */
typedef void *(*cf_fn)(void *arg, cf_call *call);

/* Records that the running task failed with `code` (any nonzero int; 0 is
 * taken as CF_ETASK; positive codes are the task's own, negative ones are
 * reported as that CF_E* code) and a printf-style message, and returns NULL
 * so a task can write `return cf_fail(call, ENOENT, "no file %s", path);`.
 * The future then holds the failure: cf_future_exception() returns it and
 * cf_future_result() returns CF_ETASK (or the negative code). A second call
 * replaces the first. If formatting runs out of memory the message falls
 * back to cf_strerror(code). Cannot fail. */
CF_API void *cf_fail(cf_call *call, int code, const char *fmt, ...)
    CF_PRINTF(3, 4);

/* Hands the task's result to its future: the future calls
 * `free_result(result)` when its last reference is released (and at once
 * if the task fails). For thread-pool tasks that return malloc'd values;
 * on a process pool the codec's free_result plays this part. Cannot fail. */
CF_API void cf_call_set_result_free(cf_call *call,
                                    void (*free_result)(void *));

/* True once someone asked the running task to stop early
 * (cf_future_request_cancel() on its future, a shutdown that cancels
 * futures, or, on a thread pool or custom executor, the task's time limit:
 * see cf_submit_options). Cooperative: the task decides whether to poll it
 * and what to return. Cheap enough to poll in an inner loop: one load; in
 * a process-pool worker over CF_TRANSPORT_PIPES, also a clock read, and a
 * look at the channel at most once a millisecond. In a process-pool
 * worker the request arrives when the pool's manager passes it on: at
 * once from cf_executor_cancel(), cf_executor_shutdown_report() and a
 * shutdown with cancel_futures, at the manager's next step (a result, a
 * submit) after a bare cf_future_request_cancel(). Cannot fail. */
CF_API bool cf_call_cancel_requested(const cf_call *call);

/* ------------------------------------------------------------------------ */
/* Codecs: how values cross a process (or machine) boundary                 */

/* A growable byte buffer a codec appends to. */
typedef struct cf_buffer cf_buffer;

/* Appends `len` bytes. Returns CF_OK or CF_ENOMEM (buffer unchanged). */
CF_API int cf_buffer_append(cf_buffer *buf, const void *data, size_t len);

/* How a task's argument and result cross as bytes. Executors that share
 * memory (the thread pool) never call it. Every function returns CF_OK or a
 * negative code (CF_ECODEC, CF_ENOMEM), which fails only that task's future.
 * Encoders append to `out`; decoders get the exact bytes encoded.
 * `free_arg` / `free_result` may be NULL (nothing to free). The process
 * pool runs the same program in its workers, so the same codec (found by
 * address, like the task) decodes on the other side. */
typedef struct cf_codec {
    int (*encode_arg)(const void *arg, cf_buffer *out);          /* caller */
    int (*decode_arg)(const void *data, size_t len, void **arg); /* worker */
    void (*free_arg)(void *arg);                                 /* worker */
    int (*encode_result)(const void *result, cf_buffer *out);    /* worker */
    int (*decode_result)(const void *data, size_t len,
                         void **result);                         /* caller */
    /* Frees a decoded result. Set, the future owns its result and frees it
     * when its last reference is released; the worker side also uses it to
     * free a result once encoded. */
    void (*free_result)(void *result);
} cf_codec;

/* The default codec: the pointer value itself crosses (8 bytes), for tasks
 * whose argument and result are integers cast to pointers. Nothing to free. */
CF_API const cf_codec *cf_codec_word(void);

/* A codec for NUL-terminated strings in both directions (malloc'd copies on
 * the receiving side, freed by the future or the worker). */
CF_API const cf_codec *cf_codec_string(void);

/* A length and that many bytes, in one allocation (`data` points just
 * past the struct): what cf_codec_bytes() carries, such as a serialized
 * call a language binding made. */
typedef struct cf_bytes {
    size_t len;
    unsigned char *data;
} cf_bytes;

/* Allocates a cf_bytes of `len` bytes, a copy of `data` (NULL: left
 * uninitialised, for the caller to fill). Free it with cf_bytes_free().
 * Returns NULL when out of memory. */
CF_API cf_bytes *cf_bytes_new(const void *data, size_t len);
CF_API void cf_bytes_free(cf_bytes *b);

/* A codec for cf_bytes in both directions; NULL crosses as NULL. A task
 * receives a `cf_bytes *` it must not free (the worker frees it after the
 * task) and returns one from cf_bytes_new() (or NULL), which the worker
 * frees once sent. The future owns the result it decodes (a cf_bytes,
 * freed with the future's last reference). */
CF_API const cf_codec *cf_codec_bytes(void);

/* ------------------------------------------------------------------------ */
/* Futures                                                                  */

/* Done-callback. Returns 0 on success; a nonzero return is a callback
 * failure, reported to the handler set by cf_set_callback_error_handler()
 * (by default one line on stderr) and never stops the later callbacks. */
typedef int (*cf_done_fn)(cf_future *f, void *arg);

/* Creates a pending future not tied to any executor, for tests and for
 * executor authors. Returns CF_OK, CF_EINVAL, CF_ENOMEM. */
CF_API int cf_future_new(cf_future **out);

/* Takes another reference; returns `f`. Cannot fail. */
CF_API cf_future *cf_future_retain(cf_future *f);

/* Drops a reference; the last one frees the future (and its result, if a
 * codec or cf_future_set_result_owned() gave it a free function). NULL is a
 * no-op. Releasing a future does not cancel it. */
CF_API void cf_future_release(cf_future *f);

/* Attempts to cancel. Returns true if the future is now cancelled (it was
 * pending, or already cancelled); false if it is running or finished. A
 * successful cancel completes the future at once for every observer: waiters
 * wake, wait() and as_completed() count it done, callbacks run (in this
 * thread, before cancel returns). NULL returns false. */
CF_API bool cf_future_cancel(cf_future *f);

/* Like cf_future_cancel(), and if the future is already running, also sets
 * the flag cf_call_cancel_requested() reports to its task. Returns true if
 * the future is now cancelled. NULL returns false. */
CF_API bool cf_future_request_cancel(cf_future *f);

/* The future's state, without blocking. NULL gives false. Cannot fail. */
CF_API bool cf_future_cancelled(const cf_future *f);
CF_API bool cf_future_running(const cf_future *f); /* started, not done */
CF_API bool cf_future_done(const cf_future *f);    /* cancelled or finished */

/* Waits until `f` is done or `timeout` seconds pass. Returns:
 *   CF_OK         the task returned; its value is in `*out` (borrowed: the
 *                 future keeps ownership; copy it before releasing f);
 *   CF_ECANCELLED the future was cancelled;
 *   CF_ETIMEDOUT  not done in time;
 *   CF_ETASK      the task failed with its own code (see exception);
 *   CF_E*         the executor failed it (CF_EBROKEN_PROCESS_POOL, ...);
 *   CF_EDEADLK    called from a task, a wait that could never end: `f` is
 *                 the task's own future, or its task waits (through other
 *                 tasks' waits) for this one;
 *   CF_EINVAL     NULL `f` or NaN timeout.
 * `out` may be NULL. Blocks; from a thread pool's task, it may run `f`
 * in place instead (see "wait and as_completed"). */
CF_API int cf_future_result(cf_future *f, double timeout, void **out);

/* Waits like cf_future_result(). Returns CF_OK with `*out` set to the
 * failure (`out->code == 0` and message "" when the task succeeded), or
 * CF_ECANCELLED, CF_ETIMEDOUT, CF_EDEADLK, CF_EINVAL. Blocks. */
CF_API int cf_future_exception(cf_future *f, double timeout, cf_error *out);

/* Attaches `fn(f, arg)`, called once when the future is cancelled or
 * finishes, in the order added, in the thread that completes the future;
 * at once, in this thread, if it is already done. Never called under a
 * library lock, so a callback may use any cfutures function (submit, cancel,
 * add callbacks). Returns CF_OK, CF_EINVAL, CF_ENOMEM (fn not attached). */
CF_API int cf_future_add_done_callback(cf_future *f, cf_done_fn fn,
                                       void *arg);

/* What a failing done-callback is reported to. `handler` NULL restores the
 * default (a line on stderr naming the code). Process-wide. */
typedef void (*cf_callback_error_fn)(cf_future *f, int code, void *arg);
CF_API void cf_set_callback_error_handler(cf_callback_error_fn handler,
                                          void *arg);

/* Executor-author API (Python's set_running_or_notify_cancel, set_result,
 * set_exception), for executors and tests. */

/* Moves a pending future to running. As the spec says, it may be called
 * once per future. Returns CF_OK (now running), CF_ECANCELLED (it was
 * cancelled: do not run the task; waiters have been notified), or
 * CF_ESTATE: already running or finished, or this is not the first call
 * (a second call on a cancelled future is CF_ESTATE: CPython's
 * RuntimeError). When executors race to start a cancelled future, exactly
 * one of them gets CF_ECANCELLED. Never blocks on the future. */
CF_API int cf_future_set_running_or_notify_cancel(cf_future *f);

/* Completes the future with a value. Returns CF_OK, or CF_ESTATE if it is
 * already done (cancelled or finished), CF_EINVAL for NULL. */
CF_API int cf_future_set_result(cf_future *f, void *result);

/* As cf_future_set_result(), and the future owns `result`: `free_result`
 * runs on it when the last reference is released. On error the caller keeps
 * ownership. */
CF_API int cf_future_set_result_owned(cf_future *f, void *result,
                                      void (*free_result)(void *));

/* Completes the future with a failure: `code` as in cf_fail() (0 becomes
 * CF_ETASK), `message` copied (NULL means cf_strerror(code)). Returns CF_OK,
 * CF_ESTATE if already done, CF_EINVAL for NULL `f`. */
CF_API int cf_future_set_exception(cf_future *f, int code,
                                   const char *message);

/* ------------------------------------------------------------------------ */
/* wait and as_completed                                                    */

/* Waits inside tasks. A task may wait for other tasks of its own pool
 * (submit and wait, a recursive divide-and-conquer) however few workers
 * the pool has: when a thread pool's task waits for a future still queued
 * in that same pool, its worker claims it and runs it in place, on its own
 * stack, rather than sleep while no worker is left to run it (the worker
 * that later takes it from the queue finds it started and skips it). Only
 * the futures the task waits for are run this way, and only its own
 * pool's. So the spec's single-worker wait_on_future completes.
 *
 * A wait that could never end returns CF_EDEADLK instead of hanging: a
 * task waiting for its own future, or for one whose task waits, through
 * the waits of other tasks, for it (the spec's wait_on_a / wait_on_b
 * pair: of the two waits, the second to begin gets CF_EDEADLK). A wait
 * for any of several futures (CF_FIRST_COMPLETED, as_completed) gets it
 * only when every future it waits for is in such a cycle. This holds in
 * cf_future_result(), cf_future_exception(), cf_wait(), as_completed and
 * cf_map_next() called from any task (a thread pool's, a custom
 * executor's, an inline continuation).
 *
 * What is not covered: cycles through futures that no task runs (a bare
 * future that a task would complete by hand), and a pool whose workers
 * all wait for tasks queued in another pool whose workers all wait for
 * them (a worker helps only its own pool). A wait with a timeout that
 * runs a future in place returns when that task returns, which may be
 * after the timeout; a poll (timeout <= 0) runs nothing. */

typedef enum cf_return_when {
    CF_ALL_COMPLETED = 0,   /* every future finished or cancelled */
    CF_FIRST_COMPLETED = 1, /* any future finished or cancelled */
    CF_FIRST_EXCEPTION = 2, /* any future failed; else as ALL_COMPLETED */
} cf_return_when;

/* Waits for the `n` futures in `fs` (from any executors, or none; NULLs are
 * CF_EINVAL; duplicates count once) until `return_when` holds or `timeout`
 * passes. Then fills `done` (finished or cancelled) and `not_done`, each an
 * array the caller provides with room for `n` entries (either may be NULL
 * when not wanted), with each distinct future once, in first-seen order, and
 * their counts in `n_done` / `n_not_done` (may be NULL). The entries are
 * borrowed from `fs`. A timeout is not an error, as in Python: it returns
 * CF_OK and not_done says what is left. Returns CF_OK, CF_EINVAL, CF_ENOMEM,
 * CF_EDEADLK (from a task: see above). Blocks. Cost: linear in n. */
CF_API int cf_wait(cf_future *const *fs, size_t n, double timeout,
                   cf_return_when return_when, cf_future **done,
                   size_t *n_done, cf_future **not_done, size_t *n_not_done);

/* An iterator over futures in completion order. */
typedef struct cf_as_completed cf_as_completed;

/* Starts iterating the `n` futures in `fs` as they complete. Futures done
 * already come first; each distinct future comes once; `timeout` counts from
 * this call. The iterator holds its own references, so the caller may
 * release theirs. Returns CF_OK, CF_EINVAL (NULL entries, NaN), CF_ENOMEM.
 * Total cost is linear in n. */
CF_API int cf_as_completed_new(cf_future *const *fs, size_t n, double timeout,
                               cf_as_completed **out);

/* Returns CF_OK with the next completed future in `*out` (a new reference),
 * CF_EEND when every future has been returned, or CF_ETIMEDOUT when the
 * deadline passed first (later calls may still return futures that complete
 * meanwhile, polling), CF_EDEADLK (from a task: see above). Not
 * thread-safe: one consumer per iterator. Blocks. */
CF_API int cf_as_completed_next(cf_as_completed *it, cf_future **out);

/* Frees the iterator and its references. Futures are not cancelled. */
CF_API void cf_as_completed_free(cf_as_completed *it);

/* ------------------------------------------------------------------------ */
/* Completion queue: futures reported through a pollable descriptor         */

/* A set of futures (from any executors, or none) that an event loop
 * watches through one descriptor: it turns readable when a future in the
 * queue is done, and cf_completion_queue_drain() hands the done futures
 * out in completion order, each added future once, cancelled ones
 * included. Nothing spins and no thread of the library waits on your
 * behalf: the completing thread appends to the queue and, when the queue
 * had nothing to report, makes the descriptor readable (one write for a
 * burst of completions).
 *
 *     cf_completion_queue *q;
 *     cf_completion_queue_new(&q);
 *     cf_completion_queue_add(q, f);               // any number, any time
 *     // epoll_ctl(ep, EPOLL_CTL_ADD, cf_completion_queue_fd(q), &ev) ...
 *     // when it is readable:
 *     cf_future *done[64];
 *     size_t n;
 *     cf_completion_queue_drain(q, done, 64, &n);  // n may be 0
 *
 * Readiness contract: the descriptor is readable whenever a done future
 * is waiting to be drained, except while a drain runs. A drain makes it
 * unreadable only if it took every done future. So:
 * - level-triggered (poll, select, epoll without EPOLLET, libuv's
 *   uv_poll_start with UV_READABLE, GLib's g_unix_fd_add with G_IO_IN,
 *   asyncio's loop.add_reader): drain once per wake-up; what is left keeps
 *   the descriptor readable;
 * - edge-triggered (EPOLLET): drain until a call returns fewer futures
 *   than `cap`; the next completion after that raises a new edge.
 * A wake-up may find nothing to drain (n == 0): a completion that raced
 * the previous drain was taken by it. That happens at most once per
 * race; the descriptor never stays readable with nothing to report.
 * Do not read, write or close the descriptor yourself. */
typedef struct cf_completion_queue cf_completion_queue;

/* Creates an empty queue with its descriptor (an eventfd; a non-blocking
 * pipe where the OS has no eventfd), close-on-exec. Returns CF_OK,
 * CF_EINVAL (NULL out), CF_ENOMEM, CF_EAGAIN (no descriptor left),
 * CF_ESYS. */
CF_API int cf_completion_queue_new(cf_completion_queue **out);

/* The descriptor to poll for readability (owned by the queue, valid until
 * cf_completion_queue_free()), or CF_EINVAL for NULL. Cannot fail. */
CF_API int cf_completion_queue_fd(const cf_completion_queue *q);

/* Adds a future to the queue: once `f` is done (at once if it is done
 * already) it is reported. The queue takes its own reference until the
 * future is drained. A future added twice is reported twice. Any thread
 * may add, also while another drains. Returns CF_OK, CF_EINVAL,
 * CF_ENOMEM (not added). Does not block. */
CF_API int cf_completion_queue_add(cf_completion_queue *q, cf_future *f);

/* Moves up to `cap` done futures, in completion order, into out[0..*n_out)
 * and gives the caller the queue's reference to each (release them).
 * *n_out is 0 when none is done. Returns CF_OK, or CF_EINVAL (NULL
 * arguments, cap 0). Never blocks (no system call when the descriptor was
 * not made readable since the last drain). */
CF_API int cf_completion_queue_drain(cf_completion_queue *q, cf_future **out,
                                     size_t cap, size_t *n_out);

/* Futures added and not yet drained, done or not. 0 for NULL. */
CF_API size_t cf_completion_queue_size(cf_completion_queue *q);

/* Frees the queue: its references to futures not yet drained are
 * released (the futures are not cancelled) and its descriptor is closed
 * (remove it from your event loop first). Futures may still complete in
 * other threads meanwhile. Not to be called while another thread adds to
 * or drains this queue. NULL is a no-op. */
CF_API void cf_completion_queue_free(cf_completion_queue *q);

/* ------------------------------------------------------------------------ */
/* Continuations and combinators                                            */

/* Composing futures without blocking a thread. cf_future_then() runs a
 * function once a future is done and gives a new future for that
 * function's outcome; cf_when_all() / cf_when_any() give a future that is
 * done when all / the first of several futures are. Inputs may come from
 * any executor or none. Nothing blocks and nothing polls: each new future
 * follows its inputs through embedded done-callbacks and acts in the
 * thread that completes the last input it needs.
 *
 *     cf_future *parsed, *both;
 *     cf_future_then(download, pool, parse, &parsed);  // parse(value) on pool
 *     cf_future *pair[2] = {parsed, other};
 *     cf_when_all(pair, 2, &both);                     // done when both are
 *
 * Terms. A future D made by these functions *waits on* each of its inputs
 * from its creation until D is done or that input is. A future's
 * *dependents* are the futures waiting on it.
 *
 * Values. then: the function's result. when_all: a `cf_future *const *`
 * array of the n inputs in input order (cf_future_result() hands it out;
 * it and the references in it live as long as D). when_any: the first
 * input done, a `cf_future *` (likewise owned by D); an input done before
 * the call wins over later ones, the first such in input order.
 *
 * Failure. cf_future_then()'s function runs only if the input succeeded: a
 * failed input fails D with the same code and message, a cancelled one
 * cancels D, and the function never runs. cf_future_then_always() runs its
 * function whatever the outcome; D gets the function's outcome. when_all
 * waits for every input, then, if any did not succeed, the first such in
 * input order decides: failed, D fails the same way; cancelled, D is
 * cancelled. when_any never fails because of its inputs (look at the
 * winner). A continuation that cannot be submitted (the executor was
 * shut down meanwhile) fails D with that code (CF_ESHUTDOWN, ...).
 *
 * Cancellation. cf_future_cancel(D) succeeds while D is pending (still
 * waiting, or its continuation queued and not started). Then each input of
 * D that is left with no dependent, and is itself pending, is cancelled
 * too; an input that another continuation or combinator still waits on,
 * or whose task runs, is left alone. The rule repeats up a chain, so
 * cancelling the end of a chain nobody else shares cancels the whole
 * chain that has not run. Only continuations and combinators count as
 * dependents: a thread in cf_future_result(), cf_wait(), as_completed, a
 * completion queue, a done-callback or a reference you hold do not keep
 * an input from being cancelled this way. A future with 65,535 dependents
 * or more at once counts as always waited on: it is never cancelled this
 * way.
 *
 * Threads and stack. A continuation with executor NULL ("inline") and
 * every combinator run in the thread that completes the last input they
 * need, like a done-callback (in the calling thread, during the call, if
 * that input is done already); keep inline continuations short, as that
 * thread may be a pool's worker or a process pool's manager. Chains run
 * as a loop on that thread, not as nested calls: any length runs in
 * constant stack (100,000 links deep is tested). So when an inline
 * continuation completes another future, that future's continuations run
 * after it returns, not inside: an inline continuation must not wait for
 * a future that depends on one it completed.
 *
 * Lifetime. D keeps its inputs (and so the value a continuation reads)
 * alive until D is done. A chain whose inputs never complete (a bare
 * future nobody completes) is never freed.
 *
 * Cost. A continuation on an executor is submitted with D as its task's
 * own future, no extra hop; cf_future_then needs no memory beyond D (D
 * itself waits on its input's list), cf_future_then_always a 64-byte
 * slot more from the same slabs as futures, no malloc. Once its input is
 * done, a hop costs about what a done-callback that submits does; in all,
 * making and running one costs about 1.15 submits (bench/then.c: an
 * input's continuations for one thread pool are queued there together),
 * and on an input done already it is a submit. A combinator is one malloc
 * of about 24 bytes per input. */

/* Runs a function on a future's value once it succeeds, giving a new
 * future: `fn(value)` (value: f's result) runs on `ex`, or inline with ex
 * NULL, and D, handed back in `*out`, gets its outcome. On any executor:
 * on a process pool the value crosses through the pool's default codec,
 * like a submitted argument. Returns CF_OK, CF_EINVAL (NULL f, fn or
 * out), CF_ENOMEM, CF_ESHUTDOWN (ex is shut down), CF_EDEADLK (ex is the
 * parent's, in a process-pool worker); on error nothing is attached. Does
 * not block (an inline fn runs now if f is done). */
CF_API int cf_future_then(cf_future *f, cf_executor *ex, cf_fn fn,
                          cf_future **out);

/* A continuation that sees the done input, whatever its outcome: `done`
 * is borrowed for the call (read it with cf_future_result(done, 0, ...),
 * cf_future_exception(), cf_future_cancelled()). Returns a result, or
 * cf_fail() to fail, like a task. */
typedef void *(*cf_then_fn)(cf_future *done, void *arg, cf_call *call);

/* Runs a function on a future once it is done, whatever its outcome:
 * `fn(f, arg)` runs on `ex`, or inline with ex NULL, once `f` succeeded,
 * failed or was cancelled, and D, handed back in `*out`, gets its
 * outcome. `ex` must run tasks in this process (a thread pool, a
 * custom executor): a process pool gives CF_ENOTSUP. Otherwise as
 * cf_future_then(). */
CF_API int cf_future_then_always(cf_future *f, cf_executor *ex,
                                 cf_then_fn fn, void *arg, cf_future **out);

/* Gives a future done when all of several futures are: the `n` futures
 * in `fs` (NULL entries are CF_EINVAL; duplicates allowed; n 0 gives a
 * future done at once with an empty array). Its value and failure rules
 * are above. The caller may release its references to fs at once.
 * Returns CF_OK, CF_EINVAL, CF_ENOMEM (nothing attached). Does not
 * block. */
CF_API int cf_when_all(cf_future *const *fs, size_t n, cf_future **out);

/* Gives a future done when the first of several futures is: of the `n`
 * in `fs`; its value is that future. n 0 is CF_EINVAL. Otherwise as
 * cf_when_all(). */
CF_API int cf_when_any(cf_future *const *fs, size_t n, cf_future **out);

/* ------------------------------------------------------------------------ */
/* Executors                                                                */

/* Schedules `fn(arg)` and hands back its future. Returns CF_OK, CF_EINVAL,
 * CF_ESHUTDOWN (after shutdown: Python's RuntimeError), CF_EBROKEN* (the
 * pool is broken), CF_ENOMEM, CF_EAGAIN (no worker could be started and
 * none runs), CF_EDEADLK (called from a process-pool worker on its
 * parent's executor). On error no task was scheduled. Does not block on
 * the task. */
CF_API int cf_executor_submit(cf_executor *ex, cf_fn fn, void *arg,
                              cf_future **out);

/* As cf_executor_submit(), with the codec for this task's argument and
 * result (NULL: the executor's default). */
CF_API int cf_executor_submit_ex(cf_executor *ex, cf_fn fn, void *arg,
                                 const cf_codec *codec, cf_future **out);

/* Per-task options for cf_executor_submit_opts(). Zero means the default. */
typedef struct cf_submit_options {
    /* Codec for this task's argument and result. NULL: the executor's. */
    const cf_codec *codec;
    /* Seconds the task may run, counted from its start (time queued does
     * not count). 0: the executor's default (the pool option task_timeout;
     * none if it has none). CF_FOREVER: no limit, whatever the default.
     * Negative or NaN: CF_EINVAL.
     *
     * On a process pool, a task still running at its limit is killed with
     * its worker process: its future fails with CF_ETASK_TIMEOUT, the
     * message naming the task's function and the limit; a replacement
     * worker starts as work needs it, and every other task, those that
     * waited at that worker included, carries on (whether or not the pool
     * survives worker deaths). A result that reached the pool before the
     * manager acted on the limit still counts.
     *
     * On a thread pool (and a custom executor, which runs tasks in this
     * process) a thread cannot be stopped safely: at the limit the task's
     * cf_call_cancel_requested() turns true, and a task that returns after
     * its limit fails with CF_ETASK_TIMEOUT (its result, if it set a free
     * function, is freed), whatever it returned. A per-executor timer
     * thread, started at the first task with a limit and joined when the
     * executor is freed, raises the flags. The MPI executor does not
     * enforce limits: a limit there is CF_ENOTSUP. */
    double timeout;
} cf_submit_options;

/* As cf_executor_submit_ex(), with options (NULL: all defaults). Returns
 * the same codes, CF_EINVAL for a bad option, CF_ENOTSUP for a limit on
 * an executor that cannot keep it. Does not block. */
CF_API int cf_executor_submit_opts(cf_executor *ex, cf_fn fn, void *arg,
                                   const cf_submit_options *opts,
                                   cf_future **out);

/* The cancellation ladder: what cf_executor_cancel() did. */
typedef enum cf_cancel_outcome {
    /* The future was done before the call; nothing changed. */
    CF_CANCEL_WAS_DONE = 0,
    /* It had not started: cancelled at once, its task never runs. */
    CF_CANCEL_QUEUED = 1,
    /* It was running and ended (its own result or failure) after its
     * cancel flag was raised, within the grace period or as its worker
     * was about to be killed. */
    CF_CANCEL_STOPPED = 2,
    /* Process pool: still running after the grace period; its worker was
     * killed (a replacement starts as work needs it) and the future is
     * cancelled (cf_future_cancelled() true, result CF_ECANCELLED). */
    CF_CANCEL_KILLED = 3,
    /* Still running after the grace period, and the executor cannot stop
     * a task by force (a thread pool, a custom executor): its flag stays
     * raised, the task runs on. */
    CF_CANCEL_STILL_RUNNING = 4,
} cf_cancel_outcome;

/* Cancels `f`, a future of `ex`, escalating as far as needed: a task not
 * yet started is cancelled at once; a running one has its cancel flag
 * raised (cf_call_cancel_requested(), in a process-pool worker too) and
 * gets `grace` seconds to end; on a
 * process pool, one still running then is killed with its worker and its
 * future cancelled. No other task is disturbed: tasks waiting at that
 * worker move to others. `grace` CF_FOREVER waits for the task however
 * long it runs; 0 escalates at once. What happened goes to `*outcome`
 * (may be NULL). Returns CF_OK, CF_EINVAL (NULL ex or f, negative or NaN
 * grace), CF_EDEADLK (from a process-pool worker, or from the process
 * pool's own manager thread, a done-callback, which the wait would
 * block). A future of another executor is cancelled or flagged, never
 * killed. Blocks up to `grace` seconds, then while the worker is
 * killed. */
CF_API int cf_executor_cancel(cf_executor *ex, cf_future *f, double grace,
                              cf_cancel_outcome *outcome);

/* Stops accepting work. Idempotent. With `cancel_futures`, every task not
 * yet started is cancelled and running tasks see cf_call_cancel_requested().
 * With `wait`, returns when every started task has finished and the
 * workers are gone; without, returns at once and the workers exit on their
 * own once the work ends. Returns CF_OK or CF_EINVAL. Blocks if `wait`.
 *
 * Called with `wait` from one of the executor's own threads (one of its
 * tasks or its initializer on a thread pool; a done-callback a process
 * pool runs on its manager thread), the shutdown takes full effect as
 * above, but the call cannot wait for the thread it runs on: it returns
 * CF_EDEADLK at once (Python raises RuntimeError from the join there,
 * after shutting down), and the executor finishes on its own once its
 * running tasks return. From a process-pool worker on the parent's
 * executor: CF_EDEADLK and nothing happens. */
CF_API int cf_executor_shutdown(cf_executor *ex, bool wait,
                                bool cancel_futures);

/* shutdown(wait) with a limit: waits at most `timeout` seconds. Returns
 * CF_OK when all work ended, or CF_ETIMEDOUT with the number of tasks not
 * yet finished (queued or running) in `*unfinished` (may be NULL). Either
 * way the executor is shut down; calling again waits again. From one of
 * the executor's own threads (see cf_executor_shutdown()) with `timeout`
 * > 0 it shuts down without waiting and returns CF_EDEADLK, `*unfinished`
 * counting the tasks not finished, the calling one included; a
 * `timeout` <= 0 there is an ordinary poll (CF_ETIMEDOUT). */
CF_API int cf_executor_shutdown_timeout(cf_executor *ex, double timeout,
                                        bool cancel_futures,
                                        size_t *unfinished);

/* How cf_executor_shutdown_report() escalates. Zero fields escalate at
 * once; each is in seconds (negative or NaN: CF_EINVAL). */
typedef struct cf_shutdown_options {
    /* How long running tasks may go on before they are asked to stop
     * (their cancel flags raised). 0: asked at once. */
    double wait;
    /* How long they then get to stop before workers still busy are sent
     * SIGTERM (process pools), or are reported still running (executors
     * that cannot kill). 0: at once. */
    double grace;
    /* Process pools: how long after SIGTERM before SIGKILL. 0: at once. */
    double kill_after;
} cf_shutdown_options;

/* What became of the tasks not finished when cf_executor_shutdown_report()
 * was called. Every such task is in exactly one count. */
typedef struct cf_shutdown_report {
    size_t cancelled;     /* not started: cancelled, never ran */
    size_t completed;     /* ran to their end before being asked to stop */
    size_t stopped;       /* ended after being asked, before any signal
                           * (whatever their outcome, a crash included) */
    size_t killed;        /* ended by SIGTERM or SIGKILL of their worker:
                           * failed with CF_EBROKEN_PROCESS_POOL */
    size_t still_running; /* left running at the deadline (only executors
                           * that cannot kill: thread pools, custom ones) */
    bool can_kill;        /* the executor can kill tasks (process pools) */
    /* false for a custom executor the core cannot look into: the
     * fallback shuts it down with cancel_futures and waits wait + grace
     * seconds (cf_executor_shutdown_timeout()); still_running is what
     * was left, the other counts are 0. */
    bool exact;
} cf_shutdown_report;

/* Shuts `ex` down by escalation and reports how its unfinished tasks
 * ended: stops intake, cancels every task not started, lets running
 * tasks go on for `wait` seconds, raises their cancel flags, gives them
 * `grace` seconds more, then on a process pool sends SIGTERM to workers
 * still busy, SIGKILL `kill_after` seconds later, and waits for them to
 * be reaped. An executor that cannot kill (a thread pool) returns at the
 * deadline with the tasks still running counted (free it later to wait
 * for them; their flags stay raised). `opts` NULL: all zero. Returns
 * CF_OK when nothing is left running, CF_ETIMEDOUT when tasks were left
 * running (the report says how many), CF_EINVAL, CF_ENOMEM (no memory
 * for the list of tasks: the executor is shut down, nothing cancelled,
 * no report), CF_EDEADLK (from one of the executor's own threads, or a
 * process-pool worker on its parent's executor: nothing was done). The
 * executor is shut down either way, as by cf_executor_shutdown(); the
 * report is written on CF_OK and CF_ETIMEDOUT. Blocks for at most
 * wait + grace + kill_after seconds and the reaping of killed workers. */
CF_API int cf_executor_shutdown_report(cf_executor *ex,
                                       const cf_shutdown_options *opts,
                                       cf_shutdown_report *out);

/* Python's `with` exit: shutdown(wait=true), then frees the executor.
 * Futures stay valid. NULL is a no-op. Blocks. From one of the executor's
 * own threads (see cf_executor_shutdown()), which the wait would wait for,
 * it shuts the executor down and returns at once; a thread of the
 * library's ("cfutures-free") waits for the executor's work to end and
 * frees it, so nothing leaks. If no thread can be started then (a thread
 * limit), the executor stays shut down but allocated. Either way `ex`
 * must not be used afterwards. */
CF_API void cf_executor_free(cf_executor *ex);

/* Changes the most workers a running pool uses. Up: workers start as
 * queued work needs them. Down: idle workers beyond it exit now, busy ones
 * once their current task is done (they take no new one; on a process
 * pool, tasks already waiting at them move to other workers). No task is
 * lost or run twice; a burst of up to max_workers tasks still runs at
 * once. Returns at once (the pool adjusts in the background): CF_OK,
 * CF_EINVAL (NULL, max_workers <= 0, or above the pool's limit: its
 * max_workers_limit), CF_ESHUTDOWN, CF_EBROKEN_PROCESS_POOL or
 * CF_EBROKEN_THREAD_POOL (also in a fork child, for a pool inherited
 * from the parent), CF_ENOTSUP (custom executors), CF_EDEADLK (inside a
 * worker, on its parent's executor). */
CF_API int cf_executor_set_max_workers(cf_executor *ex, int max_workers);

/* Whether `ex` is broken: a process pool after a worker ended abruptly
 * (unless survive_worker_death) or failed to start or initialize, a thread
 * pool after a worker's initializer failed; its submits then return
 * CF_EBROKEN_PROCESS_POOL / CF_EBROKEN_THREAD_POOL. Returns true, and sets
 * `*why` (if `why` is not NULL) to the reason its failed futures carry,
 * valid until cf_executor_free(ex); or false, `*why` untouched: NULL, not
 * broken, or a custom executor (which reports failures on its futures).
 * Does not block. */
CF_API bool cf_executor_broken(const cf_executor *ex, const char **why);

/* The executor's kind: "thread_pool", "process_pool", or a custom name;
 * "" for NULL. Never NULL. */
CF_API const char *cf_executor_kind(const cf_executor *ex);

#if defined(__GNUC__)
/* Scoped form of `with`: the executor is freed (shutdown with wait) when
 * the variable goes out of scope.
 *     CF_SCOPED_EXECUTOR ex = NULL;
 *     if (cf_thread_pool_new(NULL, &ex) != CF_OK) return 1;            */
CF_API void cf_executor_freep(cf_executor **ex);
#define CF_SCOPED_EXECUTOR \
    __attribute__((cleanup(cf_executor_freep))) cf_executor *
#endif

/* ------------------------------------------------------------------------ */
/* Stats and observers                                                      */

/* What an executor is doing: counts of its tasks by state, its workers,
 * and how long tasks wait in its queue and run, kept once
 * cf_executor_monitor() turns it on; and an observer, a function called
 * at each task's submit, start and finish and at each worker's start and
 * exit. Off (the default), they cost nothing: a submit reads one more
 * word. On, a thread pool's task costs no allocation: three reads of a
 * fast clock (the CPU's invariant time-stamp counter where there is one:
 * 16 ns a read on our 2-vCPU VM, where clock_gettime takes 60), one more
 * take of its future's lock and a few plain stores (counters are sharded
 * by thread): about 430 instructions and 20 ns more per empty task, where
 * the task itself costs about 475 and 48 ns (`bench_throughput 30000 1 1
 * 40` against `... 0 40`: one worker, one cf_wait for all, a quiet
 * machine). A loop that takes each result as soon as its task ends pays
 * more, 100-220 ns against 45-80: it reads each future while the worker
 * still writes it, and monitoring writes it more often. So they can stay
 * on for tasks that do real work; other executors' tasks also take a
 * record (a 64-byte slot) from the future slabs. The observer costs what
 * it does, and a clock_gettime per event for the event's time.
 *
 * Thread pools, process pools and custom executors report everything. A
 * process pool's manager thread times its tasks: a task starts when the
 * manager sees a worker claim it (or sends it to an idle worker) and runs
 * until the manager reads its result, so its run time includes the trip
 * both ways; its worker is the process's slot (0 .. max_workers-1). Map
 * chunks of cf_executor_map on a process pool are not counted. Inline
 * continuations (cf_future_then with no executor) are not tasks of any
 * executor. */

/* What happened, for an observer. */
typedef enum cf_event_kind {
    /* A task is being submitted: sent before the executor takes it, so it
     * comes before the task's START. A refused submit is followed by a
     * FINISH with the error code. */
    CF_EVENT_SUBMIT = 1,
    /* A task starts running: `duration` is how long it was queued. */
    CF_EVENT_START = 2,
    /* A task's future is done: `code` is CF_OK, a task failure (CF_ETASK
     * for the task's own codes, or the CF_E* code it or the executor set)
     * or CF_ECANCELLED; `duration` is how long it ran (0 if it never
     * started). */
    CF_EVENT_FINISH = 3,
    CF_EVENT_WORKER_START = 4, /* a worker thread or process starts */
    CF_EVENT_WORKER_EXIT = 5,  /* it ended (a process: was reaped) */
    /* The executor broke (a thread initializer failed; a worker process
     * died, or failed its initializer): `code` is the error later submits
     * get, `message` says why; worker -1. Or, on a process pool with
     * survive_worker_death, a worker process died and the pool carries
     * on: `worker` is its index, `code` CF_EBROKEN_PROCESS_POOL (its task
     * fails with it), `message` how it ended. */
    CF_EVENT_CRASH = 6,
} cf_event_kind;

typedef struct cf_event {
    cf_event_kind kind;
    cf_executor *executor;
    /* SUBMIT, START, FINISH: the task's future, borrowed for the call;
     * NULL for worker and crash events. */
    cf_future *future;
    /* START, FINISH and WORKER_*: the worker's index (0 .. max_workers-1)
     * on a thread pool; -1 where there is none (a cancel, a submit, a
     * custom executor). */
    int worker;
    int code;            /* FINISH, CRASH: see above; else 0 */
    const char *message; /* CRASH: why; else NULL */
    double time;         /* when, in seconds of CLOCK_MONOTONIC */
    double duration;     /* START, FINISH: seconds, see above; else 0 */
} cf_event;

/* An observer. Called in the thread where the event happens (the
 * submitting thread, a worker, the thread that cancels; on a process pool
 * its manager thread for START, FINISH, worker and crash events), never
 * under a library lock, possibly from several threads at once; `ev` is
 * valid for the call. It must not block for long: the thread it runs on
 * is doing the executor's work (a slow observer on a process pool's
 * manager delays every task of the pool). */
typedef void (*cf_observer_fn)(const cf_event *ev, void *arg);

typedef struct cf_monitor_options {
    /* Keep the counts and time summaries cf_executor_get_stats() reports.
     * false: they stay as they are (at 0 if never kept). */
    bool stats;
    /* Called at every event. NULL: none. */
    cf_observer_fn observer;
    void *observer_arg;
} cf_monitor_options;

/* Turns monitoring on, changes it, or (NULL or all zero) turns it off, for
 * tasks submitted from now on. Tasks submitted before keep reporting as
 * they were submitted. Counts carry on across off and on; an observer
 * replaced may still see the events of tasks already under way. Returns
 * CF_OK, CF_EINVAL (NULL ex), CF_ENOMEM (nothing changed). */
CF_API int cf_executor_monitor(cf_executor *ex,
                               const cf_monitor_options *opts);

/* A time summary, in seconds. Quantiles are approximate (within 12.5%);
 * count, total, min and max are exact. All 0 when count is 0. */
typedef struct cf_time_stats {
    uint64_t count;
    double total, min, max;
    double p50, p90, p99;
} cf_time_stats;

typedef struct cf_executor_stats {
    /* Tasks, counted while monitoring with stats was on. queued and
     * running are what is left of those; a snapshot taken while tasks
     * move may be off by the few that move. */
    uint64_t submitted; /* accepted */
    uint64_t queued;    /* accepted, not started, not done */
    uint64_t running;   /* started, not done */
    uint64_t finished;  /* done other than by a cancel (ran, or failed by
                         * the executor without running) */
    uint64_t failed;    /* of finished: failures */
    uint64_t cancelled; /* cancelled before they started */
    /* Workers now, whether or not monitoring is on: threads (or worker
     * processes not yet reaped) alive, and those of them waiting for work
     * (a process pool's as its manager last saw them). -1: the executor
     * does not say. */
    int workers_alive;
    int workers_idle;
    cf_time_stats queue_wait; /* submit to start, per started task */
    cf_time_stats run_time;   /* start to the task's return */
} cf_executor_stats;

/* Fills `*out` with the executor's stats. Returns CF_OK or CF_EINVAL.
 * Does not block (a moment's lock for the worker counts). */
CF_API int cf_executor_get_stats(cf_executor *ex, cf_executor_stats *out);

/* ------------------------------------------------------------------------ */
/* map                                                                      */

typedef struct cf_map cf_map;

typedef struct cf_map_options {
    /* Seconds from the cf_executor_map*() call until results are late
     * (CF_ETIMEDOUT from cf_map_next). 0: no limit (the default). */
    double timeout;
    /* Items a task carries. Fewer messages on a process pool; on threads it
     * only batches. 0: 1. */
    size_t chunksize;
    /* At most this many chunks in flight (submitted, not yet consumed): an
     * unbounded input runs in bounded memory (Python 3.14's buffersize).
     * 0: unbounded; all input is taken at once, as Python does. */
    size_t buffersize;
    /* Codec for arguments and results (NULL: the executor's default). */
    const cf_codec *codec;
} cf_map_options;

/* Like map(fn, args): results come back in input order. Returns CF_OK with
 * the iterator, or the same errors as cf_executor_submit() (nothing is then
 * left running). `args` is read during this call only when buffersize is 0;
 * otherwise it must stay valid until the iterator is freed. */
CF_API int cf_executor_map(cf_executor *ex, cf_fn fn, void *const *args,
                           size_t n, const cf_map_options *opts,
                           cf_map **out);

/* Pulls arguments from `next(ctx, &arg)`, which returns true and sets *arg,
 * or false at the end. Called only from the thread calling cf_map_next()
 * (and from this call). With buffersize 0 it is drained at once. */
typedef bool (*cf_next_arg_fn)(void *ctx, void **arg);
CF_API int cf_executor_map_stream(cf_executor *ex, cf_fn fn,
                                  cf_next_arg_fn next, void *ctx,
                                  const cf_map_options *opts, cf_map **out);

/* Returns the next result in input order: CF_OK with `*result` (borrowed,
 * valid until the next call or cf_map_free()), CF_EEND after the last,
 * CF_ETIMEDOUT if it is late, CF_EDEADLK (from a task whose wait for the
 * item could never end; it is not consumed), CF_ECANCELLED, or the
 * failure of that call (CF_ETASK or a CF_E* code) with details in
 * `*error` (may be NULL). A failure does not end the iteration: the next
 * call moves on. CF_ETIMEDOUT does not consume the item: after the
 * deadline has passed, each call polls the same item, returning it once
 * ready and CF_ETIMEDOUT until then. Not thread-safe: one consumer per
 * iterator. Blocks. */
CF_API int cf_map_next(cf_map *m, void **result, cf_error *error);

/* Frees the iterator, cancelling every call that has not started (Python
 * closing the generator early). Does not wait for running calls. NULL is a
 * no-op. */
CF_API void cf_map_free(cf_map *m);

/* ------------------------------------------------------------------------ */
/* ThreadPoolExecutor                                                       */

typedef struct cf_thread_pool_options {
    /* Most threads. 0: min(32, CPUs this process may use + 4), as Python.
     * Negative or above 4096: CF_EINVAL. Threads start lazily; idle ones
     * are reused, each by one submit: tasks submitted together, up to this
     * many, run at once (a thread starts for each task no idle thread is
     * left for). */
    int max_workers;
    /* Threads are named "<prefix>_<n>" (truncated to the OS limit, 15
     * bytes on Linux). NULL or "": "cfpool<k>", k counting pools. Copied. */
    const char *thread_name_prefix;
    /* Runs at the start of each worker thread with `initarg`. Nonzero breaks
     * the pool: pending futures fail with CF_EBROKEN_THREAD_POOL and so does
     * every later submit. NULL: none. */
    int (*initializer)(void *initarg);
    void *initarg;
    /* Wraps each worker thread's whole life, for a binding that keeps
     * per-thread state for as long as the thread lives (an interpreter's
     * thread state): the new thread, already named, calls
     * `thread_main(run, run_arg, thread_ctx)`, which must call
     * `run(run_arg)` once, on this thread. run() runs the initializer and
     * then every task the thread will run, and returns when the pool
     * stops, so the hook's frame, and what it keeps on its stack,
     * encloses them all. Further calls of run() return at once. A hook
     * that returns without calling run() breaks the pool (pending futures
     * and later submits get CF_EBROKEN_THREAD_POOL). NULL (the default):
     * the thread runs the worker directly. */
    void (*thread_main)(void (*run)(void *run_arg), void *run_arg,
                        void *thread_ctx);
    void *thread_ctx;
    /* Default run-time limit of each task, in seconds, for tasks
     * submitted without one (see cf_submit_options.timeout). 0: none.
     * Negative or NaN: CF_EINVAL. */
    double task_timeout;
    /* Seconds a thread may stay idle before it exits, down to
     * min_workers; tasks submitted later start threads again as they
     * need (a burst still runs at once). 0 (the default): threads stay
     * while the pool is open. < 0 or NaN: CF_EINVAL. */
    double idle_timeout;
    /* Threads idle_timeout leaves running (not started in advance). 0 by
     * default; < 0 or more than max_workers: CF_EINVAL. A later
     * cf_executor_set_max_workers() below it wins. */
    int min_workers;
    /* The most cf_executor_set_max_workers() may raise max_workers to.
     * 0 (the default): the larger of max_workers and 256. Below
     * max_workers, negative or above 4096: CF_EINVAL. */
    int max_workers_limit;
    /* Threads the pool may add, at most, while its workers are blocked in
     * nested waits (a task waiting for a future that runs on another
     * thread, or for a future of another pool): each such worker lets
     * one more thread run queued tasks, so that a chain of tasks waiting
     * for each other completes even when every worker waits. Extra
     * threads retire once the waits end. 0 (the default): 256. Negative
     * or above 4096: CF_EINVAL. */
    int max_compensating;
} cf_thread_pool_options;

/* Creates a thread pool (no thread starts until work arrives). Returns
 * CF_OK, CF_EINVAL, CF_ENOMEM, CF_ESYS. */
CF_API int cf_thread_pool_new(const cf_thread_pool_options *opts,
                              cf_executor **out);

/* The CPUs this process may run on (sched affinity), at least 1. */
CF_API int cf_cpu_count(void);

/* ------------------------------------------------------------------------ */
/* ProcessPoolExecutor                                                      */

/* How it works, and what it asks of your program:
 *
 * - By default workers run this same program. An exec'd worker
 *   (CF_START_EXEC) never reaches main(): a constructor in the library
 *   sees the environment variable CF_PROCESS_WORKER, serves tasks, and
 *   exits. main() needs no special code; constructors that run after the
 *   library's (for the shared library: the main program's own) do not run
 *   in a worker. Workers may instead run another program
 *   (CF_START_PROGRAM) or be started by a callback (CF_START_CALLBACK); see
 *   cf_start_method and cf_task_register().
 * - In workers of this same program, a task, a custom codec and the
 *   initializer are found by the module that holds them and their offset
 *   in it (the main program, or a shared library by its path; one the
 *   parent loaded with dlopen() is loaded again by that path). So they
 *   must be functions, and a codec a static object (a global or a
 *   `static const cf_codec`), not memory on the heap or the stack: submit
 *   returns CF_EINVAL for those. In workers of another program they are
 *   found by the name both programs registered; submitting one without a
 *   name returns CF_EINVAL.
 * - Tasks and results travel over a transport (cf_transport): a socket
 *   plus memory shared with each worker by default, or plain pipes.
 * - Arguments and results cross through the codec (cf_codec_word() by
 *   default). With cf_codec_string() a task's result must be malloc'd (or
 *   NULL): the worker frees it once encoded.
 * - A worker runs one task at a time. A few more may wait at a busy
 *   worker (their arguments already sent) but stay pending: the worker
 *   claims each when it is free to start it (the future turns running),
 *   so until then it can be cancelled, and a cancelled task never runs. A
 *   task waiting at a worker moves to another one that falls idle first.
 *   Over pipes a task is sent only to a free worker.
 *   A running task's cf_call_cancel_requested() turns true when the pool
 *   passes a cancel request on (cf_executor_cancel(), the shutdown
 *   report, a shutdown with cancel_futures): a flag in the memory shared
 *   with the worker, or over pipes a STOP frame the flag's check looks
 *   for; the worker lives on.
 * - The pool's manager thread and idle workers busy-wait a few tens of
 *   microseconds before they sleep, so back-to-back tasks do not pay for
 *   a sleeping wake-up each.
 * - A worker that dies (a signal, abort, _exit, the OOM killer) never
 *   hangs anything. By default the pool breaks: the task it ran, every
 *   queued task and every later submit fail with CF_EBROKEN_PROCESS_POOL,
 *   the message naming the worker's pid, its exit status or signal, and
 *   the task by its function's name, read from the module file's
 *   symbol table (static functions too), or "<module>+0x<offset>" (for
 *   addr2line) when the file is stripped. A worker killed by SIGSEGV,
 *   SIGBUS, SIGFPE, SIGILL or SIGABRT adds "; backtrace:" and one line
 *   per frame, innermost first ("\n  #0 name+0x1d (module+0x1a2d)",
 *   "\n  #1 module+0x1b72" where no symbol names it), captured in the
 *   worker as it crashed (a handler on an alternate stack, installed in
 *   worker processes only, that re-raises the signal: the exit status
 *   stays that signal). Other ends (SIGKILL, _exit) have none.
 * - Hygiene: workers keep no descriptor of the caller's but 0-2 (and a
 *   worker program its keep_fds), die with their parent, and are reaped by
 *   pid (the caller's other children are left alone; a callback's workers
 *   by its reap function when it gives one). The library installs no
 *   signal handler in the caller's process. From inside a worker,
 *   creating a process pool or calling into an executor the task did not
 *   create there (its parent's) returns CF_EDEADLK; a task may create and
 *   use thread pools of its own. A task (or initializer) may fork: a
 *   child that returns from it ends there (_exit(0)) instead of serving
 *   the pool beside its parent; only the parent's result counts. */

typedef enum cf_start_method {
    /* Workers are fresh processes of this same program (fork + exec of
     * /proc/self/exe): safe in a multithreaded parent. The default. */
    CF_START_EXEC = 0,
    /* Plain fork of the parent: faster to start, safe only while the
     * parent has no other threads. */
    CF_START_FORK = 1,
    /* Workers run another program (cf_process_pool_options.program), which
     * calls cf_process_worker_main(). Tasks, custom codecs and the
     * initializer must be registered by name in both programs
     * (cf_task_register()); submitting an unregistered one is CF_EINVAL. */
    CF_START_PROGRAM = 2,
    /* Workers are started by a callback (cf_process_pool_options.
     * start_worker), which hands the child its channel; the child calls
     * cf_process_worker_serve(). Names as for CF_START_PROGRAM: the child
     * may run anything (a language runtime's own process launcher). */
    CF_START_CALLBACK = 3,
} cf_start_method;

/* How tasks and results travel between a pool and its workers. */
typedef enum cf_transport {
    /* A socket per worker plus memory shared with it: tasks are claimed
     * and results published without a system call while both sides are
     * busy, and several tasks may wait at a busy worker. The default. */
    CF_TRANSPORT_SHARED_MEMORY = 0,
    /* Two pipes per worker, nothing shared: for sandboxes without memfd
     * or shared mappings. A worker is sent a task only when it is free,
     * so each task costs a round trip through the pool's manager. */
    CF_TRANSPORT_PIPES = 1,
} cf_transport;

/* What a worker started by a callback (CF_START_CALLBACK) needs to reach
 * its pool: descriptors the child must get (inherited across fork, or
 * passed to it; their numbers may change on the way) and hand to
 * cf_process_worker_serve(). */
typedef struct cf_worker_channel {
    int read_fd;  /* tasks arrive here */
    int write_fd; /* results go here (the same as read_fd for a socket) */
    int shm_fd;   /* the pool's shared memory, or -1 */
    int slot;     /* this worker's place in it, or -1 */
} cf_worker_channel;

/* What a start_worker callback tells the pool about the process it
 * started. */
typedef struct cf_worker_process {
    /* The worker's process id (> 0). */
    long pid;
    /* NULL: the worker is a child of this process and the pool reaps it
     * (waitpid); a pid that is not a child of this process fails the
     * start (CF_EINVAL), as the pool could neither reap nor safely
     * signal it. Set: the pool calls it once, on its manager thread, after
     * the worker ended (its channel closed or, where the kernel has
     * pidfds, its process ended), to learn its wait status as waitpid()
     * reports it; for workers that are not this process's children or
     * that the starter reaps itself. Returns 0 with `*wait_status` set, or
     * nonzero when the status is unknown. Must not block for long. */
    int (*reap)(void *start_ctx, long pid, int *wait_status);
} cf_worker_process;

/* Starts one worker process for a CF_START_CALLBACK pool. The child gets
 * `channel`'s descriptors and calls cf_process_worker_serve() with them
 * (and exits with the status it reports). Runs on the pool's manager
 * thread; the pool closes its copies of the child's descriptors once it
 * returns. Returns CF_OK with `*out` filled in, or a CF_E* code (the
 * pool then treats the start as failed: CF_EAGAIN, CF_ENOMEM, ...). */
typedef int (*cf_start_worker_fn)(void *start_ctx,
                                  const cf_worker_channel *channel,
                                  cf_worker_process *out);

typedef struct cf_process_pool_options {
    /* Most worker processes. 0: CPUs this process may use (at most
     * 4096). < 0 or above 4096: CF_EINVAL. */
    int max_workers;
    cf_start_method start_method;
    /* Runs once in each worker before its first task, with `initarg` (a
     * pointer value that crosses as is, like cf_codec_word()). Nonzero, or
     * a worker dying in it, breaks the pool (CF_EBROKEN_PROCESS_POOL). */
    int (*initializer)(void *initarg);
    void *initarg;
    /* A worker exits and is replaced after this many tasks. 0: never. */
    size_t max_tasks_per_child;
    /* Codec for tasks submitted without one. NULL: cf_codec_word(). */
    const cf_codec *codec;
    /* false (the default, as Python): a worker that dies breaks the pool.
     * true: only the dead worker's task fails (CF_EBROKEN_PROCESS_POOL
     * naming the worker), a replacement starts and the rest carry on. */
    bool survive_worker_death;
    /* CF_START_PROGRAM: the program workers run (a path; no PATH search),
     * its argument vector (argv[0] included, NULL-terminated; NULL means
     * {program, NULL}) and descriptors the worker keeps at the same
     * numbers (n_keep_fds of them, each 0 to 1023; the channel's
     * descriptors are placed above them). Copied at creation. */
    const char *program;
    const char *const *program_argv;
    const int *keep_fds;
    size_t n_keep_fds;
    /* CF_START_CALLBACK: starts a worker; called with `start_ctx`. */
    cf_start_worker_fn start_worker;
    void *start_ctx;
    /* How tasks and results travel (CF_TRANSPORT_SHARED_MEMORY). */
    cf_transport transport;
    /* Task names every worker must know, NULL-terminated (NULL: none).
     * Each worker checks them as it starts; one it does not know breaks
     * the pool, the message naming it (instead of each task failing as it
     * is run). Copied at creation. */
    const char *const *required_tasks;
    /* Default run-time limit of each task (a map chunk counts as one), in
     * seconds, for tasks submitted without one (see
     * cf_submit_options.timeout). 0: none. Negative or NaN: CF_EINVAL. */
    double task_timeout;
    /* Seconds a worker may stay idle before it exits, down to
     * min_workers; tasks submitted later start workers again as they
     * need. 0 (the default): workers stay. < 0 or NaN: CF_EINVAL. */
    double idle_timeout;
    /* Workers idle_timeout leaves running (not started in advance).
     * 0 by default; < 0 or more than max_workers: CF_EINVAL. A later
     * cf_executor_set_max_workers() below it wins. */
    int min_workers;
    /* The most cf_executor_set_max_workers() may raise max_workers to:
     * the pool makes this many worker slots at creation (shared memory
     * is touched only by the workers that run). 0 (the default):
     * max_workers itself. Below max_workers or above 4096: CF_EINVAL. */
    int max_workers_limit;
} cf_process_pool_options;

/* Creates a process pool. Returns CF_OK, CF_EINVAL (bad options; an
 * initializer or codec not found in any module), CF_ENOMEM, CF_EAGAIN (no
 * thread for the pool's manager: a thread or process limit), CF_ESYS,
 * CF_EDEADLK (called inside a worker). Starts the pool's manager thread;
 * workers start as work arrives. A worker that cannot be started while
 * none runs fails the queued futures with CF_EAGAIN or CF_ESYS. */
CF_API int cf_process_pool_new(const cf_process_pool_options *opts,
                               cf_executor **out);

/* ------------------------------------------------------------------------ */
/* Workers that run another program                                         */

/* Names `fn` for workers that run another program (CF_START_PROGRAM,
 * CF_START_CALLBACK): both programs register the same name for their own
 * copy of the task, and the pool sends the name instead of an address.
 * Names are 1 to 255 bytes, compared as bytes. Pools whose workers run this
 * same program (CF_START_EXEC, CF_START_FORK) keep finding code by
 * address, so registering changes nothing for them. Registrations last for
 * the life of the process. Returns CF_OK (also when this very pair was
 * registered before), CF_EINVAL (NULL or bad name; the name already names
 * another function; `fn` already has another name), CF_ENOMEM.
 * Thread-safe. */
CF_API int cf_task_register(const char *name, cf_fn fn);

/* The same for a custom codec (a static object, as for every codec) and
 * for a pool initializer. */
CF_API int cf_codec_register(const char *name, const cf_codec *codec);
CF_API int cf_initializer_register(const char *name,
                                   int (*initializer)(void *initarg));

/* What a worker program adds to its pool's setup. */
typedef struct cf_worker_options {
    /* Runs in the worker after the pool's initializer (if any), before its
     * first task, with `initarg` (local to the worker: any pointer). A
     * nonzero return breaks the pool as a failing pool initializer does.
     * For setup that needs the worker's own state (a binding's decoded
     * initializer). NULL: none. */
    int (*initializer)(void *initarg);
    void *initarg;
} cf_worker_options;

/* Serves tasks if this process was started as a CF_START_PROGRAM worker
 * (it finds its channel in the environment variable CF_PROCESS_WORKER,
 * which it removes), until the pool lets it go or goes away. Register the
 * tasks first. Returns CF_OK once done, with the status the process should
 * exit with in `*exit_status` (0: a clean end), or CF_EINVAL when this
 * process is not such a worker (carry on as a normal program) or
 * `exit_status` is NULL. `opts` may be NULL. Blocks. */
CF_API int cf_process_worker_main(const cf_worker_options *opts,
                                  int *exit_status);

/* Serves tasks on `channel`, for a worker started by a start_worker
 * callback (CF_START_CALLBACK). Same returns; CF_EINVAL also for a
 * channel without descriptors. Does not close the descriptors. Blocks. */
CF_API int cf_process_worker_serve(const cf_worker_channel *channel,
                                   const cf_worker_options *opts,
                                   int *exit_status);

/* End every worker with SIGTERM / SIGKILL (Python 3.14's
 * terminate_workers() / kill_workers()): shut the pool down, cancel what
 * has not started; running futures fail with CF_EBROKEN_PROCESS_POOL.
 * Returns CF_OK,
 * CF_EINVAL (not a process pool). Blocks until the workers are reaped. */
CF_API int cf_process_pool_terminate_workers(cf_executor *ex);
CF_API int cf_process_pool_kill_workers(cf_executor *ex);

/* The pids of the pool's worker processes that are alive (started and
 * not yet reaped, whether ready, starting or leaving): up to `cap` of them
 * into `pids`, and how many there are into `*n` (more than `cap` means
 * some were left out). Workers start as tasks need them, in the pool's
 * manager thread; this call first lets the manager act on every task
 * submitted before it, so the workers those tasks start are listed (as
 * the stdlib's ProcessPoolExecutor._processes lists the processes its
 * submit() started). Returns CF_OK (`*n` 0 once the pool has ended, and
 * in a forked child's copy of the pool), CF_EINVAL (not a process pool,
 * `n` NULL, or `pids` NULL with `cap` > 0). Blocks until the manager's
 * next round, usually microseconds; on the manager's own thread (a
 * done-callback it runs) it answers at once, with the workers as they
 * are. */
CF_API int cf_process_pool_pids(cf_executor *ex, long *pids, size_t cap,
                                size_t *n);

/* ------------------------------------------------------------------------ */
/* Custom executors: the abstract Executor                                  */

/* What an executor implements. cfutures supplies the futures, argument
 * checks, map and the shutdown flag around it, and for tasks that run in
 * this process the time limits (cf_submit_options.timeout: the cancel
 * flag at the limit, the overrun reported) and the first two rungs of
 * cf_executor_cancel() (cancel, then the flag and the grace period). A
 * custom executor cannot kill a task; cf_executor_shutdown_report() on
 * one falls back to cf_executor_shutdown_timeout() with cancel_futures
 * (cf_shutdown_report.exact false). */
typedef struct cf_executor_ops {
    const char *kind; /* static name, e.g. "inline" */
    /* Schedules `fn(arg)` whose outcome goes to `f` (pending). Take a
     * reference (cf_future_retain) to keep `f`. Call
     * cf_future_set_running_or_notify_cancel() before running, then
     * cf_future_set_result()/cf_future_set_exception(). Return CF_OK or an
     * error (then `f` is discarded by the caller). */
    int (*submit)(void *impl, cf_future *f, cf_fn fn, void *arg,
                  const cf_codec *codec);
    /* Shuts down (called once, or again after a timeout): see
     * cf_executor_shutdown_timeout(). `timeout` is CF_FOREVER for wait,
     * 0 for no wait. NULL: nothing to do. */
    int (*shutdown)(void *impl, double timeout, bool cancel_futures,
                    size_t *unfinished);
    /* Frees `impl` after a waited shutdown. NULL: nothing to free. */
    void (*destroy)(void *impl);
} cf_executor_ops;

/* Wraps `impl` as an executor. `ops` must outlive it. Returns CF_OK,
 * CF_EINVAL, CF_ENOMEM. */
CF_API int cf_executor_new(const cf_executor_ops *ops, void *impl,
                           cf_executor **out);

/* Runs `fn(arg)` as a task right here, completing `f` with its outcome,
 * for custom executors: cf_future_set_running_or_notify_cancel(), then the
 * task. Returns CF_OK, or CF_ECANCELLED if `f` had been cancelled (fn did
 * not run), CF_ESTATE if `f` was not pending or had its
 * set_running_or_notify_cancel() already (fn did not run). */
CF_API int cf_future_run(cf_future *f, cf_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* CFUTURES_H */
