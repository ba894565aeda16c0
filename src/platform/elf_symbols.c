/* elf_symbols.c - function names from a module file's ELF symbol table.
 *
 * Design: dladdr() knows only the dynamic symbol table, so a static task
 * function, or any function of a program linked without -rdynamic, came
 * out of a crash report as "program+0x3b50". The file the module was
 * loaded from usually still has its full symbol table (.symtab, unless it
 * was stripped), which names those too. It is read here once per file:
 * the ELF header, the program headers, the section headers one at a time,
 * then the symbol table and its string table, by pread() into anonymous
 * memory mapped for the purpose. Not malloc: the fault-injection tests
 * count every allocation, and this memory is kept on purpose. Not a
 * mapping of the file either: a file truncated while mapped (a library
 * rebuilt in place) would turn a read into SIGBUS.
 *
 * Nothing read from the file is trusted: every offset, size and count is
 * checked against the file's size and the table's own bounds before use,
 * and a name must end inside the string table; a truncated, corrupt,
 * stripped or foreign file names nothing, and the caller falls back. The
 * file's program headers must match the module's as loaded, so a file
 * replaced on disk since the module was loaded names nothing either.
 *
 * A cache of CACHE_SLOTS files, keyed by path and checked against the
 * file's identity (device, inode, size, modification time) at each use,
 * keeps what was read, a file without a symbol table included (as "none");
 * a changed file is read again, an evicted one's memory unmapped. One
 * mutex guards the cache, held across the reading (once per file: crash
 * reports are rare); fork handlers take it around fork() so that a child
 * never inherits it held.
 */
#include "platform/elf_symbols.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { CACHE_SLOTS = 16, MAX_PATH = 512, MAX_PHDRS = 256 };

/* Larger tables are not a program's: refused rather than read. */
#define MAX_TABLE_BYTES ((uint64_t)1 << 30)

#if UINTPTR_MAX > 0xffffffffu
#define OUR_CLASS ELFCLASS64
#else
#define OUR_CLASS ELFCLASS32
#endif

typedef struct table {
    bool used;  /* the slot describes a file */
    bool found; /* ...which has a symbol table */
    char path[MAX_PATH];
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    /* In `mem`: the file's program headers, symbols and their names. */
    const ElfW(Phdr) *phdrs;
    size_t n_phdrs;
    const ElfW(Sym) *syms;
    size_t n_syms;
    const char *names;
    size_t names_len;
    void *mem;
    size_t mem_len;
} table;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static table cache[CACHE_SLOTS];
static unsigned next_slot;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void lock_cache(void)
{
    pthread_mutex_lock(&cache_lock);
}

static void unlock_cache(void)
{
    pthread_mutex_unlock(&cache_lock);
}

static void install_fork_handlers(void)
{
    pthread_atfork(lock_cache, unlock_cache, unlock_cache);
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                  */

/* Reads exactly `len` bytes at `off`. */
static bool read_at(int fd, void *buf, size_t len, uint64_t off)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return true;
}

/* True if [off, off + len) lies inside a file of `size` bytes. */
static bool inside(uint64_t off, uint64_t len, uint64_t size)
{
    return off <= size && len <= size - off;
}

/* The section header `i`, read and checked to lie inside the file. */
static bool section(int fd, const ElfW(Ehdr) *eh, uint64_t size, unsigned i,
                    ElfW(Shdr) *out)
{
    uint64_t off = (uint64_t)eh->e_shoff + (uint64_t)i * sizeof *out;
    return read_at(fd, out, sizeof *out, off) &&
           (out->sh_type == SHT_NOBITS ||
            inside(out->sh_offset, out->sh_size, size));
}

static bool check_header(const ElfW(Ehdr) *eh, uint64_t size)
{
    return memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 &&
           eh->e_ident[EI_CLASS] == OUR_CLASS &&
           eh->e_shentsize == sizeof(ElfW(Shdr)) && eh->e_shnum > 0 &&
           inside(eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(ElfW(Shdr)),
                  size) &&
           eh->e_phentsize == sizeof(ElfW(Phdr)) && eh->e_phnum > 0 &&
           eh->e_phnum <= MAX_PHDRS &&
           inside(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(ElfW(Phdr)),
                  size);
}

/* Finds the symbol table and its string table. */
static bool find_tables(int fd, const ElfW(Ehdr) *eh, uint64_t size,
                        ElfW(Shdr) *symtab, ElfW(Shdr) *strtab)
{
    for (unsigned i = 0; i < eh->e_shnum; i++) {
        if (!section(fd, eh, size, i, symtab))
            return false;
        if (symtab->sh_type != SHT_SYMTAB)
            continue;
        return symtab->sh_entsize == sizeof(ElfW(Sym)) &&
               symtab->sh_size % sizeof(ElfW(Sym)) == 0 &&
               symtab->sh_link < eh->e_shnum &&
               section(fd, eh, size, symtab->sh_link, strtab) &&
               strtab->sh_type == SHT_STRTAB && strtab->sh_size > 0 &&
               (uint64_t)symtab->sh_size + strtab->sh_size <= MAX_TABLE_BYTES;
    }
    return false; /* stripped */
}

/* Reads the tables of the open file into fresh memory. */
static bool read_tables(int fd, uint64_t size, table *t)
{
    ElfW(Ehdr) eh;
    ElfW(Shdr) symtab, strtab;
    if (size < sizeof eh || !read_at(fd, &eh, sizeof eh, 0) ||
        !check_header(&eh, size) ||
        !find_tables(fd, &eh, size, &symtab, &strtab))
        return false;
    size_t ph_len = (size_t)eh.e_phnum * sizeof(ElfW(Phdr));
    size_t len = ph_len + (size_t)symtab.sh_size + (size_t)strtab.sh_size;
    void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return false;
    unsigned char *p = mem;
    if (!read_at(fd, p, ph_len, eh.e_phoff) ||
        !read_at(fd, p + ph_len, (size_t)symtab.sh_size, symtab.sh_offset) ||
        !read_at(fd, p + ph_len + symtab.sh_size, (size_t)strtab.sh_size,
                 strtab.sh_offset)) {
        munmap(mem, len);
        return false;
    }
    t->phdrs = (const ElfW(Phdr) *)p;
    t->n_phdrs = eh.e_phnum;
    t->syms = (const ElfW(Sym) *)(p + ph_len);
    t->n_syms = (size_t)symtab.sh_size / sizeof(ElfW(Sym));
    t->names = (const char *)(p + ph_len + symtab.sh_size);
    t->names_len = (size_t)strtab.sh_size;
    t->mem = mem;
    t->mem_len = len;
    return true;
}

/* ------------------------------------------------------------------------ */
/* The cache                                                                */

static bool same_file(const table *t, const struct stat *st)
{
    return t->dev == st->st_dev && t->ino == st->st_ino &&
           t->size == st->st_size &&
           t->mtime.tv_sec == st->st_mtim.tv_sec &&
           t->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static void forget(table *t)
{
    if (t->mem)
        munmap(t->mem, t->mem_len);
    memset(t, 0, sizeof *t);
}

/* The slot for `key` (the cache's name for the file) read from `file`,
 * read again if the file changed. NULL if the file cannot be opened or
 * its path is too long to cache. Cache lock held. */
static table *lookup_file(const char *key, const char *file)
{
    if (strlen(key) >= MAX_PATH)
        return NULL;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    table *t = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        for (int i = 0; i < CACHE_SLOTS && !t; i++)
            if (cache[i].used && strcmp(cache[i].path, key) == 0)
                t = &cache[i];
        if (t && !same_file(t, &st))
            forget(t);
        if (!t) {
            for (int i = 0; i < CACHE_SLOTS && !t; i++)
                if (!cache[i].used)
                    t = &cache[i];
            if (!t) {
                t = &cache[next_slot++ % CACHE_SLOTS];
                forget(t);
            }
        }
        if (!t->used) {
            t->used = true;
            snprintf(t->path, sizeof t->path, "%s", key);
            t->dev = st.st_dev;
            t->ino = st.st_ino;
            t->size = st.st_size;
            t->mtime = st.st_mtim;
            t->found = read_tables(fd, (uint64_t)st.st_size, t);
        }
    }
    close(fd);
    return t;
}

/* True if the file's program headers are the module's as loaded. */
static bool matches(const table *t, const ElfW(Phdr) *loaded, int n_loaded)
{
    if (!loaded)
        return true;
    if (n_loaded < 0 || (size_t)n_loaded != t->n_phdrs)
        return false;
    for (size_t i = 0; i < t->n_phdrs; i++) {
        const ElfW(Phdr) *a = &t->phdrs[i], *b = &loaded[i];
        if (a->p_type != b->p_type ||
            (a->p_type == PT_LOAD &&
             (a->p_offset != b->p_offset || a->p_vaddr != b->p_vaddr ||
              a->p_filesz != b->p_filesz || a->p_memsz != b->p_memsz)))
            return false;
    }
    return true;
}

/* Writes the name of the function at `offset`. */
static bool name_at(const table *t, uint64_t offset, char *buf, size_t n)
{
    const ElfW(Sym) *best = NULL;
    for (size_t i = 0; i < t->n_syms; i++) {
        const ElfW(Sym) *s = &t->syms[i];
        unsigned type = s->st_info & 0xf; /* ELF32/64_ST_TYPE */
        if ((type != STT_FUNC && type != STT_GNU_IFUNC) ||
            s->st_shndx == SHN_UNDEF || s->st_name == 0 ||
            s->st_name >= t->names_len)
            continue;
        if (s->st_value == offset) {
            best = s;
            break;
        }
        if (!best && offset > s->st_value && s->st_size > 0 &&
            offset - s->st_value < s->st_size)
            best = s;
    }
    if (!best)
        return false;
    const char *name = t->names + best->st_name;
    size_t room = t->names_len - best->st_name;
    size_t len = strnlen(name, room);
    if (len == 0 || len == room)
        return false; /* no name, or one that runs off the table */
    if (best->st_value == offset)
        snprintf(buf, n, "%.*s", (int)len, name);
    else
        snprintf(buf, n, "%.*s+0x%llx", (int)len, name,
                 (unsigned long long)(offset - best->st_value));
    return true;
}

bool cf__elf_symbol_name(const char *path, uint64_t offset,
                         const ElfW(Phdr) *loaded, int n_loaded, char *buf,
                         size_t n)
{
    if (!path || !buf || n == 0)
        return false;
    /* The running program by its real path: valgrind reports the client
     * program there, where opening /proc/self/exe would read the tool. */
    char exe[MAX_PATH];
    const char *file = path;
    if (!path[0]) {
        ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (len <= 0 || (size_t)len >= sizeof exe - 1)
            return false;
        exe[len] = '\0';
        file = exe;
    }
    pthread_once(&fork_once, install_fork_handlers);
    lock_cache();
    const table *t = lookup_file(path, file);
    bool named = t && t->found && matches(t, loaded, n_loaded) &&
                 name_at(t, offset, buf, n);
    unlock_cache();
    return named;
}
