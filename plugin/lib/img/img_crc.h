/* SPDX-License-Identifier: GPL-2.0 */
/*
 * CRC32C (Castagnoli), the checksum of every uffdwp image structure. The
 * SSE4.2 crc32 instruction does it at memory speed where the CPU has it; a
 * table does it elsewhere.
 */
#ifndef UFFDWP_IMG_CRC_H__
#define UFFDWP_IMG_CRC_H__

#include <stddef.h>
#include <stdint.h>

/*
 * Continue a CRC32C over @len bytes at @p. Start with @crc = 0; the result
 * of one call is the @crc of the next. Returns the new CRC.
 */
uint32_t uffdwp_crc32c(uint32_t crc, const void *p, size_t len);

#endif /* UFFDWP_IMG_CRC_H__ */
