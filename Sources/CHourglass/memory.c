#define _GNU_SOURCE
#include "CHourglass.h"

#include <sys/mman.h>
#include <unistd.h>

static size_t round_to_page(size_t bytes) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (bytes + page - 1) / page * page;
}

static void advise(void *table, size_t bytes) {
#ifdef MADV_HUGEPAGE
    if (bytes >= (2u << 20)) madvise(table, bytes, MADV_HUGEPAGE);
#endif
}

void *hg_table_allocate(size_t bytes) {
    size_t length = round_to_page(bytes ? bytes : 1);
    void *table = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (table == MAP_FAILED) return NULL;
    advise(table, length);
    return table;
}

void *hg_table_reallocate(void *table, size_t old_bytes, size_t new_bytes) {
    size_t old_length = round_to_page(old_bytes ? old_bytes : 1);
    size_t new_length = round_to_page(new_bytes ? new_bytes : 1);
    if (old_length == new_length) return table;
    void *moved = mremap(table, old_length, new_length, MREMAP_MAYMOVE);
    if (moved == MAP_FAILED) return NULL;
    advise(moved, new_length);
    return moved;
}

void hg_table_free(void *table, size_t bytes) {
    if (table) munmap(table, round_to_page(bytes ? bytes : 1));
}
