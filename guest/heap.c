/* A small first-fit heap for guests: a bump pointer plus a free list.
 * Freed blocks are reused whole or split; neighbours are not coalesced,
 * which keeps it tiny and is fine for a function's short-lived allocations. */
#include "thaw/guest.h"

typedef struct block {
  size_t size; /* usable bytes after the header */
  struct block* next_free;
} block;

static uint8_t* g_next;
static uint8_t* g_end;
static block* g_free;

void thaw_heap_init(uint64_t start, uint64_t end) {
  g_next = (uint8_t*)start;
  g_end = (uint8_t*)end;
  g_free = 0;
}

void* thaw_malloc(size_t size) {
  if (size == 0) size = 1;
  if (size > (size_t)-1 / 2) return 0;
  size = (size + 15) & ~(size_t)15;
  for (block** link = &g_free; *link; link = &(*link)->next_free) {
    block* b = *link;
    if (b->size < size) continue;
    if (b->size >= size + sizeof(block) + 64) {
      block* rest = (block*)((uint8_t*)(b + 1) + size);
      rest->size = b->size - size - sizeof(block);
      rest->next_free = b->next_free;
      b->size = size;
      *link = rest;
    } else {
      *link = b->next_free;
    }
    return b + 1;
  }
  if ((size_t)(g_end - g_next) < sizeof(block) + size) return 0;
  block* b = (block*)g_next;
  b->size = size;
  g_next += sizeof(block) + size;
  return b + 1;
}

void* thaw_calloc(size_t count, size_t size) {
  if (size && count > (size_t)-1 / size) return 0;
  void* p = thaw_malloc(count * size);
  if (p) memset(p, 0, count * size);
  return p;
}

void thaw_free(void* pointer) {
  if (!pointer) return;
  block* b = (block*)pointer - 1;
  b->next_free = g_free;
  g_free = b;
}
