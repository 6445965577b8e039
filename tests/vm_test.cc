// Behaviour of thaw::Vm as a user sees it, on every backend.
#include "thaw/vm.h"

#include <dirent.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/backend_param.h"
#include "thaw/errors.h"

namespace thaw {
namespace {

using ::testing::HasSubstr;

class VmTest : public testing::BackendTest {
 protected:
  VmConfig Config() {
    VmConfig config;
    config.backend = GetParam();
    config.memory_size = 32ull << 20;
    config.input_buffer_size = 256 << 10;
    config.output_buffer_size = 256 << 10;
    return config;
  }

  std::unique_ptr<Vm> Boot(const VmConfig& config,
                           const std::string& guest = THAW_TEST_GUEST) {
    auto vm = Vm::Create(config);
    EXPECT_TRUE(vm.ok()) << vm.status();
    if (!vm.ok()) return nullptr;
    absl::Status loaded = (*vm)->LoadGuest(guest);
    EXPECT_TRUE(loaded.ok()) << loaded;
    absl::Status booted = (*vm)->Boot();
    EXPECT_TRUE(booted.ok()) << booted;
    return *std::move(vm);
  }
  std::unique_ptr<Vm> Boot() { return Boot(Config()); }

  // After a fatal guest error the Vm must refuse calls, naming the cause.
  void ExpectRefusesFurtherCalls(Vm& vm) {
    auto again = vm.Call("echo", "x");
    EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition)
        << again.status();
    EXPECT_THAT(again.status().message(), HasSubstr("failed earlier"));
  }

  // Calls `function` in a freshly booted Vm, expects the failure to be fatal
  // (the Vm refuses the next call) and returns the call's status.
  absl::Status FatalCallOnFreshVm(const std::string& function) {
    SCOPED_TRACE(function);
    auto vm = Boot();
    if (vm == nullptr) return absl::InternalError("boot failed");
    EXPECT_TRUE(vm->RegisterHostFunction(
                      "lookup",
                      [](absl::string_view) -> absl::StatusOr<std::string> {
                        return std::string("x");
                      })
                    .ok());
    absl::Status status = vm->Call(function, "").status();
    ExpectRefusesFurtherCalls(*vm);
    return status;
  }
};

TEST_P(VmTest, RunsOnTheRequestedBackend) {
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(vm->backend(), GetParam());
  EXPECT_EQ(vm->report().backend, GetParam());
}

TEST_P(VmTest, BootRunsInitAndParks) {
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  EXPECT_THAT(vm->console(), HasSubstr("test guest: init done"));
  auto reply = vm->Call("init_ran", "");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "yes");
  PhaseReport report = vm->report();
  EXPECT_GT(report.boot, absl::ZeroDuration());
  EXPECT_EQ(report.calls, 1u);
}

TEST_P(VmTest, EchoesPayloadsUpToTheBufferSize) {
  VmConfig config = Config();
  auto vm = Boot(config);
  ASSERT_NE(vm, nullptr);
  for (uint64_t size :
       {uint64_t{0}, uint64_t{1}, uint64_t{4095}, uint64_t{4096},
        uint64_t{65537}, config.input_buffer_size}) {
    std::string input(size, '\0');
    for (uint64_t i = 0; i < size; ++i) input[i] = static_cast<char>(i * 7 + 3);
    auto reply = vm->Call("echo", input);
    ASSERT_TRUE(reply.ok()) << "size " << size << ": " << reply.status();
    EXPECT_EQ(*reply, input) << "size " << size;
  }
  EXPECT_EQ(vm->report().calls, 6u);
}

TEST_P(VmTest, RejectsInputLargerThanTheBufferAndStaysUsable) {
  VmConfig config = Config();
  auto vm = Boot(config);
  ASSERT_NE(vm, nullptr);
  auto reply = vm->Call("echo", std::string(config.input_buffer_size + 1, 'a'));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reply.status().message(), HasSubstr("input_buffer_size"));
  auto ok = vm->Call("echo", "still here");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, "still here");
}

TEST_P(VmTest, RejectsReplyLargerThanTheOutputBufferAndStaysUsable) {
  VmConfig config = Config();
  config.output_buffer_size = 4096;
  auto vm = Boot(config);
  ASSERT_NE(vm, nullptr);
  auto fits = vm->Call("reply_bytes", "4096");
  ASSERT_TRUE(fits.ok()) << fits.status();
  ASSERT_EQ(fits->size(), 4096u);
  EXPECT_EQ(static_cast<uint8_t>((*fits)[4095]), 4095 % 256);
  auto reply = vm->Call("reply_bytes", "8192");
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(reply.status().message(), HasSubstr("8192 bytes exceeds"));
  auto ok = vm->Call("echo", "after");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, "after");
}

TEST_P(VmTest, UnknownFunctionIsNotFound) {
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  auto reply = vm->Call("no_such_function", "");
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(reply.status().message(), HasSubstr("no_such_function"));
  EXPECT_TRUE(vm->Call("echo", "x").ok());
}

TEST_P(VmTest, RejectsBadFunctionNames) {
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(vm->Call("", "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(vm->Call(std::string(64, 'f'), "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(vm->Call(std::string("ec\0ho", 5), "").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(VmTest, FunctionErrorCarriesItsMessage) {
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  auto reply = vm->Call("fail", "");
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(reply.status().message(), HasSubstr("status 7"));
  EXPECT_THAT(reply.status().message(), HasSubstr("the function said no"));
  EXPECT_TRUE(vm->Call("echo", "x").ok());
}

TEST_P(VmTest, GuestCallsHostFunctions) {
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  std::vector<std::string> seen;
  ASSERT_TRUE(vm->RegisterHostFunction(
                    "pong",
                    [&](absl::string_view in) -> absl::StatusOr<std::string> {
                      seen.emplace_back(in);
                      return "pong:" + std::string(in);
                    })
                  .ok());
  ASSERT_TRUE(vm->RegisterHostFunction(
                    "refuse",
                    [](absl::string_view) -> absl::StatusOr<std::string> {
                      return absl::PermissionDeniedError("not today");
                    })
                  .ok());
  ASSERT_TRUE(vm->RegisterHostFunction(
                    "flood",
                    [](absl::string_view) -> absl::StatusOr<std::string> {
                      return std::string(1000, 'z');
                    })
                  .ok());
  auto reply = vm->Call("call_host", "pong");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "pong:ping");
  EXPECT_EQ(seen, std::vector<std::string>{"ping"});
  EXPECT_EQ(*vm->Call("call_host", "missing"), "rc=-2");
  EXPECT_EQ(*vm->Call("call_host", "refuse"), "rc=-4:not today");
  EXPECT_EQ(*vm->Call("call_host", "flood"), "rc=-3");
}

// The thread-safety contract of include/thaw/vm.h, enforced by the Vm: a
// host function that uses its own Vm is refused (it would wait for itself),
// and the Vm stays usable.
TEST_P(VmTest, AHostFunctionCannotUseItsOwnVm) {
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  Vm* self = vm.get();
  std::vector<absl::Status> inner;
  ASSERT_TRUE(
      vm->RegisterHostFunction(
            "reenter",
            [&](absl::string_view) -> absl::StatusOr<std::string> {
              inner.push_back(self->Call("echo", "inner").status());
              inner.push_back(self->Reset());
              inner.push_back(self->RegisterHostFunction(
                  "x", [](absl::string_view) { return std::string(); }));
              // What may be read from any thread works here too.
              EXPECT_TRUE(self->FindGuestSymbol("thaw_main").ok());
              EXPECT_EQ(self->report().calls, 0u);
              return std::string("outer");
            })
          .ok());
  auto reply = vm->Call("call_host", "reenter");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "outer");
  ASSERT_EQ(inner.size(), 3u);
  for (const absl::Status& s : inner) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_THAT(s.message(), HasSubstr("from inside its own call"));
  }
  EXPECT_EQ(*vm->Call("echo", "fine"), "fine");
}

// Threads sharing one Vm take turns: every call completes with its own
// reply, none is refused, and the readers that may run at any time do so
// while calls are in flight (ThreadSanitizer checks this test too).
TEST_P(VmTest, ThreadsSharingOneVmTakeTurns) {
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  constexpr int kThreads = 4, kCalls = 50;
  std::atomic<int> wrong{0};
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done.load()) {
      (void)vm->report();
      (void)vm->console();
      (void)vm->restore_stats();
      (void)vm->FindGuestSymbol("thaw_main");
      (void)vm->paused();
    }
  });
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        const std::string input = absl::StrCat("t", t, "-", i);
        auto reply = vm->Call("echo", input);
        if (!reply.ok() || *reply != input) ++wrong;
      }
    });
  }
  for (auto& caller : callers) caller.join();
  done = true;
  reader.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(vm->report().calls, uint64_t{kThreads * kCalls});
}

TEST_P(VmTest, ExampleGreeterCallsBackIntoTheHost) {
  VmConfig config = Config();
  auto vm = Vm::Create(config);
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_TRUE((*vm)
                  ->RegisterHostFunction(
                      "lookup_name",
                      [](absl::string_view id) -> absl::StatusOr<std::string> {
                        if (id == "42") return "Ada";
                        return absl::NotFoundError("unknown id");
                      })
                  .ok());
  ASSERT_TRUE((*vm)->LoadGuest(THAW_GREETER_GUEST).ok());
  ASSERT_TRUE((*vm)->Boot().ok());
  auto reply = (*vm)->Call("greet", "42");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "hello, Ada");
  auto failed = (*vm)->Call("greet", "7");
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(failed.status().message(), HasSubstr("lookup_name failed"));
}

TEST_P(VmTest, CapturesConsoleOutput) {
  VmConfig config = Config();
  std::string streamed;
  config.console_sink = [&](absl::string_view text) {
    streamed.append(text.data(), text.size());
  };
  auto vm = Boot(config);
  ASSERT_NE(vm, nullptr);
  ASSERT_TRUE(vm->Call("print", "hello from the guest\n").ok());
  EXPECT_THAT(vm->console(), HasSubstr("hello from the guest\n"));
  EXPECT_EQ(streamed, vm->console());
}

TEST_P(VmTest, ConsoleKeepsOnlyTheMostRecentBytes) {
  VmConfig config = Config();
  config.console_limit = 16;
  auto vm = Boot(config);
  ASSERT_NE(vm, nullptr);
  ASSERT_TRUE(vm->Call("print", "0123456789abcdefXYZ").ok());
  EXPECT_EQ(vm->console(), "3456789abcdefXYZ");
  ASSERT_TRUE(vm->Call("print", "!!").ok());
  EXPECT_EQ(vm->console(), "56789abcdefXYZ!!");
}

TEST_P(VmTest, StopsAnEndlessLoopAtTheTimeout) {
  VmConfig config = Config();
  config.call_timeout = absl::Milliseconds(300);
  auto vm = Boot(config);
  ASSERT_NE(vm, nullptr);
  absl::Time start = absl::Now();
  auto reply = vm->Call("spin", "0");
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded)
      << reply.status();
  EXPECT_THAT(reply.status().message(), HasSubstr("timeout"));
  EXPECT_GE(took, config.call_timeout);
  ExpectRefusesFurtherCalls(*vm);
}

struct FaultCase {
  const char* function;
  uint32_t vector;
  bool triple_fault;
};

// A flood of console writes and host calls: every one served, the console
// capped at its limit (the newest bytes kept), the host and the Vm fine.
// A million each on the emulator; fewer on KVM, whose exits cost ~100x
// more inside the QEMU harness.
TEST_P(VmTest, AFloodOfConsoleWritesAndHostCallsIsServedAndCapped) {
  VmConfig config = Config();
  config.console_limit = 4096;
  config.call_timeout = absl::Minutes(5);
  auto vm = Boot(config);
  ASSERT_NE(vm, nullptr);
  std::atomic<uint64_t> host_calls{0};
  ASSERT_TRUE(vm->RegisterHostFunction(
                    "count",
                    [&](absl::string_view) -> absl::StatusOr<std::string> {
                      ++host_calls;
                      return std::string("ok");
                    })
                  .ok());
  const uint64_t n = GetParam() == BackendKind::kKvm ? 20000 : 1000000;
  auto reply = vm->Call("flood", std::to_string(n));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, std::to_string(n));
  EXPECT_EQ(host_calls.load(), n);
  const std::string console = vm->console();
  EXPECT_LE(console.size(), 4096u);
  EXPECT_TRUE(absl::EndsWith(console, "flood\nflood\n")) << console.size();
  auto echo = vm->Call("echo", "still fine");
  ASSERT_TRUE(echo.ok()) << echo.status();
  EXPECT_EQ(*echo, "still fine");
}

TEST_P(VmTest, GuestExceptionsNameVectorRipAndCr2) {
  const FaultCase cases[] = {
      {"null_deref", 14, false},    {"write_beyond_memory", 14, false},
      {"invalid_opcode", 6, false}, {"divide_by_zero", 0, false},
      {"breakpoint", 3, false},     {"triple_fault", 8, true},
      {"call_null", 14, false},
  };
  VmConfig config = Config();
  for (const FaultCase& c : cases) {
    SCOPED_TRACE(c.function);
    auto vm = Boot(config);
    ASSERT_NE(vm, nullptr);
    auto reply = vm->Call(c.function, "");
    ASSERT_EQ(reply.status().code(), absl::StatusCode::kAborted)
        << reply.status();
    std::optional<GuestFault> fault = GetGuestFault(reply.status());
    ASSERT_TRUE(fault.has_value()) << reply.status();
    EXPECT_EQ(fault->vector, c.vector) << reply.status();
    EXPECT_EQ(fault->triple_fault, c.triple_fault) << reply.status();
    if (c.triple_fault && GetParam() == BackendKind::kKvm &&
        !absl::StrContains(reply.status().message(), "RIP 0x")) {
      // AMD KVM resets the vCPU at a shutdown: the message says the RIP is
      // unknown rather than show the reset vector.
      EXPECT_THAT(reply.status().message(), HasSubstr("RIP is unknown"));
      EXPECT_EQ(fault->rip, 0u);
    } else {
      EXPECT_THAT(reply.status().message(), HasSubstr("RIP 0x"));
      EXPECT_THAT(reply.status().message(),
                  ::testing::Not(HasSubstr("0xfff0")));
    }
    if (std::string(c.function) == "call_null") {
      // The fetch from address 0 faults: RIP and CR2 are 0.
      EXPECT_EQ(fault->rip, 0u) << reply.status();
      EXPECT_EQ(fault->cr2, 0u) << reply.status();
    } else if (!c.triple_fault) {
      // The faulting instruction lies inside the guest function.
      auto function = vm->FindGuestSymbol(std::string("thaw_fn_") + c.function);
      ASSERT_TRUE(function.ok()) << function.status();
      EXPECT_GE(fault->rip, *function) << reply.status();
      EXPECT_LT(fault->rip, *function + 256) << reply.status();
    }
    if (std::string(c.function) == "null_deref") {
      EXPECT_EQ(fault->cr2, 0u);
    }
    if (std::string(c.function) == "write_beyond_memory") {
      EXPECT_EQ(fault->cr2, config.memory_size);
      EXPECT_THAT(reply.status().message(), HasSubstr("#PF"));
    }
    ExpectRefusesFurtherCalls(*vm);
  }
}

TEST_P(VmTest, AStackOverflowHitsTheGuardPageNotTheBuffersBelow) {
  const VmConfig config = Config();
  auto vm = Boot(config);
  ASSERT_NE(vm, nullptr);
  auto shallow = vm->Call("recurse", "100");  // 100 KiB of a 256 KiB stack
  ASSERT_TRUE(shallow.ok()) << shallow.status();
  EXPECT_EQ(*shallow, "ok");
  auto deep = vm->Call("recurse", "1000");  // would run 750 KiB past it
  ASSERT_EQ(deep.status().code(), absl::StatusCode::kAborted) << deep.status();
  std::optional<GuestFault> fault = GetGuestFault(deep.status());
  ASSERT_TRUE(fault.has_value()) << deep.status();
  EXPECT_EQ(fault->vector, 14u) << deep.status();
  // The stack's lowest page is its guard; the input buffer lies below it.
  const uint64_t guard = config.memory_size - config.stack_size;
  EXPECT_GE(fault->cr2, guard) << deep.status();
  EXPECT_LT(fault->cr2, guard + 4096) << deep.status();
  ExpectRefusesFurtherCalls(*vm);
}

TEST_P(VmTest, AGuestThatWrecksItsOwnTablesEndsCleanlyAndHarmsNoOtherVm) {
  // A ring-0 guest may overwrite the host-built tables below its image:
  // the IDT, the GDT (and TSS), the page tables, or the exception stack.
  // Each ends its own call with a guest fault (a triple fault where the
  // CPU cannot deliver the exception any more); the host and a Vm beside
  // it go on.
  auto bystander = Boot();
  ASSERT_NE(bystander, nullptr);
  for (const char* function :
       {"clobber_idt", "clobber_gdt", "clobber_page_tables",
        "break_exception_stack"}) {
    SCOPED_TRACE(function);
    absl::Status status = FatalCallOnFreshVm(function);
    EXPECT_EQ(status.code(), absl::StatusCode::kAborted) << status;
    std::optional<GuestFault> fault = GetGuestFault(status);
    ASSERT_TRUE(fault.has_value()) << status;
    // Nothing to deliver it with any more: the CPU shuts down.
    EXPECT_TRUE(fault->triple_fault) << status;
    auto reply = bystander->Call("echo", function);
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(*reply, function);
  }
}

TEST_P(VmTest, HaltAndUnknownPortsEndTheCall) {
  absl::Status halt = FatalCallOnFreshVm("halt");
  EXPECT_EQ(halt.code(), absl::StatusCode::kAborted) << halt;
  EXPECT_THAT(halt.message(), HasSubstr("halted"));
  absl::Status port = FatalCallOnFreshVm("unknown_port");
  EXPECT_EQ(port.code(), absl::StatusCode::kAborted) << port;
  EXPECT_THAT(port.message(), HasSubstr("I/O port 0x3f8"));
}

TEST_P(VmTest, OutOfBoundsHypercallArgumentsAreInvalidArgument) {
  for (const char* function :
       {"bad_console_pointer", "bad_console_length", "bad_reply_pointer",
        "bad_host_call_args", "bad_host_call_output"}) {
    absl::Status status = FatalCallOnFreshVm(function);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << function << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr("outside guest memory"));
    EXPECT_THAT(status.message(), HasSubstr("hypercall"));
  }
}

TEST_P(VmTest, ProtocolViolationsAreInvalidArgument) {
  for (const char* function : {"unknown_hypercall", "wait_again"}) {
    absl::Status status = FatalCallOnFreshVm(function);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << function << ": " << status;
  }
}

TEST_P(VmTest, AbortCarriesTheGuestMessage) {
  absl::Status status = FatalCallOnFreshVm("abort_me");
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(status.message(), HasSubstr("guest gave up on purpose"));
}

TEST_P(VmTest, GuestStateSurvivesBetweenCalls) {
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(*vm->Call("count", ""), "1");
  EXPECT_EQ(*vm->Call("count", ""), "2");
  auto other = Boot();  // a second Vm has its own memory
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(*other->Call("count", ""), "1");
  EXPECT_EQ(*vm->Call("count", ""), "3");
}

uint64_t ReadCounter(const Vm& vm, uint64_t address) {
  auto bytes = vm.ReadGuestMemory(address, 8);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  uint64_t value = 0;
  if (bytes.ok()) std::memcpy(&value, bytes->data(), 8);
  return value;
}

TEST_P(VmTest, PauseFreezesTheGuestAndIsNotCountedAgainstTheTimeout) {
  VmConfig config = Config();
  config.call_timeout = absl::Milliseconds(1500);
  auto vm = Boot(config);
  ASSERT_NE(vm, nullptr);
  auto counter = vm->FindGuestSymbol("g_counter");
  ASSERT_TRUE(counter.ok()) << counter.status();
  auto call =
      std::async(std::launch::async, [&] { return vm->Call("spin", "0"); });
  // Wait until the guest is visibly running.
  absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (ReadCounter(*vm, *counter) == 0 && absl::Now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GT(ReadCounter(*vm, *counter), 0u);
  vm->Pause();
  EXPECT_TRUE(vm->paused());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  uint64_t frozen = ReadCounter(*vm, *counter);
  // Paused for longer than the whole timeout: the call must still be alive.
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  EXPECT_EQ(ReadCounter(*vm, *counter), frozen);
  EXPECT_EQ(call.wait_for(std::chrono::seconds(0)),
            std::future_status::timeout);
  vm->Resume();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_GT(ReadCounter(*vm, *counter), frozen);
  auto reply = call.get();  // the endless spin ends at the (extended) timeout
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded);
}

int CountOpenFds() {
  int count = 0;
  DIR* dir = opendir("/proc/self/fd");
  while (dir && readdir(dir)) ++count;
  if (dir) closedir(dir);
  return count;
}

uint64_t ResidentKiB() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "VmRSS:")) {
      uint64_t kib = 0;
      std::string digits;
      for (char c : line)
        if (c >= '0' && c <= '9') digits += c;
      if (absl::SimpleAtoi(digits, &kib)) return kib;
    }
  }
  return 0;
}

TEST_P(VmTest, HundredVmsCreatedAndDestroyedLeakNothing) {
  VmConfig config = Config();
  {
    auto warm = Boot(config);  // first-use allocations are not leaks
    ASSERT_NE(warm, nullptr);
  }
  int fds_before = CountOpenFds();
  uint64_t rss_before = ResidentKiB();
  for (int i = 0; i < 100; ++i) {
    auto vm = Boot(config);
    ASSERT_NE(vm, nullptr);
    auto reply = vm->Call("echo", "round " + std::to_string(i));
    ASSERT_TRUE(reply.ok()) << reply.status();
  }
  EXPECT_EQ(CountOpenFds(), fds_before);
#ifndef __SANITIZE_ADDRESS__
  // 100 VMs of 32 MiB each would be 3.2 GiB if nothing were returned. (Under
  // ASan its quarantine holds freed memory on purpose, and LeakSanitizer
  // checks for leaks instead.)
  EXPECT_LT(ResidentKiB(), rss_before + 64 * 1024)
      << "RSS grew from " << rss_before << " KiB";
#else
  (void)rss_before;
#endif
}

TEST_P(VmTest, RejectsBadConfigs) {
  VmConfig config = Config();
  config.memory_size = 3ull << 20;
  EXPECT_EQ(Vm::Create(config).status().code(),
            absl::StatusCode::kInvalidArgument);
  config = Config();
  config.memory_size = (32ull << 20) + 4096;
  EXPECT_EQ(Vm::Create(config).status().code(),
            absl::StatusCode::kInvalidArgument);
  config = Config();
  config.input_buffer_size = 64ull << 20;
  EXPECT_EQ(Vm::Create(config).status().code(),
            absl::StatusCode::kInvalidArgument);
  config = Config();
  config.call_timeout = absl::ZeroDuration();
  EXPECT_EQ(Vm::Create(config).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(VmTest, RejectsBadGuestImagesAndOutOfOrderUse) {
  auto vm = Vm::Create(Config());
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_EQ((*vm)->Boot().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*vm)->Call("echo", "").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*vm)->LoadGuest("/nonexistent/guest.elf").code(),
            absl::StatusCode::kNotFound);
  const std::string garbage = "this is not an ELF file at all, not even close";
  absl::Status bad = (*vm)->LoadGuestImage(
      absl::Span<const uint8_t>(
          reinterpret_cast<const uint8_t*>(garbage.data()), garbage.size()),
      "garbage");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("garbage"));
  std::ifstream file(THAW_TEST_GUEST, std::ios::binary);
  std::string elf((std::istreambuf_iterator<char>(file)), {});
  ASSERT_GT(elf.size(), 200u);
  absl::Status truncated = (*vm)->LoadGuestImage(
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(elf.data()),
                                200),
      "truncated");
  EXPECT_EQ(truncated.code(), absl::StatusCode::kInvalidArgument) << truncated;
  ASSERT_TRUE((*vm)->LoadGuest(THAW_TEST_GUEST).ok());
  EXPECT_EQ((*vm)->LoadGuest(THAW_TEST_GUEST).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*vm)->Boot().ok());
  EXPECT_EQ((*vm)->Boot().code(), absl::StatusCode::kFailedPrecondition);
}

THAW_INSTANTIATE_BACKEND_TESTS(VmTest);

}  // namespace
}  // namespace thaw
