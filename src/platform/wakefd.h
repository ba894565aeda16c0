/* wakefd.h - a descriptor one thread makes readable for another's poll():
 * an eventfd, or a non-blocking pipe where there is none.
 *
 * Design: `read_fd` is what a caller polls; `write_fd` is where a signal
 * goes (the same descriptor for an eventfd). A signal makes read_fd
 * readable until a clear; signals do not nest (one clear undoes any
 * number of them). Both ends are non-blocking and close-on-exec, so a
 * signal never blocks (a full pipe is readable already) and a child
 * process inherits neither. Used by the completion queue
 * (core/completion_queue.c).
 */
#ifndef CF_PLATFORM_WAKEFD_H
#define CF_PLATFORM_WAKEFD_H

#include <stdbool.h>

typedef struct cf__wakefd {
    int read_fd;
    int write_fd; /* == read_fd for an eventfd */
} cf__wakefd;

/* Opens one: an eventfd where the OS has it, else (or with `use_pipe`, for
 * tests) a pipe. Returns CF_OK, CF_EAGAIN (descriptor limit), CF_ENOMEM,
 * CF_ESYS; on error nothing is open. */
int cf__wakefd_open(cf__wakefd *w, bool use_pipe);

/* Closes both ends. */
void cf__wakefd_close(cf__wakefd *w);

/* Makes read_fd readable. Never blocks; safe from any thread. */
void cf__wakefd_signal(const cf__wakefd *w);

/* Makes read_fd unreadable until the next signal. Never blocks. */
void cf__wakefd_clear(const cf__wakefd *w);

#endif /* CF_PLATFORM_WAKEFD_H */
