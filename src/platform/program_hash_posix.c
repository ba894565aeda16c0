/* program_hash_posix.c - FNV-1a over the executable file (program_hash.h).
 */
#include "platform/program_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int cf__program_hash(uint64_t *out)
{
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    uint64_t h = 14695981039346656037ull;
    unsigned char buf[1 << 16];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = -errno;
            close(fd);
            return err;
        }
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            h ^= buf[i];
            h *= 1099511628211ull;
        }
    }
    close(fd);
    *out = h;
    return 0;
}
