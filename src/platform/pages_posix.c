/* pages_posix.c - aligned anonymous mappings (mmap), for the future slabs.
 *
 * An aligned block lets its owner find a header by masking an address.
 * mmap only promises page alignment, so map twice the size and give the
 * unaligned ends back.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform.h"

#include <stdint.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

void *cf__pages_map_aligned(size_t size, bool *huge)
{
    size_t span = 2 * size;
    char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    uintptr_t start = ((uintptr_t)raw + size - 1) & ~(uintptr_t)(size - 1);
    size_t head = start - (uintptr_t)raw;
    size_t tail = span - head - size;
    if (head)
        munmap(raw, head);
    if (tail)
        munmap((char *)start + size, tail);
#ifdef MADV_HUGEPAGE
    /* Best effort: a kernel without THP, or with THP off, says no. */
    if (*huge)
        *huge = madvise((void *)start, size, MADV_HUGEPAGE) == 0;
#else
    *huge = false;
#endif
    return (void *)start;
}

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Only for memory nobody uses yet (the fallback writes to it). */
int64_t cf__pages_populate(void *p, size_t size)
{
    int64_t start = thread_cpu_ns();
#ifdef MADV_POPULATE_WRITE /* Linux 5.14: one call instead of a fault a page */
    if (madvise(p, size, MADV_POPULATE_WRITE) != 0)
#endif
    {
        long page = sysconf(_SC_PAGESIZE);
        size_t step = page > 0 ? (size_t)page : 4096;
        /* Fresh memory reads as zero: writing zero changes nothing. */
        for (size_t off = 0; off < size; off += step)
            ((volatile char *)p)[off] = 0;
    }
    return thread_cpu_ns() - start;
}

void cf__pages_unmap(void *p, size_t size)
{
    munmap(p, size);
}
