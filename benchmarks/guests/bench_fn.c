/* The benchmarks' function guest, shaped like a language runtime's:
 *
 *  - init fills 20% of guest memory with realistic content, in 64 KiB
 *    regions of five kinds (zero pages, numeric tables, text, copies of the
 *    guest's own code, and high-entropy bytes), then "compiles" for a while:
 *    hashes all of it several times, as a runtime loading and compiling
 *    would (about half a second or more for a 1 GiB guest on the emulator);
 *  - `work` touches 6% of guest memory (one read per page, a write to every
 *    eighth page) and returns a hash: the first call after a restore;
 *  - `empty` does nothing (call overhead); `ping_host` calls the host's
 *    `ping` function N times; `dirty` writes N pages (for Reset);
 *  - `densify` fills most of the rest of memory with compressible,
 *    non-zero content (tables, text, code), for the dense snapshot-write
 *    benchmark.
 */
#include "thaw/guest.h"

#define PAGE 4096u
#define REGION (64u << 10)

/* The guest's code, bounded by lib/guest/guest.ld. */
extern const uint8_t __thaw_text_start[];
extern const uint8_t __thaw_text_end[];

static uint8_t* g_data;
static uint64_t g_data_bytes;
static uint64_t g_work_bytes;
static uint8_t* g_scratch;
static uint64_t g_rng = 0x243F6A8885A308D3ull;
static uint64_t g_digest;

static uint64_t next_random(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return g_rng;
}

static const char* const kWords[] = {
    "function", "return", "const", "value", "index", "table", "string",
    "object", "module", "import", "export", "class", "method", "static",
    "buffer", "length", "result", "error", "handler", "request", "response",
    "config", "default", "number", "boolean", "promise", "async", "await"};

static void fill_region(uint8_t* p, uint32_t kind) {
  uint64_t* w = (uint64_t*)p;
  switch (kind) {
    case 0:  /* zero pages: left untouched */
      break;
    case 1:  /* numeric tables: small, slowly varying integers */
      for (uint32_t i = 0; i < REGION / 4; ++i) {
        ((uint32_t*)p)[i] = i / 3 + (uint32_t)(next_random() & 7);
      }
      break;
    case 2: { /* text: words and spaces */
      uint32_t at = 0;
      while (at + 16 < REGION) {
        const char* word = kWords[next_random() % (sizeof(kWords) / sizeof(kWords[0]))];
        while (*word) p[at++] = (uint8_t)*word++;
        p[at++] = (next_random() & 15) ? ' ' : '\n';
      }
      break;
    }
    case 3: { /* code: copies of this guest's own text section */
      uint64_t code = (uint64_t)(__thaw_text_end - __thaw_text_start);
      for (uint32_t i = 0; i < REGION; ++i) p[i] = __thaw_text_start[i % code];
      break;
    }
    default: /* high entropy: compressed or encrypted data */
      for (uint32_t i = 0; i < REGION / 8; ++i) w[i] = next_random();
      break;
  }
}

THAW_INIT() {
  const uint64_t memory = thaw_boot_info()->memory_size;
  g_data_bytes = (memory / 5) & ~(uint64_t)(REGION - 1);
  g_work_bytes = (memory * 6 / 100) & ~(uint64_t)(PAGE - 1);
  g_data = thaw_malloc(g_data_bytes + REGION);
  g_scratch = thaw_malloc(64 * PAGE);
  if (!g_data || !g_scratch) thaw_abort("bench_fn: out of memory");
  g_data = (uint8_t*)(((uint64_t)g_data + REGION - 1) & ~(uint64_t)(REGION - 1));
  /* Kinds in proportion 25% zero, 30% tables, 20% text, 15% code, 10%
   * entropy. */
  static const uint8_t kKinds[20] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1,
                                     1, 2, 2, 2, 2, 3, 3, 3, 4, 4};
  for (uint64_t r = 0; r < g_data_bytes / REGION; ++r) {
    fill_region(g_data + r * REGION, kKinds[next_random() % 20]);
  }
  /* "Compile": hash everything, several passes. */
  uint64_t digest = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const uint64_t* w = (const uint64_t*)g_data;
    for (uint64_t i = 0; i < g_data_bytes / 8; ++i) {
      digest = (digest ^ w[i]) * 0x100000001B3ull;
    }
  }
  g_digest = digest;
}

THAW_FUNCTION(work) {
  uint64_t hash = g_digest;
  /* The working set: a stretch of the data region (6% of memory), one read
   * per page and a write to every eighth page, as a request handler reads
   * its code and tables and updates some state. */
  uint8_t* start = g_data + (g_data_bytes - g_work_bytes) / 2;
  for (uint64_t i = 0; i < g_work_bytes; i += PAGE) {
    hash = (hash ^ start[i]) * 0x100000001B3ull;
    if ((i / PAGE) % 8 == 0) start[i + 8] ^= 1;
  }
  return thaw_output_write(out, &hash, sizeof(hash));
}

THAW_FUNCTION(empty) { return 0; }

static uint64_t parse(const uint8_t* input, size_t size) {
  uint64_t value = 0;
  for (size_t i = 0; i < size && input[i] >= '0' && input[i] <= '9'; ++i) {
    value = value * 10 + (input[i] - '0');
  }
  return value;
}

THAW_FUNCTION(ping_host) {
  uint64_t n = parse(input, input_size);
  uint8_t reply[16];
  for (uint64_t i = 0; i < n; ++i) {
    size_t size = 0;
    if (thaw_host_call("ping", "x", 1, reply, sizeof(reply), &size) != THAW_OK) {
      return 1;
    }
  }
  return 0;
}

THAW_FUNCTION(dirty) {
  uint64_t n = parse(input, input_size);
  if (n > 64) n = 64;
  for (uint64_t p = 0; p < n; ++p) g_scratch[p * PAGE] += 1;
  return 0;
}

THAW_FUNCTION(densify) {
  const uint64_t memory = thaw_boot_info()->memory_size;
  const uint64_t bytes = (memory * 6 / 10) & ~(uint64_t)(REGION - 1);
  uint8_t* dense = thaw_malloc(bytes + REGION);
  if (!dense) return 1;
  dense = (uint8_t*)(((uint64_t)dense + REGION - 1) & ~(uint64_t)(REGION - 1));
  for (uint64_t r = 0; r < bytes / REGION; ++r) {
    fill_region(dense + r * REGION, 1 + (uint32_t)(next_random() % 3));
  }
  return 0;
}

/* A new version of the function: changes one byte in every Nth 64 KiB
 * block of the data region, for N = 100 / (percent, decimal input), so that
 * about that share of its chunks differs from the snapshot taken before
 * (the remote benchmark's "second version"). */
THAW_FUNCTION(revise) {
  uint64_t percent = parse(input, input_size);
  if (percent == 0 || percent > 100) return 1;
  const uint64_t every = 100 / percent;
  for (uint64_t b = 0; b < g_data_bytes / 65536; b += every) {
    g_data[b * 65536 + 17] ^= 0x5a;
  }
  return 0;
}
