/* thaw's agent inside a Linux VM: PID 1 of the initramfs. It mounts the
 * kernel's file systems, loads the virtio modules the initramfs lists in
 * /thaw/modules (a stock kernel builds them as modules), opens the virtio
 * console /dev/hvc0 in raw mode and serves the host's calls
 * (thaw/linux_agent.h): each CALL runs /thaw/functions/NAME with the
 * payload on its standard input and returns its standard output. Its
 * standard error goes to the kernel console (the VM's console). After a
 * restore the host sends RESEED: the agent adds the entropy to the kernel's
 * pool, reseeds the CRNG and writes the generation to
 * /run/thaw/generation for functions to read.
 *
 * A static program (built with musl-gcc); it needs nothing else in the
 * initramfs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "thaw/linux_agent.h"

/* From <linux/random.h>, which musl's headers do not carry. */
#define RNDADDENTROPY _IOW('R', 0x03, int[2])
#define RNDRESEEDCRNG _IO('R', 0x07)
struct rand_pool_info {
  int entropy_count;
  int buf_size;
  unsigned char buf[];
};

static int console_fd = 2;

static void say(const char* format, ...) {
  char line[512];
  va_list args;
  va_start(args, format);
  int n = vsnprintf(line, sizeof line - 1, format, args);
  va_end(args);
  if (n < 0) return;
  if (n > (int)sizeof line - 2) n = sizeof line - 2;
  line[n++] = '\n';
  (void)!write(console_fd, line, n);
}

static int read_exact(int fd, void* buffer, size_t size) {
  char* p = buffer;
  while (size > 0) {
    ssize_t n = read(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    size -= (size_t)n;
  }
  return 0;
}

static int write_exact(int fd, const void* buffer, size_t size) {
  const char* p = buffer;
  while (size > 0) {
    ssize_t n = write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    size -= (size_t)n;
  }
  return 0;
}

static int send_message(int fd, uint32_t type, uint32_t status,
                        const void* payload, uint64_t length) {
  struct thaw_agent_header h = {THAW_AGENT_MAGIC, type, status, 0, length};
  if (write_exact(fd, &h, sizeof h) != 0) return -1;
  return length ? write_exact(fd, payload, length) : 0;
}

static void mount_kernel_file_systems(void) {
  mkdir("/dev", 0755);
  mkdir("/proc", 0555);
  mkdir("/sys", 0555);
  mkdir("/run", 0755);
  mkdir("/tmp", 01777);
  mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
  mount("proc", "/proc", "proc", 0, NULL);
  mount("sysfs", "/sys", "sysfs", 0, NULL);
  mount("tmpfs", "/run", "tmpfs", 0, "mode=0755");
  mount("tmpfs", "/tmp", "tmpfs", 0, "mode=1777");
  mkdir("/run/thaw", 0755);
}

/* Loads every module named in /thaw/modules, one path per line. A module
 * whose dependencies are not loaded yet fails with ENOENT (an unknown
 * symbol), so the list is walked again while a pass loads something: the
 * order of the list does not matter. */
static void load_modules(void) {
  FILE* list = fopen("/thaw/modules", "r");
  if (list == NULL) return;
  char paths[32][256];
  int count = 0;
  while (count < 32 && fgets(paths[count], sizeof paths[count], list) != NULL) {
    paths[count][strcspn(paths[count], "\n")] = 0;
    if (paths[count][0] != 0) ++count;
  }
  fclose(list);
  int loaded[32] = {0};
  int errors[32] = {0};
  for (int progress = 1; progress;) {
    progress = 0;
    for (int i = 0; i < count; ++i) {
      if (loaded[i]) continue;
      int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        errors[i] = errno;
        continue;
      }
      if (syscall(SYS_finit_module, fd, "", 0) == 0 || errno == EEXIST) {
        loaded[i] = progress = 1;
      } else {
        errors[i] = errno;
      }
      close(fd);
    }
  }
  for (int i = 0; i < count; ++i) {
    if (!loaded[i])
      say("thaw-agent: loading %s: %s", paths[i], strerror(errors[i]));
  }
}

static int open_channel(void) {
  /* The device node appears when the virtio console driver binds. */
  for (int tries = 0; tries < 3000; ++tries) {
    int fd = open("/dev/hvc0", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0) {
      struct termios t;
      if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        tcsetattr(fd, TCSANOW, &t);
      }
      return fd;
    }
    struct timespec ten_ms = {0, 10 * 1000 * 1000};
    nanosleep(&ten_ms, NULL);
  }
  return -1;
}

static int valid_name(const char* name) {
  if (name[0] == 0 || name[0] == '.') return 0;
  for (const char* c = name; *c; ++c) {
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
          (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' || *c == '.')) {
      return 0;
    }
  }
  return 1;
}

/* Runs /thaw/functions/NAME with `input` on stdin; its stdout (at most
 * `limit` bytes) is the reply. */
static void serve_call(int channel, const char* name, const char* input,
                       uint64_t input_length, uint64_t limit) {
  char path[THAW_AGENT_NAME_MAX + 32];
  if (!valid_name(name)) {
    const char* m = "bad function name";
    send_message(channel, THAW_AGENT_REPLY, THAW_AGENT_BAD_REQUEST, m,
                 strlen(m));
    return;
  }
  snprintf(path, sizeof path, "/thaw/functions/%s", name);
  if (access(path, X_OK) != 0) {
    char m[THAW_AGENT_NAME_MAX + 64];
    int n = snprintf(m, sizeof m, "no executable %s in the guest", path);
    send_message(channel, THAW_AGENT_REPLY, THAW_AGENT_NOT_FOUND, m,
                 (uint64_t)n);
    return;
  }
  int to_child[2], from_child[2];
  if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0) {
    const char* m = "pipe failed";
    send_message(channel, THAW_AGENT_REPLY, THAW_AGENT_SYSTEM, m, strlen(m));
    return;
  }
  pid_t child = fork();
  if (child == 0) {
    dup2(to_child[0], 0);
    dup2(from_child[1], 1);
    dup2(console_fd, 2);
    char* argv[] = {path, NULL};
    char* envp[] = {"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/", NULL};
    execve(path, argv, envp);
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  if (child < 0) {
    close(to_child[1]);
    close(from_child[0]);
    const char* m = "fork failed";
    send_message(channel, THAW_AGENT_REPLY, THAW_AGENT_SYSTEM, m, strlen(m));
    return;
  }
  /* Feed stdin and drain stdout together, so neither side blocks. */
  fcntl(to_child[1], F_SETFL, O_NONBLOCK);
  char* output = malloc(limit + 1 > 65536 ? limit + 1 : 65536);
  uint64_t output_length = 0, fed = 0;
  int too_large = 0;
  int in_fd = to_child[1], out_fd = from_child[0];
  if (input_length == 0) {
    close(in_fd);
    in_fd = -1;
  }
  signal(SIGPIPE, SIG_IGN);
  while (out_fd >= 0) {
    struct pollfd fds[2] = {{out_fd, POLLIN, 0}, {in_fd, POLLOUT, 0}};
    if (poll(fds, in_fd >= 0 ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (in_fd >= 0 && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = write(in_fd, input + fed, input_length - fed);
      if (n > 0) fed += (uint64_t)n;
      if (n < 0 && errno != EAGAIN) fed = input_length;
      if (fed == input_length) {
        close(in_fd);
        in_fd = -1;
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buffer[65536];
      ssize_t n = read(out_fd, buffer, sizeof buffer);
      if (n <= 0) {
        close(out_fd);
        out_fd = -1;
        break;
      }
      if (output_length + (uint64_t)n > limit) {
        too_large = 1;
      } else {
        memcpy(output + output_length, buffer, (size_t)n);
        output_length += (uint64_t)n;
      }
    }
  }
  if (in_fd >= 0) close(in_fd);
  if (out_fd >= 0) close(out_fd);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (too_large) {
    char m[128];
    int n = snprintf(m, sizeof m, "the output passed the %llu-byte limit",
                     (unsigned long long)limit);
    send_message(channel, THAW_AGENT_REPLY, THAW_AGENT_TOO_LARGE, m,
                 (uint64_t)n);
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    send_message(channel, THAW_AGENT_REPLY, THAW_AGENT_OK, output,
                 output_length);
  } else {
    char m[256];
    int n = WIFSIGNALED(status)
                ? snprintf(m, sizeof m, "%s was killed by signal %d", path,
                           WTERMSIG(status))
                : snprintf(m, sizeof m, "%s exited with status %d", path,
                           WEXITSTATUS(status));
    send_message(channel, THAW_AGENT_REPLY, THAW_AGENT_FAILED, m, (uint64_t)n);
  }
  free(output);
}

static void serve_reseed(int channel, const unsigned char* payload,
                         uint64_t length) {
  if (length < 8) {
    send_message(channel, THAW_AGENT_REPLY, THAW_AGENT_BAD_REQUEST, NULL, 0);
    return;
  }
  uint64_t generation;
  memcpy(&generation, payload, 8);
  const uint64_t entropy = length - 8;
  struct {
    struct rand_pool_info info;
    unsigned char bytes[THAW_AGENT_ENTROPY_BYTES];
  } pool; /* the flexible buf of info is bytes */
  const uint64_t n = entropy < sizeof pool.bytes ? entropy : sizeof pool.bytes;
  pool.info.entropy_count = (int)(n * 8);
  pool.info.buf_size = (int)n;
  memcpy(pool.bytes, payload + 8, n);
  int random = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  int ok = random >= 0 && ioctl(random, RNDADDENTROPY, &pool) == 0 &&
           ioctl(random, RNDRESEEDCRNG) == 0;
  if (!ok) say("thaw-agent: reseeding the CRNG: %s", strerror(errno));
  if (random >= 0) close(random);
  FILE* f = fopen("/run/thaw/generation", "w");
  if (f != NULL) {
    fprintf(f, "%llu\n", (unsigned long long)generation);
    fclose(f);
  }
  send_message(channel, THAW_AGENT_RESEEDED,
               ok ? THAW_AGENT_OK : THAW_AGENT_SYSTEM, NULL, 0);
}

int main(void) {
  /* The host times "kernel entry to init" by this line on the console. */
  say("thaw-agent: started");
  mount_kernel_file_systems();
  int console = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
  if (console >= 0) console_fd = console;
  load_modules();
  int channel = open_channel();
  if (channel < 0) {
    say("thaw-agent: /dev/hvc0 never appeared (is the virtio console module "
        "in /thaw/modules?)");
    return 1;
  }
  char version[64];
  int vn =
      snprintf(version, sizeof version, "thaw-agent %u\n", THAW_AGENT_VERSION);
  if (send_message(channel, THAW_AGENT_READY, THAW_AGENT_OK, version,
                   (uint64_t)vn) != 0) {
    say("thaw-agent: cannot write to /dev/hvc0");
    return 1;
  }
  for (;;) {
    struct thaw_agent_header h;
    if (read_exact(channel, &h, sizeof h) != 0) {
      say("thaw-agent: the channel closed");
      return 1;
    }
    if (h.magic != THAW_AGENT_MAGIC || h.name_length > THAW_AGENT_NAME_MAX ||
        h.payload_length > THAW_AGENT_PAYLOAD_MAX) {
      say("thaw-agent: malformed message header; stopping");
      return 1;
    }
    char name[THAW_AGENT_NAME_MAX + 1];
    if (read_exact(channel, name, h.name_length) != 0) return 1;
    name[h.name_length] = 0;
    char* payload = malloc(h.payload_length + 1);
    if (payload == NULL ||
        read_exact(channel, payload, h.payload_length) != 0) {
      say("thaw-agent: cannot read a %llu-byte payload",
          (unsigned long long)h.payload_length);
      return 1;
    }
    if (h.type == THAW_AGENT_CALL) {
      serve_call(channel, name, payload, h.payload_length, h.status);
    } else if (h.type == THAW_AGENT_RESEED) {
      serve_reseed(channel, (const unsigned char*)payload, h.payload_length);
    } else {
      send_message(channel, THAW_AGENT_REPLY, THAW_AGENT_BAD_REQUEST, NULL, 0);
    }
    free(payload);
    /* PID 1 reaps whatever the functions left behind. */
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
  }
}
