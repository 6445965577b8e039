/* thaw guest SDK: what a function guest is written against.
 *
 * A function guest is a freestanding x86-64 program (no libc, no OS) that
 * the host boots in a thaw Vm. It registers functions by name; the SDK runs
 * the guest's optional init, parks, and then serves each host Vm::Call() by
 * running the named function and replying with its output:
 *
 *   #include "thaw/guest.h"
 *
 *   THAW_INIT() { build_tables(); }           // optional, runs once at boot
 *
 *   THAW_FUNCTION(echo) {                     // input, input_size, out
 *     out->data = (uint8_t*)input;            // reply with any guest bytes,
 *     out->size = input_size;                 // or write into out->data
 *     return 0;                               // non-zero: the call fails
 *   }
 *
 * Build with thaw_add_guest() from CMake (cmake/ThawGuest.cmake), which
 * compiles with -ffreestanding -mno-red-zone and links at THAW_IMAGE_BASE
 * with guest/guest.ld. The ABI underneath is in thaw/abi.h and
 * doc/guest-abi.md.
 *
 * Threading: a guest has one vCPU and no interrupts; nothing here is
 * reentrant and nothing needs to be.
 */
#ifndef THAW_GUEST_H_
#define THAW_GUEST_H_

#include <stddef.h>
#include <stdint.h>

#include "thaw/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where a function puts its reply. `data` starts at the SDK's output buffer
 * (`capacity` bytes); a function may instead point it at any guest memory.
 * The host refuses replies larger than VmConfig::output_buffer_size. A
 * function that returns non-zero fails the call; its output, if any, is
 * the error message the host reports. */
typedef struct thaw_output {
  uint8_t* data;
  size_t size;
  size_t capacity;
} thaw_output;

typedef int (*thaw_function_fn)(const uint8_t* input, size_t input_size,
                                thaw_output* out);

typedef struct thaw_function_entry {
  const char* name;
  thaw_function_fn fn;
} thaw_function_entry;

/* Defines and registers a guest function callable by the host as `name`. */
#define THAW_FUNCTION(name)                                               \
  static int thaw_fn_##name(const uint8_t* input, size_t input_size,      \
                            thaw_output* out);                            \
  static const thaw_function_entry thaw_entry_##name                      \
      __attribute__((used, section("thaw_functions"), aligned(16))) = {   \
          #name, thaw_fn_##name};                                         \
  static int thaw_fn_##name(const uint8_t* input __attribute__((unused)), \
                            size_t input_size __attribute__((unused)),    \
                            thaw_output* out __attribute__((unused)))

/* Defines the guest's init, run once before it parks (the snapshot point). */
#define THAW_INIT() void thaw_init(void)

/* Defines a hook run just before the host takes a snapshot: drop secrets,
 * tokens and connections here, so they never reach the snapshot file. */
#define THAW_BEFORE_SNAPSHOT() void thaw_before_snapshot(void)

/* Defines a hook run before the first call after a restore (or reset): the
 * VM may be one of many clones, so reseed RNGs and regenerate unique IDs
 * from thaw_entropy() here. */
#define THAW_AFTER_RESTORE() void thaw_after_restore(void)

/* Raw hypercall (see thaw/abi.h). Prefer the wrappers below. */
int64_t thaw_hypercall(uint64_t number, uint64_t arg0, uint64_t arg1,
                       uint64_t arg2, uint64_t arg3);

/* Appends bytes to the VM's console (Vm::console()). */
void thaw_console_write(const void* data, size_t size);
void thaw_print(const char* text);

/* Calls the host function `name`. On THAW_OK, *output_size is the reply
 * size; THAW_ERR_TOO_LARGE sets it to the size needed; THAW_ERR_HOST puts
 * the host's error message in `output`. */
int thaw_host_call(const char* name, const void* input, size_t input_size,
                   void* output, size_t output_capacity, size_t* output_size);

/* Ends the current call (or boot) with an error carrying `message`. */
__attribute__((noreturn)) void thaw_abort(const char* message);

/* The boot-info page: memory layout, restore generation, entropy. */
const struct thaw_boot_info* thaw_boot_info(void);

/* 0 in a booted VM; changes with every restore and reset. */
uint64_t thaw_restore_generation(void);
/* 32 random bytes from the host, new at boot and at every restore/reset. */
const uint8_t* thaw_entropy(void);

/* Copies `size` bytes to the end of out->data; THAW_ERR_TOO_LARGE if they
 * do not fit in out->capacity. */
int thaw_output_write(thaw_output* out, const void* data, size_t size);

/* A small first-fit heap over [heap_start, heap_end). */
void* thaw_malloc(size_t size);
void* thaw_calloc(size_t count, size_t size);
void thaw_free(void* pointer);

/* The freestanding C library the compiler may call into. */
void* memcpy(void* dest, const void* src, size_t n);
void* memmove(void* dest, const void* src, size_t n);
void* memset(void* dest, int c, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);
int strcmp(const char* a, const char* b);

#ifdef __cplusplus
}
#endif

#endif /* THAW_GUEST_H_ */
