/* remote.h - the process pool's frames, codecs and task runner, exported
 * for executors that live in other libraries (the MPI executor,
 * libcfutures_mpi, src/mpi/).
 *
 * Design: the core library hides its internals (-fvisibility=hidden); this
 * narrow interface is the only part of them another library of the project
 * links against. It adds no second format: an MPI rank receives exactly
 * the TASK / CHUNK / WORDS frames a worker process reads (wire.h), runs
 * them with the worker's own code (cf__worker_run_task, so the registry of
 * task names, lookups by module + offset and the codecs are the same), and
 * answers with the same RESULT frames, which the caller decodes with the
 * same decoders the process pool uses (the ones the fuzzer drives). What
 * differs is only how the bytes travel and who keeps the books.
 * Nothing here depends on MPI, and nothing here locks.
 */
#ifndef CF_PROCESSES_REMOTE_H
#define CF_PROCESSES_REMOTE_H

#include "core/core.h"
#include "processes/wire.h"
#include "processes/worker.h"

#define CF__REMOTE_API __attribute__((visibility("default")))

/* cf_buffer's life (core.h's struct: data, len, cap). */
CF__REMOTE_API void cf__remote_buffer_init(cf_buffer *buf);
CF__REMOTE_API void cf__remote_buffer_destroy(cf_buffer *buf);
CF__REMOTE_API int cf__remote_buffer_reserve(cf_buffer *buf, size_t extra);

/* cf__wire_header_decode(). */
CF__REMOTE_API int cf__remote_header_decode(const void *p, size_t n,
                                            cf__wire_header *h);

/* Appends an INIT frame: the initializer (NULL: none) by module + offset,
 * its argument as a word, no required names. CF_OK, CF_EINVAL (the
 * initializer is in no module), CF_ENOMEM. */
CF__REMOTE_API int cf__remote_encode_init(cf_buffer *out,
                                          int (*initializer)(void *),
                                          void *initarg);
/* Appends an EXIT frame. CF_OK or CF_ENOMEM. */
CF__REMOTE_API int cf__remote_encode_exit(cf_buffer *out);

/* Appends a TASK frame with id `id` for fn(arg) with `codec`: fn and a
 * custom codec by module + offset (every rank runs the same program).
 * Returns CF_OK, CF_EINVAL (fn or codec in no module) or CF_ENOMEM; when
 * the codec cannot encode the argument, returns CF_OK with its code in
 * `*arg_rc` and nothing appended (that task's future fails, the call does
 * not). */
CF__REMOTE_API int cf__remote_encode_task(cf_buffer *out, uint64_t id,
                                          cf_fn fn, const cf_codec *codec,
                                          void *arg, int *arg_rc);
/* The same for a map chunk: a WORDS frame with the word codec, else a
 * CHUNK frame. */
CF__REMOTE_API int cf__remote_encode_chunk(cf_buffer *out, uint64_t id,
                                           const cf__chunk *chunk,
                                           const cf_codec *codec,
                                           int *arg_rc);

/* Completes `f` (running) from a RESULT, CHUNK_RESULT or WORDS_RESULT
 * frame's payload `p` (h->len bytes), decoding with `codec`; for a chunk,
 * as the process pool does (core.h, cf__submit_chunk_fn). A malformed
 * frame fails `f` with CF_ECODEC. */
CF__REMOTE_API void cf__remote_finish(cf_future *f, const cf__wire_header *h,
                                      const unsigned char *p,
                                      const cf_codec *codec,
                                      cf__chunk *chunk);

/* cf__wire_decode_status(): an INIT_FAILED payload. */
CF__REMOTE_API int cf__remote_decode_status(const void *p, size_t len,
                                            cf__wire_status *out);

/* Fails `f` (pending or running) with an executor's code and message
 * (copied). A future already done is left alone. */
CF__REMOTE_API void cf__remote_fail(cf_future *f, int code,
                                    const char *message);

/* The worker side: cf__worker_run_init() and cf__worker_run_task(). */
CF__REMOTE_API int cf__remote_run_init(cf__code_cache *cache,
                                       const unsigned char *p, size_t len,
                                       cf_buffer *out);
CF__REMOTE_API int cf__remote_run_task(cf__code_cache *cache,
                                       const cf__wire_header *h,
                                       const unsigned char *p,
                                       cf_buffer *out);
/* As cf__remote_run_task(), but each item runs in `pool` (a process pool:
 * a task that crashes fails only its own item, with the pool's message,
 * prefixed by `where`). */
CF__REMOTE_API int cf__remote_run_task_in(cf_executor *pool,
                                          cf__code_cache *cache,
                                          const cf__wire_header *h,
                                          const unsigned char *p,
                                          cf_buffer *out, const char *where);
CF__REMOTE_API void cf__remote_code_cache_destroy(cf__code_cache *cache);

/* Sets the native map-chunk hook of an executor made by cf_executor_new(). */
CF__REMOTE_API void cf__remote_set_submit_chunk(cf_executor *ex,
                                                cf__submit_chunk_fn fn);

/* Marks the calling thread as one of `ex`'s own (as a pool's workers and
 * manager are), so a waited shutdown or cf_executor_free() from a
 * callback it runs does not wait for itself. */
CF__REMOTE_API void cf__remote_enter_executor(const cf_executor *ex);

/* The time limit the submit under way on this thread asked for
 * (cf__submit_timeout: 0 none given, infinite none). */
CF__REMOTE_API double cf__remote_submit_timeout(void);

/* A 64-bit hash (FNV-1a) of this program's executable file, to check that
 * every rank runs the same build. CF_OK, or CF_ESYS (unreadable). */
CF__REMOTE_API int cf__remote_program_hash(uint64_t *out);

/* A readable name for a task function, for messages. */
CF__REMOTE_API void cf__remote_describe_fn(cf_fn fn, char *buf, size_t n);

#endif /* CF_PROCESSES_REMOTE_H */
