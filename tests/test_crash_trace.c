/* test_crash_trace.c - naming the backtrace a dying worker sends
 * (src/platform/crash_posix.c, cf__crash_describe): frames in a file with
 * a symbol table by function name, frames in a file without one (or gone)
 * as module+offset for addr2line, frames outside every module as raw
 * addresses, and bytes that are not a record refused, never a crash. The
 * capture itself is tested through the process pool (test_process_crash,
 * test_worker_kinds). */
#define _GNU_SOURCE
#include "harness.h"

#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "platform/crash.h"

/* Static and not exported: only the file's .symtab names it. */
__attribute__((noinline, used)) static void *static_crashing_function(void *a)
{
    __asm__ __volatile__("" ::: "memory");
    return a;
}

static int main_base(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    if (info->dlpi_name && info->dlpi_name[0])
        return 0;
    *(uintptr_t *)data = info->dlpi_addr;
    return 1;
}

/* Appends a module entry (base, lo, hi, name) to the record. */
static void add_module(cf__crash_record *r, uint64_t base, uint64_t lo,
                       uint64_t hi, const char *name)
{
    uint64_t w[4] = {base, lo, hi, strlen(name)};
    memcpy(r->modules + r->modules_len, w, sizeof w);
    r->modules_len += sizeof w;
    memcpy(r->modules + r->modules_len, name, strlen(name));
    r->modules_len += (strlen(name) + 7) & ~(size_t)7;
}

static cf__crash_record *new_record(void)
{
    cf__crash_record *r = calloc(1, sizeof *r);
    ASSERT(r != NULL);
    r->magic = CF__CRASH_MAGIC;
    r->signo = 11;
    return r;
}

TEST(trace_names_a_static_function_from_the_symbol_table)
{
    char exe[512];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ASSERT(n > 0);
    exe[n] = '\0';
    uintptr_t base = 0;
    ASSERT(dl_iterate_phdr(main_base, &base) == 1);
    cf__crash_record *r = new_record();
    uintptr_t fn = (uintptr_t)static_crashing_function;
    add_module(r, base, base, fn + 4096, exe);
    r->frames[0] = fn + 1;  /* the faulting instruction, as it is */
    r->frames[1] = fn + 2;  /* a return address: named by fn + 1 */
    r->n_frames = 2;
    char buf[2048];
    ASSERT(cf__crash_describe(r, sizeof *r, buf, sizeof buf));
    ASSERT(strstr(buf, "\n  #0 static_crashing_function+0x1 (") != NULL);
    ASSERT(strstr(buf, "\n  #1 static_crashing_function+0x2 (") != NULL);
    ASSERT(strstr(buf, exe) != NULL);
    free(r);
}

/* A file with no symbol table (here: gone, or not ELF at all) still
 * gives module+offset, what addr2line needs. */
TEST(trace_without_symbols_shows_module_and_offset)
{
    cf__crash_record *r = new_record();
    add_module(r, 0x10000, 0x10000, 0x20000, "/nonexistent/libgone.so");
    add_module(r, 0x40000, 0x40000, 0x50000, "/dev/null");
    r->frames[0] = 0x11234;
    r->frames[1] = 0x42000;
    r->frames[2] = 0x90000; /* in no module */
    r->n_frames = 3;
    char buf[2048];
    ASSERT(cf__crash_describe(r, sizeof *r, buf, sizeof buf));
    ASSERT(strstr(buf, "\n  #0 /nonexistent/libgone.so+0x1234") != NULL);
    ASSERT(strstr(buf, "\n  #1 /dev/null+0x2000") != NULL);
    ASSERT(strstr(buf, "\n  #2 0x90000") != NULL);
    free(r);
}

TEST(trace_longer_than_the_buffer_is_cut)
{
    cf__crash_record *r = new_record();
    for (int i = 0; i < CF__CRASH_FRAMES; i++)
        r->frames[i] = 0x1000 + (uint64_t)i;
    r->n_frames = CF__CRASH_FRAMES;
    char buf[100];
    ASSERT(cf__crash_describe(r, sizeof *r, buf, sizeof buf));
    ASSERT(strlen(buf) < sizeof buf);
    ASSERT(strstr(buf, "\n  ...") != NULL);
    free(r);
}

TEST(bytes_that_are_not_a_record_are_refused)
{
    cf__crash_record *r = new_record();
    char buf[256];
    ASSERT(!cf__crash_describe(r, sizeof *r - 1, buf, sizeof buf));
    ASSERT(buf[0] == '\0');
    ASSERT(!cf__crash_describe(NULL, sizeof *r, buf, sizeof buf));
    r->n_frames = CF__CRASH_FRAMES + 1;
    ASSERT(!cf__crash_describe(r, sizeof *r, buf, sizeof buf));
    r->n_frames = 1;
    r->modules_len = CF__CRASH_MODULE_BYTES + 8;
    ASSERT(!cf__crash_describe(r, sizeof *r, buf, sizeof buf));
    r->modules_len = 0;
    r->magic = 1;
    ASSERT(!cf__crash_describe(r, sizeof *r, buf, sizeof buf));
    /* A module entry whose name runs past the table: frames stay raw. */
    r->magic = CF__CRASH_MAGIC;
    uint64_t w[4] = {0, 0, 0x100000, 1u << 20};
    memcpy(r->modules, w, sizeof w);
    r->modules_len = sizeof w;
    r->frames[0] = 0x1234;
    ASSERT(cf__crash_describe(r, sizeof *r, buf, sizeof buf));
    ASSERT(strstr(buf, "\n  #0 0x1234") != NULL);
    free(r);
}
