/* The guest SDK's runtime: init, the park/serve loop and hypercall wrappers. */
#include "thaw/guest.h"

extern const thaw_function_entry __start_thaw_functions[];
extern const thaw_function_entry __stop_thaw_functions[];

void thaw_heap_init(uint64_t start, uint64_t end);

static const struct thaw_boot_info* g_boot_info;

/* Guests that define no THAW_INIT (or hooks) get these. */
__attribute__((weak)) void thaw_init(void) {}
__attribute__((weak)) void thaw_before_snapshot(void) {}
__attribute__((weak)) void thaw_after_restore(void) {}

uint64_t thaw_restore_generation(void) {
  return g_boot_info->restore_generation;
}

const uint8_t* thaw_entropy(void) { return g_boot_info->entropy; }

const struct thaw_boot_info* thaw_boot_info(void) { return g_boot_info; }

void thaw_console_write(const void* data, size_t size) {
  thaw_hypercall(THAW_HC_CONSOLE_WRITE, (uint64_t)data, size, 0, 0);
}

void thaw_print(const char* text) { thaw_console_write(text, strlen(text)); }

int thaw_host_call(const char* name, const void* input, size_t input_size,
                   void* output, size_t output_capacity, size_t* output_size) {
  struct thaw_host_call args = {
      (uint64_t)name, strlen(name),       (uint64_t)input, input_size,
      (uint64_t)output, output_capacity, 0};
  int64_t result = thaw_hypercall(THAW_HC_HOST_CALL, (uint64_t)&args, 0, 0, 0);
  if (output_size) *output_size = args.output_size;
  return (int)result;
}

void thaw_abort(const char* message) {
  for (;;) thaw_hypercall(THAW_HC_ABORT, (uint64_t)message, strlen(message), 0, 0);
}

int thaw_output_write(thaw_output* out, const void* data, size_t size) {
  if (size > out->capacity - out->size) return THAW_ERR_TOO_LARGE;
  memcpy(out->data + out->size, data, size);
  out->size += size;
  return THAW_OK;
}

static const thaw_function_entry* find_function(const char* name) {
  for (const thaw_function_entry* e = __start_thaw_functions;
       e < __stop_thaw_functions; ++e) {
    if (strcmp(e->name, name) == 0) return e;
  }
  return 0;
}

/* Called from _start; never returns. */
void thaw_main(const struct thaw_boot_info* info) {
  g_boot_info = info;
  if (info->magic != THAW_BOOT_INFO_MAGIC || info->abi_version != THAW_ABI_VERSION) {
    thaw_abort("thaw guest SDK: boot info magic or ABI version mismatch");
  }
  thaw_heap_init(info->heap_start, info->heap_end);
  thaw_init();
  /* Parked: the snapshot point. Each reply parks again until the next call. */
  uint64_t generation = info->restore_generation;
  thaw_hypercall(THAW_HC_WAIT, 0, 0, 0, 0);
  for (;;) {
    if (info->request == THAW_REQUEST_BEFORE_SNAPSHOT) {
      thaw_before_snapshot();
      thaw_hypercall(THAW_HC_REPLY, 0, 0, 0, 0);
      continue;
    }
    if (info->restore_generation != generation) {
      generation = info->restore_generation;
      thaw_after_restore();
    }
    const thaw_function_entry* entry = find_function(info->function_name);
    thaw_output out = {(uint8_t*)info->output_addr, 0, info->output_capacity};
    uint64_t status = THAW_REPLY_NO_SUCH_FUNCTION;
    if (entry) {
      status = (uint32_t)entry->fn((const uint8_t*)info->input_addr,
                                   info->input_size, &out);
    } else {
      out.size = 0;
    }
    thaw_hypercall(THAW_HC_REPLY, status, (uint64_t)out.data, out.size, 0);
  }
}
