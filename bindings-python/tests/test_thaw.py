"""The Python binding as a Python user sees it: bytes in and out, context
managers, exceptions with the library's messages, host functions, every
restore engine, threads that run guests at once, and no leaks."""
import os
import struct
import threading
import time

import pytest

import thaw

BACKEND = "emulated"  # the KVM backend is covered by the C++ suites in QEMU


def config(**kwargs):
    kwargs.setdefault("memory_size", 32 << 20)
    kwargs.setdefault("backend", BACKEND)
    return thaw.VmConfig(**kwargs)


def booted(guest, **kwargs):
    vm = thaw.Vm(config(**kwargs))
    vm.load_guest(guest)
    vm.boot()
    return vm


def u64(reply, index=0):
    return struct.unpack_from("<Q", reply, index * 8)[0]


def test_boot_and_call(echo_guest):
    with booted(echo_guest) as vm:
        assert vm.call("echo", b"hello, thaw") == b"hello, thaw"
        assert vm.call("echo") == b""
        assert vm.backend == "emulated"
        report = vm.report
        assert report["calls"] == 2 and report["boot_ms"] > 0
        assert isinstance(vm.console, bytes)
    assert vm.closed
    with pytest.raises(thaw.Error, match="closed"):
        vm.call("echo", b"x")


def test_console_sink_sees_output_as_it_is_written(test_guest, tmp_path):
    seen = []
    vm = thaw.Vm(config(console_sink=seen.append))
    vm.load_guest(test_guest)
    vm.boot()
    assert b"".join(seen) == b"test guest: init done\n"
    vm.call("print", b"live line\n")
    assert seen[-1] == b"live line\n"
    assert vm.console == b"".join(seen)
    path = str(tmp_path / "fn.thaw")
    vm.snapshot(path)
    vm.close()
    restored_seen = []
    with thaw.restore(path, backend=BACKEND,
                      console_sink=restored_seen.append) as clone:
        clone.call("print", b"from the clone")
    assert restored_seen == [b"from the clone"]
    with pytest.raises(thaw.InvalidArgument, match="console_sink"):
        thaw.VmConfig(console_sink=42)


def test_help_reads_well():
    assert "GIL" in thaw.Vm.__doc__
    assert thaw.Vm.__module__ == "thaw"
    for name in thaw.__all__:
        assert getattr(thaw, name).__doc__, name
    for cls in (thaw.Vm, thaw.VmConfig, thaw.Snapshot):
        for member in dir(cls):
            if not member.startswith("_") or member in ("__enter__", "__exit__"):
                assert getattr(cls, member).__doc__, f"{cls.__name__}.{member}"


def test_unknown_function_and_bad_arguments(echo_guest):
    with booted(echo_guest) as vm:
        with pytest.raises(thaw.Error, match='no function "nope"') as e:
            vm.call("nope", b"")
        assert e.value.code == "NOT_FOUND"
        assert vm.call("echo", b"still usable") == b"still usable"
    with pytest.raises(thaw.InvalidArgument, match="memory_size") as e:
        thaw.Vm(config(memory_size=3 << 20))
    assert isinstance(e.value, ValueError)
    with pytest.raises(thaw.InvalidArgument, match="backend"):
        thaw.VmConfig(backend="fast")


def test_host_functions_including_one_that_raises(test_guest):
    with booted(test_guest) as vm:
        seen = []

        def ping(data):
            seen.append(data)
            return b"pong from python"

        def boom(data):
            raise RuntimeError("the host function failed on purpose")

        vm.register_host_function("ping_fn", ping)
        vm.register_host_function("boom", boom)
        assert vm.call("call_host", b"ping_fn") == b"pong from python"
        assert seen == [b"ping"]
        reply = vm.call("call_host", b"boom")
        # THAW_ERR_HOST, with the message (cut to the guest's 64-byte buffer).
        assert reply.startswith(b'rc=-4:host function "boom" raised RuntimeError')
        # The host and the Vm go on.
        assert vm.call("call_host", b"ping_fn") == b"pong from python"
        with pytest.raises(thaw.InvalidArgument):
            vm.register_host_function("x", 42)


def test_timeout_raises_timeout(test_guest):
    with booted(test_guest, call_timeout=0.3) as vm:
        with pytest.raises(thaw.Timeout, match="timeout"):
            vm.call("spin", b"0")


def test_guest_fault_carries_vector_rip_cr2(test_guest):
    with booted(test_guest) as vm:
        with pytest.raises(thaw.GuestFault) as e:
            vm.call("null_deref", b"")
        assert e.value.vector == 14
        assert e.value.cr2 == 0
        assert e.value.rip >= vm.find_symbol("thaw_main") - 0x100000
        with pytest.raises(thaw.Error, match="failed earlier"):
            vm.call("echo", b"x")


@pytest.mark.parametrize("engine", ["eager", "lazy", "prefetch", "shared"])
def test_snapshot_and_restore_with_each_engine(tmp_path, snapshot_guest, engine):
    path = str(tmp_path / "fn.thaw")
    with booted(snapshot_guest, memory_size=64 << 20) as vm:
        assert u64(vm.call("counter")) == 1
        table = vm.call("table_sum")
        vm.snapshot(path)
        assert u64(vm.call("counter")) == 2
    info = thaw.inspect(path)
    assert info["memory_size"] == 64 << 20 and info["compression_ratio"] > 4
    thaw.verify(path)
    with thaw.restore(path, engine=engine, backend=BACKEND) as clone:
        assert u64(clone.call("counter")) == 2
        assert clone.call("table_sum") == table
        assert clone.restore_stats["engine"] == engine
        assert clone.report["restore_ms"] > 0


def test_working_set_then_prefetch(tmp_path, snapshot_guest):
    path = str(tmp_path / "fn.thaw")
    with booted(snapshot_guest, memory_size=64 << 20) as vm:
        vm.snapshot(path)
    with thaw.restore(path, engine="lazy", backend=BACKEND,
                      record_working_set=True) as recorder:
        recorder.call("touch", b"4194304")
        recorder.write_working_set()
    assert thaw.inspect(path)["working_set_chunks"] > 0
    with thaw.restore(path, engine="prefetch", backend=BACKEND) as clone:
        clone.call("touch", b"4194304")
        assert clone.restore_stats["mapped"] > 0


def test_signed_snapshots(tmp_path, snapshot_guest):
    key = thaw.SigningKey.generate()
    other = thaw.SigningKey.generate()
    key.save(str(tmp_path / "key"))
    key.verify_key.save(str(tmp_path / "key.pub"))
    assert thaw.SigningKey.load(str(tmp_path / "key")).verify_key == key.verify_key
    public = thaw.VerifyKey.load(str(tmp_path / "key.pub"))
    assert public == key.verify_key and public.name.startswith("ed25519:")
    assert thaw.VerifyKey.parse(str(public)) == public
    with pytest.raises(thaw.Error, match="exists"):
        other.save(str(tmp_path / "key"))

    path = str(tmp_path / "signed.thaw")
    with booted(snapshot_guest, memory_size=64 << 20) as vm:
        assert u64(vm.call("counter")) == 1
        vm.snapshot(path, signing_key=key)
        vm.snapshot(str(tmp_path / "plain.thaw"))
    info = thaw.Snapshot(path, key=public).info
    assert info["signer"] == public.name and info["signature_verified"]
    thaw.verify(path, key=public)
    with thaw.restore(path, backend=BACKEND, verify_key=public) as clone:
        assert u64(clone.call("counter")) == 2
    with pytest.raises(thaw.SignatureError, match="signed by " + public.name):
        thaw.restore(path, backend=BACKEND, verify_key=other.verify_key)
    with pytest.raises(PermissionError, match="not signed"):
        thaw.Snapshot(str(tmp_path / "plain.thaw"), key=public)
    with thaw.restore(path, engine="lazy", backend=BACKEND,
                      record_working_set=True, verify_key=public) as recorder:
        recorder.call("touch", b"4194304")
        with pytest.raises(thaw.Error, match="signing key"):
            recorder.write_working_set()
        recorder.write_working_set(signing_key=key)
    thaw.verify(path, key=public)


def test_thread_confinement_switch(tmp_path, snapshot_guest):
    path = str(tmp_path / "fn.thaw")
    with booted(snapshot_guest, memory_size=64 << 20) as vm:
        vm.snapshot(path)
    thaw.set_thread_confinement(False)
    try:
        with thaw.restore(path, engine="lazy", backend=BACKEND) as clone:
            assert u64(clone.call("counter")) == 1
    finally:
        thaw.set_thread_confinement(True)
    with thaw.restore(path, engine="lazy", backend=BACKEND) as clone:
        assert u64(clone.call("counter")) == 1


def test_a_vm_in_a_worker_process(tmp_path, test_guest, snapshot_guest):
    with booted(test_guest, worker_process=True) as vm:
        assert vm.call("echo", b"from the worker") == b"from the worker"
        vm.register_host_function("lookup", lambda data: b"host:" + data)
        assert vm.call("call_host", b"lookup") == b"host:ping"
    path = str(tmp_path / "fn.thaw")
    with booted(snapshot_guest, memory_size=64 << 20) as vm:
        vm.snapshot(path)
    with thaw.restore(path, backend="emulated", worker_process=True) as clone:
        assert u64(clone.call("counter")) == 1
    with thaw.Snapshot(path).restore(engine="shared", backend="emulated",
                                     worker_process=True) as clone:
        assert u64(clone.call("counter")) == 1
        clone.reset()
        assert u64(clone.call("counter")) == 1


def test_huge_pages(tmp_path, snapshot_guest):
    """2 MiB pages: reserved ones where the host has them free, else
    transparent ones (this test changes no kernel setting)."""
    path = str(tmp_path / "fn.thaw")
    huge = ("2 MiB reserved (hugetlbfs)", "2 MiB transparent")
    with booted(snapshot_guest, huge_pages=True) as vm:
        assert vm.restore_stats["memory_pages"] in huge
        table = vm.call("table_sum")
        vm.snapshot(path, threads=1)
    with thaw.restore(path, engine="lazy", backend=BACKEND,
                      huge_pages=True) as clone:
        assert clone.call("table_sum") == table
        assert clone.restore_stats["memory_pages"] in huge
        assert clone.restore_stats["faults"] <= 16  # 2 MiB per fault
    with pytest.raises(thaw.Error, match="shared-base"):
        thaw.restore(path, engine="shared", backend=BACKEND, huge_pages=True)


def test_clones_differ_and_reset_restores_the_snapshot(tmp_path, snapshot_guest):
    path = str(tmp_path / "fn.thaw")
    with booted(snapshot_guest, memory_size=64 << 20) as vm:
        vm.snapshot(path)
    with thaw.restore(path, engine="shared", backend=BACKEND) as a, \
            thaw.restore(path, engine="shared", backend=BACKEND) as b:
        assert a.call("random") != b.call("random")
        assert u64(a.call("counter")) == 1
        a.call("dirty", b"16")
        assert u64(a.call("counter")) == 2
        a.reset()
        assert u64(a.call("counter")) == 1
        assert a.restore_stats["resets"] == 1
    with thaw.restore(path, engine="lazy", backend=BACKEND) as lazy:
        with pytest.raises(thaw.Error, match="kSharedBase"):
            lazy.reset()


def test_a_snapshot_handle_opens_once_and_owns_its_shared_base(
        tmp_path, snapshot_guest):
    path = str(tmp_path / "fn.thaw")
    with booted(snapshot_guest, memory_size=32 << 20) as vm:
        vm.snapshot(path)
    snapshot = thaw.Snapshot(path)
    assert snapshot.path == path
    assert snapshot.info["snapshot_id"] == thaw.inspect(path)["snapshot_id"]
    assert snapshot.info["memory_size"] == 32 << 20
    snapshot.verify()
    clones = [snapshot.restore(engine="shared", backend=BACKEND)
              for _ in range(3)]
    assert [c.restore_stats["shared_base_built"] for c in clones] == \
        [True, False, False]
    assert [u64(c.call("counter")) for c in clones] == [1, 1, 1]
    del snapshot  # the clones keep the image they mapped
    clones[0].reset()
    assert u64(clones[0].call("counter")) == 1
    for c in clones:
        c.close()
    # thaw.restore keeps no handle: every shared restore builds its base.
    for _ in range(2):
        with thaw.restore(path, engine="shared", backend=BACKEND) as clone:
            assert clone.restore_stats["shared_base_built"]
    with pytest.raises(thaw.Error, match="No such file"):
        thaw.Snapshot(str(tmp_path / "missing.thaw"))


def test_stats_and_symbols_are_safe_to_read_while_calls_run(test_guest):
    """restore_stats, find_symbol, report and console read a Vm that
    another thread is calling (the core keeps them consistent)."""
    with booted(test_guest) as vm:
        stop = threading.Event()
        errors = []

        def read():
            while not stop.is_set():
                try:
                    vm.restore_stats
                    vm.find_symbol("thaw_main")
                    vm.report
                    vm.console
                except Exception as e:  # noqa: BLE001
                    errors.append(e)

        reader = threading.Thread(target=read)
        reader.start()
        for i in range(200):
            assert vm.call("echo", b"%d" % i) == b"%d" % i
        stop.set()
        reader.join(timeout=60)
        assert errors == []


def test_corrupt_snapshot_raises_corrupt_snapshot(tmp_path, echo_guest):
    path = tmp_path / "fn.thaw"
    with booted(echo_guest) as vm:
        vm.snapshot(str(path))
    data = bytearray(path.read_bytes())
    data[100] ^= 0x10  # inside the first frame
    bad = tmp_path / "bad.thaw"
    bad.write_bytes(bytes(data))
    with pytest.raises(thaw.CorruptSnapshot, match="bad.thaw") as e:
        thaw.verify(str(bad))
    assert e.value.code == "DATA_LOSS"
    with pytest.raises(thaw.CorruptSnapshot):
        thaw.restore(str(bad), engine="eager", backend=BACKEND)
    short = tmp_path / "short.thaw"
    short.write_bytes(path.read_bytes()[:500])
    with pytest.raises(thaw.CorruptSnapshot, match="short.thaw"):
        thaw.restore(str(short), backend=BACKEND)
    with pytest.raises(thaw.Error, match="No such file") as e:
        thaw.restore(str(tmp_path / "missing.thaw"))
    assert e.value.code == "NOT_FOUND"


def test_two_threads_run_two_guests_at_once(test_guest):
    """Each guest calls a host function that waits for the other guest to be
    inside its own host function. Serialized calls (a GIL held while a guest
    runs) could never meet; both would time out and the test would fail."""
    a_inside, b_inside = threading.Event(), threading.Event()

    def rendezvous(mine, theirs):
        def fn(data):
            mine.set()
            if not theirs.wait(timeout=10):
                raise RuntimeError("the other guest never ran")
            return b"met"
        return fn

    results = {}

    def run(name, mine, theirs):
        with booted(test_guest) as vm:
            vm.register_host_function("meet", rendezvous(mine, theirs))
            results[name] = vm.call("call_host", b"meet")

    threads = [threading.Thread(target=run, args=("a", a_inside, b_inside)),
               threading.Thread(target=run, args=("b", b_inside, a_inside))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {"a": b"met", "b": b"met"}


def test_threads_sharing_one_vm_take_turns(echo_guest):
    """thaw::Vm runs one call at a time; Python threads sharing a Vm wait
    for each other instead of racing (which would corrupt the Vm)."""
    with booted(echo_guest) as vm:
        errors = []

        def hammer(tag):
            try:
                for i in range(200):
                    payload = f"{tag}-{i}".encode()
                    assert vm.call("echo", payload) == payload
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=hammer, args=(t,)) for t in "abcd"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert vm.report["calls"] == 800


def test_a_host_function_cannot_reenter_its_own_vm(test_guest):
    with booted(test_guest) as vm:
        seen = []

        def reenter(data):
            try:
                vm.call("echo", b"inner")
            except thaw.Error as e:
                seen.append(str(e))
                raise
            return b"unreachable"

        vm.register_host_function("reenter", reenter)
        reply = vm.call("call_host", b"reenter")
        assert reply.startswith(b"rc=-4:")
        assert "cannot call into" in seen[0]
        assert vm.call("echo", b"fine") == b"fine"


def _fds():
    return len(os.listdir("/proc/self/fd"))


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_no_leak_over_200_create_destroy_cycles(echo_guest):
    def cycle():
        with booted(echo_guest, memory_size=8 << 20) as vm:
            assert vm.call("echo", b"x") == b"x"
    for _ in range(10):  # warm up allocators and caches
        cycle()
    fds, rss = _fds(), _rss_kib()
    for _ in range(200):
        cycle()
    assert _fds() == fds
    assert _rss_kib() - rss < 64 * 1024


def test_a_linux_program_serves_calls_and_snapshots(tmp_path):
    """An unmodified static program (tests/programs/server.c) as a guest:
    loaded with load_program, booted to its first request, called,
    snapshotted and restored."""
    program = os.environ["THAW_TEST_PROGRAM"]
    view = tmp_path / "view"
    view.mkdir()
    (view / "data.txt").write_text("seen through the view")
    config = thaw.VmConfig(guest_kind="program", backend=BACKEND)
    assert config.guest_kind == "program"
    with thaw.Vm(config) as vm:
        vm.load_program(program, args=[program, "x"], env=["K=v"],
                        files=[(str(view), "/data")])
        vm.boot()
        assert vm.call("echo", b"hi") == b"hi"
        assert vm.call("env", b"K") == b"v"
        assert vm.call("cat", b"/data/data.txt") == b"seen through the view"
        assert vm.call("enosys") == b"rc=-1 errno=38"
        stats = vm.program_stats
        assert stats["unsupported"] == {"syscall_999": 1}
        assert stats["syscalls"] > 10
        with pytest.raises(thaw.Error, match="exited with status 5"):
            vm.call("exit", b"5")
    with thaw.Vm(config) as vm:
        vm.load_program(program)
        vm.boot()
        vm.snapshot(str(tmp_path / "p.thaw"))
    assert thaw.inspect(str(tmp_path / "p.thaw"))["memory_size"] == 64 << 20
    with thaw.Snapshot(str(tmp_path / "p.thaw")).restore(
            engine="shared", backend=BACKEND) as clone:
        assert clone.call("echo", b"restored") == b"restored"
    with pytest.raises(thaw.InvalidArgument, match="guest_kind"):
        thaw.VmConfig(guest_kind="kernel")


def test_linux_vm_is_refused_on_the_emulated_backend(tmp_path):
    """A Linux VM runs on KVM only; the emulated backend names why. (Its
    boots, calls and snapshots are tested on a real /dev/kvm inside QEMU:
    ctest linux_vm_kvm_in_qemu.)"""
    config = thaw.VmConfig(guest_kind="linux-vm", backend="emulated",
                           memory_size=256 << 20, vcpus=2)
    assert config.guest_kind == "linux-vm"
    assert config.vcpus == 2
    with pytest.raises(thaw.InvalidArgument, match="KVM only"):
        thaw.Vm(config)
    with pytest.raises(thaw.InvalidArgument, match="vcpus"):
        thaw.Vm(thaw.VmConfig(backend="emulated", vcpus=2))
    # Console input is a Linux VM's; a function guest has none.
    with thaw.Vm(thaw.VmConfig(backend="emulated")) as vm:
        with pytest.raises(thaw.Error, match="Linux VM") as refused:
            vm.write_console(b"x")
        assert refused.value.code == "UNIMPLEMENTED"


def test_pool_leases_throttles_isolates_and_replaces(tmp_path, test_guest):
    pool = thaw.Pool.boot(test_guest, str(tmp_path / "fn.thaw"),
                          config=config(), max_concurrency=2, provisioned=1,
                          isolation="reset", backend=BACKEND, call_timeout=0.5)
    with pool.acquire() as lease:
        assert lease.start == "warm"  # the provisioned one
        assert lease.call("count") == b"1"
        assert lease.call("count") == b"2"
    with pool.acquire() as lease:  # reset: the last request's writes are gone
        assert lease.call("count") == b"1"

    first, second = pool.acquire(), pool.acquire(timeout=1)
    assert {first.start, second.start} == {"warm", "restored"}
    with pytest.raises(thaw.Throttled, match="throttled"):
        pool.acquire(timeout=0.05)
    threading.Timer(0.05, first.release).start()
    third = pool.acquire(timeout=5)  # gets the returned one
    assert third.start == "warm" and third.queue_wait_seconds > 0

    with pytest.raises(thaw.GuestFault):
        third.call("null_deref")
    third.release()
    second.release()
    with pool.acquire(timeout=5) as lease:  # never the faulted one
        assert lease.call("echo", b"fine") == b"fine"
    stats = pool.stats
    assert stats["throttles"] == 1 and stats["discards"] == 1
    assert stats["resets"] >= 3 and stats["leased"] == 0


def test_pool_rejects_a_bad_policy(tmp_path, test_guest):
    snapshot_path = str(tmp_path / "fn.thaw")
    with pytest.raises(thaw.InvalidArgument, match="max_concurrency"):
        thaw.Pool.boot(test_guest, snapshot_path, config=config(),
                       max_concurrency=0, backend=BACKEND)
    with pytest.raises(thaw.InvalidArgument, match="isolation"):
        thaw.Pool.boot(test_guest, snapshot_path, config=config(),
                       isolation="sometimes", backend=BACKEND)
    with pytest.raises(thaw.InvalidArgument, match="engine"):
        thaw.Pool.boot(test_guest, snapshot_path, config=config(),
                       isolation="reset", engine="lazy", backend=BACKEND)


def test_pool_threads_never_share_a_lease(tmp_path, test_guest):
    pool = thaw.Pool.boot(test_guest, str(tmp_path / "fn.thaw"),
                          config=config(), max_concurrency=3,
                          isolation="reuse", engine="lazy", backend=BACKEND)
    held, shared, lock = set(), [], threading.Lock()

    def worker():
        for _ in range(20):
            with pool.acquire(timeout=5) as lease:
                with lock:
                    if id(lease) in held:
                        shared.append(lease)
                    held.add(id(lease))
                lease.call("echo", b"x")
                with lock:
                    held.discard(id(lease))
    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not shared
    stats = pool.stats
    assert stats["warm_starts"] + stats["restored_starts"] == 120
    assert stats["idle"] + stats["leased"] <= 3


def test_pool_reclaims_idle_sandboxes_and_their_memory(tmp_path, test_guest):
    pool = thaw.Pool.boot(
        test_guest, str(tmp_path / "fn.thaw"),
        config=config(memory_size=64 << 20, output_buffer_size=16 << 20),
        max_concurrency=3, isolation="reuse", engine="lazy", backend=BACKEND,
        idle_reclaim=0.3, call_timeout=10)
    before = _rss_kib()
    leases = [pool.acquire(timeout=5) for _ in range(3)]
    for lease in leases:
        assert len(lease.call("reply_bytes", b"8388608")) == 8 << 20
    for lease in leases:
        lease.release()
    busy = _rss_kib()
    assert pool.stats["idle"] == 3 and busy - before > 24 * 1024
    deadline = time.time() + 10
    while pool.stats["reclaimed"] < 3 and time.time() < deadline:
        time.sleep(0.05)
    assert pool.stats["idle"] == 0 and pool.stats["reclaimed"] == 3
    assert busy - _rss_kib() > 20 * 1024


def _start_nginx(root):
    """nginx on a free loopback port serving root/www (PUT allowed)."""
    import shutil
    import socket
    import subprocess
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (scripts/setup.sh installs it)")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (root / "www").mkdir()
    (root / "tmp").mkdir()
    conf = root / "nginx.conf"
    user = "user root;\n" if os.getuid() == 0 else ""
    conf.write_text(
        f"{user}error_log {root}/error.log;\npid {root}/nginx.pid;\n"
        "events {}\nhttp {\n  access_log off;\n"
        f"  client_body_temp_path {root}/tmp/body;\n"
        f"  proxy_temp_path {root}/tmp/proxy;\n"
        f"  fastcgi_temp_path {root}/tmp/fastcgi;\n"
        f"  uwsgi_temp_path {root}/tmp/uwsgi;\n"
        f"  scgi_temp_path {root}/tmp/scgi;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {root}/www;\n"
        "    client_max_body_size 0;\n"
        "    location / { dav_methods PUT; create_full_put_path on; } }\n}\n")
    subprocess.run(["nginx", "-p", str(root), "-c", str(conf),
                    "-g", "daemon on;"], check=True)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return port
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("nginx did not answer")


def test_push_restore_by_url_and_pull(tmp_path, snapshot_guest, monkeypatch):
    """A snapshot in a remote store (nginx on loopback): pushed, opened and
    restored by URL through the host cache, and pulled back."""
    import signal
    port = _start_nginx(tmp_path)
    try:
        monkeypatch.setenv("THAW_CACHE_DIR", str(tmp_path / "cache"))
        local = str(tmp_path / "fn.thaw")
        with booted(snapshot_guest, memory_size=64 << 20) as vm:
            table = vm.call("table_sum")
            vm.snapshot(local)
        url = f"http://127.0.0.1:{port}/fns/fn.thaw"
        thaw.push(local, url)
        snapshot = thaw.Snapshot(url)
        assert snapshot.path == url
        with snapshot.restore(engine="lazy", backend=BACKEND) as clone:
            assert clone.call("table_sum") == table
        stats = snapshot.remote_stats
        assert stats["frames_fetched"] > 0 and stats["requests"] >= 2
        assert thaw.inspect(url)["memory_size"] == 64 << 20
        pulled = str(tmp_path / "pulled.thaw")
        thaw.pull(url, pulled)
        assert open(pulled, "rb").read() == open(local, "rb").read()
        with pytest.raises(thaw.Error, match="404"):
            thaw.Snapshot(url + ".missing")
    finally:
        pid = int((tmp_path / "nginx.pid").read_text())
        os.kill(pid, signal.SIGTERM)
