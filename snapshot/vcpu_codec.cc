#include "snapshot/vcpu_codec.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace thaw::snapshot {
namespace {

void EncodeSegment(const Segment& in, proto::Segment* out) {
  out->set_base(in.base);
  out->set_limit(in.limit);
  out->set_selector(in.selector);
  out->set_type(in.type);
  out->set_present(in.present);
  out->set_dpl(in.dpl);
  out->set_db(in.db);
  out->set_s(in.s);
  out->set_l(in.l);
  out->set_g(in.g);
  out->set_avl(in.avl);
  out->set_unusable(in.unusable);
}

Segment DecodeSegment(const proto::Segment& in) {
  Segment out;
  out.base = in.base();
  out.limit = in.limit();
  out.selector = static_cast<uint16_t>(in.selector());
  out.type = static_cast<uint8_t>(in.type() & 0xF);
  out.present = in.present();
  out.dpl = static_cast<uint8_t>(in.dpl() & 3);
  out.db = in.db();
  out.s = in.s();
  out.l = in.l();
  out.g = in.g();
  out.avl = in.avl();
  out.unusable = in.unusable();
  return out;
}

// The general-purpose registers in manifest order.
template <typename State>
auto Gprs(State& s) {
  return std::array{&s.rax, &s.rbx, &s.rcx, &s.rdx, &s.rsi, &s.rdi,
                    &s.rsp, &s.rbp, &s.r8,  &s.r9,  &s.r10, &s.r11,
                    &s.r12, &s.r13, &s.r14, &s.r15};
}

}  // namespace

proto::VcpuState EncodeVcpuState(const VcpuState& s) {
  proto::VcpuState out;
  for (const uint64_t* reg : Gprs(s)) out.add_gpr(*reg);
  out.set_rip(s.rip);
  out.set_rflags(s.rflags);
  EncodeSegment(s.cs, out.mutable_cs());
  EncodeSegment(s.ds, out.mutable_ds());
  EncodeSegment(s.es, out.mutable_es());
  EncodeSegment(s.fs, out.mutable_fs());
  EncodeSegment(s.gs, out.mutable_gs());
  EncodeSegment(s.ss, out.mutable_ss());
  EncodeSegment(s.tr, out.mutable_tr());
  EncodeSegment(s.ldt, out.mutable_ldt());
  out.mutable_gdt()->set_base(s.gdt.base);
  out.mutable_gdt()->set_limit(s.gdt.limit);
  out.mutable_idt()->set_base(s.idt.base);
  out.mutable_idt()->set_limit(s.idt.limit);
  out.set_cr0(s.cr0);
  out.set_cr2(s.cr2);
  out.set_cr3(s.cr3);
  out.set_cr4(s.cr4);
  out.set_efer(s.efer);
  for (size_t i = 0; i < kPortableMsrCount; ++i) {
    proto::Msr* msr = out.add_msrs();
    msr->set_index(kPortableMsrs[i].index);
    msr->set_value(s.msrs[i]);
  }
  proto::FpuState* fpu = out.mutable_fpu();
  fpu->set_fcw(s.fpu.fcw);
  fpu->set_fsw(s.fpu.fsw);
  fpu->set_ftw(s.fpu.ftw);
  fpu->set_mxcsr(s.fpu.mxcsr);
  fpu->set_st(std::string(reinterpret_cast<const char*>(s.fpu.st.data()),
                          sizeof(s.fpu.st)));
  fpu->set_xmm(std::string(reinterpret_cast<const char*>(s.fpu.xmm.data()),
                           sizeof(s.fpu.xmm)));
  return out;
}

VcpuState DecodeVcpuState(const proto::VcpuState& in) {
  VcpuState s;
  auto regs = Gprs(s);
  for (int i = 0; i < 16; ++i) *regs[i] = in.gpr(i);
  s.rip = in.rip();
  s.rflags = in.rflags();
  s.cs = DecodeSegment(in.cs());
  s.ds = DecodeSegment(in.ds());
  s.es = DecodeSegment(in.es());
  s.fs = DecodeSegment(in.fs());
  s.gs = DecodeSegment(in.gs());
  s.ss = DecodeSegment(in.ss());
  s.tr = DecodeSegment(in.tr());
  s.ldt = DecodeSegment(in.ldt());
  s.gdt = {in.gdt().base(), static_cast<uint16_t>(in.gdt().limit())};
  s.idt = {in.idt().base(), static_cast<uint16_t>(in.idt().limit())};
  s.cr0 = in.cr0();
  s.cr2 = in.cr2();
  s.cr3 = in.cr3();
  s.cr4 = in.cr4();
  s.efer = in.efer();
  // MSRs the file names that this build does not carry were refused by
  // CheckMsrs; the ones it lacks keep their boot values.
  for (const proto::Msr& msr : in.msrs()) {
    for (size_t i = 0; i < kPortableMsrCount; ++i) {
      if (kPortableMsrs[i].index == msr.index()) s.msrs[i] = msr.value();
    }
  }
  s.fpu.fcw = static_cast<uint16_t>(in.fpu().fcw());
  s.fpu.fsw = static_cast<uint16_t>(in.fpu().fsw());
  s.fpu.ftw = static_cast<uint8_t>(in.fpu().ftw());
  s.fpu.mxcsr = in.fpu().mxcsr();
  std::memcpy(s.fpu.st.data(), in.fpu().st().data(), sizeof(s.fpu.st));
  std::memcpy(s.fpu.xmm.data(), in.fpu().xmm().data(), sizeof(s.fpu.xmm));
  return s;
}

absl::Status CheckMsrs(const proto::VcpuState& state) {
  for (const proto::Msr& msr : state.msrs()) {
    bool known = false;
    for (const PortableMsr& portable : kPortableMsrs) {
      known = known || portable.index == msr.index();
    }
    if (!known) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "vCPU state carries MSR 0x%x, which this build cannot restore",
          msr.index()));
    }
  }
  return absl::OkStatus();
}

}  // namespace thaw::snapshot
