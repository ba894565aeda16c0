/* test_elf_symbols.c - naming functions from a module file's ELF symbol
 * table (src/platform/elf_symbols.c), as crash reports do: static
 * functions by name, and never a crash or a wrong name on a stripped,
 * truncated, corrupt or replaced file. */
#define _GNU_SOURCE
#include "harness.h"

#include <fcntl.h>
#include <link.h>
#include <sys/stat.h>
#include <unistd.h>

#include "platform/elf_symbols.h"
#include "platform/process.h"

/* Static and not exported: dladdr() cannot name it. */
__attribute__((noinline, used)) static void *static_secret_function(void *arg)
{
    __asm__ __volatile__("" ::: "memory");
    return arg;
}

/* The main program's program headers, as loaded. */
static int main_program_phdrs(struct dl_phdr_info *info, size_t size,
                              void *data)
{
    (void)size;
    if (info->dlpi_name && info->dlpi_name[0])
        return 0;
    *(struct dl_phdr_info *)data = *info;
    return 1;
}

static struct dl_phdr_info program(void)
{
    struct dl_phdr_info info = {0};
    ASSERT(dl_iterate_phdr(main_program_phdrs, &info) == 1);
    return info;
}

static uint64_t offset_of(const void *addr)
{
    cf__code_ref ref;
    ASSERT_OK(cf__addr_to_ref(addr, &ref));
    ASSERT_EQ(ref.module_len, 0); /* the main program */
    return ref.offset;
}

static const void *secret_addr(void)
{
    return cf__fn_addr((cf__any_fn)static_secret_function);
}

TEST(static_function_is_named)
{
    ASSERT(static_secret_function((void *)1) == (void *)1);
    char name[128];
    cf__addr_describe(secret_addr(), name, sizeof name);
    ASSERT_STR_EQ(name, "static_secret_function");
}

TEST(address_inside_a_function_is_named_with_its_offset)
{
    struct dl_phdr_info info = program();
    char name[128];
    ASSERT(cf__elf_symbol_name("", offset_of(secret_addr()) + 1,
                               info.dlpi_phdr, info.dlpi_phnum, name,
                               sizeof name));
    ASSERT_STR_EQ(name, "static_secret_function+0x1");
}

TEST(name_is_truncated_to_the_buffer)
{
    char name[7];
    ASSERT(cf__elf_symbol_name("", offset_of(secret_addr()), NULL, 0, name,
                               sizeof name));
    ASSERT_STR_EQ(name, "static");
}

TEST(unreadable_paths_name_nothing)
{
    char name[64] = "untouched";
    ASSERT(!cf__elf_symbol_name("/nonexistent/cf-elf", 0, NULL, 0, name,
                                sizeof name));
    ASSERT(!cf__elf_symbol_name("/tmp", 0, NULL, 0, name, sizeof name));
    ASSERT(!cf__elf_symbol_name("/dev/null", 0, NULL, 0, name, sizeof name));
    ASSERT(!cf__elf_symbol_name(NULL, 0, NULL, 0, name, sizeof name));
    ASSERT_STR_EQ(name, "untouched");
}

/* ------------------------------------------------------------------------ */
/* Copies of this program, damaged                                          */

typedef struct image {
    unsigned char *bytes;
    size_t len;
} image;

static image read_self(void)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ASSERT(n > 0);
    exe[n] = '\0';
    FILE *fp = fopen(exe, "rb");
    ASSERT(fp != NULL);
    struct stat st;
    ASSERT_EQ(fstat(fileno(fp), &st), 0);
    image im = {malloc((size_t)st.st_size), (size_t)st.st_size};
    ASSERT(im.bytes != NULL);
    ASSERT_EQ(fread(im.bytes, 1, im.len, fp), im.len);
    fclose(fp);
    return im;
}

/* Writes `len` bytes to a fresh file (a new inode each time, so the
 * resolver's cache reads it anew) and returns its path. */
static const char *write_copy(const unsigned char *bytes, size_t len)
{
    static char path[64];
    static int serial;
    snprintf(path, sizeof path, "/tmp/cf-elf-%d-%d", (int)getpid(),
             serial++);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ASSERT(fd >= 0);
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, bytes + done, len - done);
        ASSERT(w > 0);
        done += (size_t)w;
    }
    close(fd);
    return path;
}

/* Looks the secret function up in a copy; returns whether it was named,
 * and `*right` whether by its own name. */
static bool lookup_in_copy(const unsigned char *bytes, size_t len,
                           bool check_phdrs, bool *right)
{
    struct dl_phdr_info info = program();
    const char *path = write_copy(bytes, len);
    char name[128] = "";
    bool named = cf__elf_symbol_name(
        path, offset_of(secret_addr()), check_phdrs ? info.dlpi_phdr : NULL,
        check_phdrs ? info.dlpi_phnum : 0, name, sizeof name);
    unlink(path);
    *right = named && strcmp(name, "static_secret_function") == 0;
    return named;
}

/* As lookup_in_copy(), for copies that keep the symbol table intact: a
 * name found must be the right one. */
static bool names_secret_in(const unsigned char *bytes, size_t len,
                            bool check_phdrs)
{
    bool right = false;
    bool named = lookup_in_copy(bytes, len, check_phdrs, &right);
    ASSERT(named == right);
    return named;
}

TEST(faithful_copy_names_the_function)
{
    image im = read_self();
    ASSERT(names_secret_in(im.bytes, im.len, true));
    free(im.bytes);
}

TEST(stripped_copy_names_nothing)
{
    image im = read_self();
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)im.bytes;
    int symtabs = 0;
    for (unsigned i = 0; i < eh->e_shnum; i++) {
        ElfW(Shdr) *sh = (ElfW(Shdr) *)(im.bytes + eh->e_shoff +
                                        i * sizeof(ElfW(Shdr)));
        if (sh->sh_type == SHT_SYMTAB) {
            sh->sh_type = SHT_NULL; /* as strip leaves it: no .symtab */
            symtabs++;
        }
    }
    ASSERT_EQ(symtabs, 1);
    ASSERT(!names_secret_in(im.bytes, im.len, true));
    free(im.bytes);
}

TEST(copy_that_is_not_the_loaded_program_names_nothing)
{
    image im = read_self();
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)im.bytes;
    ElfW(Phdr) *ph = (ElfW(Phdr) *)(im.bytes + eh->e_phoff);
    for (unsigned i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_LOAD) {
            ph[i].p_memsz += 4096; /* another build of it */
            break;
        }
    ASSERT(!names_secret_in(im.bytes, im.len, true));
    ASSERT(names_secret_in(im.bytes, im.len, false));
    free(im.bytes);
}

TEST(truncated_copies_never_crash)
{
    image im = read_self();
    bool right;
    size_t step = im.len / harness_scaled(40, 10) + 1;
    for (size_t len = 0; len < im.len; len += step)
        lookup_in_copy(im.bytes, len, false, &right);
    /* The ELF header, byte by byte. */
    for (size_t len = 0; len < 128 && len < im.len; len++)
        ASSERT(!lookup_in_copy(im.bytes, len, false, &right));
    free(im.bytes);
}

TEST(corrupted_copies_never_crash)
{
    image im = read_self();
    unsigned char *copy = malloc(im.len);
    ASSERT(copy != NULL);
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)im.bytes;
    /* Headers, section headers and the tables are where it matters. */
    size_t hot[] = {0, (size_t)eh->e_phoff, (size_t)eh->e_shoff};
    unsigned seed = 12345;
    size_t rounds = harness_scaled(80, 20);
    bool right;
    for (size_t r = 0; r < rounds; r++) {
        memcpy(copy, im.bytes, im.len);
        for (int k = 0; k < 8; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t base = hot[seed % 3];
            seed = seed * 1103515245u + 12345u;
            size_t at = r % 2 ? base + seed % 4096 : seed % im.len;
            if (at < im.len)
                copy[at] = (unsigned char)(seed >> 16);
        }
        lookup_in_copy(copy, im.len, false, &right);
    }
    free(copy);
    free(im.bytes);
}
