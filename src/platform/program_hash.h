/* program_hash.h - a fingerprint of this program's build, to check that
 * several processes (MPI ranks) run the same one (program_hash_posix.c).
 */
#ifndef CF_PLATFORM_PROGRAM_HASH_H
#define CF_PLATFORM_PROGRAM_HASH_H

#include <stdint.h>

/* FNV-1a (64 bits) over the bytes of this process's executable file
 * (/proc/self/exe on Linux): equal for the same build, different for any
 * other (an ELF build-id would miss builds made without one). Reads the
 * file once per call: a few milliseconds for a few megabytes. Returns 0
 * with `*out` set, or a negative errno-style value when unreadable. */
int cf__program_hash(uint64_t *out);

#endif /* CF_PLATFORM_PROGRAM_HASH_H */
