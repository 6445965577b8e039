/* A function with an expensive init, as a language runtime has: init builds
 * a prime sieve and a hash index over it (tens of MiB and about a second of
 * work on the emulator), and each call answers from those tables, touching little of them.
 * Snapshotting after init and restoring instead of booting skips the work. */
#include "thaw/guest.h"

#define SIEVE_LIMIT (8u << 20)  /* numbers checked for primality */
#define INDEX_SLOTS (1u << 20)   /* hash index: prime -> its position */

static uint8_t* g_composite;    /* g_composite[n] != 0: n is not prime */
static uint32_t* g_index_keys;  /* open addressing, 0 = empty */
static uint32_t* g_index_rank;
static uint64_t g_rng;

static uint32_t slot_of(uint32_t key) {
  return (key * 2654435761u) & (INDEX_SLOTS - 1);
}

THAW_INIT() {
  g_composite = thaw_calloc(SIEVE_LIMIT, 1);
  g_index_keys = thaw_calloc(INDEX_SLOTS, sizeof(uint32_t));
  g_index_rank = thaw_calloc(INDEX_SLOTS, sizeof(uint32_t));
  if (!g_composite || !g_index_keys || !g_index_rank) {
    thaw_abort("snapstart: out of memory");
  }
  g_composite[0] = g_composite[1] = 1;
  for (uint32_t i = 2; (uint64_t)i * i < SIEVE_LIMIT; ++i) {
    if (g_composite[i]) continue;
    for (uint32_t j = i * i; j < SIEVE_LIMIT; j += i) g_composite[j] = 1;
  }
  /* Index the first primes by value -> rank (1-based). */
  uint32_t rank = 0;
  for (uint32_t n = 2; n < SIEVE_LIMIT && rank < INDEX_SLOTS / 2; ++n) {
    if (g_composite[n]) continue;
    uint32_t slot = slot_of(n);
    while (g_index_keys[slot]) slot = (slot + 1) & (INDEX_SLOTS - 1);
    g_index_keys[slot] = n;
    g_index_rank[slot] = ++rank;
  }
  const uint8_t* e = thaw_entropy();
  for (int i = 0; i < 8; ++i) g_rng = (g_rng << 8) | e[i];
}

/* Clones must not share an RNG stream. */
THAW_AFTER_RESTORE() {
  const uint8_t* e = thaw_entropy();
  for (int i = 0; i < 8; ++i) g_rng = (g_rng << 8) | e[i];
}

static uint32_t parse(const uint8_t* input, size_t size) {
  uint32_t value = 0;
  for (size_t i = 0; i < size && input[i] >= '0' && input[i] <= '9'; ++i) {
    value = value * 10 + (uint32_t)(input[i] - '0');
  }
  return value;
}

static void append_u32(thaw_output* out, uint32_t v) {
  char digits[12];
  int n = 0;
  do {
    digits[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) thaw_output_write(out, &digits[--n], 1);
}

/* "N": replies "N is prime #R" or "N is not prime". */
THAW_FUNCTION(is_prime) {
  uint32_t n = parse(input, input_size);
  if (n >= SIEVE_LIMIT) return thaw_output_write(out, "out of range", 12) || 1;
  append_u32(out, n);
  if (g_composite[n]) return thaw_output_write(out, " is not prime", 13);
  thaw_output_write(out, " is prime", 9);
  for (uint32_t slot = slot_of(n); g_index_keys[slot];
       slot = (slot + 1) & (INDEX_SLOTS - 1)) {
    if (g_index_keys[slot] == n) {
      thaw_output_write(out, " #", 2);
      append_u32(out, g_index_rank[slot]);
      break;
    }
  }
  return 0;
}
