/* wire.h - the process pool's message framing: pure functions over bytes.
 *
 * Design: every message is a frame, a fixed 24-byte header followed by
 * `len` payload bytes. All integers are little-endian whatever the host, so
 * the same bytes can later travel to another machine (the MPI executor) or
 * be produced by another language (the Python binding's worker). Nothing
 * here does I/O or allocates except by appending to a cf_buffer, so a fuzzer
 * can drive every decoder with arbitrary bytes: a decoder returns CF_ECODEC
 * for anything malformed and never reads past the length it is given.
 *
 *   header: u32 type | u32 flags (0) | u64 payload length | u64 id
 *
 * Payloads (parent -> worker):
 *   INIT   u32 version (CF__WIRE_VERSION) | u32 has_init | [ref initializer]
 *          | u64 initarg | u32 n | n x (u32 len | bytes): task names the
 *          worker must know (the pool's required_tasks)
 *   TASK   ref fn | codec | arg bytes (the rest)
 *   CHUNK  ref fn | codec | u64 n | n x (u64 len | bytes)
 *   WORDS  ref fn | codec (WORD) | u64 n | n x u64: a chunk of words
 *   EXIT   (empty): finish and exit 0
 *   STOP   (empty; id: the running task's): its cancel flag is raised
 *          (sent only where no shared slot carries the flag)
 * Payloads (worker -> parent):
 *   READY        u64 pid: the initializer (if any) succeeded
 *   INIT_FAILED  i32 code | u32 0 | message (the rest)
 *   RESULT       i32 code | u32 0 | result bytes if code == 0, else message
 *   CHUNK_RESULT u64 n | n x (i32 code | u32 0 | u64 len | bytes)
 *   WORDS_RESULT u64 n | n x u64: every item of a WORDS chunk succeeded
 *                with a word and nothing to free (else CHUNK_RESULT)
 * where
 *   ref   = u32 length | bytes | u64 offset
 *           (a function or object: the module that holds it, "" for the
 *           main program, and its offset from that module's load address;
 *           or, with offset CF__WIRE_NAMED, the name it was registered
 *           under, for workers that run another program)
 *   codec = u32 kind (CF__CODEC_*) | [ref of the cf_codec if CUSTOM]
 */
#ifndef CF_WIRE_H
#define CF_WIRE_H

#include "core/core.h"
#include "platform/process.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CF__WIRE_HEADER_SIZE 24

/* The protocol's version, in INIT: a worker program built against another
 * version of the library refuses to start rather than misread frames. */
#define CF__WIRE_VERSION 3 /* 3: STOP */

/* A ref's offset that says its bytes are a registered name. */
#define CF__WIRE_NAMED UINT64_MAX

/* A payload larger than this is taken for corruption (1 TiB). */
#define CF__WIRE_MAX_PAYLOAD ((uint64_t)1 << 40)

enum cf__wire_type {
    CF__MSG_INIT = 1,
    CF__MSG_TASK = 2,
    CF__MSG_CHUNK = 3,
    CF__MSG_EXIT = 4,
    CF__MSG_WORDS = 5,
    CF__MSG_STOP = 6,
    CF__MSG_READY = 16,
    CF__MSG_INIT_FAILED = 17,
    CF__MSG_RESULT = 18,
    CF__MSG_CHUNK_RESULT = 19,
    CF__MSG_CLAIMED = 20, /* empty: "I claimed a task", to wake the pool */
    CF__MSG_WORDS_RESULT = 21,
    /* A cf__crash_record (platform/crash.h), written by a worker's signal
     * handler just before it dies of that signal. */
    CF__MSG_CRASH = 22,
};

enum cf__codec_kind {
    CF__CODEC_WORD = 0,
    CF__CODEC_STRING = 1,
    CF__CODEC_CUSTOM = 2,
    CF__CODEC_BYTES = 3,
};

typedef struct cf__wire_header {
    uint32_t type;
    uint32_t flags;
    uint64_t len; /* payload bytes after the header */
    uint64_t id;
} cf__wire_header;

/* Where a function or object lives (platform/process.h), or its name
 * (offset CF__WIRE_NAMED). */
typedef cf__code_ref cf__wire_ref;

static inline bool cf__wire_ref_named(const cf__wire_ref *ref)
{
    return ref->offset == CF__WIRE_NAMED;
}

typedef struct cf__wire_codec {
    uint32_t kind;    /* enum cf__codec_kind */
    cf__wire_ref ref; /* for CF__CODEC_CUSTOM */
} cf__wire_codec;

/* A cursor over a payload. Reads past the end set `bad` and return zeros,
 * so a decoder checks once at the end. */
typedef struct cf__wire_reader {
    const unsigned char *p;
    size_t len;
    size_t pos;
    bool bad;
} cf__wire_reader;

/* Little-endian words at `p`, for hot loops that reserved the room first
 * (the same bytes as cf__wire_put_u64 and cf_codec_word()). */
static inline void cf__wire_store_u64(unsigned char *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &v, 8); /* one unaligned store */
#else
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
#endif
}

static inline uint64_t cf__wire_load_u64(const unsigned char *p)
{
    uint64_t v = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&v, p, 8);
#else
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
#endif
    return v;
}

/* ------------------------------------------------------------------------ */
/* Encoding: append to a cf_buffer. Each returns CF_OK or CF_ENOMEM.        */

/* Starts a frame: appends a header whose length is patched by
 * cf__wire_end(). `*start` receives the frame's offset in `buf`. */
int cf__wire_begin(cf_buffer *buf, uint32_t type, uint64_t id, size_t *start);
/* Finishes the frame begun at `start`: writes its payload length. */
void cf__wire_end(cf_buffer *buf, size_t start);
/* Rewrites the id of the frame at `start` (ids are given at dispatch). */
void cf__wire_set_id(cf_buffer *buf, size_t start, uint64_t id);
/* Rewrites the type of the frame at `start`. */
void cf__wire_set_type(cf_buffer *buf, size_t start, uint32_t type);

int cf__wire_put_u32(cf_buffer *buf, uint32_t v);
int cf__wire_put_u64(cf_buffer *buf, uint64_t v);
int cf__wire_put_ref(cf_buffer *buf, const cf__wire_ref *ref);
int cf__wire_put_codec(cf_buffer *buf, const cf__wire_codec *codec);
/* Appends a u64 placeholder for a length; cf__wire_patch_u64 fills it. */
int cf__wire_put_placeholder(cf_buffer *buf, size_t *at);
void cf__wire_patch_u64(cf_buffer *buf, size_t at, uint64_t v);

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */

/* Decodes a header from the first `n` bytes of `p`. Returns CF_OK,
 * CF_EAGAIN if fewer than CF__WIRE_HEADER_SIZE bytes are there, or
 * CF_ECODEC for an unknown type, nonzero flags or an absurd length. */
int cf__wire_header_decode(const void *p, size_t n, cf__wire_header *h);

void cf__wire_reader_init(cf__wire_reader *r, const void *p, size_t len);
uint32_t cf__wire_get_u32(cf__wire_reader *r);
uint64_t cf__wire_get_u64(cf__wire_reader *r);
/* Returns a pointer to the next `n` bytes, or NULL (and sets bad). */
const unsigned char *cf__wire_get_bytes(cf__wire_reader *r, uint64_t n);
void cf__wire_get_ref(cf__wire_reader *r, cf__wire_ref *ref);
void cf__wire_get_codec(cf__wire_reader *r, cf__wire_codec *codec);

/* Decoded messages; pointers point into the payload. */
typedef struct cf__wire_init {
    uint32_t version;
    bool has_init;
    cf__wire_ref init;
    uint64_t initarg;
    uint32_t n_required;       /* names, iterated by cf__wire_next_name() */
    const unsigned char *required;
    size_t required_len;
} cf__wire_init;

typedef struct cf__wire_task {
    cf__wire_ref fn;
    cf__wire_codec codec;
    const unsigned char *data; /* TASK: the argument; CHUNK, WORDS: items */
    size_t len;
    uint64_t n; /* CHUNK, WORDS: item count */
} cf__wire_task;

typedef struct cf__wire_status {
    int32_t code;
    const unsigned char *data; /* result bytes (code 0) or message */
    size_t len;
} cf__wire_status;

/* Each returns CF_OK or CF_ECODEC. */
int cf__wire_decode_init(const void *p, size_t len, cf__wire_init *out);
int cf__wire_decode_task(const void *p, size_t len, bool chunk,
                         cf__wire_task *out);
/* A WORDS chunk: `data` holds n little-endian words (8 * n bytes). */
int cf__wire_decode_words(const void *p, size_t len, cf__wire_task *out);
/* A WORDS_RESULT: `*words` points at n little-endian words. */
int cf__wire_decode_words_result(const void *p, size_t len, uint64_t *n,
                                 const unsigned char **words);
int cf__wire_decode_status(const void *p, size_t len, cf__wire_status *out);

/* Iterates a CHUNK's items: call with `r` set up by cf__wire_chunk_items()
 * n times. Returns CF_OK or CF_ECODEC. */
void cf__wire_chunk_items(const cf__wire_task *t, cf__wire_reader *r);
int cf__wire_next_item(cf__wire_reader *r, const unsigned char **data,
                       size_t *len);
/* Iterates the required names of an INIT (`r` over init->required):
 * CF_OK with the next one, or CF_ECODEC. */
int cf__wire_next_name(cf__wire_reader *r, const char **name, size_t *len);
/* Appends a name as INIT lists them. */
int cf__wire_put_name(cf_buffer *buf, const char *name, size_t len);

/* Iterates a CHUNK_RESULT: u64 n first, then n statuses. */
int cf__wire_next_status(cf__wire_reader *r, cf__wire_status *out);

/* Encodes a status (RESULT or INIT_FAILED body, or a CHUNK_RESULT item
 * when `with_len`): code, and the message when code != 0. Result bytes are
 * appended by the caller's codec after this. */
int cf__wire_put_status(cf_buffer *buf, int32_t code, const char *message,
                        bool with_len, size_t *len_at);

#endif /* CF_WIRE_H */
