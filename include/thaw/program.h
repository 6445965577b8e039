/* thaw program ABI: how an unmodified Linux program serves calls.
 *
 * A Linux program guest (thaw::GuestKind::kLinuxProgram) talks to the host
 * through one file descriptor, THAW_PROGRAM_FD, with plain read(2) and
 * write(2): no library to link, any language can do it.
 *
 *   1. The program initializes, then reads a request header from
 *      THAW_PROGRAM_FD. That first read parks the Vm: it is the snapshot
 *      point, where Boot() returns.
 *   2. Each request is a struct thaw_program_request followed by name_size
 *      bytes of function name and input_size bytes of input. The fd is a
 *      stream: read it in as many pieces as you like.
 *   3. The program answers with one struct thaw_program_reply followed by
 *      `size` bytes, in as many writes as it likes, then reads the next
 *      request (which parks it again).
 *
 * Request kinds: THAW_PROGRAM_CALL runs the named function;
 * THAW_PROGRAM_BEFORE_SNAPSHOT asks the program to drop secrets before a
 * snapshot (reply status 0, no bytes). A request with
 * THAW_PROGRAM_FLAG_RESTORED set is the first one after a restore or reset:
 * reseed random number generators and refresh unique ids before serving it.
 *
 * Reply status: 0 for success, THAW_PROGRAM_NO_SUCH_FUNCTION when the
 * program has no function of that name, anything else for a failed call
 * (the bytes are then its error message).
 *
 * Specified in doc/guest-abi.md ("Linux programs"). C-compatible: include
 * it from a program, or copy the layout into another language.
 */
#ifndef THAW_PROGRAM_H_
#define THAW_PROGRAM_H_

#include <stdint.h>

#define THAW_PROGRAM_FD 3
#define THAW_PROGRAM_REQUEST_MAGIC 0x51524854u /* "THRQ" */
#define THAW_PROGRAM_REPLY_MAGIC 0x50524854u   /* "THRP" */

enum thaw_program_kind {
  THAW_PROGRAM_CALL = 0,
  THAW_PROGRAM_BEFORE_SNAPSHOT = 1,
};

#define THAW_PROGRAM_FLAG_RESTORED 1u
#define THAW_PROGRAM_NO_SUCH_FUNCTION 0x7FFFFFFFu

struct thaw_program_request {
  uint32_t magic; /* THAW_PROGRAM_REQUEST_MAGIC */
  uint16_t kind;  /* enum thaw_program_kind */
  uint16_t flags; /* THAW_PROGRAM_FLAG_* */
  uint32_t name_size;
  uint32_t input_size;
};

struct thaw_program_reply {
  uint32_t magic; /* THAW_PROGRAM_REPLY_MAGIC */
  uint32_t status;
  uint64_t size; /* bytes that follow */
};

#endif /* THAW_PROGRAM_H_ */
