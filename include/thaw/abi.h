/* thaw guest ABI: the contract between the host monitor and a function guest.
 *
 * This header is shared by the host (C++) and by freestanding guests (C or
 * C++), so it uses only fixed-width integer types and no library headers
 * besides <stdint.h>. Every value here is documented in doc/guest-abi.md; a
 * change to any of them is a change of THAW_ABI_VERSION.
 *
 * Guest-physical memory layout (identity-mapped, all addresses are both
 * guest-virtual and guest-physical):
 *
 *   0x0000 .. 0x0fff   not present (a NULL dereference faults)
 *   0x1000             GDT and TSS            (host-owned)
 *   0x2000             IDT                    (host-owned)
 *   0x3000             exception stubs        (host-owned)
 *   0x4000             boot-info page         (struct thaw_boot_info)
 *   0x6000 .. 0x7fff   exception stack (IST1) (host-owned)
 *   0x9000 ..          page tables            (host-owned)
 *   0x200000 ..        the guest ELF image, then the heap
 *   .. top             output buffer, input buffer, stack (top of memory)
 */
#ifndef THAW_ABI_H_
#define THAW_ABI_H_

#ifndef __ASSEMBLER__
#include <stdint.h>
#endif

#define THAW_ABI_VERSION 2u

/* The I/O port a guest writes the hypercall number to (`out %eax, %dx`). */
#define THAW_HYPERCALL_PORT 0x7A00
/* The I/O port the host's exception stubs write the vector number to. */
#define THAW_EXCEPTION_PORT 0x7A01

#ifndef __ASSEMBLER__
/* Hypercall numbers (in EAX). Arguments: RDI, RSI, RCX, R8. Result: RAX. */
enum thaw_hypercall {
  /* console_write(ptr, len): append bytes to the VM's console. */
  THAW_HC_CONSOLE_WRITE = 1,
  /* wait(): park until the host makes a call. Used once, after init. */
  THAW_HC_WAIT = 2,
  /* reply(status, ptr, len): finish the current call and park again. */
  THAW_HC_REPLY = 3,
  /* host_call(struct thaw_host_call*): call a host function by name. */
  THAW_HC_HOST_CALL = 4,
  /* abort(ptr, len): give up; the current call fails with the message. */
  THAW_HC_ABORT = 5,
};

/* What the host asks for when wait/reply returns (thaw_boot_info.request). */
enum thaw_request {
  /* Run the function named in function_name. */
  THAW_REQUEST_CALL = 0,
  /* Run the before-snapshot hook, then reply; a snapshot follows. */
  THAW_REQUEST_BEFORE_SNAPSHOT = 1,
};

/* Status codes the host returns to the guest in RAX. */
#endif /* __ASSEMBLER__ */

#define THAW_OK 0
#define THAW_ERR_NOT_FOUND (-2) /* no such host function */
#define THAW_ERR_TOO_LARGE (-3) /* the reply does not fit the guest buffer */
#define THAW_ERR_HOST (-4)      /* the host function returned an error */

/* Reply status a guest SDK sends when asked for a function it lacks. */
#define THAW_REPLY_NO_SUCH_FUNCTION 0x7FFFFFFFu

#define THAW_GDT_ADDR 0x1000u
#define THAW_IDT_ADDR 0x2000u
#define THAW_EXCEPTION_STUBS_ADDR 0x3000u
#define THAW_BOOT_INFO_ADDR 0x4000u
#define THAW_EXCEPTION_STACK_TOP 0x8000u
#define THAW_PAGE_TABLES_ADDR 0x9000u
#define THAW_IMAGE_BASE 0x200000u

#define THAW_BOOT_INFO_MAGIC 0x544F4F4257414854ull /* "THAWBOOT" */
#define THAW_FUNCTION_NAME_MAX 63

#ifndef __ASSEMBLER__
/* Written by the host before boot and before every call; read by the guest.
 * The guest must treat it as read-only. */
struct thaw_boot_info {
  uint64_t magic;
  uint32_t abi_version;
  uint32_t request; /* enum thaw_request: what the pending call is */
  uint64_t memory_size;
  uint64_t heap_start; /* first free byte after the image, page-aligned */
  uint64_t heap_end;   /* one past the last heap byte */
  uint64_t input_addr;
  uint64_t input_capacity;
  uint64_t output_addr;
  uint64_t output_capacity;
  uint64_t stack_top;
  /* 0 for a booted VM; every restore and reset writes the snapshot's value
   * plus one. A guest that sees it change was restored. */
  uint64_t restore_generation;
  /* Fresh random bytes from the host at boot, at every restore and reset:
   * two clones of one snapshot never see the same. */
  uint8_t entropy[32];
  /* The pending call, valid when wait/reply returns. */
  char function_name[THAW_FUNCTION_NAME_MAX + 1]; /* NUL-terminated */
  uint64_t input_size;
};

/* Argument block of THAW_HC_HOST_CALL, in guest memory. */
struct thaw_host_call {
  uint64_t name_addr;
  uint64_t name_size;
  uint64_t input_addr;
  uint64_t input_size;
  uint64_t output_addr;
  uint64_t output_capacity;
  uint64_t output_size; /* written by the host */
};

#endif /* __ASSEMBLER__ */

#endif /* THAW_ABI_H_ */
