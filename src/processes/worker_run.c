/* worker_run.c - what a worker does with one task frame: decode the
 * argument(s), call the function, encode the outcome(s) into the RESULT,
 * CHUNK_RESULT or WORDS_RESULT frame.
 *
 * Design: worker side only, one thread, no locks. A WORDS chunk answers
 * one word per item while every item returns a plain word, and widens to
 * a CHUNK_RESULT in place at the first that does not. The task sees its
 * cancel flag through the cf_call it is given. Shared with the MPI
 * executor's worker ranks.
 */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "processes/registry.h"
#include "processes/wire.h"
#include "processes/worker.h"


static const atomic_bool never_cancelled = false;
static const cf_call never_stopped = {.cancel_flag = &never_cancelled};

/* A fresh call for one item, polling the cancel flag of `proto`. */
static inline cf_call call_from(const cf_call *proto)
{
    return (cf_call){.future = NULL, .code = 0, .message = NULL,
                     .cancel_flag = proto->cancel_flag,
                     .cancel_poll = proto->cancel_poll};
}

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

void cf__worker_end_forked_copy(unsigned generation)
{
    if (cf__fork_generation() != generation)
        _exit(0); /* not exit(): the parent's atexit work is not ours */
}

/* Runs one item: decode the argument, call, encode the outcome. */
static int run_item(const cf_call *proto, cf_fn fn, const cf_codec *codec,
                    const unsigned char *data, size_t len, cf_buffer *out,
                    bool with_len)
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
    cf_call call = call_from(proto);
    unsigned gen = cf__fork_generation();
    void *result = fn(arg, &call);
    cf__worker_end_forked_copy(gen);
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
static int run_words(const cf_call *proto, cf_fn fn,
                     const unsigned char *args, size_t n, cf_buffer *out,
                     size_t start)
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
        cf_call call = call_from(proto);
        unsigned gen = cf__fork_generation();
        void *result = fn(arg, &call);
        cf__worker_end_forked_copy(gen);
        if (call.code == 0 && !call.free_result) {
            cf__wire_store_u64(out->data + base + 8 * i,
                               (uint64_t)(uintptr_t)result);
            continue;
        }
        rc = widen_words(out, start, base, i);
        rc = rc ? rc : put_called(word, &call, arg, result, out, true);
        for (size_t j = i + 1; rc == CF_OK && j < n; j++)
            rc = run_item(proto, fn, word, args + 8 * j, 8, out, true);
        return rc;
    }
    out->len = base + n * 8;
    return CF_OK;
}

/* Shared with the MPI executor's worker ranks (worker.h). */
int cf__worker_run_task(cf__code_cache *cache, const cf__wire_header *h,
                        const unsigned char *p, cf_buffer *out)
{
    return cf__worker_run_task_call(cache, h, p, out, &never_stopped);
}

int cf__worker_run_task_call(cf__code_cache *cache, const cf__wire_header *h,
                             const unsigned char *p, cf_buffer *out,
                             const cf_call *proto)
{
    bool words = h->type == CF__MSG_WORDS;
    bool chunk = h->type == CF__MSG_CHUNK || words;
    cf__fork_hook_install(); /* for cf__worker_end_forked_copy() */
    cf__wire_task t;
    if ((words ? cf__wire_decode_words(p, h->len, &t)
               : cf__wire_decode_task(p, h->len, chunk, &t)) != CF_OK)
        return CF_ECODEC; /* a corrupt stream: nothing sane to answer */
    cf_fn fn = (cf_fn)cf__addr_fn(
        cf__code_cache_find(cache, &t.fn, CF__REG_TASK));
    const cf_codec *codec = cf__code_cache_codec(cache, &t.codec);
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
        cf__pp_not_found(!fn ? &t.fn : &t.codec.ref,
                         !fn ? "task function" : "codec", msg, sizeof msg);
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
        rc = run_item(proto, fn, codec, t.data, t.len, out, false);
    } else if (words) {
        rc = t.n <= SIZE_MAX / 32 ? run_words(proto, fn, t.data,
                                              (size_t)t.n, out, start)
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
            rc = run_item(proto, fn, codec, d, n, out, true);
        }
    }
    if (rc == CF_OK)
        cf__wire_end(out, start);
    return rc;
}
