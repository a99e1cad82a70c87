/* CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): the checksum RocketMQ stores in a
 * commit-log record's BODYCRC and DLedger stores in its entry body CRC, the same value Python's
 * zlib.crc32 returns. One home for it in C, shared by every accelerator (include "mq_crc32.h";
 * setup.py puts broker/formats on every accelerator's include path). No zlib headers are needed.
 *
 * Contract: call mq_crc32_init() once (in the module's PyInit function) before mq_crc32(); the table
 * is static, one per source file, so a module built from several sources includes this header in
 * the one that calls mq_crc32 and fills the table from there (see _sendpath.h);
 * mq_crc32(crc, data, n) continues a running CRC exactly as zlib.crc32(data, crc) does, so
 * mq_crc32(0, p, n) is the CRC of n bytes at p. Slice-by-8 (about 3 instructions per byte); on x86-64
 * CPUs with PCLMULQDQ (checked once, at mq_crc32_init) runs of 64 bytes and more are folded with
 * carry-less multiplications instead (Intel's "Fast CRC Computation for Generic Polynomials Using
 * PCLMULQDQ", reflected form: about 0.2 instructions per byte), the tail by the tables. */
#ifndef MQ_CRC32_H
#define MQ_CRC32_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static uint32_t mq_crc32_table[8][256];

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MQ_CRC32_CLMUL 1
static int mq_crc32_has_clmul;

/* The folding loop over n bytes (n >= 64, a multiple of 16) of a CRC kept inverted (~crc in,
 * ~crc out, as the table loop keeps it). Constants: x^(k) mod P(x) bit-reflected, for the
 * IEEE polynomial 0x04C11DB7 (k1/k2 fold 512 bits, k3/k4 128 bits, k5 64 bits; mu and P for
 * the Barrett reduction). */
__attribute__((target("pclmul,sse4.1")))
static uint32_t mq_crc32_fold(uint32_t crc, const unsigned char *p, size_t n) {
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596LL, 0x0154442bd4LL);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL);
    const __m128i k5 = _mm_set_epi64x(0, 0x0163cd6124LL);
    const __m128i poly = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);
    const __m128i low32 = _mm_setr_epi32(~0, 0, ~0, 0);
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 0x00));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 0x10));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 0x20));
    __m128i x4 = _mm_loadu_si128((const __m128i *)(p + 0x30));
    __m128i x5, x6, x7, x8;
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
    p += 64;
    n -= 64;
    while (n >= 64) {
        x5 = _mm_clmulepi64_si128(x1, k1k2, 0x00);
        x6 = _mm_clmulepi64_si128(x2, k1k2, 0x00);
        x7 = _mm_clmulepi64_si128(x3, k1k2, 0x00);
        x8 = _mm_clmulepi64_si128(x4, k1k2, 0x00);
        x1 = _mm_clmulepi64_si128(x1, k1k2, 0x11);
        x2 = _mm_clmulepi64_si128(x2, k1k2, 0x11);
        x3 = _mm_clmulepi64_si128(x3, k1k2, 0x11);
        x4 = _mm_clmulepi64_si128(x4, k1k2, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), _mm_loadu_si128((const __m128i *)(p + 0x00)));
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), _mm_loadu_si128((const __m128i *)(p + 0x10)));
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), _mm_loadu_si128((const __m128i *)(p + 0x20)));
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), _mm_loadu_si128((const __m128i *)(p + 0x30)));
        p += 64;
        n -= 64;
    }
    /* four lanes into one */
    x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
    x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
    x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
    x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
    x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
    x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);
    while (n >= 16) {
        x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
        x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, _mm_loadu_si128((const __m128i *)p)), x5);
        p += 16;
        n -= 16;
    }
    /* 128 bits to 64 */
    x2 = _mm_clmulepi64_si128(x1, k3k4, 0x10);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, low32);
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(x1, k5, 0x00), x2);
    /* Barrett reduction to 32 bits */
    x2 = _mm_and_si128(x1, low32);
    x2 = _mm_clmulepi64_si128(x2, poly, 0x10);
    x2 = _mm_and_si128(x2, low32);
    x2 = _mm_clmulepi64_si128(x2, poly, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}
#endif

static void mq_crc32_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        mq_crc32_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = mq_crc32_table[0][i];
        for (int t = 1; t < 8; t++) {
            c = mq_crc32_table[0][c & 0xFF] ^ (c >> 8);
            mq_crc32_table[t][i] = c;
        }
    }
#ifdef MQ_CRC32_CLMUL
    __builtin_cpu_init();
    mq_crc32_has_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
}

static uint32_t mq_crc32(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
#ifdef MQ_CRC32_CLMUL
    if (n >= 64 && mq_crc32_has_clmul) {
        size_t run = n & ~(size_t)15;
        crc = mq_crc32_fold(crc, p, run);
        p += run;
        n -= run;
    }
#endif
    while (n && ((uintptr_t)p & 7)) {
        crc = mq_crc32_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= crc;
        crc = mq_crc32_table[7][lo & 0xFF] ^ mq_crc32_table[6][(lo >> 8) & 0xFF] ^
              mq_crc32_table[5][(lo >> 16) & 0xFF] ^ mq_crc32_table[4][lo >> 24] ^
              mq_crc32_table[3][hi & 0xFF] ^ mq_crc32_table[2][(hi >> 8) & 0xFF] ^
              mq_crc32_table[1][(hi >> 16) & 0xFF] ^ mq_crc32_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = mq_crc32_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* The CRC RocketMQ and DLedger store (a record's BODYCRC, a DLedger entry's body CRC: Java's
 * UtilAll.crc32, record.body_crc and dledger.body_crc): the CRC-32 of n bytes at p, top bit cleared. */
static inline uint32_t mq_body_crc(const unsigned char *p, size_t n) { return mq_crc32(0, p, n) & 0x7FFFFFFFu; }

#endif
