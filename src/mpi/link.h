/* link.h - how frames travel between MPI ranks, and how a rank waits for
 * them (link.c). Shared by the root's communication thread (executor.c,
 * comm.c) and the worker ranks (serve.c).
 *
 * Design: the process pool's frames (processes/wire.h) go as MPI_BYTE
 * messages with tag CF__MPI_TAG_FRAME on the executor's own duplicate of
 * the application's communicator. A frame longer than `max_message`
 * bytes goes as several messages in a row; MPI keeps messages between two
 * ranks with one tag in order, so the receiver reads the header from the
 * first and takes the rest from the same sender. Check-in (the build hash
 * and the options) uses CF__MPI_TAG_HELLO.
 */
#ifndef CF_MPI_LINK_H
#define CF_MPI_LINK_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "processes/remote.h"

enum { CF__MPI_TAG_HELLO = 1, CF__MPI_TAG_FRAME = 2 };

/* The root's HELLO to each worker rank (little-endian words):
 *   u64 magic | u64 program hash | u64 flags | u64 spin (ns) |
 *   u64 max_sleep (ns) | u64 max_message
 * and the answer: u64 magic | u64 program hash | u64 pid. */
#define CF__MPI_MAGIC 0x3170696d66632e31ull /* "1.cfmpi1" */
#define CF__MPI_HELLO_WORDS 6
#define CF__MPI_REPLY_WORDS 3
#define CF__MPI_FLAG_ISOLATE 1u

/* How a rank waits for messages: see cfutures_mpi.h. */
typedef struct cf__mpi_backoff {
    int64_t spin_ns;      /* tight polling after the last message */
    int64_t max_sleep_ns; /* longest sleep between polls */
    int64_t quiet_since;  /* when the last message came (monotonic ns) */
    int64_t sleep_ns;     /* the next sleep */
} cf__mpi_backoff;

int64_t cf__mpi_now_ns(void);
/* A message came: poll tightly again. */
void cf__mpi_backoff_reset(cf__mpi_backoff *b);
/* Nothing came: 0 to poll again at once, or how long to sleep first (and
 * the next sleep doubles). */
int64_t cf__mpi_backoff_next(cf__mpi_backoff *b);
/* Sleeps `ns` nanoseconds. */
void cf__mpi_sleep_ns(int64_t ns);

/* Starts sending the `len` bytes at `p` to `dest` in messages of at most
 * `max` bytes: `*reqs` (malloc'd, `*n` of them) complete when it is sent.
 * CF_OK, CF_ENOMEM, CF_ESYS. */
int cf__mpi_isend(MPI_Comm comm, int dest, const unsigned char *p,
                  size_t len, size_t max, MPI_Request **reqs, int *n);
/* The same, blocking. */
int cf__mpi_send(MPI_Comm comm, int dest, const unsigned char *p,
                 size_t len, size_t max);

/* Receives the frame whose first message `st` (from MPI_Iprobe) announced,
 * whole, into `buf` (its length set to the frame's), and decodes its
 * header. CF_OK, CF_ECODEC (a malformed header: the message was consumed),
 * CF_ENOMEM, CF_ESYS. */
int cf__mpi_recv_frame(MPI_Comm comm, const MPI_Status *st, cf_buffer *buf,
                       cf__wire_header *h);

/* Polls for a message with `tag` from `source` (MPI_ANY_SOURCE allowed)
 * until one comes, waiting as `b` says. CF_OK with its status, CF_ESYS. */
int cf__mpi_wait_message(MPI_Comm comm, int source, int tag,
                         cf__mpi_backoff *b, MPI_Status *st);

/* The thread level MPI was initialised with is enough (SERIALIZED or
 * MULTIPLE): CF_OK; else CF_ENOTSUP, with a line on stderr. */
int cf__mpi_check_thread_level(void);

#endif /* CF_MPI_LINK_H */
