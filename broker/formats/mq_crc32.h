/* CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): the checksum RocketMQ stores in a
 * commit-log record's BODYCRC and DLedger stores in its entry body CRC, the same value Python's
 * zlib.crc32 returns. One home for it in C, shared by every accelerator (include "mq_crc32.h";
 * setup.py puts broker/formats on every accelerator's include path). No zlib headers are needed.
 *
 * Contract: call mq_crc32_init() once (in the module's PyInit function) before mq_crc32();
 * mq_crc32(crc, data, n) continues a running CRC exactly as zlib.crc32(data, crc) does, so
 * mq_crc32(0, p, n) is the CRC of n bytes at p. Slice-by-8: about 1 byte per cycle. */
#ifndef MQ_CRC32_H
#define MQ_CRC32_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static uint32_t mq_crc32_table[8][256];

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
}

static uint32_t mq_crc32(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
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

#endif
