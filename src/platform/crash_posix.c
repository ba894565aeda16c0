/* crash_posix.c - backtraces of a process killed by a fatal signal: the
 * trap armed inside it, and the naming of what it wrote (see crash.h).
 *
 * Design: everything the handler touches exists before the signal: one
 * mmap'd region (the caller's prefix, then a cf__crash_record with the
 * module snapshot already filled in), an alternate stack (a stack
 * overflow is a SIGSEGV too), and an unwinder that has run once. The
 * handler then only calls backtrace() (glibc's, through libgcc's
 * unwinder, which steps over the kernel's signal frame using the
 * trampoline's unwind info; not async-signal-safe on paper only because
 * its first call loads libgcc_s, done at arming), getpid(), write(),
 * poll(), sigaction() and raise(). The interrupted instruction, read from
 * the signal's context, marks where the trace starts, so the handler's
 * own frames are left out. SA_RESETHAND: a fault inside the handler, or
 * in a second thread, meets the default action. A child a task forks
 * inherits the trap but not the right to write: the record goes out only
 * from the process that armed it.
 *
 * Modules are named by a snapshot (dl_iterate_phdr, which takes the
 * loader's lock and so cannot run in the handler): taken at arming and
 * again after each dlopen the caller makes (cf__crash_trap_refresh);
 * code a task loaded itself shows up as raw addresses.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform/crash.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "platform/elf_symbols.h"

#if defined(__GLIBC__)
#include <execinfo.h>
#define HAVE_BACKTRACE 1
#endif

static const int trapped[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
#define N_TRAPPED (sizeof trapped / sizeof trapped[0])

#define PREFIX_MAX 64
#define ALT_STACK_BYTES (64u << 10)

typedef struct trap {
    bool armed;
    int fd;
    pid_t pid;           /* the process that armed it */
    unsigned char *region; /* prefix, then the record */
    size_t prefix_len;
    size_t region_len;
    cf__crash_record *rec;
    void *alt;           /* our alternate stack */
    stack_t old_alt;
    struct sigaction old_act[N_TRAPPED];
    sigset_t old_mask;
} trap;

static trap the_trap;

/* ------------------------------------------------------------------------ */
/* The module snapshot                                                      */

typedef struct snap {
    cf__crash_record *rec;
    size_t len;
} snap;

static bool put_word(snap *s, uint64_t v)
{
    if (CF__CRASH_MODULE_BYTES - s->len < 8)
        return false;
    memcpy(s->rec->modules + s->len, &v, 8);
    s->len += 8;
    return true;
}

static int snap_module(struct dl_phdr_info *info, size_t size, void *data)
{
    snap *s = data;
    (void)size;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (start < lo)
            lo = start;
        if (start + ph->p_memsz > hi)
            hi = start + ph->p_memsz;
    }
    if (lo >= hi)
        return 0;
    char exe[512];
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    if (!name[0]) { /* the main program: its real path, for the reader */
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
        name = exe;
    }
    size_t len = strlen(name), padded = (len + 7) & ~(size_t)7;
    size_t mark = s->len;
    if (!put_word(s, info->dlpi_addr) || !put_word(s, lo) ||
        !put_word(s, hi) || !put_word(s, len) ||
        CF__CRASH_MODULE_BYTES - s->len < padded) {
        s->len = mark;
        return 1; /* full: the rest are left out */
    }
    memset(s->rec->modules + s->len, 0, padded);
    memcpy(s->rec->modules + s->len, name, len);
    s->len += padded;
    return 0;
}

void cf__crash_trap_refresh(void)
{
    if (!the_trap.armed)
        return;
    snap s = {the_trap.rec, 0};
    dl_iterate_phdr(snap_module, &s);
    the_trap.rec->modules_len = s.len;
}

/* ------------------------------------------------------------------------ */
/* The handler                                                              */

/* The interrupted instruction's address, or 0 where unknown. */
static uintptr_t context_pc(const void *context)
{
    const ucontext_t *uc = context;
    (void)uc;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__i386__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_EIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#else
    return 0;
#endif
}

static void write_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = {fd, POLLOUT, 0};
            if (poll(&pfd, 1, 1000) <= 0)
                return; /* nobody reads: die without the trace */
        } else if (n == 0 || errno != EINTR) {
            return;
        }
    }
}

#ifdef HAVE_BACKTRACE
static void on_fatal(int sig, siginfo_t *info, void *context)
{
    int saved = errno;
    (void)info;
    trap *t = &the_trap;
    if (t->armed && getpid() == t->pid) {
        void *frames[CF__CRASH_FRAMES + 8];
        int n = backtrace(frames, (int)(sizeof frames / sizeof frames[0]));
        uintptr_t pc = context_pc(context);
        /* Start at the interrupted instruction: the handler and the
         * kernel's trampoline come before it. */
        int from = n < 2 ? n : 2;
        for (int i = 0; pc && i < n && i < 8; i++)
            if ((uintptr_t)frames[i] == pc) {
                from = i;
                break;
            }
        size_t k = 0;
        if (pc && (from >= n || (uintptr_t)frames[from] != pc))
            t->rec->frames[k++] = pc; /* the unwinder stopped short */
        for (int i = from; i < n && k < CF__CRASH_FRAMES; i++)
            t->rec->frames[k++] = (uintptr_t)frames[i];
        t->rec->signo = (uint64_t)sig;
        t->rec->n_frames = k;
        write_all(t->fd, t->region, t->region_len);
    }
    /* SA_RESETHAND put the default action back: die of the same signal. */
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    raise(sig);
    errno = saved;
}
#endif

/* ------------------------------------------------------------------------ */
/* Arming                                                                   */

bool cf__crash_trap_arm(int fd, const void *prefix, size_t prefix_len)
{
#ifndef HAVE_BACKTRACE
    (void)fd;
    (void)prefix;
    (void)prefix_len;
    return false;
#else
    trap *t = &the_trap;
    if (t->armed || fd < 0 || prefix_len > PREFIX_MAX || prefix_len % 8)
        return false;
    void *warm[4];
    (void)backtrace(warm, 4); /* loads libgcc_s now, not in the handler */
    t->prefix_len = prefix_len;
    t->region_len = prefix_len + sizeof(cf__crash_record);
    void *region = mmap(NULL, t->region_len, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *alt = mmap(NULL, ALT_STACK_BYTES, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED || alt == MAP_FAILED) {
        if (region != MAP_FAILED)
            munmap(region, t->region_len);
        if (alt != MAP_FAILED)
            munmap(alt, ALT_STACK_BYTES);
        return false;
    }
    t->region = region;
    t->alt = alt;
    memcpy(t->region, prefix, prefix_len);
    /* Right after the prefix, whose length is a multiple of 8. */
    t->rec = (cf__crash_record *)(void *)(t->region + prefix_len);
    t->rec->magic = CF__CRASH_MAGIC;
    t->fd = fd;
    t->pid = getpid();
    t->armed = true;
    cf__crash_trap_refresh();
    stack_t ss = {.ss_sp = alt, .ss_size = ALT_STACK_BYTES, .ss_flags = 0};
    sigaltstack(&ss, &t->old_alt);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigset_t mask;
    sigemptyset(&mask);
    for (size_t i = 0; i < N_TRAPPED; i++) {
        sigaction(trapped[i], &sa, &t->old_act[i]);
        sigaddset(&mask, trapped[i]);
    }
    /* A blocked SIGSEGV kills without running the handler. */
    sigprocmask(SIG_UNBLOCK, &mask, &t->old_mask);
    return true;
#endif
}

void cf__crash_trap_disarm(void)
{
    trap *t = &the_trap;
    if (!t->armed)
        return;
    for (size_t i = 0; i < N_TRAPPED; i++)
        sigaction(trapped[i], &t->old_act[i], NULL);
    sigprocmask(SIG_SETMASK, &t->old_mask, NULL);
    sigaltstack(&t->old_alt, NULL);
    t->armed = false;
    munmap(t->region, t->region_len);
    munmap(t->alt, ALT_STACK_BYTES);
    t->region = NULL;
    t->alt = NULL;
    t->rec = NULL;
}

/* ------------------------------------------------------------------------ */
/* Naming a record (in the process that reads it)                           */

typedef struct module {
    uint64_t base, lo, hi;
    const char *name;
    size_t name_len;
} module;

/* The module holding `addr` in the record's table, false if none. */
static bool find_module(const cf__crash_record *r, uint64_t addr, module *m)
{
    size_t pos = 0, len = (size_t)r->modules_len;
    while (len - pos >= 32) {
        uint64_t w[4];
        memcpy(w, r->modules + pos, 32);
        pos += 32;
        if (w[3] > len - pos)
            return false; /* corrupt */
        size_t padded = ((size_t)w[3] + 7) & ~(size_t)7;
        if (addr >= w[1] && addr < w[2]) {
            *m = (module){w[0], w[1], w[2],
                          (const char *)r->modules + pos, (size_t)w[3]};
            return true;
        }
        if (padded > len - pos)
            return false;
        pos += padded;
    }
    return false;
}

typedef struct loaded_here {
    const char *path;
    uintptr_t addr; /* in: offset; out: address in this process */
    bool found;
} loaded_here;

static int find_loaded(struct dl_phdr_info *info, size_t size, void *data)
{
    loaded_here *l = data;
    (void)size;
    if (!info->dlpi_name || strcmp(info->dlpi_name, l->path) != 0)
        return 0;
    l->addr += info->dlpi_addr;
    l->found = true;
    return 1;
}

/* Names `off` in the module file `path` from its symbol table, or else,
 * when this process has the same file loaded (a system library, which is
 * stripped of .symtab but keeps its exported names), from its dynamic
 * symbols. */
static bool name_at(const char *path, uint64_t off, char *buf, size_t n)
{
    if (cf__elf_symbol_name(path, off, NULL, 0, buf, n))
        return true;
    loaded_here l = {path, (uintptr_t)off, false};
    dl_iterate_phdr(find_loaded, &l);
    Dl_info info;
    if (!l.found || !dladdr((void *)l.addr, &info) || !info.dli_sname ||
        !info.dli_saddr)
        return false;
    uintptr_t delta = l.addr - (uintptr_t)info.dli_saddr;
    if (delta)
        snprintf(buf, n, "%s+0x%llx", info.dli_sname,
                 (unsigned long long)delta);
    else
        snprintf(buf, n, "%s", info.dli_sname);
    return true;
}

/* Names a return address by the call before it (a call that never
 * returns may be a function's last instruction), then reports the
 * offset of the address itself. */
static bool name_return(const char *path, uint64_t off, char *buf, size_t n)
{
    if (off == 0 || !name_at(path, off - 1, buf, n))
        return false;
    char *plus = strstr(buf, "+0x");
    unsigned long long delta = plus ? strtoull(plus + 3, NULL, 16) : 0;
    if (plus)
        *plus = '\0';
    size_t used = strlen(buf);
    snprintf(buf + used, n - used, "+0x%llx", delta + 1);
    return true;
}

bool cf__crash_describe(const void *bytes, size_t len, char *buf, size_t n)
{
    if (!buf || n == 0)
        return false;
    buf[0] = '\0';
    if (!bytes || len != sizeof(cf__crash_record))
        return false;
    /* Copied: the bytes need not be aligned. */
    cf__crash_record *r = malloc(sizeof *r);
    if (!r)
        return false;
    memcpy(r, bytes, sizeof *r);
    if (r->magic != CF__CRASH_MAGIC || r->n_frames > CF__CRASH_FRAMES ||
        r->modules_len > CF__CRASH_MODULE_BYTES) {
        free(r);
        return false;
    }
    size_t used = 0;
    for (uint64_t i = 0; i < r->n_frames; i++) {
        uint64_t a = r->frames[i];
        char line[700], sym[300], path[512];
        module m;
        if (find_module(r, a, &m)) {
            size_t pl = m.name_len < sizeof path - 1 ? m.name_len
                                                     : sizeof path - 1;
            memcpy(path, m.name, pl);
            path[pl] = '\0';
            uint64_t off = a - m.base;
            bool named = i == 0 ? name_at(path, off, sym, sizeof sym)
                                : name_return(path, off, sym, sizeof sym);
            if (named)
                snprintf(line, sizeof line, "\n  #%u %s (%s+0x%llx)",
                         (unsigned)i, sym, path, (unsigned long long)off);
            else
                snprintf(line, sizeof line, "\n  #%u %s+0x%llx", (unsigned)i,
                         path, (unsigned long long)off);
        } else {
            snprintf(line, sizeof line, "\n  #%u 0x%llx", (unsigned)i,
                     (unsigned long long)a);
        }
        size_t ll = strlen(line);
        if (used + ll + 8 >= n) {
            snprintf(buf + used, n - used, "\n  ...");
            break;
        }
        memcpy(buf + used, line, ll + 1);
        used += ll;
    }
    free(r);
    return true;
}
