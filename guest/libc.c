/* The few C library functions a freestanding compiler expects to exist. */
#include "thaw/guest.h"

void* memcpy(void* dest, const void* src, size_t n) {
  uint8_t* d = dest;
  const uint8_t* s = src;
  /* rep movsb is fast on every x86-64 and small enough to inline here. */
  __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
  return dest;
}

void* memmove(void* dest, const void* src, size_t n) {
  uint8_t* d = dest;
  const uint8_t* s = src;
  if (d <= s || d >= s + n) return memcpy(dest, src, n);
  while (n--) d[n] = s[n];
  return dest;
}

void* memset(void* dest, int c, size_t n) {
  uint8_t* d = dest;
  __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  return dest;
}

int memcmp(const void* a, const void* b, size_t n) {
  const uint8_t* x = a;
  const uint8_t* y = b;
  for (size_t i = 0; i < n; ++i) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}

size_t strlen(const char* s) {
  size_t n = 0;
  while (s[n]) ++n;
  return n;
}

int strcmp(const char* a, const char* b) {
  while (*a && *a == *b) ++a, ++b;
  return (unsigned char)*a - (unsigned char)*b;
}
