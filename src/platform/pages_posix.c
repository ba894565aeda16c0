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

void *cf__pages_map_aligned(size_t size, bool huge)
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
    if (huge)
        madvise((void *)start, size, MADV_HUGEPAGE);
#else
    (void)huge;
#endif
    return (void *)start;
}

void cf__pages_unmap(void *p, size_t size)
{
    munmap(p, size);
}
