#ifndef HOURGLASS_C_H
#define HOURGLASS_C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `length` bytes, continuing from
/// `crc` (pass 0 to start). Uses the SSE4.2 `crc32` instruction when the CPU has it, a
/// slicing-by-8 table otherwise. Check value: "123456789" -> 0xE3069283.
uint32_t hg_crc32c(uint32_t crc, const void *bytes, size_t length);

/// The portable (table) implementation, exposed so that tests can compare both paths.
uint32_t hg_crc32c_portable(uint32_t crc, const void *bytes, size_t length);

/// 1 when `hg_crc32c` uses the hardware instruction.
int hg_crc32c_is_hardware(void);

/// Hints the CPU to load the cache line at `address`; never faults.
static inline void hg_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

/// `fallocate(fd, 0, offset, length)`: returns 0 or the errno value (errno itself is untouched
/// by this wrapper's caller contract: read the return value).
int hg_fallocate(int fd, int64_t offset, int64_t length);

#ifdef __cplusplus
}
#endif

#endif

#ifndef HOURGLASS_C_MEMORY_H
#define HOURGLASS_C_MEMORY_H
#ifdef __cplusplus
extern "C" {
#endif
/// Large tables (slab, index, arena): anonymous mappings with transparent huge pages requested,
/// so that random access into tens of megabytes does not miss the TLB on every probe.
/// Returns NULL when the system refuses the memory.
void *hg_table_allocate(size_t bytes);
/// Grows (or shrinks) a table from `hg_table_allocate`; contents are kept, the address may move.
void *hg_table_reallocate(void *table, size_t old_bytes, size_t new_bytes);
void hg_table_free(void *table, size_t bytes);
#ifdef __cplusplus
}
#endif
#endif

#ifndef HOURGLASS_C_THREAD_H
#define HOURGLASS_C_THREAD_H
#ifdef __cplusplus
extern "C" {
#endif
/// Names the calling thread (at most 15 bytes are kept), for `top -H` and debuggers.
void hg_set_thread_name(const char *name);
/// Lowers the calling thread's scheduling priority by `increment` nice levels (Linux: nice is
/// per thread). Returns 0 or an errno.
int hg_lower_thread_priority(int increment);
#ifdef __cplusplus
}
#endif
#endif
