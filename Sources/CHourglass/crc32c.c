// CRC-32C (Castagnoli). Hardware path: the SSE4.2 crc32 instruction over three interleaved
// streams for long inputs (hides the instruction's 3-cycle latency), combined with a
// shift-by-multiplication; portable path: slicing-by-8 tables built once.

#include "CHourglass.h"

#include <string.h>
#include <pthread.h>

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = table[0][n];
        for (int k = 1; k < 8; k++) {
            c = table[0][c & 0xff] ^ (c >> 8);
            table[k][n] = c;
        }
    }
}

uint32_t hg_crc32c_portable(uint32_t crc, const void *bytes, size_t length) {
    pthread_once(&table_once, build_table);
    const unsigned char *p = bytes;
    crc = ~crc;
    while (length && ((uintptr_t)p & 7)) {
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        length--;
    }
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc;
        crc = table[7][word & 0xff] ^ table[6][(word >> 8) & 0xff] ^
              table[5][(word >> 16) & 0xff] ^ table[4][(word >> 24) & 0xff] ^
              table[3][(word >> 32) & 0xff] ^ table[2][(word >> 40) & 0xff] ^
              table[1][(word >> 48) & 0xff] ^ table[0][word >> 56];
        p += 8;
        length -= 8;
    }
    while (length--) crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__)

// Multiplies a and b as polynomials over GF(2) modulo the CRC polynomial (reflected).
static uint32_t gf2_multiply(uint32_t a, uint32_t b) {
    uint32_t product = 0;
    for (int i = 0; i < 32; i++) {
        if (b & 0x80000000u) product ^= a;
        b <<= 1;
        a = (a & 1) ? (a >> 1) ^ POLY : a >> 1;
    }
    return product;
}

// x^(8*n) mod P in reflected form: the operator that shifts a CRC over n zero bytes.
static uint32_t shift_operator(size_t n) {
    uint32_t result = 0x80000000u;  // x^0
    uint32_t square = 0x00800000u;  // x^8
    while (n) {
        if (n & 1) result = gf2_multiply(result, square);
        square = gf2_multiply(square, square);
        n >>= 1;
    }
    return result;
}

#define STRIDE 4096  // bytes per stream in one round of the interleaved loop
static uint32_t stride_shift;  // operator for STRIDE bytes
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;
static void build_shift(void) { stride_shift = shift_operator(STRIDE); }

__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, size_t length) {
    uint64_t c0 = ~crc;
    while (length && ((uintptr_t)p & 7)) {
        c0 = __builtin_ia32_crc32qi((uint32_t)c0, *p++);
        length--;
    }
    if (length >= 3 * STRIDE) {
        pthread_once(&shift_once, build_shift);
        while (length >= 3 * STRIDE) {
            uint64_t c1 = 0, c2 = 0;
            const unsigned char *end = p + STRIDE;
            while (p < end) {
                uint64_t w0, w1, w2;
                memcpy(&w0, p, 8);
                memcpy(&w1, p + STRIDE, 8);
                memcpy(&w2, p + 2 * STRIDE, 8);
                c0 = __builtin_ia32_crc32di(c0, w0);
                c1 = __builtin_ia32_crc32di(c1, w1);
                c2 = __builtin_ia32_crc32di(c2, w2);
                p += 8;
            }
            // c0 covers block 0, c1 block 1 (from a zero start), c2 block 2: shift and merge.
            c0 = gf2_multiply((uint32_t)c0, stride_shift) ^ c1;
            c0 = gf2_multiply((uint32_t)c0, stride_shift) ^ c2;
            p += 2 * STRIDE;
            length -= 3 * STRIDE;
        }
    }
    while (length >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c0 = __builtin_ia32_crc32di(c0, w);
        p += 8;
        length -= 8;
    }
    while (length--) c0 = __builtin_ia32_crc32qi((uint32_t)c0, *p++);
    return ~(uint32_t)c0;
}

static int has_sse42 = -1;

int hg_crc32c_is_hardware(void) {
    /* Threads may race to fill it in; they all store the same value (relaxed atomics say so). */
    int known = __atomic_load_n(&has_sse42, __ATOMIC_RELAXED);
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        __atomic_store_n(&has_sse42, known, __ATOMIC_RELAXED);
    }
    return known;
}

uint32_t hg_crc32c(uint32_t crc, const void *bytes, size_t length) {
    if (hg_crc32c_is_hardware()) return crc32c_hw(crc, bytes, length);
    return hg_crc32c_portable(crc, bytes, length);
}

#else

int hg_crc32c_is_hardware(void) { return 0; }

uint32_t hg_crc32c(uint32_t crc, const void *bytes, size_t length) {
    return hg_crc32c_portable(crc, bytes, length);
}

#endif
