/* remote.c - the process pool's frames and task runner for executors in
 * other libraries (see remote.h for the design).
 *
 * The encoders mirror tasks.c (task_new, pool submit and submit_chunk) and
 * cf__remote_finish mirrors results.c (handle_result, handle_chunk_result,
 * handle_words_result) without the pool's bookkeeping: the frames and
 * their decoders are wire.c's, shared. No locks.
 */
#include "processes/remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/process.h"
#include "platform/program_hash.h"
#include "processes/registry.h"

void cf__remote_buffer_init(cf_buffer *buf) { cf__buffer_init(buf); }
void cf__remote_buffer_destroy(cf_buffer *buf) { cf__buffer_destroy(buf); }
int cf__remote_buffer_reserve(cf_buffer *buf, size_t extra)
{
    return cf__buffer_reserve(buf, extra);
}

int cf__remote_header_decode(const void *p, size_t n, cf__wire_header *h)
{
    return cf__wire_header_decode(p, n, h);
}

/* ------------------------------------------------------------------------ */
/* Encoding (the caller's side)                                             */

int cf__remote_encode_init(cf_buffer *out, int (*initializer)(void *),
                           void *initarg)
{
    cf__wire_ref ref = {NULL, 0, 0};
    if (initializer &&
        cf__addr_to_ref(cf__fn_addr((cf__any_fn)initializer), &ref) != CF_OK)
        return CF_EINVAL;
    size_t start;
    int rc = cf__wire_begin(out, CF__MSG_INIT, 0, &start);
    rc = rc ? rc : cf__wire_put_u32(out, CF__WIRE_VERSION);
    rc = rc ? rc : cf__wire_put_u32(out, initializer ? 1 : 0);
    if (rc == CF_OK && initializer)
        rc = cf__wire_put_ref(out, &ref);
    rc = rc ? rc : cf__wire_put_u64(out, (uint64_t)(uintptr_t)initarg);
    rc = rc ? rc : cf__wire_put_u32(out, 0); /* no required names */
    if (rc == CF_OK)
        cf__wire_end(out, start);
    return rc;
}

int cf__remote_encode_exit(cf_buffer *out)
{
    size_t start;
    int rc = cf__wire_begin(out, CF__MSG_EXIT, 0, &start);
    if (rc == CF_OK)
        cf__wire_end(out, start);
    return rc;
}

/* The same program runs everywhere: code goes by module + offset. */
static int codec_to_wire(const cf_codec *codec, cf__wire_codec *out)
{
    if (codec == cf_codec_word())
        out->kind = CF__CODEC_WORD;
    else if (codec == cf_codec_string())
        out->kind = CF__CODEC_STRING;
    else if (codec == cf_codec_bytes())
        out->kind = CF__CODEC_BYTES;
    else {
        out->kind = CF__CODEC_CUSTOM;
        return cf__addr_to_ref(codec, &out->ref);
    }
    return CF_OK;
}

/* Appends the frame's header, fn and codec; `*start` is the frame's. */
static int begin_task(cf_buffer *out, uint32_t type, uint64_t id, cf_fn fn,
                      const cf_codec *codec, size_t *start)
{
    cf__wire_ref fn_ref;
    cf__wire_codec wc;
    if (cf__addr_to_ref(cf__fn_addr((cf__any_fn)fn), &fn_ref) != CF_OK ||
        codec_to_wire(codec, &wc) != CF_OK)
        return CF_EINVAL;
    int rc = cf__wire_begin(out, type, id, start);
    rc = rc ? rc : cf__wire_put_ref(out, &fn_ref);
    return rc ? rc : cf__wire_put_codec(out, &wc);
}

int cf__remote_encode_task(cf_buffer *out, uint64_t id, cf_fn fn,
                           const cf_codec *codec, void *arg, int *arg_rc)
{
    size_t mark = out->len, start;
    *arg_rc = CF_OK;
    int rc = begin_task(out, CF__MSG_TASK, id, fn, codec, &start);
    if (rc == CF_OK && (*arg_rc = codec->encode_arg(arg, out)) != CF_OK) {
        out->len = mark;
        return CF_OK;
    }
    if (rc != CF_OK) {
        out->len = mark;
        return rc;
    }
    cf__wire_end(out, start);
    return CF_OK;
}

int cf__remote_encode_chunk(cf_buffer *out, uint64_t id,
                            const cf__chunk *chunk, const cf_codec *codec,
                            int *arg_rc)
{
    bool words = codec == cf_codec_word();
    size_t mark = out->len, start;
    *arg_rc = CF_OK;
    int rc = begin_task(out, words ? CF__MSG_WORDS : CF__MSG_CHUNK, id,
                        chunk->fn, codec, &start);
    rc = rc ? rc : cf__wire_put_u64(out, chunk->n);
    for (size_t i = 0; rc == CF_OK && i < chunk->n; i++) {
        if (words) {
            rc = cf__wire_put_u64(out, (uint64_t)(uintptr_t)chunk->args[i]);
            continue;
        }
        size_t at;
        rc = cf__wire_put_placeholder(out, &at);
        if (rc == CF_OK && (*arg_rc = codec->encode_arg(chunk->args[i],
                                                        out)) != CF_OK)
            break;
        if (rc == CF_OK)
            cf__wire_patch_u64(out, at, out->len - at - 8);
    }
    if (rc != CF_OK || *arg_rc != CF_OK) {
        out->len = mark;
        return rc;
    }
    cf__wire_end(out, start);
    return CF_OK;
}

/* ------------------------------------------------------------------------ */
/* Results (the caller's side)                                              */

static char *copy_message(const unsigned char *p, size_t len)
{
    char *msg = malloc(len + 1);
    if (msg) {
        memcpy(msg, p, len);
        msg[len] = '\0';
    }
    return msg;
}

static void finish(cf_future *f, void *value, void (*free_value)(void *),
                   int code, char *msg)
{
    if (cf__future_finish(f, value, free_value, code, msg) != CF_OK &&
        free_value && value)
        free_value(value);
}

static void finish_result(cf_future *f, const unsigned char *p, size_t len,
                          const cf_codec *codec)
{
    cf__wire_status st;
    if (cf__wire_decode_status(p, len, &st) != CF_OK) {
        finish(f, NULL, NULL, CF_ECODEC,
               cf__strdup("malformed result message"));
        return;
    }
    if (st.code != 0) {
        finish(f, NULL, NULL, st.code, copy_message(st.data, st.len));
        return;
    }
    void *value = NULL;
    int rc = codec->decode_result(st.data, st.len, &value);
    if (rc != CF_OK) {
        finish(f, NULL, NULL, rc,
               cf__format("could not decode the task's result: %s",
                          cf_strerror(rc)));
        return;
    }
    finish(f, value, codec->free_result, 0, NULL);
}

/* One item of a CHUNK_RESULT into `it`. */
static void chunk_item(cf__wire_reader *r, cf__chunk_item *it,
                       const cf_codec *codec)
{
    cf__wire_status st;
    if (cf__wire_next_status(r, &st) != CF_OK) {
        it->code = CF_ECODEC;
        it->message = cf__strdup("malformed map chunk result");
        return;
    }
    if (st.code != 0) {
        it->code = st.code;
        it->message = copy_message(st.data, st.len);
        return;
    }
    int rc = codec->decode_result(st.data, st.len, &it->value);
    if (rc != CF_OK) {
        it->value = NULL;
        it->code = rc;
        it->message = cf__format("could not decode the task's result: %s",
                                 cf_strerror(rc));
        return;
    }
    it->free_value = codec->free_result;
}

static void finish_chunk(cf_future *f, const unsigned char *p, size_t len,
                         const cf_codec *codec, cf__chunk *c)
{
    cf__wire_reader r;
    cf__wire_reader_init(&r, p, len);
    if (cf__wire_get_u64(&r) != c->n || r.bad) {
        finish(f, NULL, NULL, CF_ECODEC,
               cf__strdup("malformed map chunk result"));
        return;
    }
    if (cf__chunk_items(c) != CF_OK) {
        finish(f, NULL, NULL, CF_ENOMEM,
               cf__strdup("no memory for the map chunk's outcomes"));
        return;
    }
    for (size_t i = 0; i < c->n; i++)
        chunk_item(&r, &c->items[i], codec);
    finish(f, c, NULL, 0, NULL);
}

static void finish_words(cf_future *f, const unsigned char *p, size_t len,
                         cf__chunk *c)
{
    uint64_t n;
    const unsigned char *words;
    if (cf__wire_decode_words_result(p, len, &n, &words) != CF_OK ||
        n != c->n) {
        finish(f, NULL, NULL, CF_ECODEC,
               cf__strdup("malformed map chunk result"));
        return;
    }
    for (size_t i = 0; i < c->n; i++)
        c->args[i] = (void *)(uintptr_t)cf__wire_load_u64(words + 8 * i);
    finish(f, c->args, NULL, 0, NULL);
}

void cf__remote_finish(cf_future *f, const cf__wire_header *h,
                       const unsigned char *p, const cf_codec *codec,
                       cf__chunk *chunk)
{
    if (h->type == CF__MSG_RESULT && !chunk)
        finish_result(f, p, (size_t)h->len, codec);
    else if (h->type == CF__MSG_CHUNK_RESULT && chunk)
        finish_chunk(f, p, (size_t)h->len, codec, chunk);
    else if (h->type == CF__MSG_WORDS_RESULT && chunk)
        finish_words(f, p, (size_t)h->len, chunk);
    else
        finish(f, NULL, NULL, CF_ECODEC,
               cf__strdup("unexpected message in place of a result"));
}

int cf__remote_decode_status(const void *p, size_t len, cf__wire_status *out)
{
    return cf__wire_decode_status(p, len, out);
}

void cf__remote_fail(cf_future *f, int code, const char *message)
{
    finish(f, NULL, NULL, code, cf__strdup(message));
}

/* ------------------------------------------------------------------------ */
/* The worker side                                                          */

int cf__remote_run_init(cf__code_cache *cache, const unsigned char *p,
                        size_t len, cf_buffer *out)
{
    return cf__worker_run_init(cache, NULL, p, len, out);
}

int cf__remote_run_task(cf__code_cache *cache, const cf__wire_header *h,
                        const unsigned char *p, cf_buffer *out)
{
    return cf__worker_run_task(cache, h, p, out);
}

void cf__remote_code_cache_destroy(cf__code_cache *cache)
{
    cf__code_cache_destroy(cache);
}

/* Appends one item's outcome, read from its done future `f`. */
static int put_future(cf_buffer *out, cf_future *f, const cf_codec *codec,
                      bool with_len, const char *where)
{
    size_t mark = out->len, len_at = 0;
    void *value = NULL;
    int rc = cf_future_result(f, CF_FOREVER, &value), put;
    if (rc == CF_OK) {
        put = cf__wire_put_status(out, 0, NULL, with_len, &len_at);
        int enc = put ? put : codec->encode_result(value, out);
        if (put == CF_OK && enc != CF_OK) {
            out->len = mark;
            put = cf__wire_put_status(out, enc, "could not encode the "
                                      "task's result", with_len, &len_at);
        }
    } else {
        cf_error e = {rc, cf_strerror(rc)};
        if (rc != CF_ECANCELLED)
            cf_future_exception(f, 0, &e);
        char *msg = cf__format("%s: %s", where, e.message);
        put = cf__wire_put_status(out, e.code ? e.code : rc,
                                  msg ? msg : e.message, with_len, &len_at);
        free(msg);
    }
    if (put == CF_OK && with_len)
        cf__wire_patch_u64(out, len_at, out->len - len_at - 8);
    return put;
}

/* Submits one item to `pool`; the argument is freed once encoded there. */
static int submit_item(cf_executor *pool, cf_fn fn, const cf_codec *codec,
                       const unsigned char *data, size_t len, cf_future **f)
{
    void *arg = NULL;
    int rc = codec->decode_arg(data, len, &arg);
    if (rc != CF_OK)
        return rc;
    rc = cf_executor_submit_ex(pool, fn, arg, codec, f);
    if (codec->free_arg)
        codec->free_arg(arg);
    return rc;
}

/* Items of a decoded TASK, CHUNK or WORDS frame, in order. */
static bool next_item(const cf__wire_header *h, const cf__wire_task *t,
                      cf__wire_reader *r, uint64_t i,
                      const unsigned char **d, size_t *n)
{
    if (h->type == CF__MSG_TASK) {
        *d = t->data;
        *n = t->len;
        return true;
    }
    if (h->type == CF__MSG_WORDS) {
        *d = t->data + 8 * i;
        *n = 8;
        return true;
    }
    return cf__wire_next_item(r, d, n) == CF_OK;
}

int cf__remote_run_task_in(cf_executor *pool, cf__code_cache *cache,
                           const cf__wire_header *h, const unsigned char *p,
                           cf_buffer *out, const char *where)
{
    bool chunk = h->type != CF__MSG_TASK;
    cf__wire_task t;
    if ((h->type == CF__MSG_WORDS ? cf__wire_decode_words(p, h->len, &t)
                                  : cf__wire_decode_task(p, h->len, chunk,
                                                         &t)) != CF_OK)
        return CF_ECODEC;
    cf_fn fn = (cf_fn)cf__addr_fn(cf__code_cache_find(cache, &t.fn,
                                                      CF__REG_TASK));
    const cf_codec *codec = cf__code_cache_codec(cache, &t.codec);
    if (!fn || !codec)
        return cf__worker_run_task(cache, h, p, out); /* says what is missing */
    uint64_t n = chunk ? t.n : 1;
    if (n > SIZE_MAX / sizeof(cf_future *))
        return CF_ENOMEM;
    cf_future **fs = calloc(n ? n : 1, sizeof *fs);
    if (!fs)
        return CF_ENOMEM;
    /* All items are queued first, so the pool's worker runs them back to
     * back; a submit that fails (a bad argument) fails only its item. */
    cf__wire_reader r;
    cf__wire_chunk_items(&t, &r);
    int *sub = calloc(n ? n : 1, sizeof *sub);
    int rc = sub ? CF_OK : CF_ENOMEM;
    for (uint64_t i = 0; rc == CF_OK && i < n; i++) {
        const unsigned char *d;
        size_t len;
        sub[i] = next_item(h, &t, &r, i, &d, &len)
                     ? submit_item(pool, fn, codec, d, len, &fs[i])
                     : CF_ECODEC;
    }
    size_t start;
    uint32_t type = chunk ? CF__MSG_CHUNK_RESULT : CF__MSG_RESULT;
    rc = rc ? rc : cf__wire_begin(out, type, h->id, &start);
    if (rc == CF_OK && chunk)
        rc = cf__wire_put_u64(out, n);
    for (uint64_t i = 0; rc == CF_OK && i < n; i++) {
        if (fs[i]) {
            rc = put_future(out, fs[i], codec, chunk, where);
            continue;
        }
        size_t len_at;
        char *msg = cf__format("%s: could not run the task: %s", where,
                               cf_strerror(sub[i]));
        rc = cf__wire_put_status(out, sub[i], msg ? msg : "", chunk, &len_at);
        free(msg);
        if (rc == CF_OK && chunk)
            cf__wire_patch_u64(out, len_at, out->len - len_at - 8);
    }
    if (rc == CF_OK)
        cf__wire_end(out, start);
    for (uint64_t i = 0; i < n; i++)
        cf_future_release(fs[i]);
    free(fs);
    free(sub);
    return rc;
}

void cf__remote_set_submit_chunk(cf_executor *ex, cf__submit_chunk_fn fn)
{
    cf__executor_set_submit_chunk(ex, fn);
}

void cf__remote_enter_executor(const cf_executor *ex)
{
    cf__current_pool = ex;
}

double cf__remote_submit_timeout(void)
{
    return cf__submit_timeout;
}

int cf__remote_program_hash(uint64_t *out)
{
    return cf__program_hash(out) == 0 ? CF_OK : CF_ESYS;
}

void cf__remote_describe_fn(cf_fn fn, char *buf, size_t n)
{
    cf__addr_describe(cf__fn_addr((cf__any_fn)fn), buf, n);
}
