/* transport.c - the process pool's two transports (see transport.h): a
 * socket pair plus a shared slot per worker, and two plain pipes.
 *
 * Design: both are non-blocking byte streams the manager polls; they
 * differ in how the bytes move (send()/recv() on a socket, which never
 * raises SIGPIPE; write()/read() on pipes, whose SIGPIPE the platform
 * layer swallows on the manager's thread) and in whether the pool sets up
 * shared memory for the worker. Everything else, frames included, is the
 * same, which is why the process-pool tests run over both.
 */
#include "processes/transport.h"

static int socket_open(cf__channel *ch)
{
    return cf__channel_open(false, ch);
}

static ptrdiff_t socket_send(const cf__proc *p, const void *data, size_t n)
{
    struct iovec iov = {(void *)data, n};
    return cf__sock_send(p->write_fd, &iov, 1);
}

static ptrdiff_t socket_recv(const cf__proc *p, void *buf, size_t n)
{
    return cf__sock_recv(p->fd, buf, n);
}

static int pipes_open(cf__channel *ch)
{
    return cf__channel_open(true, ch);
}

static ptrdiff_t pipes_send(const cf__proc *p, const void *data, size_t n)
{
    return cf__pipe_write(p->write_fd, data, n);
}

static ptrdiff_t pipes_recv(const cf__proc *p, void *buf, size_t n)
{
    return cf__pipe_read(p->fd, buf, n);
}

static const cf__transport socket_shm = {
    .name = "socket + shared memory",
    .shared_memory = true,
    .open = socket_open,
    .send = socket_send,
    .recv = socket_recv,
};

static const cf__transport pipes = {
    .name = "pipes",
    .shared_memory = false,
    .open = pipes_open,
    .send = pipes_send,
    .recv = pipes_recv,
};

const cf__transport *cf__transport_for(cf_transport kind)
{
    switch (kind) {
    case CF_TRANSPORT_SHARED_MEMORY:
        return &socket_shm;
    case CF_TRANSPORT_PIPES:
        return &pipes;
    default:
        return NULL;
    }
}

void cf__transport_watch(const cf__proc *p, bool in, bool out, bool alive,
                         struct pollfd entries[3])
{
    entries[0] = (struct pollfd){in ? p->fd : -1, POLLIN, 0};
    entries[1] = (struct pollfd){out ? p->write_fd : -1, POLLOUT, 0};
    entries[2] = (struct pollfd){alive ? p->pidfd : -1, POLLIN, 0};
}
