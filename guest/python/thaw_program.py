"""Serve thaw calls from a Python program running as a thaw guest.

A Python function runs in thaw as an unmodified Linux program (Debian's
python3): its init (imports, loading a model, warming caches) runs once, at
Vm::Boot(); thaw snapshots it where it first waits for a request, and every
restore starts from there. This module is the guest side of the request
channel (include/thaw/program.h, doc/guest-abi.md "Linux programs"); it
needs nothing but the standard library.

    import thaw_program

    def handle(data: bytes) -> bytes:
        return data.upper()

    thaw_program.serve({"handle": handle})

A function takes the call's input as bytes and returns bytes, str or None.
An exception fails the call; its message and traceback become the error
the host sees. `before_snapshot` runs before a snapshot is written (drop
secrets there); `after_restore` runs before the first call after a restore
or reset, after `random` was reseeded (refresh anything that must be
unique per instance there).
"""
import os
import random
import struct
import traceback

FD = 3
_REQUEST = struct.Struct("<IHHII")  # magic, kind, flags, name_size, input_size
_REPLY = struct.Struct("<IIQ")      # magic, status, size
_REQUEST_MAGIC = 0x51524854
_REPLY_MAGIC = 0x50524854
_KIND_CALL = 0
_KIND_BEFORE_SNAPSHOT = 1
_FLAG_RESTORED = 1
_NO_SUCH_FUNCTION = 0x7FFFFFFF
_FAILED = 1


def _read_exact(size):
    parts = []
    while size > 0:
        chunk = os.read(FD, size)
        if not chunk:
            raise EOFError("thaw request channel closed")
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _write_all(data):
    view = memoryview(data)
    while view:
        written = os.write(FD, view)
        view = view[written:]


def _reply(status, data=b""):
    _write_all(_REPLY.pack(_REPLY_MAGIC, status, len(data)) + data)


def _as_bytes(result):
    if result is None:
        return b""
    if isinstance(result, str):
        return result.encode()
    return bytes(result)


def serve(functions, before_snapshot=None, after_restore=None):
    """Serves calls by name from `functions` ({name: callable}) forever."""
    while True:
        magic, kind, flags, name_size, input_size = _REQUEST.unpack(
            _read_exact(_REQUEST.size))
        if magic != _REQUEST_MAGIC:
            raise RuntimeError("thaw: bad request magic 0x%x" % magic)
        name = _read_exact(name_size).decode("utf-8", "replace")
        data = _read_exact(input_size)
        if flags & _FLAG_RESTORED:
            random.seed()  # fresh entropy from the restored instance
            if after_restore is not None:
                after_restore()
        if kind == _KIND_BEFORE_SNAPSHOT:
            try:
                if before_snapshot is not None:
                    before_snapshot()
                _reply(0)
            except Exception:  # noqa: BLE001 - reported to the host
                _reply(_FAILED, traceback.format_exc().encode())
            continue
        function = functions.get(name)
        if function is None:
            _reply(_NO_SUCH_FUNCTION)
            continue
        try:
            result = _as_bytes(function(data))
        except Exception:  # noqa: BLE001 - reported to the host
            _reply(_FAILED, traceback.format_exc().encode())
            continue
        _reply(0, result)
