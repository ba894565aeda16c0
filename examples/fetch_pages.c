/* fetch_pages.c - the ThreadPoolExecutor example from the Python docs:
 *
 *     with ThreadPoolExecutor(max_workers=5) as executor:
 *         future_to_url = {executor.submit(load_url, url, 60): url
 *                          for url in URLS}
 *         for future in as_completed(future_to_url): ...print the outcome
 *
 * There is no outside network here, so the program first starts a tiny
 * HTTP/1.0 server on 127.0.0.1 (itself a task on a one-thread pool). URLS
 * holds three pages of different sizes on it, a path it answers with 404,
 * and a port where nothing listens (connection refused), which stands in
 * for 'http://some-made-up-domain.com/'. */
#define _POSIX_C_SOURCE 200809L
#include <cfutures.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static const struct {
    const char *path;
    size_t size;
} PAGES[] = {{"/", 1234}, {"/news", 56789}, {"/world", 250000}};
#define NPAGES (sizeof PAGES / sizeof PAGES[0])
#define NURLS (NPAGES + 2) /* and a 404, and a refused connection */

/* ---- The server: one connection at a time until stop_pipe is written. */
static int listen_fd = -1, stop_pipe[2] = {-1, -1};

/* Returns the index in PAGES of the page a request asks for, or NPAGES. */
static size_t find_page(const char *req)
{
    char path[256];
    size_t i = 0;
    if (sscanf(req, "GET %255s", path) != 1)
        return NPAGES;
    while (i < NPAGES && strcmp(PAGES[i].path, path) != 0)
        i++;
    return i;
}

static void answer(int c)
{
    char req[1024] = "", buf[4096];
    size_t got = 0;
    ssize_t n = 0;
    while (!strstr(req, "\r\n\r\n") && got < sizeof req - 1 &&
           (n = recv(c, req + got, sizeof req - 1 - got, 0)) > 0)
        req[got += (size_t)n] = '\0';
    size_t i = find_page(req);
    int len = snprintf(buf, sizeof buf, "HTTP/1.0 %s\r\n\r\n",
                       i < NPAGES ? "200 OK" : "404 Not Found");
    if (send(c, buf, (size_t)len, MSG_NOSIGNAL) != len || i == NPAGES)
        return; /* the client went away, or there is no body */
    memset(buf, 'x', sizeof buf);
    for (size_t left = PAGES[i].size; left > 0; left -= (size_t)n)
        if ((n = send(c, buf, left < sizeof buf ? left : sizeof buf,
                      MSG_NOSIGNAL)) <= 0)
            return;
}

static void *serve(void *unused, cf_call *call)
{
    struct pollfd p[2] = {{listen_fd, POLLIN, 0}, {stop_pipe[0], POLLIN, 0}};
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return cf_fail(call, errno, "poll: %s", strerror(errno));
        }
        if (p[1].revents != 0)
            return NULL; /* main() asked us to stop */
        int c = accept(listen_fd, NULL, NULL);
        if (c >= 0) {
            answer(c);
            close(c);
        }
    }
}

/* ---- The client. Python's load_url(url, timeout) takes two arguments; a
 * C task takes one pointer, so they travel in a struct (with what main()
 * expects of this URL, to check the run). */
struct fetch {
    char url[64];
    double timeout;
    size_t want_size; /* the page's size, or 0 and ... */
    int want_code;    /* ... the failure's code */
};
struct body {
    size_t len;
    char data[];
};

/* Connects and sends a GET. Returns the socket, or -1 with errno set. The
 * socket timeouts make connect, send and recv give up like
 * urlopen(url, timeout=timeout). */
static int http_get(const char *url, double timeout)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct timeval tv = {(time_t)timeout, 0};
    char host[32], path[256], req[512];
    unsigned port;
    if (sscanf(url, "http://%31[0-9.]:%u%255s", host, &port, path) != 3 ||
        inet_pton(AF_INET, host, &sa.sin_addr) != 1 || port > 65535)
        return errno = EINVAL, -1;
    sa.sin_port = htons((uint16_t)port);
    int len = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n\r\n", path);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0 &&
        connect(fd, (const struct sockaddr *)&sa, sizeof sa) == 0 &&
        send(fd, req, (size_t)len, MSG_NOSIGNAL) == len)
        return fd;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    return errno = saved, -1;
}

/* Returns the page as a malloc'd struct body, which the caller frees. A
 * failure becomes the future's exception, worded as urllib words it. */
static void *load_url(void *arg, cf_call *call)
{
    const struct fetch *f = arg;
    char *resp = NULL, buf[4096], reason[64] = "", *end;
    size_t len = 0;
    ssize_t n = 0;
    int fd = http_get(f->url, f->timeout), status = 0;
    if (fd < 0)
        return cf_fail(call, errno, "<urlopen error [Errno %d] %s>", errno,
                       strerror(errno));
    /* HTTP/1.0: the response ends when the server closes the connection. */
    FILE *mem = open_memstream(&resp, &len);
    while (mem && (n = recv(fd, buf, sizeof buf, 0)) > 0)
        fwrite(buf, 1, (size_t)n, mem); /* a failure shows in fclose */
    int err = mem == NULL ? ENOMEM : n < 0 ? errno : 0;
    close(fd);
    if (mem && fclose(mem) != 0 && err == 0)
        err = errno;
    if (err != 0) {
        free(resp);
        return cf_fail(call, err, "<urlopen error %s>",
                       err == EAGAIN ? "timed out" : strerror(err));
    }
    if ((end = strstr(resp, "\r\n\r\n")) == NULL ||
        sscanf(resp, "HTTP/1.%*d %d %63[^\r]", &status, reason) < 1) {
        free(resp);
        return cf_fail(call, EPROTO, "<urlopen error bad response>");
    }
    if (status != 200) {
        free(resp);
        return cf_fail(call, status, "HTTP Error %d: %s", status, reason);
    }
    size_t body_len = len - (size_t)(end + 4 - resp);
    struct body *page = malloc(sizeof *page + body_len);
    if (page) {
        page->len = body_len;
        memcpy(page->data, end + 4, body_len);
    }
    free(resp);
    return page ? page : cf_fail(call, ENOMEM, "no memory for the page");
}

/* ---- The Python example proper. Returns the number of surprises. */
static int report(const struct fetch *f, cf_future *future)
{
    cf_error exc;
    void *value;
    int err = cf_future_result(future, 0, &value); /* done: no waiting */
    if (err == CF_ETASK && cf_future_exception(future, 0, &exc) == CF_OK) {
        printf("'%s' generated an exception: %s\n", f->url, exc.message);
        return exc.code != f->want_code;
    }
    if (err != CF_OK) {
        fprintf(stderr, "'%s': %s\n", f->url, cf_strerror(err));
        return 1;
    }
    struct body *page = value; /* ours: the thread pool passed it as is */
    printf("'%s' page is %zu bytes\n", f->url, page->len);
    int bad = f->want_code != 0 || page->len != f->want_size;
    free(page);
    return bad;
}

static int fetch_all(struct fetch *urls)
{
    cf_thread_pool_options opts = {.max_workers = 5};
    cf_executor *executor = NULL;
    cf_future *fs[NURLS] = {NULL}, *future;
    cf_as_completed *it = NULL;
    int err, failures = 0;
    size_t seen = 0;
    if ((err = cf_thread_pool_new(&opts, &executor)) != CF_OK)
        goto out;
    for (size_t i = 0; i < NURLS; i++)
        if ((err = cf_executor_submit(executor, load_url, &urls[i], &fs[i])))
            goto out;
    if ((err = cf_as_completed_new(fs, NURLS, CF_FOREVER, &it)) != CF_OK)
        goto out;
    while ((err = cf_as_completed_next(it, &future)) == CF_OK) {
        size_t i = 0;
        while (fs[i] != future) /* future_to_url[future] */
            i++;
        failures += report(&urls[i], future);
        cf_future_release(future);
        seen++;
    }
    if (err == CF_EEND && seen == NURLS)
        err = CF_OK;
out:
    if (err != CF_OK)
        fprintf(stderr, "fetch_pages: %s\n", cf_strerror(err));
    cf_as_completed_free(it);
    cf_executor_free(executor); /* the `with` block ends */
    for (size_t i = 0; i < NURLS; i++)
        cf_future_release(fs[i]);
    return failures + (err != CF_OK);
}

/* Binds a TCP socket to a free port of 127.0.0.1. Returns it or -1. */
static int bind_local(unsigned *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sa_len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sa_len) == 0) {
        *port = ntohs(sa.sin_port);
        return fd;
    }
    if (fd >= 0)
        close(fd);
    return -1;
}

int main(void)
{
    cf_thread_pool_options server_opts = {.max_workers = 1,
                                          .thread_name_prefix = "http"};
    cf_executor *server_pool = NULL;
    cf_future *server = NULL;
    struct fetch urls[NURLS];
    unsigned port = 0, dead_port = 0;
    /* Bound but never listening: a connection to it is refused. */
    int dead_fd = bind_local(&dead_port), failures = 1, err;
    cf_error exc;

    listen_fd = bind_local(&port);
    if (dead_fd < 0 || listen_fd < 0 || listen(listen_fd, 16) != 0 ||
        pipe(stop_pipe) != 0) {
        perror("fetch_pages: server");
        goto out;
    }
    for (size_t i = 0; i < NURLS; i++) {
        snprintf(urls[i].url, sizeof urls[i].url, "http://127.0.0.1:%u%s",
                 i == NPAGES + 1 ? dead_port : port,
                 i < NPAGES ? PAGES[i].path : i == NPAGES ? "/missing" : "/");
        urls[i].timeout = 60;
        urls[i].want_size = i < NPAGES ? PAGES[i].size : 0;
        urls[i].want_code = i < NPAGES ? 0 : i == NPAGES ? 404 : ECONNREFUSED;
    }
    if ((err = cf_thread_pool_new(&server_opts, &server_pool)) != CF_OK ||
        (err = cf_executor_submit(server_pool, serve, NULL, &server))) {
        fprintf(stderr, "fetch_pages: %s\n", cf_strerror(err));
        goto out;
    }
    failures = fetch_all(urls);
out:
    /* Stop the server, join its thread, then check that it ran cleanly. */
    if (stop_pipe[1] >= 0 && write(stop_pipe[1], "", 1) != 1)
        failures++;
    cf_executor_free(server_pool);
    if (server && (cf_future_exception(server, 0, &exc) != CF_OK || exc.code))
        failures++;
    cf_future_release(server);
    int fds[] = {dead_fd, listen_fd, stop_pipe[0], stop_pipe[1]};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return failures == 0 ? 0 : 1;
}
