/* wire.c - frame and message encoding for the process pool; see wire.h.
 *
 * Design: pure functions over bytes. Encoders append to a cf_buffer;
 * decoders read through a cf__wire_reader that never passes its length and
 * remembers the first overrun, so each decoder checks `bad` once. Integers
 * are written byte by byte in little-endian order: no alignment or host
 * byte order assumptions, which also keeps UBSan quiet on odd offsets.
 */
#include "processes/wire.h"

#include <string.h>

static void store_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void store_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t load_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t load_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                 */

int cf__wire_begin(cf_buffer *buf, uint32_t type, uint64_t id, size_t *start)
{
    int rc = cf__buffer_reserve(buf, CF__WIRE_HEADER_SIZE);
    if (rc != CF_OK)
        return rc;
    unsigned char *h = buf->data + buf->len;
    store_u32(h, type);
    store_u32(h + 4, 0);
    store_u64(h + 8, 0);
    store_u64(h + 16, id);
    *start = buf->len;
    buf->len += CF__WIRE_HEADER_SIZE;
    return CF_OK;
}

void cf__wire_end(cf_buffer *buf, size_t start)
{
    store_u64(buf->data + start + 8,
              (uint64_t)(buf->len - start - CF__WIRE_HEADER_SIZE));
}

void cf__wire_set_id(cf_buffer *buf, size_t start, uint64_t id)
{
    store_u64(buf->data + start + 16, id);
}

void cf__wire_set_type(cf_buffer *buf, size_t start, uint32_t type)
{
    store_u32(buf->data + start, type);
}

int cf__wire_put_u32(cf_buffer *buf, uint32_t v)
{
    unsigned char b[4];
    store_u32(b, v);
    return cf_buffer_append(buf, b, sizeof b);
}

int cf__wire_put_u64(cf_buffer *buf, uint64_t v)
{
    unsigned char b[8];
    store_u64(b, v);
    return cf_buffer_append(buf, b, sizeof b);
}

int cf__wire_put_ref(cf_buffer *buf, const cf__wire_ref *ref)
{
    int rc;
    if (ref->module_len > UINT32_MAX)
        return CF_EINVAL;
    if ((rc = cf__wire_put_u32(buf, (uint32_t)ref->module_len)) != CF_OK ||
        (rc = cf_buffer_append(buf, ref->module, ref->module_len)) != CF_OK)
        return rc;
    return cf__wire_put_u64(buf, ref->offset);
}

int cf__wire_put_codec(cf_buffer *buf, const cf__wire_codec *codec)
{
    int rc = cf__wire_put_u32(buf, codec->kind);
    if (rc == CF_OK && codec->kind == CF__CODEC_CUSTOM)
        rc = cf__wire_put_ref(buf, &codec->ref);
    return rc;
}

int cf__wire_put_placeholder(cf_buffer *buf, size_t *at)
{
    *at = buf->len;
    return cf__wire_put_u64(buf, 0);
}

void cf__wire_patch_u64(cf_buffer *buf, size_t at, uint64_t v)
{
    store_u64(buf->data + at, v);
}

int cf__wire_put_status(cf_buffer *buf, int32_t code, const char *message,
                        bool with_len, size_t *len_at)
{
    int rc;
    if ((rc = cf__wire_put_u32(buf, (uint32_t)code)) != CF_OK ||
        (rc = cf__wire_put_u32(buf, 0)) != CF_OK)
        return rc;
    if (with_len && (rc = cf__wire_put_placeholder(buf, len_at)) != CF_OK)
        return rc;
    if (code != 0 && message)
        rc = cf_buffer_append(buf, message, strlen(message));
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */

static bool known_type(uint32_t type)
{
    switch (type) {
    case CF__MSG_INIT:
    case CF__MSG_TASK:
    case CF__MSG_CHUNK:
    case CF__MSG_EXIT:
    case CF__MSG_WORDS:
    case CF__MSG_STOP:
    case CF__MSG_READY:
    case CF__MSG_INIT_FAILED:
    case CF__MSG_RESULT:
    case CF__MSG_CHUNK_RESULT:
    case CF__MSG_CLAIMED:
    case CF__MSG_WORDS_RESULT:
    case CF__MSG_CRASH:
        return true;
    default:
        return false;
    }
}

int cf__wire_header_decode(const void *p, size_t n, cf__wire_header *h)
{
    if (n < CF__WIRE_HEADER_SIZE)
        return CF_EAGAIN;
    const unsigned char *b = p;
    h->type = load_u32(b);
    h->flags = load_u32(b + 4);
    h->len = load_u64(b + 8);
    h->id = load_u64(b + 16);
    if (!known_type(h->type) || h->flags != 0 ||
        h->len > CF__WIRE_MAX_PAYLOAD || h->len > SIZE_MAX / 2)
        return CF_ECODEC;
    return CF_OK;
}

void cf__wire_reader_init(cf__wire_reader *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->bad = false;
}

const unsigned char *cf__wire_get_bytes(cf__wire_reader *r, uint64_t n)
{
    if (r->bad || n > r->len - r->pos) {
        r->bad = true;
        return NULL;
    }
    const unsigned char *p = r->p + r->pos;
    r->pos += (size_t)n;
    return p;
}

uint32_t cf__wire_get_u32(cf__wire_reader *r)
{
    const unsigned char *p = cf__wire_get_bytes(r, 4);
    return p ? load_u32(p) : 0;
}

uint64_t cf__wire_get_u64(cf__wire_reader *r)
{
    const unsigned char *p = cf__wire_get_bytes(r, 8);
    return p ? load_u64(p) : 0;
}

void cf__wire_get_ref(cf__wire_reader *r, cf__wire_ref *ref)
{
    uint32_t n = cf__wire_get_u32(r);
    ref->module = (const char *)cf__wire_get_bytes(r, n);
    ref->module_len = ref->module ? n : 0;
    if (!ref->module)
        ref->module = "";
    ref->offset = cf__wire_get_u64(r);
}

void cf__wire_get_codec(cf__wire_reader *r, cf__wire_codec *codec)
{
    codec->kind = cf__wire_get_u32(r);
    codec->ref.module = "";
    codec->ref.module_len = 0;
    codec->ref.offset = 0;
    if (codec->kind == CF__CODEC_CUSTOM)
        cf__wire_get_ref(r, &codec->ref);
    else if (codec->kind != CF__CODEC_WORD &&
             codec->kind != CF__CODEC_STRING && codec->kind != CF__CODEC_BYTES)
        r->bad = true;
}

int cf__wire_decode_init(const void *p, size_t len, cf__wire_init *out)
{
    cf__wire_reader r;
    cf__wire_reader_init(&r, p, len);
    out->version = cf__wire_get_u32(&r);
    uint32_t has = cf__wire_get_u32(&r);
    out->has_init = has == 1;
    out->init.module = "";
    out->init.module_len = 0;
    out->init.offset = 0;
    if (has > 1)
        r.bad = true;
    if (out->has_init)
        cf__wire_get_ref(&r, &out->init);
    out->initarg = cf__wire_get_u64(&r);
    out->n_required = cf__wire_get_u32(&r);
    if (r.bad)
        return CF_ECODEC;
    out->required = r.p + r.pos;
    out->required_len = r.len - r.pos;
    /* Every name must be there, and nothing after them. */
    cf__wire_reader names;
    cf__wire_reader_init(&names, out->required, out->required_len);
    for (uint32_t i = 0; i < out->n_required; i++) {
        const char *name;
        size_t n;
        if (cf__wire_next_name(&names, &name, &n) != CF_OK)
            return CF_ECODEC;
    }
    return names.pos == names.len ? CF_OK : CF_ECODEC;
}

int cf__wire_next_name(cf__wire_reader *r, const char **name, size_t *len)
{
    uint32_t n = cf__wire_get_u32(r);
    const unsigned char *p = cf__wire_get_bytes(r, n);
    if (r->bad || n == 0)
        return CF_ECODEC;
    *name = (const char *)p;
    *len = n;
    return CF_OK;
}

int cf__wire_put_name(cf_buffer *buf, const char *name, size_t len)
{
    if (len == 0 || len > UINT32_MAX)
        return CF_EINVAL;
    int rc = cf__wire_put_u32(buf, (uint32_t)len);
    return rc ? rc : cf_buffer_append(buf, name, len);
}

int cf__wire_decode_task(const void *p, size_t len, bool chunk,
                         cf__wire_task *out)
{
    cf__wire_reader r;
    cf__wire_reader_init(&r, p, len);
    cf__wire_get_ref(&r, &out->fn);
    cf__wire_get_codec(&r, &out->codec);
    out->n = chunk ? cf__wire_get_u64(&r) : 1;
    if (r.bad)
        return CF_ECODEC;
    out->data = r.p + r.pos;
    out->len = r.len - r.pos;
    if (!chunk)
        return CF_OK;
    /* Validate every item now, so the worker never starts half a chunk
     * it cannot finish decoding. */
    cf__wire_reader items;
    cf__wire_chunk_items(out, &items);
    for (uint64_t i = 0; i < out->n; i++) {
        const unsigned char *d;
        size_t n;
        if (cf__wire_next_item(&items, &d, &n) != CF_OK)
            return CF_ECODEC;
    }
    return items.pos == items.len ? CF_OK : CF_ECODEC;
}

int cf__wire_decode_words(const void *p, size_t len, cf__wire_task *out)
{
    cf__wire_reader r;
    cf__wire_reader_init(&r, p, len);
    cf__wire_get_ref(&r, &out->fn);
    cf__wire_get_codec(&r, &out->codec);
    out->n = cf__wire_get_u64(&r);
    if (r.bad || out->codec.kind != CF__CODEC_WORD ||
        out->n != (r.len - r.pos) / 8 || (r.len - r.pos) % 8 != 0)
        return CF_ECODEC;
    out->data = r.p + r.pos;
    out->len = r.len - r.pos;
    return CF_OK;
}

int cf__wire_decode_words_result(const void *p, size_t len, uint64_t *n,
                                 const unsigned char **words)
{
    if (len < 8 || (len - 8) % 8 != 0)
        return CF_ECODEC;
    *n = load_u64(p);
    if (*n != (len - 8) / 8)
        return CF_ECODEC;
    *words = (const unsigned char *)p + 8;
    return CF_OK;
}

void cf__wire_chunk_items(const cf__wire_task *t, cf__wire_reader *r)
{
    cf__wire_reader_init(r, t->data, t->len);
}

int cf__wire_next_item(cf__wire_reader *r, const unsigned char **data,
                       size_t *len)
{
    uint64_t n = cf__wire_get_u64(r);
    const unsigned char *d = cf__wire_get_bytes(r, n);
    if (r->bad)
        return CF_ECODEC;
    *data = d;
    *len = (size_t)n;
    return CF_OK;
}

int cf__wire_decode_status(const void *p, size_t len, cf__wire_status *out)
{
    cf__wire_reader r;
    cf__wire_reader_init(&r, p, len);
    out->code = (int32_t)cf__wire_get_u32(&r);
    if (cf__wire_get_u32(&r) != 0 || r.bad)
        return CF_ECODEC;
    out->data = r.p + r.pos;
    out->len = r.len - r.pos;
    return CF_OK;
}

int cf__wire_next_status(cf__wire_reader *r, cf__wire_status *out)
{
    out->code = (int32_t)cf__wire_get_u32(r);
    uint32_t pad = cf__wire_get_u32(r);
    uint64_t n = cf__wire_get_u64(r);
    out->data = cf__wire_get_bytes(r, n);
    out->len = (size_t)n;
    return r->bad || pad != 0 ? CF_ECODEC : CF_OK;
}
