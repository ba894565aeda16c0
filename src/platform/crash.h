/* crash.h - a process's backtrace at the moment a fatal signal kills it,
 * captured inside the dying process and named in another (crash_posix.c).
 *
 * Design: the dying side (a process-pool worker) arms a trap once: a
 * handler for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT on an alternate
 * stack, and one pre-mapped region holding a caller-given prefix (a wire
 * frame's header) followed by a fixed-size record: the signal, the raw
 * return addresses, and a snapshot of the loaded modules (path, load
 * address, address range). The handler fills in the addresses, write()s
 * prefix and record to a descriptor, and re-raises the signal with its
 * default action, so the process still ends by that signal. The other
 * side turns a record into lines "#0 name+0x1f (module+0x1234)" from the
 * module files' symbol tables (elf_symbols.c) or, for a file it has
 * loaded too, its dynamic symbols; "module+0x1234" where neither names
 * it.
 */
#ifndef CF_PLATFORM_CRASH_H
#define CF_PLATFORM_CRASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Return addresses kept (innermost first). */
#define CF__CRASH_FRAMES 48
/* Bytes of module table a record holds; modules past it are left out. */
#define CF__CRASH_MODULE_BYTES 12288

/* What the handler writes after the prefix: native words (both sides run
 * on the same machine). modules: entries of u64 base, lo, hi, name_len,
 * then the name padded to 8 bytes. */
typedef struct cf__crash_record {
    uint64_t magic;
    uint64_t signo;
    uint64_t n_frames;
    uint64_t frames[CF__CRASH_FRAMES];
    uint64_t modules_len;
    unsigned char modules[CF__CRASH_MODULE_BYTES];
} cf__crash_record;

#define CF__CRASH_MAGIC 0x63667472616365ull /* "cftrace" */

/* Arms the trap in this process: the record goes to `fd` after the
 * `prefix_len` bytes of `prefix` (copied; at most 64, a multiple
 * of 8). Warms the unwinder
 * up (its first use may load a library, which a signal handler cannot),
 * snapshots the modules and unblocks the five signals. Returns false
 * (nothing armed) where the platform cannot unwind or memory is short.
 * Not thread-safe; one trap per process. */
bool cf__crash_trap_arm(int fd, const void *prefix, size_t prefix_len);

/* Takes a new snapshot of the loaded modules (after a dlopen). No-op when
 * not armed. */
void cf__crash_trap_refresh(void);

/* Restores the handlers, the signal mask and the alternate stack the
 * process had before cf__crash_trap_arm(), and frees the region. */
void cf__crash_trap_disarm(void);

/* Writes a record received from a dead process (`len` bytes, checked
 * before use) as backtrace lines, each starting "\n  #i ", to `buf`
 * (always NUL-terminated). Returns false, with `buf` empty, when the
 * bytes are not a record. Blocks on reading module files. */
bool cf__crash_describe(const void *rec, size_t len, char *buf, size_t n);

#endif /* CF_PLATFORM_CRASH_H */
