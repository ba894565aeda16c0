/* code_ref_posix.c - naming code so another process can find it: the
 * module (the main program or a shared library, by path) and offset of an
 * address, resolving such a reference back to an address, and describing
 * an address for a human (see process.h).
 *
 * Design: dl_iterate_phdr() finds the loaded module whose PT_LOAD segment
 * holds the address; the offset is from the module's load base, so it
 * means the same in any process that loaded the same file, wherever ASLR
 * put it. Names for crash reports come from the file's own symbol table
 * (elf_symbols.c), which also covers static functions, then dladdr().
 */
#include "process.h"

#include "elf_symbols.h"

#include <dlfcn.h>
#include <errno.h> /* program_invocation_name */
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfutures.h"

struct find_addr {
    uintptr_t addr;
    cf__code_ref *ref;
    bool found;
    const ElfW(Phdr) *phdrs; /* the module's, as loaded */
    int n_phdrs;
};

static int find_addr_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    struct find_addr *fa = data;
    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (fa->addr >= start && fa->addr - start < ph->p_memsz) {
            const char *name = info->dlpi_name ? info->dlpi_name : "";
            fa->ref->module = name;
            fa->ref->module_len = strlen(name);
            fa->ref->offset = fa->addr - info->dlpi_addr;
            fa->found = true;
            fa->phdrs = info->dlpi_phdr;
            fa->n_phdrs = info->dlpi_phnum;
            return 1;
        }
    }
    return 0;
}

int cf__addr_to_ref(const void *addr, cf__code_ref *ref)
{
    struct find_addr fa = {(uintptr_t)addr, ref, false, NULL, 0};
    dl_iterate_phdr(find_addr_cb, &fa);
    return fa.found ? CF_OK : CF_EINVAL;
}

struct find_module {
    const cf__code_ref *ref;
    uintptr_t result;
    bool found;
};

static int find_module_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    struct find_module *fm = data;
    (void)size;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    if (strlen(name) != fm->ref->module_len ||
        memcmp(name, fm->ref->module, fm->ref->module_len) != 0)
        return 0;
    /* The offset must land inside one of the module's segments: a
     * corrupted or stale reference must not become a wild jump. */
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && fm->ref->offset >= ph->p_vaddr &&
            fm->ref->offset - ph->p_vaddr < ph->p_memsz) {
            fm->result = info->dlpi_addr + (uintptr_t)fm->ref->offset;
            fm->found = true;
            return 1;
        }
    }
    return 1;
}

void *cf__ref_to_addr(const cf__code_ref *ref)
{
    struct find_module fm = {ref, 0, false};
    dl_iterate_phdr(find_module_cb, &fm);
    if (fm.found)
        return (void *)fm.result;
    if (ref->module_len == 0 || ref->module_len > 4095)
        return NULL;
    /* A module the parent loaded with dlopen(): load it here too. It stays
     * loaded for the worker's life, as the parent's reference implies. */
    char path[4096];
    memcpy(path, ref->module, ref->module_len);
    path[ref->module_len] = '\0';
    if (!dlopen(path, RTLD_NOW | RTLD_GLOBAL))
        return NULL;
    dl_iterate_phdr(find_module_cb, &fm);
    return fm.found ? (void *)fm.result : NULL;
}

void cf__addr_describe(const void *addr, char *buf, size_t n)
{
    cf__code_ref ref;
    struct find_addr fa = {(uintptr_t)addr, &ref, false, NULL, 0};
    dl_iterate_phdr(find_addr_cb, &fa);
    /* The module file's full symbol table names static functions too. */
    if (fa.found && cf__elf_symbol_name(ref.module, ref.offset, fa.phdrs,
                                        fa.n_phdrs, buf, n))
        return;
    Dl_info info;
    if (dladdr(addr, &info) && info.dli_sname && info.dli_saddr == addr) {
        snprintf(buf, n, "%s", info.dli_sname);
        return;
    }
    if (fa.found) {
        /* No symbol anywhere (a stripped file): the module and offset
         * still let `addr2line -f -e <module> <offset>` name it. */
        const char *module = ref.module;
#if defined(__GLIBC__)
        if (!ref.module_len)
            module = program_invocation_name;
#endif
        snprintf(buf, n, "%s+0x%llx", module[0] ? module : "main",
                 (unsigned long long)ref.offset);
        return;
    }
    snprintf(buf, n, "%p", addr);
}
