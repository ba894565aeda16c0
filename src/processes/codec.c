/* codec.c - byte buffers and the built-in codecs.
 *
 * Design: a cf_buffer is a plain growable array (data, len, cap) that
 * codecs append to; it grows geometrically so that appending n bytes in
 * small pieces costs O(n). The built-in codecs are the two a C program
 * needs without writing its own: cf_codec_word() carries the pointer value
 * (eight little-endian bytes, so a future remote transport agrees on the
 * order), cf_codec_string() carries a NUL-terminated string or NULL.
 * Nothing here knows about processes: the process pool and, later, the MPI
 * executor and the Python binding call these functions on bytes only.
 */
#include "core/core.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Buffers                                                                  */

void cf__buffer_init(cf_buffer *buf)
{
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}

void cf__buffer_destroy(cf_buffer *buf)
{
    free(buf->data);
    cf__buffer_init(buf);
}

int cf__buffer_reserve(cf_buffer *buf, size_t extra)
{
    if (extra <= buf->cap - buf->len)
        return CF_OK;
    /* No allocator returns more than PTRDIFF_MAX bytes: refuse here
     * rather than ask (sanitizers and valgrind report such a request). */
    if (extra > (size_t)PTRDIFF_MAX - buf->len)
        return CF_ENOMEM;
    size_t need = buf->len + extra;
    size_t cap = buf->cap ? buf->cap : 64;
    while (cap < need)
        cap = cap > (size_t)PTRDIFF_MAX / 2 ? need : cap * 2;
    unsigned char *data = realloc(buf->data, cap);
    if (!data)
        return CF_ENOMEM;
    buf->data = data;
    buf->cap = cap;
    return CF_OK;
}

int cf_buffer_append(cf_buffer *buf, const void *data, size_t len)
{
    if (!buf || (!data && len))
        return CF_EINVAL;
    if (len == 0)
        return CF_OK;
    int rc = cf__buffer_reserve(buf, len);
    if (rc != CF_OK)
        return rc;
    memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    return CF_OK;
}

/* ------------------------------------------------------------------------ */
/* cf_codec_word: the pointer value itself                                  */

static int word_encode(const void *value, cf_buffer *out)
{
    uint64_t v = (uint64_t)(uintptr_t)value;
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return cf_buffer_append(out, b, sizeof b);
}

static int word_decode(const void *data, size_t len, void **value)
{
    if (len != 8)
        return CF_ECODEC;
    const unsigned char *b = data;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    *value = (void *)(uintptr_t)v;
    return CF_OK;
}

static const cf_codec word_codec = {
    .encode_arg = word_encode,
    .decode_arg = word_decode,
    .encode_result = word_encode,
    .decode_result = word_decode,
};

const cf_codec *cf_codec_word(void)
{
    return &word_codec;
}

/* ------------------------------------------------------------------------ */
/* cf_codec_string: NUL-terminated strings, NULL included                   */

/* One tag byte tells NULL (0) from a string (1), so that a task may return
 * NULL for "no answer" and the other side sees NULL, not "". */
static int string_encode(const void *value, cf_buffer *out)
{
    unsigned char tag = value ? 1 : 0;
    size_t len = value ? strlen(value) : 0;
    int rc = cf__buffer_reserve(out, 1 + len);
    if (rc != CF_OK)
        return rc;
    out->data[out->len++] = tag;
    if (len) {
        memcpy(out->data + out->len, value, len);
        out->len += len;
    }
    return CF_OK;
}

static int string_decode(const void *data, size_t len, void **value)
{
    const unsigned char *b = data;
    if (len == 0 || b[0] > 1 || (b[0] == 0 && len != 1))
        return CF_ECODEC;
    if (b[0] == 0) {
        *value = NULL;
        return CF_OK;
    }
    /* An embedded NUL would silently truncate the string: refuse it. */
    if (memchr(b + 1, '\0', len - 1))
        return CF_ECODEC;
    char *s = malloc(len);
    if (!s)
        return CF_ENOMEM;
    memcpy(s, b + 1, len - 1);
    s[len - 1] = '\0';
    *value = s;
    return CF_OK;
}

static const cf_codec string_codec = {
    .encode_arg = string_encode,
    .decode_arg = string_decode,
    .free_arg = free,
    .encode_result = string_encode,
    .decode_result = string_decode,
    .free_result = free,
};

const cf_codec *cf_codec_string(void)
{
    return &string_codec;
}

/* ------------------------------------------------------------------------ */
/* cf_codec_bytes: a length and that many bytes                             */

cf_bytes *cf_bytes_new(const void *data, size_t len)
{
    if (len > (size_t)PTRDIFF_MAX - sizeof(cf_bytes))
        return NULL;
    cf_bytes *b = malloc(sizeof *b + (len ? len : 1));
    if (!b)
        return NULL;
    b->len = len;
    b->data = (unsigned char *)(b + 1);
    if (data && len)
        memcpy(b->data, data, len);
    return b;
}

void cf_bytes_free(cf_bytes *b)
{
    free(b);
}

static void bytes_free(void *value)
{
    cf_bytes_free(value);
}

/* A tag byte tells NULL (0) from a value (1), as for strings. */
static int bytes_encode(const void *value, cf_buffer *out)
{
    const cf_bytes *b = value;
    if (b && !b->data && b->len)
        return CF_ECODEC;
    size_t len = b ? b->len : 0;
    if (len > SIZE_MAX - 1)
        return CF_ENOMEM;
    int rc = cf__buffer_reserve(out, 1 + len);
    if (rc != CF_OK)
        return rc;
    out->data[out->len++] = b ? 1 : 0;
    if (len) {
        memcpy(out->data + out->len, b->data, len);
        out->len += len;
    }
    return CF_OK;
}

static int bytes_decode(const void *data, size_t len, void **value)
{
    const unsigned char *p = data;
    if (len == 0 || p[0] > 1 || (p[0] == 0 && len != 1))
        return CF_ECODEC;
    if (p[0] == 0) {
        *value = NULL;
        return CF_OK;
    }
    cf_bytes *b = cf_bytes_new(p + 1, len - 1);
    if (!b)
        return CF_ENOMEM;
    *value = b;
    return CF_OK;
}

static const cf_codec bytes_codec = {
    .encode_arg = bytes_encode,
    .decode_arg = bytes_decode,
    .free_arg = bytes_free,
    .encode_result = bytes_encode,
    .decode_result = bytes_decode,
    .free_result = bytes_free,
};

const cf_codec *cf_codec_bytes(void)
{
    return &bytes_codec;
}
