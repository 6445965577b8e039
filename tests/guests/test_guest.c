/* The test suite's guest: one function per behaviour the tests observe,
 * including every way a guest can misbehave. */
#include "thaw/guest.h"

volatile uint64_t g_counter;
static int g_init_ran;

THAW_INIT() {
  g_init_ran = 1;
  thaw_print("test guest: init done\n");
}

THAW_FUNCTION(echo) {
  out->data = (uint8_t*)input;
  out->size = input_size;
  return 0;
}

THAW_FUNCTION(init_ran) {
  return thaw_output_write(out, g_init_ran ? "yes" : "no", g_init_ran ? 3 : 2);
}

/* Replies with as many bytes as the decimal input says, from the heap. */
static uint64_t parse_u64(const uint8_t* input, size_t size) {
  uint64_t value = 0;
  for (size_t i = 0; i < size && input[i] >= '0' && input[i] <= '9'; ++i) {
    value = value * 10 + (input[i] - '0');
  }
  return value;
}

THAW_FUNCTION(reply_bytes) {
  uint64_t n = parse_u64(input, input_size);
  uint8_t* buffer = thaw_malloc(n);
  if (!buffer) return 3;
  for (uint64_t i = 0; i < n; ++i) buffer[i] = (uint8_t)i;
  out->data = buffer;
  out->size = n;
  return 0;
}

THAW_FUNCTION(count) {
  g_counter++;
  char digit = (char)('0' + g_counter % 10);
  return thaw_output_write(out, &digit, 1);
}

/* Spins for the decimal number of iterations in the input, bumping the
 * counter so a watcher can see progress; 0 means forever. */
THAW_FUNCTION(spin) {
  uint64_t n = parse_u64(input, input_size);
  for (uint64_t i = 0; n == 0 || i < n; ++i) g_counter++;
  return 0;
}

THAW_FUNCTION(print) {
  thaw_console_write(input, input_size);
  return 0;
}

THAW_FUNCTION(fail) {
  out->data = (uint8_t*)"the function said no";
  out->size = strlen((const char*)out->data);
  return 7;
}

THAW_FUNCTION(call_host) {
  /* input: a host function name. Replies with the host's answer to "ping",
   * or "rc=-N" on error, followed by ":<message>" for a host error. */
  char name[64];
  size_t n = input_size < sizeof(name) - 1 ? input_size : sizeof(name) - 1;
  memcpy(name, input, n);
  name[n] = 0;
  char reply[64];
  size_t size = 0;
  int rc = thaw_host_call(name, "ping", 4, reply, sizeof(reply), &size);
  if (rc == THAW_OK) return thaw_output_write(out, reply, size);
  char code[5] = {'r', 'c', '=', '-', (char)('0' + (-rc) % 10)};
  thaw_output_write(out, code, sizeof(code));
  if (rc == THAW_ERR_HOST) {
    thaw_output_write(out, ":", 1);
    thaw_output_write(out, reply, size);
  }
  return 0;
}

THAW_FUNCTION(abort_me) { thaw_abort("guest gave up on purpose"); }

THAW_FUNCTION(null_deref) { return (int)*(volatile uint64_t*)0; }

THAW_FUNCTION(write_beyond_memory) {
  /* One byte past the end of guest memory: not mapped by the page tables. */
  *(volatile uint8_t*)thaw_boot_info()->memory_size = 1;
  return 0;
}

THAW_FUNCTION(invalid_opcode) {
  __asm__ volatile("ud2");
  return 0;
}

THAW_FUNCTION(divide_by_zero) {
  volatile uint64_t zero = 0;
  return (int)(100 / zero);
}

THAW_FUNCTION(breakpoint) {
  __asm__ volatile("int3");
  return 0;
}

THAW_FUNCTION(triple_fault) {
  /* With an empty IDT no exception can be delivered: the CPU shuts down. */
  struct __attribute__((packed)) {
    uint16_t limit;
    uint64_t base;
  } empty = {0, 0};
  __asm__ volatile("lidt %0; ud2" : : "m"(empty));
  return 0;
}

THAW_FUNCTION(halt) {
  __asm__ volatile("cli; hlt");
  return 0;
}

THAW_FUNCTION(unknown_port) {
  __asm__ volatile("outb %%al, %%dx" : : "a"(0), "d"(0x3F8));
  return 0;
}

THAW_FUNCTION(bad_console_pointer) {
  thaw_hypercall(THAW_HC_CONSOLE_WRITE, 1ull << 40, 16, 0, 0);
  return 0;
}

THAW_FUNCTION(bad_console_length) {
  /* Starts inside guest memory but runs past its end (and would wrap). */
  thaw_hypercall(THAW_HC_CONSOLE_WRITE, (uint64_t)input, ~0ull - 8, 0, 0);
  return 0;
}

THAW_FUNCTION(bad_reply_pointer) {
  thaw_hypercall(THAW_HC_REPLY, 0, ~0ull - 4096, 16, 0);
  return 0;
}

THAW_FUNCTION(bad_host_call_args) {
  thaw_hypercall(THAW_HC_HOST_CALL, 1ull << 50, 0, 0, 0);
  return 0;
}

THAW_FUNCTION(bad_host_call_output) {
  struct thaw_host_call args = {(uint64_t) "lookup", 6, 0, 0,
                                thaw_boot_info()->memory_size - 8, 4096, 0};
  thaw_hypercall(THAW_HC_HOST_CALL, (uint64_t)&args, 0, 0, 0);
  return 0;
}

THAW_FUNCTION(unknown_hypercall) {
  thaw_hypercall(999, 0, 0, 0, 0);
  return 0;
}

THAW_FUNCTION(wait_again) {
  thaw_hypercall(THAW_HC_WAIT, 0, 0, 0, 0);
  return 0;
}

/* Calls through a null function pointer: a page fault fetching address 0. */
THAW_FUNCTION(call_null) {
  void (*volatile fn)(void) = 0;
  fn();
  return 0;
}

/* "N": N console writes and N calls of the host function "count", as fast
 * as the guest can; replies how many host calls succeeded. */
THAW_FUNCTION(flood) {
  uint64_t n = parse_u64(input, input_size);
  uint64_t ok = 0;
  for (uint64_t i = 0; i < n; ++i) {
    thaw_console_write("flood\n", 6);
    char reply[8];
    size_t size = 0;
    if (thaw_host_call("count", "", 0, reply, sizeof(reply), &size) ==
        THAW_OK) {
      ++ok;
    }
  }
  char digits[24];
  int d = 0;
  do {
    digits[d++] = (char)('0' + ok % 10);
    ok /= 10;
  } while (ok);
  while (d) thaw_output_write(out, &digits[--d], 1);
  return 0;
}

/* "N": recurses N frames of 1 KiB each (the stack is 256 KiB by default),
 * then replies "ok". Deep enough, it runs into the stack's guard page. */
static int recurse(uint64_t depth, volatile char* above) {
  volatile char frame[1024];
  frame[0] = (char)depth;
  frame[1023] = above ? above[0] : 0;
  if (depth == 0) return frame[0];
  return recurse(depth - 1, frame) + frame[1023];
}

THAW_FUNCTION(recurse) {
  recurse(parse_u64(input, input_size), 0);
  thaw_output_write(out, "ok", 2);
  return 0;
}

/* The host-owned tables below the image, rewritten by the guest (ring 0
 * can): each then takes an exception the CPU can no longer deliver. */
THAW_FUNCTION(clobber_idt) {
  for (volatile uint64_t* p = (uint64_t*)THAW_IDT_ADDR;
       p < (uint64_t*)(THAW_IDT_ADDR + 0x1000); ++p) {
    *p = 0;
  }
  __asm__ volatile("ud2");
  return 0;
}

THAW_FUNCTION(clobber_gdt) {
  /* Zeroes the GDT (and the TSS after it), then reloads DS from it. */
  for (volatile uint64_t* p = (uint64_t*)0x1000; p < (uint64_t*)0x2000; ++p) {
    *p = 0;
  }
  __asm__ volatile("mov %0, %%ds" : : "r"((uint16_t)0x10));
  return 0;
}

THAW_FUNCTION(clobber_page_tables) {
  /* Unmaps everything (PML4 entry 0), then flushes the TLB. */
  *(volatile uint64_t*)THAW_PAGE_TABLES_ADDR = 0;
  uint64_t cr3;
  __asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");
  return 0;
}

THAW_FUNCTION(break_exception_stack) {
  /* Points the TSS's IST1 (the stack every exception is delivered on) at
   * an unmapped address, then takes an exception: the exception path
   * itself faults. */
  *(volatile uint64_t*)(0x1080 + 0x24) = 0x10;
  __asm__ volatile("ud2");
  return 0;
}
