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
 * A task is named by module + offset
 * (wire.h; each lookup goes through dl_iterate_phdr, cached per worker),
 * or by the name it was registered under (registry.c) when the worker
 * runs another program than its pool.
 * The worker keeps only its socket; its parent's death ends it (EOF on the
 * socket, and PR_SET_PDEATHSIG). A task that kills it with SIGSEGV,
 * SIGBUS, SIGFPE, SIGILL or SIGABRT first sends its backtrace as a CRASH
 * frame on the channel (platform/crash.h: armed for the worker loop's
 * life, so a worker program's own code before and after keeps its
 * handlers); the pool names it in the task's error. cf__process_worker_active() is true on its
 * thread, so a task calling back into an executor gets CF_EDEADLK.
 */
#include "core/core.h"

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

/* ------------------------------------------------------------------------ */
/* Resolving functions and codecs                                           */

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
} worker;

/* The code `ref` names: a registered name of `kind`, or an address. */
static void *resolve(cf__code_cache *cache, const cf__wire_ref *ref, int kind)
{
    if (cf__wire_ref_named(ref))
        return (void *)cf__registry_find(kind, ref->module, ref->module_len);
    for (int i = 0; i < CF__CODE_CACHE_SLOTS; i++) {
        cf__code_cache_entry *e = &cache->e[i];
        if (e->module && e->offset == ref->offset &&
            e->module_len == ref->module_len &&
            memcmp(e->module, ref->module, ref->module_len) == 0)
            return e->addr;
    }
    void *addr = cf__ref_to_addr(ref);
    /* The lookup may have loaded a module: crash traces must know it. */
    cf__crash_trap_refresh();
    if (!addr)
        return NULL;
    cf__code_cache_entry *e =
        &cache->e[cache->next++ % CF__CODE_CACHE_SLOTS];
    char *copy = malloc(ref->module_len + 1);
    if (copy) {
        free(e->module);
        memcpy(copy, ref->module, ref->module_len);
        copy[ref->module_len] = '\0';
        e->module = copy;
        e->module_len = ref->module_len;
        e->offset = ref->offset;
        e->addr = addr;
    }
    return addr;
}

static const cf_codec *resolve_codec(cf__code_cache *cache,
                                     const cf__wire_codec *c)
{
    switch (c->kind) {
    case CF__CODEC_WORD:
        return cf_codec_word();
    case CF__CODEC_STRING:
        return cf_codec_string();
    case CF__CODEC_BYTES:
        return cf_codec_bytes();
    default:
        return resolve(cache, &c->ref, CF__REG_CODEC);
    }
}

/* ------------------------------------------------------------------------ */
/* Running tasks                                                            */

static const atomic_bool never_cancelled = false;

/* Appends an item's status and, on success, its result bytes; with
 * `with_len` (chunk items) the body is length-prefixed. */
static int put_outcome(cf_buffer *out, const cf_codec *codec, int code,
                       const char *message, void *result, bool with_len)
{
    size_t mark = out->len, len_at = 0;
    int rc = cf__wire_put_status(out, code, message, with_len, &len_at);
    if (rc == CF_OK && code == 0) {
        int enc = codec->encode_result(result, out);
        if (enc != CF_OK) {
            out->len = mark;
            char msg[96];
            snprintf(msg, sizeof msg, "could not encode the task's result: %s",
                     cf_strerror(enc));
            rc = cf__wire_put_status(out, enc, msg, with_len, &len_at);
        }
    }
    if (rc == CF_OK && with_len)
        cf__wire_patch_u64(out, len_at, out->len - len_at - 8);
    return rc;
}

/* The common outcome, written in place: status 0, (length,) word. False
 * if the item's outcome is not that (or there is no room). */
static inline bool put_word(const cf_codec *codec, const cf_call *call,
                            void *result, cf_buffer *out, bool with_len)
{
    if (codec != cf_codec_word() || call->code != 0 || call->free_result ||
        cf__buffer_reserve(out, 24) != CF_OK)
        return false;
    unsigned char *p = out->data + out->len;
    cf__wire_store_u64(p, 0); /* code and padding */
    if (with_len)
        cf__wire_store_u64(p + 8, 8);
    cf__wire_store_u64(p + (with_len ? 16 : 8), (uint64_t)(uintptr_t)result);
    out->len += with_len ? 24 : 16;
    return true;
}

/* Encodes the outcome of an item that has run, `call` as `fn` left it,
 * when put_word() could not: a failure, a result to free, another codec. */
static int put_called(const cf_codec *codec, cf_call *call, void *arg,
                      void *result, cf_buffer *out, bool with_len)
{
    int rc;
    if (codec->free_arg)
        codec->free_arg(arg);
    /* cf_call_set_result_free() wins over the codec's free function. */
    void (*free_result)(void *) =
        call->free_result ? call->free_result : codec->free_result;
    if (call->code != 0) {
        rc = put_outcome(out, codec, call->code,
                         call->message ? call->message
                                       : cf_strerror(call->code),
                         NULL, with_len);
        free(call->message);
    } else {
        rc = put_outcome(out, codec, 0, NULL, result, with_len);
    }
    if (free_result && result)
        free_result(result);
    return rc;
}

/* Runs one item: decode the argument, call, encode the outcome. */
static int run_item(cf_fn fn, const cf_codec *codec, const unsigned char *data,
                    size_t len, cf_buffer *out, bool with_len)
{
    void *arg = NULL;
    int rc = CF_OK;
    if (codec == cf_codec_word() && len == 8)
        arg = (void *)(uintptr_t)cf__wire_load_u64(data);
    else
        rc = codec->decode_arg(data, len, &arg);
    if (rc != CF_OK) {
        char msg[96];
        snprintf(msg, sizeof msg, "could not decode the task's argument: %s",
                 cf_strerror(rc));
        return put_outcome(out, codec, rc, msg, NULL, with_len);
    }
    cf_call call = {.future = NULL, .code = 0, .message = NULL,
                    .cancel_flag = &never_cancelled};
    void *result = fn(arg, &call);
    if (put_word(codec, &call, result, out, with_len))
        return CF_OK;
    return put_called(codec, &call, arg, result, out, with_len);
}

/* Turns the first k results of a WORDS_RESULT frame begun at `start`
 * (words from `base` on) into the items of a CHUNK_RESULT, in place. */
static int widen_words(cf_buffer *out, size_t start, size_t base, size_t k)
{
    out->len = base + 8 * k;
    if (cf__buffer_reserve(out, 16 * k) != CF_OK)
        return CF_ENOMEM;
    /* Last first: item j moves from 8j to 24j, over words already moved. */
    for (size_t j = k; j-- > 0;) {
        uint64_t v = cf__wire_load_u64(out->data + base + 8 * j);
        unsigned char *q = out->data + base + 24 * j;
        cf__wire_store_u64(q, 0);
        cf__wire_store_u64(q + 8, 8);
        cf__wire_store_u64(q + 16, v);
    }
    out->len = base + 24 * k;
    cf__wire_set_type(out, start, CF__MSG_CHUNK_RESULT);
    return CF_OK;
}

/* Runs a WORDS chunk (`n` words at `args`) into the frame begun at
 * `start`: one word per item while every item succeeds with a plain word;
 * from the first one that does not, the frame becomes a CHUNK_RESULT. */
static int run_words(cf_fn fn, const unsigned char *args, size_t n,
                     cf_buffer *out, size_t start)
{
    const cf_codec *word = cf_codec_word();
    int rc = cf__wire_put_u64(out, n);
    if (rc == CF_OK)
        rc = cf__buffer_reserve(out, n * 8);
    if (rc != CF_OK)
        return rc;
    size_t base = out->len;
    for (size_t i = 0; i < n; i++) {
        void *arg = (void *)(uintptr_t)cf__wire_load_u64(args + 8 * i);
        cf_call call = {.future = NULL, .code = 0, .message = NULL,
                        .cancel_flag = &never_cancelled};
        void *result = fn(arg, &call);
        if (call.code == 0 && !call.free_result) {
            cf__wire_store_u64(out->data + base + 8 * i,
                               (uint64_t)(uintptr_t)result);
            continue;
        }
        rc = widen_words(out, start, base, i);
        rc = rc ? rc : put_called(word, &call, arg, result, out, true);
        for (size_t j = i + 1; rc == CF_OK && j < n; j++)
            rc = run_item(fn, word, args + 8 * j, 8, out, true);
        return rc;
    }
    out->len = base + n * 8;
    return CF_OK;
}

static int fail_init(cf_buffer *out, int code, const char *msg)
{
    size_t start, len_at;
    int rc = cf__wire_begin(out, CF__MSG_INIT_FAILED, 0, &start);
    if (rc == CF_OK)
        rc = cf__wire_put_status(out, code, msg, false, &len_at);
    if (rc == CF_OK)
        cf__wire_end(out, start);
    return rc;
}

/* Says why `ref` was not found: "'name' is not registered in worker
 * process 42" or "main+0x1234 is not in worker process 42". */
static void not_found(const cf__wire_ref *ref, const char *what, char *buf,
                      size_t n)
{
    int len = (int)(ref->module_len > 200 ? 200 : ref->module_len);
    if (cf__wire_ref_named(ref))
        snprintf(buf, n, "the %s '%.*s' is not registered in worker "
                 "process %ld (cf_%s_register)", what, len, ref->module,
                 (long)getpid(),
                 strcmp(what, "task function") == 0 ? "task"
                 : strcmp(what, "codec") == 0       ? "codec"
                                                    : "initializer");
    else
        snprintf(buf, n, "the %s was not found in worker process %ld "
                 "(%.*s+0x%llx)", what, (long)getpid(), len,
                 ref->module_len ? ref->module : "main",
                 (unsigned long long)ref->offset);
}

void cf__code_cache_destroy(cf__code_cache *cache)
{
    for (int i = 0; i < CF__CODE_CACHE_SLOTS; i++)
        free(cache->e[i].module);
}

/* Shared with the MPI executor's worker ranks (worker.h). */
int cf__worker_run_task(cf__code_cache *cache, const cf__wire_header *h,
                        const unsigned char *p, cf_buffer *out)
{
    bool words = h->type == CF__MSG_WORDS;
    bool chunk = h->type == CF__MSG_CHUNK || words;
    cf__wire_task t;
    if ((words ? cf__wire_decode_words(p, h->len, &t)
               : cf__wire_decode_task(p, h->len, chunk, &t)) != CF_OK)
        return CF_ECODEC; /* a corrupt stream: nothing sane to answer */
    cf_fn fn = (cf_fn)cf__addr_fn(resolve(cache, &t.fn, CF__REG_TASK));
    const cf_codec *codec = resolve_codec(cache, &t.codec);
    size_t start;
    /* A chunk answers with a CHUNK_RESULT (a WORDS chunk may answer with
     * a WORDS_RESULT); one that cannot run at all fails every item with
     * the same message. */
    int rc = cf__wire_begin(out, words && fn ? CF__MSG_WORDS_RESULT
                                     : chunk   ? CF__MSG_CHUNK_RESULT
                                               : CF__MSG_RESULT,
                            h->id, &start);
    if (rc != CF_OK)
        return rc;
    if (!fn || !codec) {
        char msg[400];
        not_found(!fn ? &t.fn : &t.codec.ref, !fn ? "task function" : "codec",
                  msg, sizeof msg);
        if (chunk)
            rc = cf__wire_put_u64(out, t.n);
        for (uint64_t i = 0; rc == CF_OK && i < (chunk ? t.n : 1); i++) {
            size_t len_at;
            rc = cf__wire_put_status(out, CF_EINVAL, msg, chunk, &len_at);
            if (rc == CF_OK && chunk)
                cf__wire_patch_u64(out, len_at,
                                   out->len - len_at - 8);
        }
    } else if (!chunk) {
        rc = run_item(fn, codec, t.data, t.len, out, false);
    } else if (words) {
        rc = t.n <= SIZE_MAX / 32 ? run_words(fn, t.data, (size_t)t.n,
                                              out, start)
                                  : CF_ENOMEM;
    } else {
        rc = cf__wire_put_u64(out, t.n);
        if (rc == CF_OK && t.n <= SIZE_MAX / 32)
            rc = cf__buffer_reserve(out, (size_t)t.n * 24);
        cf__wire_reader items;
        cf__wire_chunk_items(&t, &items);
        for (uint64_t i = 0; rc == CF_OK && i < t.n; i++) {
            const unsigned char *d;
            size_t n;
            const unsigned char *q = items.p + items.pos;
            if (items.len - items.pos >= 16 && cf__wire_load_u64(q) == 8) {
                d = q + 8; /* a word: no call to read it */
                n = 8;
                items.pos += 16;
            } else {
                cf__wire_next_item(&items, &d, &n); /* validated by decode */
            }
            rc = run_item(fn, codec, d, n, out, true);
        }
    }
    if (rc == CF_OK)
        cf__wire_end(out, start);
    return rc;
}

/* Checks that every task the pool requires is registered here. Returns
 * 0, or CF_EINVAL with the first missing name in `msg`. */
static int check_required(const cf__wire_init *init, char *msg, size_t n)
{
    cf__wire_reader r;
    cf__wire_reader_init(&r, init->required, init->required_len);
    for (uint32_t i = 0; i < init->n_required; i++) {
        cf__wire_ref ref = {NULL, 0, CF__WIRE_NAMED};
        cf__wire_next_name(&r, &ref.module, &ref.module_len); /* decoded */
        if (!cf__registry_find(CF__REG_TASK, ref.module, ref.module_len)) {
            not_found(&ref, "task function", msg, n);
            return CF_EINVAL;
        }
    }
    return 0;
}

/* Runs the pool's initializer, then the worker program's own. Returns 0,
 * or the failing one's code with a message in `msg`. */
static int run_initializers(cf__code_cache *cache,
                            const cf_worker_options *opts,
                            const cf__wire_init *init, char *msg, size_t n)
{
    int rc = 0;
    if (init->has_init) {
        int (*fn)(void *) = (int (*)(void *))cf__addr_fn(
            resolve(cache, &init->init, CF__REG_INITIALIZER));
        if (!fn) {
            not_found(&init->init, "initializer", msg, n);
            return CF_EINVAL;
        }
        rc = fn((void *)(uintptr_t)init->initarg);
        snprintf(msg, n, "the initializer returned %d", rc);
    }
    if (rc == 0 && opts && opts->initializer) {
        rc = opts->initializer(opts->initarg);
        snprintf(msg, n, "the worker program's initializer returned %d", rc);
    }
    return rc;
}

/* Shared with the MPI executor's worker ranks (worker.h). */
int cf__worker_run_init(cf__code_cache *cache, const cf_worker_options *opts,
                        const unsigned char *p, size_t len, cf_buffer *out)
{
    cf__wire_init init;
    if (cf__wire_decode_init(p, len, &init) != CF_OK)
        return CF_ECODEC;
    char msg[400];
    int rc = 0;
    if (init.version != CF__WIRE_VERSION) {
        snprintf(msg, sizeof msg, "worker process %ld speaks protocol %u, "
                 "the pool %u: the worker program was built with another "
                 "version of cfutures", (long)getpid(), CF__WIRE_VERSION,
                 (unsigned)init.version);
        rc = CF_EINVAL;
    }
    if (rc == 0)
        rc = check_required(&init, msg, sizeof msg);
    if (rc == 0)
        rc = run_initializers(cache, opts, &init, msg, sizeof msg);
    if (rc != 0) {
        fail_init(out, rc, msg);
        return CF_EINVAL; /* tell the loop to stop */
    }
    size_t start;
    rc = cf__wire_begin(out, CF__MSG_READY, 0, &start);
    if (rc == CF_OK && (rc = cf__wire_put_u64(out, (uint64_t)getpid())) ==
                           CF_OK)
        cf__wire_end(out, start);
    return rc;
}

static int handle_init(worker *w, const unsigned char *p, size_t len)
{
    int rc = cf__worker_run_init(&w->cache, w->opts, p, len, &w->out);
    w->ready = rc == CF_OK;
    return rc;
}

void *cf__code_cache_find(cf__code_cache *cache, const cf__code_ref *ref,
                          int kind)
{
    return resolve(cache, ref, kind);
}

const cf_codec *cf__code_cache_codec(cf__code_cache *cache,
                                     const struct cf__wire_codec *c)
{
    return resolve_codec(cache, c);
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
        if (cf__worker_run_task(&w->cache, h, payload, &w->out) != CF_OK)
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
    cf__code_cache_destroy(&w.cache);
    /* What tasks printed must not be lost to _exit. */
    fflush(NULL);
    return code;
}
