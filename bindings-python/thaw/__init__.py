"""thaw: micro-VM sandboxes that boot a function guest, snapshot it after its
init and restore it far faster than it boots.

    import thaw
    with thaw.Vm(thaw.VmConfig(memory_size=64 << 20)) as vm:
        vm.load_guest("echo.elf")
        vm.boot()
        vm.snapshot("fn.thaw")
    snapshot = thaw.Snapshot("fn.thaw")      # opened and checked once
    with snapshot.restore(engine="shared") as clone:
        print(clone.call("echo", b"hi"))

    key = thaw.SigningKey.generate()          # signed snapshots
    vm.snapshot("fn.thaw", signing_key=key)   # (on a booted vm)
    thaw.restore("fn.thaw", verify_key=key.verify_key)

    pool = thaw.Pool(snapshot, max_concurrency=4, provisioned=1)
    with pool.acquire(timeout=0.5) as lease:  # thaw.Throttled when all busy
        print(lease.call("echo", b"hi"), lease.start)

Errors raise thaw.Error or a subclass: CorruptSnapshot, Timeout, GuestFault
(with vector, rip, cr2), InvalidArgument, Throttled, SignatureError (a
snapshot opened with a VerifyKey that it is not signed by). Calls release the GIL while the
guest runs. The C++ library underneath is documented in include/thaw/.
"""
from ._thaw import (  # noqa: F401
    CorruptSnapshot,
    Error,
    GuestFault,
    InvalidArgument,
    Lease,
    Pool,
    SignatureError,
    SigningKey,
    Snapshot,
    Throttled,
    Timeout,
    VerifyKey,
    Vm,
    VmConfig,
    check_kvm,
    inspect,
    pull,
    push,
    restore,
    set_thread_confinement,
    verify,
)

__all__ = [
    "CorruptSnapshot", "Error", "GuestFault", "InvalidArgument", "Lease",
    "Pool", "SignatureError", "SigningKey", "Snapshot", "Throttled", "Timeout",
    "VerifyKey", "Vm", "VmConfig", "check_kvm", "inspect", "pull", "push", "restore", "set_thread_confinement", "verify",
]
