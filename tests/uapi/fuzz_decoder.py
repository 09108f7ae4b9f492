"""Random ioctls against a DRM file, run under `xdna-emu exec` by tests/test_uapi_c.py.

Every ioctl number we serve (and unknown ones) gets random argument bytes; each pointer
member is 0, an inaccessible page or a scratch buffer, so the decoder's checks see every
shape of input while nothing of this process can be hit by a wild write. The run passes
when every call returns 0 or raises OSError with an errno the decoder may give, and
afterwards this file and one opened before the run still work (docs/spec/uapi.md §6).
Deterministic: the seed is argv[1]. Waits are bounded (WAIT_CMD timeout <= 5 ms, syncobj
waits already expired, TRANSFER without WAIT_FOR_SUBMIT, which waits with no limit as the
kernel's does).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import random
import sys

from xdna_emu import uapi_table as T
from xdna_emu.uapi import AccelFile

ALLOWED = {errno.EINVAL, errno.EFAULT, errno.ENOENT, errno.ENOTTY, errno.EBUSY, errno.EAGAIN,
           errno.ENOMEM, errno.ENOSPC, errno.EOPNOTSUPP, errno.ETIME, errno.EBADF,
           errno.EACCES, errno.EPERM, errno.EIO, errno.E2BIG, errno.ESHUTDOWN}
POINTERS = {"qos_p", "args", "buffer", "name", "date", "desc", "param_val", "handles",
            "points", "vaddr", "cmd_handles"}


def main(seed: int, rounds: int) -> int:
    rng = random.Random(seed)
    scratch = bytearray(8192)
    scratch_addr = ctypes.addressof((ctypes.c_char * len(scratch)).from_buffer(scratch))
    prot_none = _prot_none_page()
    before = AccelFile()
    f = AccelFile()
    ioctls = list(T.IOCTLS)
    unknown = [T.ioc("rw", nr, 16) for nr in (0x4B, 0x3F, 0xFE)] + [0x5401]
    for _ in range(rounds):
        if rng.random() < 0.05:
            req, raw = rng.choice(unknown), bytearray(rng.randbytes(16))
        else:
            io = rng.choice(ioctls)
            vals = {}
            for mb in io.layout.members:
                if not mb.count or isinstance(mb.type, T.Layout) or mb.count > 1:
                    continue
                if mb.name in POINTERS and not (io.name == "AMDXDNA_EXEC_CMD" and
                                                mb.name == "cmd_handles" and rng.random() < 0.5):
                    vals[mb.name] = rng.choice([0, prot_none, scratch_addr])
                else:
                    bits = mb.type.size * 8
                    vals[mb.name] = rng.choice([0, 1, 2, 3, rng.getrandbits(bits),
                                                rng.getrandbits(min(bits, 12))])
                    if mb.type.fmt in "bhiq":  # signed
                        vals[mb.name] -= (vals[mb.name] >> (bits - 1)) << bits
            if io.name == "AMDXDNA_WAIT_CMD":
                vals["timeout"] = rng.randint(1, 5)
            if io.name == "SYNCOBJ_TRANSFER":  # WAIT_FOR_SUBMIT waits with no limit, by design
                vals["flags"] = 0
            if io.name in ("SYNCOBJ_WAIT", "SYNCOBJ_TIMELINE_WAIT"):
                vals["timeout_nsec"] = 0
            if io.name == "AMDXDNA_CREATE_BO":
                vals["size"] = vals.get("size", 0) % (16 << 20)
                vals["vaddr"] = 0 if rng.random() < 0.8 else vals.get("vaddr", 0)
            if io.name == "SET_CLIENT_NAME":
                vals["name_len"] = vals.get("name_len", 0) % 128
            if io.name == "VERSION":
                for k in ("name_len", "date_len", "desc_len"):
                    vals[k] = vals.get(k, 0) % 64
            raw = bytearray(io.layout.pack(**vals))
            req = io.number
        scratch[:] = bytes(rng.randbytes(64)) + bytes(len(scratch) - 64)
        try:
            fcntl.ioctl(f.fd, req, raw, True)
        except OSError as exc:
            if exc.errno not in ALLOWED:
                print(f"ioctl {req:#x} {bytes(raw).hex()}: unexpected errno {exc.errno}")
                return 1
    for af in (f, before):  # both files still work
        v = af.version()
        assert v["name_str"] == "amdxdna", v
        h = af.create_bo(T.const("AMDXDNA_BO_SHARE"), 4096)
        m = af.map_bo(h, 4096)
        m[:3] = b"xyz"
        assert af.map_bo(h, 4096)[:3] == b"xyz"
    print(f"fuzz ok: {rounds} ioctls")
    return 0


def _prot_none_page() -> int:
    """A page this process may not touch (libc mmap, PROT_NONE, kept for the run)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    addr = libc.mmap(None, 4096, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)  # PROT_NONE
    assert addr not in (None, ctypes.c_void_p(-1).value)
    return int(addr)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
