/* A guest that calls back into the host: `greet` asks the host function
 * `lookup_name` for a display name and replies "hello, <name>". */
#include "thaw/guest.h"

THAW_FUNCTION(greet) {
  char name[256];
  size_t name_size = 0;
  int rc = thaw_host_call("lookup_name", input, input_size, name, sizeof(name),
                          &name_size);
  if (rc != THAW_OK) {
    static const char kFailed[] = "lookup_name failed";
    out->data = (uint8_t*)kFailed;
    out->size = sizeof(kFailed) - 1;
    return 2;
  }
  thaw_output_write(out, "hello, ", 7);
  return thaw_output_write(out, name, name_size);
}
