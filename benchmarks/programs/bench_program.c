/* A static Linux program for the benchmarks: an empty call, and N getpid
 * system calls per call (the host's syscall round trip). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "thaw/program.h"

static char buffer[4096];

static int read_full(void* p, size_t n) {
  char* at = p;
  while (n > 0) {
    ssize_t r = read(THAW_PROGRAM_FD, at, n);
    if (r <= 0) return -1;
    at += r;
    n -= (size_t)r;
  }
  return 0;
}

int main(void) {
  for (;;) {
    struct thaw_program_request rq;
    if (read_full(&rq, sizeof(rq)) != 0) return 1;
    if (rq.name_size + rq.input_size >= sizeof(buffer)) return 2;
    if (read_full(buffer, rq.name_size + rq.input_size) != 0) return 3;
    buffer[rq.name_size + rq.input_size] = 0;
    long n = 0;
    if (rq.name_size == 6 && !memcmp(buffer, "getpid", 6)) {
      n = strtol(buffer + 6, 0, 10);
      for (long i = 0; i < n; ++i) syscall(SYS_getpid);
    }
    struct thaw_program_reply reply = {THAW_PROGRAM_REPLY_MAGIC, 0, 0};
    write(THAW_PROGRAM_FD, &reply, sizeof(reply));
  }
}
