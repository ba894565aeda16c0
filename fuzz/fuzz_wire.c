/* fuzz_wire.c - fuzz target for everything that decodes bytes crossing the
 * process boundary: the wire frames and messages (src/wire.c) and the
 * built-in codecs (src/codec.c).
 *
 * The input is a stream of frames, as a worker's socket delivers it to the
 * parent (or the parent's to a worker): a 24-byte header, then the payload.
 * Each frame is decoded as its type says, then its payload is also run
 * through every other decoder, so a mutation of the type byte does not hide
 * a decoder from the fuzzer. Every decoder must refuse garbage with
 * CF_ECODEC (or CF_EAGAIN for a short header) and never read outside the
 * input: the sanitizers catch a read past the end, and the asserts below
 * catch a decoded pointer or length outside it.
 *
 * Built two ways (see fuzz/README.md): with clang -fsanitize=fuzzer as a
 * libFuzzer target, or with -DCF_FUZZ_STANDALONE as a program that replays
 * the files named on its command line (any compiler; used in CI on the
 * seed corpus).
 */
#include "processes/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                     \
    do {                                                                \
        if (!(cond)) {                                                  \
            fprintf(stderr, "fuzz_wire: %s:%d: %s\n", __FILE__,         \
                    __LINE__, #cond);                                   \
            abort();                                                    \
        }                                                               \
    } while (0)

static const unsigned char *lo, *hi; /* the current input */

static void check_span(const unsigned char *p, size_t n)
{
    if (n == 0)
        return;
    CHECK(p != NULL && p >= lo && p <= hi && n <= (size_t)(hi - p));
}

static void check_ref(const cf__wire_ref *ref)
{
    if (ref->module_len)
        check_span((const unsigned char *)ref->module, ref->module_len);
}

static void decode_payload(const unsigned char *p, size_t n)
{
    cf__wire_init init;
    if (cf__wire_decode_init(p, n, &init) == CF_OK && init.has_init)
        check_ref(&init.init);
    for (int chunk = 0; chunk < 2; chunk++) {
        cf__wire_task t;
        if (cf__wire_decode_task(p, n, chunk, &t) != CF_OK)
            continue;
        check_ref(&t.fn);
        if (t.codec.kind == CF__CODEC_CUSTOM)
            check_ref(&t.codec.ref);
        check_span(t.data, t.len);
        if (!chunk)
            continue;
        cf__wire_reader r;
        cf__wire_chunk_items(&t, &r);
        for (uint64_t i = 0; i < t.n; i++) {
            const unsigned char *d;
            size_t len;
            CHECK(cf__wire_next_item(&r, &d, &len) == CF_OK);
            check_span(d, len);
        }
    }
    /* As a WORDS chunk and a WORDS_RESULT: n words, exactly. */
    cf__wire_task w;
    if (cf__wire_decode_words(p, n, &w) == CF_OK) {
        check_ref(&w.fn);
        CHECK(w.len == 8 * w.n);
        check_span(w.data, w.len);
    }
    uint64_t n_words;
    const unsigned char *words;
    if (cf__wire_decode_words_result(p, n, &n_words, &words) == CF_OK) {
        CHECK(n_words <= n / 8);
        check_span(words, 8 * n_words);
    }
    cf__wire_status st;
    if (cf__wire_decode_status(p, n, &st) == CF_OK)
        check_span(st.data, st.len);
    /* As a CHUNK_RESULT: a count, then that many statuses. */
    cf__wire_reader r;
    cf__wire_reader_init(&r, p, n);
    uint64_t count = cf__wire_get_u64(&r);
    for (uint64_t i = 0; i < count && !r.bad; i++)
        if (cf__wire_next_status(&r, &st) == CF_OK)
            check_span(st.data, st.len);
    /* The built-in codecs decode results and arguments. */
    const cf_codec *codecs[] = {cf_codec_word(), cf_codec_string()};
    for (int c = 0; c < 2; c++) {
        void *v;
        if (codecs[c]->decode_result(p, n, &v) == CF_OK &&
            codecs[c]->free_result)
            codecs[c]->free_result(v);
        if (codecs[c]->decode_arg(p, n, &v) == CF_OK && codecs[c]->free_arg)
            codecs[c]->free_arg(v);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lo = data;
    hi = data + size;
    size_t pos = 0;
    while (pos < size) {
        cf__wire_header h;
        int rc = cf__wire_header_decode(data + pos, size - pos, &h);
        if (rc == CF_EAGAIN)
            break;
        if (rc != CF_OK) {
            /* A bad header ends the stream, as the pool does; still feed
             * the rest to the payload decoders. */
            decode_payload(data + pos, size - pos);
            break;
        }
        CHECK(h.flags == 0 && h.len <= CF__WIRE_MAX_PAYLOAD);
        pos += CF__WIRE_HEADER_SIZE;
        size_t len = h.len < size - pos ? (size_t)h.len : size - pos;
        decode_payload(data + pos, len);
        pos += len;
    }
    return 0;
}

#ifdef CF_FUZZ_STANDALONE
/* Replays each file named on the command line through the target. */
int main(int argc, char **argv)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        FILE *fp = fopen(argv[i], "rb");
        if (!fp) {
            perror(argv[i]);
            return 2;
        }
        static unsigned char buf[1 << 20];
        size_t len = fread(buf, 1, sizeof buf, fp);
        fclose(fp);
        /* An exact-size copy, so ASan sees a read one byte past the end. */
        unsigned char *copy = malloc(len ? len : 1);
        if (!copy)
            return 2;
        memcpy(copy, buf, len);
        LLVMFuzzerTestOneInput(copy, len);
        free(copy);
        n++;
    }
    printf("fuzz_wire: %d inputs replayed, no failure\n", n);
    return 0;
}
#endif
