#ifndef HOURGLASS_BENCH_SUPPORT_H
#define HOURGLASS_BENCH_SUPPORT_H

#include <stdint.h>

/// Counters of the malloc family, kept by the interposed malloc, calloc, realloc, free,
/// posix_memalign, aligned_alloc, memalign, valloc and pvalloc of this target (linked into
/// hourglass-bench only: every allocation of the process, Swift's and SQLite's, goes through them).
typedef struct {
    uint64_t allocations;   ///< successful malloc, calloc, realloc (of NULL or moving), memalign & co.
    uint64_t frees;         ///< free of a non-NULL pointer (and realloc that moved or shrank to 0)
    uint64_t bytes;         ///< bytes asked for by those allocations
} hb_malloc_counters;

/// The counters so far (a relaxed snapshot: exact once the threads that allocate are quiet).
hb_malloc_counters hb_malloc_snapshot(void);

/// Whether this process's malloc is the counting one (false if the symbols were not interposed).
int hb_malloc_is_counting(void);

/// Returns free heap memory to the system (glibc malloc_trim(0)), so that resident-memory
/// readings count live memory rather than freed chunks malloc keeps.
void hb_malloc_trim(void);

/// A field of /proc/self/status in bytes ("VmHWM", "VmRSS", "RssAnon"), or -1.
int64_t hb_proc_status_bytes(const char *field);

/// Resets the peak resident set size (VmHWM) of this process (Linux: "5" into
/// /proc/self/clear_refs). Returns 0 on success.
int hb_reset_peak_resident(void);

/// Runs this executable again (/proc/self/exe) with `argv` (argv[0] included, NULL-terminated),
/// its stdout captured into `buffer` (NUL-terminated, cut at `capacity` - 1 bytes) and its
/// stderr shared with this process. Returns the exit status, or -1 if it could not run.
int hb_run_self(char *const argv[], char *buffer, long capacity);

#endif
