/* The smallest function guest: `echo` replies with its input, zero-copy. */
#include "thaw/guest.h"

THAW_FUNCTION(echo) {
  out->data = (uint8_t*)input;
  out->size = input_size;
  return 0;
}
