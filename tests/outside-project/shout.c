/* A function guest of the outside project: `shout` upper-cases its input. */
#include "thaw/guest.h"

THAW_FUNCTION(shout) {
  uint8_t* bytes = (uint8_t*)input;
  for (uint64_t i = 0; i < input_size; ++i) {
    if (bytes[i] >= 'a' && bytes[i] <= 'z') bytes[i] -= 'a' - 'A';
  }
  out->data = bytes;
  out->size = input_size;
  return 0;
}
