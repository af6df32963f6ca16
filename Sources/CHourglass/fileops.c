#define _GNU_SOURCE
#include "CHourglass.h"

#ifndef __linux__
#error "Hourglass builds on Linux (glibc) only: it calls fallocate(2); see README.md, Sharp edges"
#endif

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
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int hg_lower_thread_priority(int increment) {
#ifdef __linux__
    pid_t tid = (pid_t)syscall(SYS_gettid);
    errno = 0;
    int current = getpriority(PRIO_PROCESS, (id_t)tid);
    if (current == -1 && errno != 0) return errno;
    return setpriority(PRIO_PROCESS, (id_t)tid, current + increment) == 0 ? 0 : errno;
#else
    (void)increment;
    return 0;
#endif
}

void hg_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, 15);
    truncated[15] = 0;
    pthread_setname_np(pthread_self(), truncated);
}
