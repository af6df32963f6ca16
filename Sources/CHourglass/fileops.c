#define _GNU_SOURCE
#include "CHourglass.h"

#include <errno.h>
#include <fcntl.h>

int hg_fallocate(int fd, int64_t offset, int64_t length) {
    int result;
    do {
        result = fallocate(fd, 0, (off_t)offset, (off_t)length);
    } while (result != 0 && errno == EINTR);
    return result == 0 ? 0 : errno;
}

#include <pthread.h>
#include <string.h>

void hg_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, 15);
    truncated[15] = 0;
    pthread_setname_np(pthread_self(), truncated);
}
