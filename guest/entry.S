/* Guest entry and the hypercall instruction (doc/guest-abi.md).
 *
 * The host enters _start in 64-bit ring 0 with RSP at the top of the stack
 * and RDI pointing at the boot-info page. */
#include "thaw/abi.h"

  .section .text.entry, "ax"
  .globl _start
_start:
  xor %ebp, %ebp
  and $-16, %rsp
  call thaw_main
1:
  hlt
  jmp 1b

  .text
/* int64_t thaw_hypercall(nr, a0, a1, a2, a3): SysV passes them in RDI, RSI,
 * RDX, RCX, R8; the hypercall ABI wants RAX, RDI, RSI, RCX, R8 (RDX holds the
 * port). The `ret` right after `out` matters on the emulated backend: a stop
 * requested inside the `out` hook lands at the end of the translated block,
 * which this `ret` closes, so no guest code runs past a parking hypercall
 * before the host has answered it. */
  .globl thaw_hypercall
  .type thaw_hypercall, @function
thaw_hypercall:
  mov %rdi, %rax
  mov %rsi, %rdi
  mov %rdx, %rsi
  mov $THAW_HYPERCALL_PORT, %dx
  out %eax, %dx
  ret
  .size thaw_hypercall, . - thaw_hypercall

  .section .note.GNU-stack, "", @progbits
