/* link.c - frames over MPI messages, and the waiting policy (link.h).
 */
#include "mpi/link.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int64_t cf__mpi_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void cf__mpi_backoff_reset(cf__mpi_backoff *b)
{
    b->quiet_since = cf__mpi_now_ns();
    b->sleep_ns = 10000;
}

int64_t cf__mpi_backoff_next(cf__mpi_backoff *b)
{
    if (cf__mpi_now_ns() - b->quiet_since < b->spin_ns)
        return 0;
    int64_t ns = b->sleep_ns;
    if (ns > b->max_sleep_ns)
        ns = b->max_sleep_ns;
    if (b->sleep_ns < b->max_sleep_ns)
        b->sleep_ns *= 2;
    return ns;
}

void cf__mpi_sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    nanosleep(&ts, NULL);
}

static size_t clamp_max(size_t max)
{
    return max == 0 || max > (size_t)INT_MAX ? (size_t)1 << 30 : max;
}

int cf__mpi_isend(MPI_Comm comm, int dest, const unsigned char *p,
                  size_t len, size_t max, MPI_Request **reqs, int *n)
{
    max = clamp_max(max);
    size_t parts = len / max + (len % max != 0);
    if (parts == 0)
        parts = 1;
    if (parts > INT_MAX)
        return CF_ENOMEM;
    MPI_Request *r = malloc(parts * sizeof *r);
    if (!r)
        return CF_ENOMEM;
    for (size_t i = 0; i < parts; i++) {
        size_t off = i * max, k = len - off < max ? len - off : max;
        if (MPI_Isend(p + off, (int)k, MPI_BYTE, dest, CF__MPI_TAG_FRAME,
                      comm, &r[i]) != MPI_SUCCESS) {
            /* Already posted parts cannot be taken back; the job is in
             * trouble anyway (MPI's default handler aborts first). */
            free(r);
            return CF_ESYS;
        }
    }
    *reqs = r;
    *n = (int)parts;
    return CF_OK;
}

int cf__mpi_send(MPI_Comm comm, int dest, const unsigned char *p,
                 size_t len, size_t max)
{
    max = clamp_max(max);
    size_t off = 0;
    do {
        size_t k = len - off < max ? len - off : max;
        if (MPI_Send(p + off, (int)k, MPI_BYTE, dest, CF__MPI_TAG_FRAME,
                     comm) != MPI_SUCCESS)
            return CF_ESYS;
        off += k;
    } while (off < len);
    return CF_OK;
}

/* Receives one message of `source` announced by `st` at buf's end. */
static int recv_part(MPI_Comm comm, const MPI_Status *st, cf_buffer *buf,
                     size_t room)
{
    int count;
    MPI_Get_count(st, MPI_BYTE, &count);
    if (count < 0 || (size_t)count > room) {
        /* More than the frame announced: take it off the wire, refuse. */
        char *sink = malloc(count > 0 ? (size_t)count : 1);
        MPI_Recv(sink, count > 0 ? count : 0, MPI_BYTE, st->MPI_SOURCE,
                 st->MPI_TAG, comm, MPI_STATUS_IGNORE);
        free(sink);
        return CF_ECODEC;
    }
    if (MPI_Recv(buf->data + buf->len, count, MPI_BYTE, st->MPI_SOURCE,
                 st->MPI_TAG, comm, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return CF_ESYS;
    buf->len += (size_t)count;
    return CF_OK;
}

int cf__mpi_recv_frame(MPI_Comm comm, const MPI_Status *st, cf_buffer *buf,
                       cf__wire_header *h)
{
    int count;
    MPI_Get_count(st, MPI_BYTE, &count);
    buf->len = 0;
    if (count < 0)
        count = 0;
    if (cf__remote_buffer_reserve(buf, (size_t)count) != CF_OK)
        return CF_ENOMEM;
    int rc = recv_part(comm, st, buf, (size_t)count);
    if (rc != CF_OK)
        return rc;
    if (cf__remote_header_decode(buf->data, buf->len, h) != CF_OK ||
        h->len > SIZE_MAX - CF__WIRE_HEADER_SIZE ||
        buf->len > CF__WIRE_HEADER_SIZE + h->len)
        return CF_ECODEC;
    size_t total = CF__WIRE_HEADER_SIZE + (size_t)h->len;
    if (cf__remote_buffer_reserve(buf, total - buf->len) != CF_OK)
        return CF_ENOMEM;
    while (buf->len < total) {
        /* The rest is on its way from the same sender, in order. */
        MPI_Status more;
        if (MPI_Probe(st->MPI_SOURCE, CF__MPI_TAG_FRAME, comm, &more) !=
            MPI_SUCCESS)
            return CF_ESYS;
        if ((rc = recv_part(comm, &more, buf, total - buf->len)) != CF_OK)
            return rc;
    }
    return CF_OK;
}

int cf__mpi_wait_message(MPI_Comm comm, int source, int tag,
                         cf__mpi_backoff *b, MPI_Status *st)
{
    for (;;) {
        int flag = 0;
        if (MPI_Iprobe(source, tag, comm, &flag, st) != MPI_SUCCESS)
            return CF_ESYS;
        if (flag) {
            cf__mpi_backoff_reset(b);
            return CF_OK;
        }
        int64_t ns = cf__mpi_backoff_next(b);
        if (ns > 0)
            cf__mpi_sleep_ns(ns);
    }
}

int cf__mpi_check_thread_level(void)
{
    int init = 0, level = MPI_THREAD_SINGLE;
    MPI_Initialized(&init);
    if (!init) {
        fprintf(stderr, "cfutures_mpi: MPI is not initialised: call "
                "MPI_Init_thread(..., MPI_THREAD_SERIALIZED, ...) first\n");
        return CF_ENOTSUP;
    }
    MPI_Query_thread(&level);
    if (level < MPI_THREAD_SERIALIZED) {
        fprintf(stderr, "cfutures_mpi: MPI was initialised at thread level "
                "%s; the MPI executor needs MPI_THREAD_SERIALIZED or "
                "MPI_THREAD_MULTIPLE (MPI_Init_thread)\n",
                level == MPI_THREAD_SINGLE ? "MPI_THREAD_SINGLE"
                                           : "MPI_THREAD_FUNNELED");
        return CF_ENOTSUP;
    }
    return CF_OK;
}
