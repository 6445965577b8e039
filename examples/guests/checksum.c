/* A CPU-bound guest. Its init builds a CRC-32 table (the kind of work a
 * snapshot saves); `crc32` checksums its input and `invert` is an image-like
 * transform that inverts every byte (as for 8-bit grayscale pixels). */
#include "thaw/guest.h"

static uint32_t g_table[256];

THAW_INIT() {
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    g_table[i] = c;
  }
  thaw_print("checksum guest: CRC table ready\n");
}

/* Replies with the CRC-32 (IEEE) of the input as 8 lowercase hex digits. */
THAW_FUNCTION(crc32) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < input_size; ++i) {
    crc = g_table[(crc ^ input[i]) & 0xFF] ^ (crc >> 8);
  }
  crc ^= 0xFFFFFFFFu;
  static const char kHex[] = "0123456789abcdef";
  char text[8];
  for (int i = 0; i < 8; ++i) text[i] = kHex[(crc >> (28 - 4 * i)) & 0xF];
  return thaw_output_write(out, text, sizeof(text));
}

THAW_FUNCTION(invert) {
  if (input_size > out->capacity) {
    out->data = (uint8_t*)"image larger than the output buffer";
    out->size = strlen((const char*)out->data);
    return 1;
  }
  for (size_t i = 0; i < input_size; ++i) out->data[i] = (uint8_t)~input[i];
  out->size = input_size;
  return 0;
}
