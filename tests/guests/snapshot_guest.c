/* The snapshot suite's guest: an init that builds state worth keeping (a
 * table, a secret, an RNG), hooks for snapshot and restore, and functions
 * that read, touch and dirty memory in ways the tests can count. */
#include "thaw/guest.h"

#define MIN_TABLE_BYTES (16u << 20)
#define DIRTY_BYTES (4u << 20)
#define PAGE 4096u

static uint8_t* g_table;  /* g_table_bytes built by init */
static uint64_t g_table_bytes; /* 16 MiB, or 1/16 of memory if more */
static uint8_t* g_dirty;  /* DIRTY_BYTES the `dirty` function writes */
static uint64_t g_counter;
static uint64_t g_rng;
static uint64_t g_after_restore_runs;
/* Built at run time (never a literal in the image), so finding it in a
 * snapshot means it came from memory. */
static char g_secret[32];
static char g_kept[32];

static void decode(char* out, const char* in, uint8_t key) {
  size_t i = 0;
  for (; in[i]; ++i) out[i] = (char)(in[i] ^ key);
  out[i] = 0;
}

static uint64_t next_random(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return g_rng;
}

static void seed_from_entropy(void) {
  const uint8_t* e = thaw_entropy();
  g_rng = 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < 32; ++i) g_rng = (g_rng ^ e[i]) * 0x100000001B3ull;
  if (g_rng == 0) g_rng = 1;
}

static uint64_t parse_u64(const uint8_t* input, size_t size) {
  uint64_t value = 0;
  for (size_t i = 0; i < size && input[i] >= '0' && input[i] <= '9'; ++i) {
    value = value * 10 + (input[i] - '0');
  }
  return value;
}

static int reply_u64(thaw_output* out, uint64_t value) {
  return thaw_output_write(out, &value, sizeof(value));
}

THAW_INIT() {
  g_table_bytes = thaw_boot_info()->memory_size / 16;
  if (g_table_bytes < MIN_TABLE_BYTES) g_table_bytes = MIN_TABLE_BYTES;
  g_table = thaw_malloc(g_table_bytes);
  g_dirty = thaw_calloc(DIRTY_BYTES, 1);
  if (!g_table || !g_dirty) thaw_abort("snapshot guest: out of memory");
  /* Realistic content: runs of small values, some text-like bytes and
   * zero-filled stretches, as a runtime's tables and heaps hold. Written a
   * word at a time: init should not dominate the tests' time. */
  uint64_t* words = (uint64_t*)g_table;
  for (uint64_t w = 0; w < g_table_bytes / 8; ++w) {
    uint64_t block = w / 512;
    words[w] = (block % 8 == 7) ? 0
                                : 0x2020202020202020ull +
                                      ((w * 0x0101010101010101ull + block) &
                                       0x1F1F1F1F1F1F1F1Full);
  }
  decode(g_secret, "\x0e\x12\x1b\x0d\x77\x09\x1f\x19\x08\x1f\x0e\x77\x0e\x15\x11\x1f\x14",
         0x5A); /* "THAW-SECRET-TOKEN" */
  decode(g_kept, "\x0e\x12\x1b\x0d\x77\x11\x1f\x1f\x0a\x77\x17\x1f", 0x5A); /* "THAW-KEEP-ME" */
  seed_from_entropy();
}

THAW_BEFORE_SNAPSHOT() { memset(g_secret, 0, sizeof(g_secret)); }

THAW_AFTER_RESTORE() {
  g_after_restore_runs++;
  seed_from_entropy();
}

/* Sum of the whole table: the same in a Vm and in every restore of it. */
THAW_FUNCTION(table_sum) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < g_table_bytes; i += 8) {
    sum = sum * 31 + *(const uint64_t*)(g_table + i);
  }
  return reply_u64(out, sum);
}

/* table_sum, after reading one byte per page of the dirty area's first
 * 256 KiB (zero until `dirty` writes them): a call whose working set holds
 * whole chunks of zeros. */
THAW_FUNCTION(table_sum_and_zeros) {
  uint64_t zeros = 0;
  for (uint64_t p = 0; p < (256u << 10) / PAGE; ++p) zeros += g_dirty[p * PAGE];
  if (zeros != 0) return 1;
  uint64_t sum = 0;
  for (uint64_t i = 0; i < g_table_bytes; i += 8) {
    sum = sum * 31 + *(const uint64_t*)(g_table + i);
  }
  return reply_u64(out, sum);
}

/* Reads one byte per page of the table's first N bytes (decimal input). */
THAW_FUNCTION(touch) {
  uint64_t n = parse_u64(input, input_size);
  if (n > g_table_bytes) n = g_table_bytes;
  uint64_t sum = 0;
  for (uint64_t i = 0; i < n; i += PAGE) sum += g_table[i];
  return reply_u64(out, sum);
}

/* Writes one byte in each of the first N pages (decimal input) of the
 * dirty area. */
THAW_FUNCTION(dirty) {
  uint64_t n = parse_u64(input, input_size);
  if (n > DIRTY_BYTES / PAGE) n = DIRTY_BYTES / PAGE;
  for (uint64_t p = 0; p < n; ++p) g_dirty[p * PAGE + 123] += 1;
  return reply_u64(out, n);
}

/* Counts calls: state that a snapshot keeps and a reset rewinds. */
THAW_FUNCTION(counter) { return reply_u64(out, ++g_counter); }

THAW_FUNCTION(random) {
  uint64_t values[2] = {next_random(), next_random()};
  return thaw_output_write(out, values, sizeof(values));
}

THAW_FUNCTION(generation) {
  uint64_t values[2] = {thaw_restore_generation(), g_after_restore_runs};
  return thaw_output_write(out, values, sizeof(values));
}

/* Where the secrets live and how long they are, for the test to look. */
THAW_FUNCTION(secrets) {
  uint64_t values[2] = {(uint64_t)g_secret, (uint64_t)g_kept};
  return thaw_output_write(out, values, sizeof(values));
}

/* Uses SSE registers across calls: the restored FPU state must carry them. */
THAW_FUNCTION(fpu) {
  double x = (double)parse_u64(input, input_size);
  return reply_u64(out, (uint64_t)(x * 1.5 + 0.25));
}

/* MSRs are part of the vCPU state a snapshot keeps. */
#define MSR_LSTAR 0xC0000082u
THAW_FUNCTION(set_lstar) {
  uint64_t v = parse_u64(input, input_size);
  __asm__ volatile("wrmsr" ::"c"(MSR_LSTAR), "a"((uint32_t)v),
                   "d"((uint32_t)(v >> 32)));
  return 0;
}

THAW_FUNCTION(get_lstar) {
  uint32_t lo, hi;
  __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(MSR_LSTAR));
  return reply_u64(out, ((uint64_t)hi << 32) | lo);
}

/* Asks the host function "fill" for up to 8 KiB into a buffer of its own:
 * guest memory the host writes (what Vm::Reset must also undo). */
static uint8_t g_host_buffer[8192];
THAW_FUNCTION(host_fill) {
  size_t size = 0;
  int rc = thaw_host_call("fill", input, input_size, g_host_buffer,
                          sizeof(g_host_buffer), &size);
  if (rc != THAW_OK) return 1;
  return reply_u64(out, size);
}
