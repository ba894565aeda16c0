/* elf_symbols.h - names of functions from a module file's ELF symbol
 * table, static ones included, for crash reports (see elf_symbols.c).
 */
#ifndef CF_PLATFORM_ELF_SYMBOLS_H
#define CF_PLATFORM_ELF_SYMBOLS_H

#include <link.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Names the function at `offset` (from the module's load address, as
 * cf__addr_to_ref() gives it) in the module file `path` ("" for the
 * running program), from the file's .symtab, which also lists static
 * functions. `loaded` and `n_loaded` are the module's program headers as
 * loaded (dl_iterate_phdr's), or NULL: the file's must match them, so a
 * file replaced on disk since it was loaded names nothing. Writes "name",
 * or "name+0x<delta>" inside a function, to `buf` and returns true; false
 * if the file cannot be read, is not a matching ELF file, has no symbol
 * table (stripped) or no function there. Each file is read once (by
 * pread, into memory mapped for it, so neither malloc nor a truncated
 * file can get in the way) and kept while it stays the same file.
 * Thread-safe; blocks on file I/O the first time. */
bool cf__elf_symbol_name(const char *path, uint64_t offset,
                         const ElfW(Phdr) *loaded, int n_loaded, char *buf,
                         size_t n);

#endif /* CF_PLATFORM_ELF_SYMBOLS_H */
