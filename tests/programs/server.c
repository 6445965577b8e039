/* A static Linux program that serves thaw calls over its request channel
 * (include/thaw/program.h), written against plain libc (built with musl-gcc
 * -static). Each function shows one thing the program tests check: its
 * arguments, environment and auxiliary vector, its memory, system calls
 * thaw answers with ENOSYS, EFAULT, EACCES or ENOMEM, and faults, exits and
 * endless loops. */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "thaw/program.h"

static char input[1 << 20];
static char out[1 << 16];
static unsigned long long calls;

static int read_full(void* buffer, size_t size) {
  char* p = buffer;
  while (size > 0) {
    ssize_t n = read(THAW_PROGRAM_FD, p, size);
    if (n <= 0) return -1;
    p += n;
    size -= (size_t)n;
  }
  return 0;
}

static void reply(uint32_t status, const void* data, size_t size) {
  struct thaw_program_reply header = {THAW_PROGRAM_REPLY_MAGIC, status, size};
  write(THAW_PROGRAM_FD, &header, sizeof(header));
  if (size > 0) write(THAW_PROGRAM_FD, data, size);
}

static void reply_text(const char* text) { reply(0, text, strlen(text)); }

int main(int argc, char** argv) {
  printf("init: %d args, first %s\n", argc, argv[0]);
  fflush(stdout);
  for (;;) {
    struct thaw_program_request request;
    if (read_full(&request, sizeof(request)) != 0) return 3;
    if (request.magic != THAW_PROGRAM_REQUEST_MAGIC) return 4;
    char name[256];
    if (request.name_size >= sizeof(name) || request.input_size > sizeof(input))
      return 5;
    if (read_full(name, request.name_size) != 0) return 6;
    name[request.name_size] = 0;
    if (read_full(input, request.input_size) != 0) return 7;
    input[request.input_size] = 0;
    ++calls;
    if (request.kind == THAW_PROGRAM_BEFORE_SNAPSHOT) {
      reply(0, "", 0);
    } else if (!strcmp(name, "echo")) {
      reply(0, input, request.input_size);
    } else if (!strcmp(name, "argv")) {
      size_t at = 0;
      for (int i = 0; i < argc; ++i)
        at += (size_t)snprintf(out + at, sizeof(out) - at, "%s\n", argv[i]);
      reply(0, out, at);
    } else if (!strcmp(name, "env")) {
      const char* value = getenv(input);
      reply_text(value ? value : "(unset)");
    } else if (!strcmp(name, "auxv")) {
      const unsigned char* random = (const unsigned char*)getauxval(AT_RANDOM);
      int random_nonzero = 0;
      for (int i = 0; random && i < 16; ++i) random_nonzero |= random[i] != 0;
      snprintf(out, sizeof(out),
               "pagesz=%lu phent=%lu phnum_ok=%d entry_ok=%d random=%d "
               "secure=%lu clktck=%lu",
               getauxval(AT_PAGESZ), getauxval(AT_PHENT),
               getauxval(AT_PHNUM) > 0, getauxval(AT_ENTRY) != 0,
               random_nonzero, getauxval(AT_SECURE), getauxval(AT_CLKTCK));
      reply_text(out);
    } else if (!strcmp(name, "calls")) {
      snprintf(out, sizeof(out), "%llu", calls);
      reply_text(out);
    } else if (!strcmp(name, "getpid")) {
      snprintf(out, sizeof(out), "%d", (int)getpid());
      reply_text(out);
    } else if (!strcmp(name, "enosys")) {
      long rc = syscall(999);
      snprintf(out, sizeof(out), "rc=%ld errno=%d", rc, errno);
      reply_text(out);
    } else if (!strcmp(name, "efault")) {
      /* A pointer into thaw's host-owned first 2 MiB, and one past memory. */
      long a = write(1, (const void*)0x9000, 16);
      int ea = errno;
      long b = write(1, (const void*)(1ull << 40), 16);
      snprintf(out, sizeof(out), "%ld:%d %ld:%d", a, ea, b, errno);
      reply_text(out);
    } else if (!strcmp(name, "unsupported")) {
      pid_t child = fork();
      int ef = errno;
      int s = socket(AF_INET, SOCK_STREAM, 0);
      snprintf(out, sizeof(out), "fork=%d:%d socket=%d:%d", (int)child, ef, s,
               errno);
      reply_text(out);
    } else if (!strcmp(name, "memory")) {
      /* mmap, write, munmap, mmap again: the memory comes back zeroed. */
      size_t size = 4u << 20;
      unsigned char* a = mmap(0, size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (a == MAP_FAILED) { reply_text("mmap failed"); continue; }
      memset(a, 0xAB, size);
      munmap(a, size);
      unsigned char* b = mmap(0, size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      size_t nonzero = 0;
      for (size_t i = 0; i < size; ++i) nonzero += b[i] != 0;
      char* heap = malloc(100000);
      memset(heap, 1, 100000);
      snprintf(out, sizeof(out), "same=%d nonzero=%zu heap=%d", a == b,
               nonzero, heap != 0);
      free(heap);
      munmap(b, size);
      reply_text(out);
    } else if (!strcmp(name, "exhaust")) {
      /* Allocate 1 MiB blocks until the Vm's memory runs out. */
      unsigned long blocks = 0;
      while (malloc(1 << 20) != 0) ++blocks;
      snprintf(out, sizeof(out), "enomem after %lu MiB", blocks);
      reply_text(out);
    } else if (!strcmp(name, "random")) {
      unsigned char bytes[16];
      getrandom(bytes, sizeof(bytes), 0);
      for (int i = 0; i < 16; ++i) snprintf(out + 2 * i, 3, "%02x", bytes[i]);
      reply(0, out, 32);
    } else if (!strcmp(name, "fault")) {
      *(volatile int*)(uintptr_t)0x9000 = 1; /* thaw's page tables */
      reply_text("unreachable");
    } else if (!strcmp(name, "null")) {
      reply_text((const char*)(uintptr_t)(*(volatile int*)0));
    } else if (!strcmp(name, "exit")) {
      exit(atoi(input));
    } else if (!strcmp(name, "spin")) {
      for (;;) __asm__ volatile("");
    } else if (!strcmp(name, "cat")) {
      /* The file named by the input, or "error N" with its errno. */
      int fd = open(input, O_RDONLY);
      if (fd < 0) {
        snprintf(out, sizeof(out), "error %d", errno);
        reply_text(out);
        continue;
      }
      size_t at = 0;
      ssize_t n;
      while (at < sizeof(out) && (n = read(fd, out + at, sizeof(out) - at)) > 0)
        at += (size_t)n;
      close(fd);
      reply(0, out, at);
    } else if (!strcmp(name, "hold")) {
      /* Opens the file and keeps it open: its descriptor is part of the
       * program's state in a snapshot. */
      static int held = -1;
      held = open(input, O_RDONLY);
      snprintf(out, sizeof(out), "%d", held < 0 ? -errno : held);
      reply_text(out);
    } else if (!strcmp(name, "tmp_write")) {
      /* The input into /tmp/d/x.txt (created, or appended to). */
      mkdir("/tmp/d", 0755);
      int fd = open("/tmp/d/x.txt", O_WRONLY | O_CREAT | O_APPEND, 0644);
      ssize_t n = fd < 0 ? -1 : write(fd, input, request.input_size);
      snprintf(out, sizeof(out), "%zd:%d", n, n < 0 ? errno : 0);
      if (fd >= 0) close(fd);
      reply_text(out);
    } else if (!strcmp(name, "tmp_read")) {
      /* /tmp/d/x.txt's bytes, then the names in /tmp/d. */
      size_t at = 0;
      int fd = open("/tmp/d/x.txt", O_RDONLY);
      ssize_t n;
      while (fd >= 0 && (n = read(fd, out + at, 1000)) > 0) at += (size_t)n;
      if (fd >= 0) close(fd);
      DIR* dir = opendir("/tmp/d");
      struct dirent* entry;
      while (dir && (entry = readdir(dir)) != 0) {
        at += (size_t)snprintf(out + at, sizeof(out) - at, "|%s", entry->d_name);
      }
      if (dir) closedir(dir);
      reply(0, out, at);
    } else if (!strcmp(name, "tmp_rm")) {
      int a = unlink("/tmp/d/x.txt");
      int b = rmdir("/tmp/d");
      snprintf(out, sizeof(out), "%d %d", a, b);
      reply_text(out);
    } else if (!strcmp(name, "write_file")) {
      int fd = open(input, O_WRONLY | O_CREAT, 0644);
      snprintf(out, sizeof(out), "%d:%d", fd, fd < 0 ? errno : 0);
      reply_text(out);
    } else if (!strcmp(name, "fail")) {
      reply(3, "the function said no", 20);
    } else if (!strcmp(name, "torn")) {
      /* Half a reply, then the next read: a protocol error. */
      write(THAW_PROGRAM_FD, "THRP", 4);
    } else {
      reply(THAW_PROGRAM_NO_SUCH_FUNCTION, "", 0);
    }
  }
}
