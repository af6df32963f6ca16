// Counting allocator for hourglass-bench: defines the malloc family in the executable, so that
// the dynamic linker binds every caller in the process (Swift's runtime, the standard library,
// libsqlite3) to these, and forwards to glibc's own implementations (__libc_malloc & co.).
//
// Counting costs one relaxed atomic add per call, per counter; the counters live on their own
// cache lines. Every system measured pays the same cost.

#define _GNU_SOURCE
#include "CBenchSupport.h"

#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void __libc_free(void *pointer);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

struct hb_counter {
    _Atomic uint64_t value;
    char padding[64 - sizeof(uint64_t)];
};

static struct hb_counter hb_allocations __attribute__((aligned(64)));
static struct hb_counter hb_frees __attribute__((aligned(64)));
static struct hb_counter hb_bytes __attribute__((aligned(64)));

static inline void hb_count_allocation(void *pointer, size_t size) {
    if (pointer) {
        atomic_fetch_add_explicit(&hb_allocations.value, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&hb_bytes.value, size, memory_order_relaxed);
    }
}

static inline void hb_count_free(void *pointer) {
    if (pointer) atomic_fetch_add_explicit(&hb_frees.value, 1, memory_order_relaxed);
}

void *malloc(size_t size) {
    void *pointer = __libc_malloc(size);
    hb_count_allocation(pointer, size);
    return pointer;
}

void *calloc(size_t count, size_t size) {
    void *pointer = __libc_calloc(count, size);
    hb_count_allocation(pointer, count * size);
    return pointer;
}

void *realloc(void *old, size_t size) {
    void *pointer = __libc_realloc(old, size);
    if (old == NULL) {
        hb_count_allocation(pointer, size);
    } else if (size == 0) {
        hb_count_free(old);  // glibc frees and returns NULL
    } else if (pointer != NULL && pointer != old) {
        hb_count_allocation(pointer, size);  // moved: a new block, the old one freed
        hb_count_free(old);
    }
    return pointer;
}

void free(void *pointer) {
    hb_count_free(pointer);
    __libc_free(pointer);
}

void *memalign(size_t alignment, size_t size) {
    void *pointer = __libc_memalign(alignment, size);
    hb_count_allocation(pointer, size);
    return pointer;
}

void *aligned_alloc(size_t alignment, size_t size) {
    void *pointer = __libc_memalign(alignment, size);
    hb_count_allocation(pointer, size);
    return pointer;
}

int posix_memalign(void **result, size_t alignment, size_t size) {
    if (alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0 || alignment == 0) return EINVAL;
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL && size != 0) return ENOMEM;
    hb_count_allocation(pointer, size);
    *result = pointer;
    return 0;
}

void *valloc(size_t size) {
    void *pointer = __libc_valloc(size);
    hb_count_allocation(pointer, size);
    return pointer;
}

void *pvalloc(size_t size) {
    void *pointer = __libc_pvalloc(size);
    hb_count_allocation(pointer, size);
    return pointer;
}

hb_malloc_counters hb_malloc_snapshot(void) {
    hb_malloc_counters counters;
    counters.allocations = atomic_load_explicit(&hb_allocations.value, memory_order_relaxed);
    counters.frees = atomic_load_explicit(&hb_frees.value, memory_order_relaxed);
    counters.bytes = atomic_load_explicit(&hb_bytes.value, memory_order_relaxed);
    return counters;
}

int hb_malloc_is_counting(void) {
    // An allocation made through the C library (strdup calls malloc inside libc): counted only if
    // libc's own calls are bound to the malloc above.
    uint64_t before = atomic_load_explicit(&hb_allocations.value, memory_order_relaxed);
    char *copy = strdup("hourglass");
    uint64_t after = atomic_load_explicit(&hb_allocations.value, memory_order_relaxed);
    free(copy);
    return after > before;
}

void hb_malloc_trim(void) { malloc_trim(0); }

int64_t hb_proc_status_bytes(const char *field) {
    FILE *file = fopen("/proc/self/status", "r");
    if (!file) return -1;
    char line[256];
    size_t length = strlen(field);
    int64_t result = -1;
    while (fgets(line, sizeof line, file)) {
        if (strncmp(line, field, length) == 0 && line[length] == ':') {
            long long kilobytes = 0;
            if (sscanf(line + length + 1, "%lld", &kilobytes) == 1) result = (int64_t)kilobytes * 1024;
            break;
        }
    }
    fclose(file);
    return result;
}

int hb_reset_peak_resident(void) {
    FILE *file = fopen("/proc/self/clear_refs", "w");
    if (!file) return -1;
    int ok = fputs("5", file) >= 0;
    return (fclose(file) == 0 && ok) ? 0 : -1;
}

int hb_run_self(char *const argv[], char *buffer, long capacity) {
    int fds[2];
    if (capacity < 1 || pipe(fds) != 0) return -1;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    posix_spawn_file_actions_addclose(&actions, fds[1]);
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        return -1;
    }
    long used = 0;
    for (;;) {
        char chunk[4096];
        ssize_t got = read(fds[0], chunk, sizeof chunk);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        long room = capacity - 1 - used;
        long take = got < room ? got : room;
        if (take > 0) {
            memcpy(buffer + used, chunk, (size_t)take);
            used += take;
        }
    }
    buffer[used] = 0;
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
