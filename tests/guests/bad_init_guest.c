/* A guest whose init prints a line and then gives up: what a deploy with a
 * broken init looks like (the pool and the FaaS example report it with the
 * console). */
#include "thaw/guest.h"

THAW_INIT() {
  thaw_print("bad init guest: loading the model...\n");
  thaw_abort("init failed: model file missing");
}

THAW_FUNCTION(echo) {
  out->data = (uint8_t*)input;
  out->size = input_size;
  return 0;
}
