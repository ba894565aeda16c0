/* test_codec.c - byte buffers, the built-in codecs, and the process pool's
 * wire format (src/processes/wire.c): round trips, and decoders that refuse every
 * truncated or corrupted input without reading past it.
 */
#include "harness.h"
#include "core/core.h"
#include "processes/wire.h"

TEST(buffer_append_grows)
{
    cf_buffer b;
    cf__buffer_init(&b);
    for (int i = 0; i < 1000; i++)
        ASSERT_OK(cf_buffer_append(&b, "abc", 3));
    ASSERT_EQ(b.len, 3000);
    ASSERT(memcmp(b.data + 2997, "abc", 3) == 0);
    ASSERT_OK(cf_buffer_append(&b, NULL, 0));
    ASSERT_CODE(cf_buffer_append(&b, NULL, 1), CF_EINVAL);
    cf__buffer_destroy(&b);
    ASSERT_EQ(b.len, 0);
}

TEST(word_codec_round_trip)
{
    const cf_codec *c = cf_codec_word();
    cf_buffer b;
    cf__buffer_init(&b);
    ASSERT_OK(c->encode_arg((void *)(intptr_t)-12345, &b));
    ASSERT_EQ(b.len, 8);
    void *v;
    ASSERT_OK(c->decode_arg(b.data, b.len, &v));
    ASSERT_EQ((intptr_t)v, -12345);
    ASSERT_CODE(c->decode_result(b.data, 7, &v), CF_ECODEC);
    ASSERT(c->free_result == NULL);
    cf__buffer_destroy(&b);
}

TEST(string_codec_round_trip_and_refusals)
{
    const cf_codec *c = cf_codec_string();
    cf_buffer b;
    cf__buffer_init(&b);
    ASSERT_OK(c->encode_arg("héllo", &b));
    void *v;
    ASSERT_OK(c->decode_arg(b.data, b.len, &v));
    ASSERT_STR_EQ(v, "héllo");
    c->free_arg(v);
    b.len = 0;
    ASSERT_OK(c->encode_result(NULL, &b));
    ASSERT_OK(c->decode_result(b.data, b.len, &v));
    ASSERT_PTR_EQ(v, NULL);
    ASSERT_CODE(c->decode_result("", 0, &v), CF_ECODEC);      /* no tag */
    ASSERT_CODE(c->decode_result("\2x", 2, &v), CF_ECODEC);   /* bad tag */
    ASSERT_CODE(c->decode_result("\1a\0b", 4, &v), CF_ECODEC); /* NUL */
    ASSERT_CODE(c->decode_result("\0x", 2, &v), CF_ECODEC);   /* NULL+data */
    cf__buffer_destroy(&b);
}

/* A TASK frame for fn "libx.so"+0x1234, custom codec "" + 0x40, arg "hi". */
static void build_task(cf_buffer *b)
{
    size_t start;
    cf__wire_ref fn = {"libx.so", 7, 0x1234};
    cf__wire_codec codec = {CF__CODEC_CUSTOM, {"", 0, 0x40}};
    ASSERT_OK(cf__wire_begin(b, CF__MSG_TASK, 99, &start));
    ASSERT_OK(cf__wire_put_ref(b, &fn));
    ASSERT_OK(cf__wire_put_codec(b, &codec));
    ASSERT_OK(cf_buffer_append(b, "hi", 2));
    cf__wire_end(b, start);
}

TEST(task_frame_round_trip)
{
    cf_buffer b;
    cf__buffer_init(&b);
    build_task(&b);
    cf__wire_header h;
    ASSERT_OK(cf__wire_header_decode(b.data, b.len, &h));
    ASSERT_EQ(h.type, CF__MSG_TASK);
    ASSERT_EQ(h.id, 99);
    ASSERT_EQ(h.len, b.len - CF__WIRE_HEADER_SIZE);
    cf__wire_task t;
    ASSERT_OK(cf__wire_decode_task(b.data + CF__WIRE_HEADER_SIZE, h.len,
                                   false, &t));
    ASSERT_EQ(t.fn.module_len, 7);
    ASSERT(memcmp(t.fn.module, "libx.so", 7) == 0);
    ASSERT_EQ(t.fn.offset, 0x1234);
    ASSERT_EQ(t.codec.kind, CF__CODEC_CUSTOM);
    ASSERT_EQ(t.codec.ref.offset, 0x40);
    ASSERT_EQ(t.len, 2);
    ASSERT(memcmp(t.data, "hi", 2) == 0);
    cf__buffer_destroy(&b);
}

TEST(chunk_and_status_round_trip)
{
    cf_buffer b;
    cf__buffer_init(&b);
    size_t start, at;
    cf__wire_ref fn = {"", 0, 8};
    cf__wire_codec codec = {CF__CODEC_WORD, {"", 0, 0}};
    ASSERT_OK(cf__wire_begin(&b, CF__MSG_CHUNK, 1, &start));
    ASSERT_OK(cf__wire_put_ref(&b, &fn));
    ASSERT_OK(cf__wire_put_codec(&b, &codec));
    ASSERT_OK(cf__wire_put_u64(&b, 3));
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(cf__wire_put_placeholder(&b, &at));
        ASSERT_OK(cf_buffer_append(&b, "xyz", (size_t)i));
        cf__wire_patch_u64(&b, at, (uint64_t)i);
    }
    cf__wire_end(&b, start);
    cf__wire_task t;
    ASSERT_OK(cf__wire_decode_task(b.data + CF__WIRE_HEADER_SIZE,
                                   b.len - CF__WIRE_HEADER_SIZE, true, &t));
    ASSERT_EQ(t.n, 3);
    cf__wire_reader r;
    cf__wire_chunk_items(&t, &r);
    for (int i = 0; i < 3; i++) {
        const unsigned char *d;
        size_t n;
        ASSERT_OK(cf__wire_next_item(&r, &d, &n));
        ASSERT_EQ(n, (size_t)i);
    }
    /* A failure status carries its code and message. */
    b.len = 0;
    ASSERT_OK(cf__wire_put_status(&b, 42, "boom", false, &at));
    cf__wire_status st;
    ASSERT_OK(cf__wire_decode_status(b.data, b.len, &st));
    ASSERT_EQ(st.code, 42);
    ASSERT_EQ(st.len, 4);
    ASSERT(memcmp(st.data, "boom", 4) == 0);
    cf__buffer_destroy(&b);
}

TEST(headers_refuse_garbage)
{
    unsigned char h[CF__WIRE_HEADER_SIZE] = {0};
    cf__wire_header out;
    ASSERT_CODE(cf__wire_header_decode(h, 10, &out), CF_EAGAIN);
    ASSERT_CODE(cf__wire_header_decode(h, sizeof h, &out), CF_ECODEC); /* type 0 */
    h[0] = CF__MSG_TASK;
    ASSERT_OK(cf__wire_header_decode(h, sizeof h, &out));
    h[4] = 1; /* flags */
    ASSERT_CODE(cf__wire_header_decode(h, sizeof h, &out), CF_ECODEC);
    h[4] = 0;
    h[15] = 0xff; /* absurd length */
    ASSERT_CODE(cf__wire_header_decode(h, sizeof h, &out), CF_ECODEC);
}

/* Every truncation of a valid payload is refused or decodes inside its
 * bounds; random bytes never crash (ASan checks the reads). */
TEST(decoders_survive_truncation_and_noise)
{
    cf_buffer b;
    cf__buffer_init(&b);
    build_task(&b);
    const unsigned char *p = b.data + CF__WIRE_HEADER_SIZE;
    size_t len = b.len - CF__WIRE_HEADER_SIZE;
    for (size_t n = 0; n < len; n++) {
        /* Copy to an exact-size allocation so any overread is caught. */
        unsigned char *copy = malloc(n ? n : 1);
        memcpy(copy, p, n);
        cf__wire_task t;
        if (cf__wire_decode_task(copy, n, false, &t) == CF_OK)
            ASSERT(t.data + t.len <= copy + n);
        if (cf__wire_decode_task(copy, n, true, &t) == CF_OK)
            ASSERT(t.data + t.len <= copy + n);
        cf__wire_init in;
        cf__wire_decode_init(copy, n, &in);
        cf__wire_status st;
        cf__wire_decode_status(copy, n, &st);
        free(copy);
    }
    unsigned seed = 12345;
    size_t rounds = harness_scaled(20000, 500);
    for (size_t k = 0; k < rounds; k++) {
        size_t n = (seed = seed * 1103515245u + 12345u) % 64;
        unsigned char *noise = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++)
            noise[i] = (unsigned char)((seed = seed * 1103515245u + 12345u) >>
                                       16);
        cf__wire_task t;
        cf__wire_decode_task(noise, n, k % 2, &t);
        cf__wire_init in;
        cf__wire_decode_init(noise, n, &in);
        cf__wire_header h;
        cf__wire_header_decode(noise, n, &h);
        cf__wire_reader r;
        cf__wire_reader_init(&r, noise, n);
        cf__wire_status st;
        while (cf__wire_next_status(&r, &st) == CF_OK)
            ;
        free(noise);
    }
    cf__buffer_destroy(&b);
}
