/* The protocol between thaw and the agent inside a Linux VM
 * (GuestKind::kLinuxVm), over the virtio console the guest sees as
 * /dev/hvc0 (in raw mode). Specified in prose in doc/guest-abi.md
 * ("Linux VMs"); the agent is guest/linux-agent/agent.c.
 *
 * Every message is a 24-byte header followed by `name_length` bytes of
 * name and `payload_length` bytes of payload, all little-endian:
 *   READY    agent -> host, once, when the agent serves calls; payload: a
 *            version line.
 *   CALL     host -> agent; name: the function (a file in
 *            /thaw/functions); payload: its standard input; `status`:
 *            the largest reply the host takes.
 *   REPLY    agent -> host; status THAW_AGENT_OK with the function's
 *            standard output, or an error code with a message.
 *   RESEED   host -> agent after a restore; payload: the 8-byte restore
 *            generation, then entropy to add to the kernel's pool.
 *   RESEEDED agent -> host; the CRNG was reseeded.
 * One message is in flight at a time; the host waits for each answer.
 */
#ifndef THAW_LINUX_AGENT_H_
#define THAW_LINUX_AGENT_H_

#include <stdint.h>

#define THAW_AGENT_MAGIC 0x67417754u /* "TwAg" */
#define THAW_AGENT_VERSION 1u

enum thaw_agent_type {
  THAW_AGENT_READY = 1,
  THAW_AGENT_CALL = 2,
  THAW_AGENT_REPLY = 3,
  THAW_AGENT_RESEED = 4,
  THAW_AGENT_RESEEDED = 5,
};

enum thaw_agent_status {
  THAW_AGENT_OK = 0,
  THAW_AGENT_NOT_FOUND = 1,   /* no such function */
  THAW_AGENT_FAILED = 2,      /* it exited non-zero or was killed */
  THAW_AGENT_TOO_LARGE = 3,   /* its output passed the host's limit */
  THAW_AGENT_BAD_REQUEST = 4, /* a malformed message */
  THAW_AGENT_SYSTEM = 5,      /* fork, exec or a pipe failed */
};

struct thaw_agent_header {
  uint32_t magic;
  uint32_t type;
  uint32_t status;
  uint32_t name_length; /* at most THAW_AGENT_NAME_MAX */
  uint64_t payload_length;
};

#define THAW_AGENT_NAME_MAX 255u
/* The largest payload either side sends. */
#define THAW_AGENT_PAYLOAD_MAX (64u << 20)
#define THAW_AGENT_ENTROPY_BYTES 64u

#endif /* THAW_LINUX_AGENT_H_ */
