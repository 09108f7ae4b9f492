"""A job end to end through AccelFile's helpers, run under `xdna-emu exec` by
tests/test_uapi_py.py: heap, DEV/SHARE/CMD BOs, a context with a CU table, SYNC_BO,
EXEC_CMD of a reference-kernel ``add`` and WAIT_CMD; then a second process (started from
here, opening the device itself) reads this one's contexts and BO usage through
GET_ARRAY and imports a BO this one exported (docs/spec/uapi.md §4, §6).

``py_job.py run`` is the owner; it starts ``py_job.py read PID CTX FD USAGE...`` itself.
Prints "py_job ok" on success; any failed check raises (a non-zero exit).
"""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from xdna_emu import kernels as K
from xdna_emu import uapi_table as T
from xdna_emu.shim import ErtState, ert_start_npu
from xdna_emu.uapi import AccelFile, _addr

N = 1024  # int32 elements per buffer
PAGE = 4096
MAGIC = 0xC0FFEE
USAGE = ("total_usage", "internal_usage", "heap_usage")


def refused(err: int, call: Callable[[], Any]) -> None:
    """``call`` fails with errno ``err``."""
    try:
        call()
    except OSError as e:
        assert e.errno == err, (e, errno.errorcode.get(err))
    else:
        raise AssertionError(f"accepted, want {errno.errorcode.get(err)}")


def usage(f: AccelFile) -> tuple[int, ...]:
    u = f.bo_usage()
    return tuple(int(u[k]) for k in USAGE)


def grew(before: tuple[int, ...], after: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(b - a for a, b in zip(before, after, strict=True))


def run() -> None:
    SHARE, CMD = T.const("AMDXDNA_BO_SHARE"), T.const("AMDXDNA_BO_CMD")
    with AccelFile() as f:
        # the accounting of each BO type, as the driver keeps it (docs/spec/uapi.md §6)
        assert usage(f) == (0, 0, 0), usage(f)
        instr = f.dev_bo(PAGE)  # the heap's first chunk, then a DEV BO in it
        assert usage(f) == (f.heap_len, f.heap_len, PAGE), usage(f)
        cu = f.dev_bo(PAGE)
        at = usage(f)
        a, b, out = (f.create_bo(SHARE, N * 4) for _ in range(3))
        assert grew(at, usage(f)) == (3 * N * 4, 0, 0)
        at = usage(f)
        cmd = f.create_bo(CMD, PAGE)
        assert grew(at, usage(f)) == (PAGE, PAGE, 0)

        view = f.map_bo(instr, PAGE)
        view[:K.DESC.size] = K.encode(K.Desc(K.Kernel.ADD, K.DType.INT32, count=N))
        bufs = {h: f.map_bo(h, N * 4) for h in (a, b, out)}
        va, vb, vo = (np.frombuffer(bufs[h], dtype=np.int32) for h in (a, b, out))
        va[:] = np.arange(N)
        vb[:] = 1000 - 3 * np.arange(N)
        vo[:] = -1
        for h in (a, b, out):
            f.sync_bo(h, N * 4)

        at = usage(f)
        ctx = f.create_hwctx(gops=1, fps=30)
        handle, timeline = ctx["handle"], ctx["syncobj_handle"]
        assert handle and timeline, ctx
        made = grew(at, usage(f))  # the context's own DEV BOs (its command lists)
        assert made[:2] == (0, 0) and made[2] > 0, made
        f.config_cu(handle, [(cu, 0)])

        addr = {h: f.bo_info(h)["xdna_addr"] for h in (instr, a, b, out)}
        pkt = ert_start_npu(addr[instr], K.DESC.size, [addr[a], addr[b], addr[out]])
        cview = f.map_bo(cmd, PAGE)
        cview[:len(pkt)] = pkt
        seq = f.exec_cmd(handle, cmd, [a, b, out, instr])
        assert seq >= 1, seq
        f.wait_cmd(handle, seq, timeout_ms=10000)
        assert struct.unpack_from("<I", cview)[0] & 0xF == ErtState.COMPLETED
        f.sync_bo(out, N * 4, to_device=False)
        assert np.array_equal(vo, va + vb), vo[:8]
        assert f.syncobj_query(timeline) == seq  # job N ended: point N signalled

        # a BO for the other process
        shared = f.create_bo(SHARE, 2 * PAGE)
        sview = f.map_bo(shared, 2 * PAGE)
        struct.pack_into("<I", sview, 0, MAGIC)
        dmabuf = f.prime_export(shared, cloexec=False)
        assert f.prime_import(dmabuf) == shared  # the exporter gets its own handle back

        mine = [e for e in f.hw_contexts() if e["pid"] == os.getpid()]
        assert [e["context_id"] for e in mine] == [handle], mine
        reader = subprocess.run([sys.executable, __file__, "read", str(os.getpid()),
                                 str(handle), str(dmabuf), *map(str, usage(f))],
                                pass_fds=[dmabuf], timeout=120)
        assert reader.returncode == 0, reader.returncode
        assert struct.unpack_from("<I", sview, 4)[0] == MAGIC + 1  # the reader's write
        os.close(dmabuf)

        # bad input through the helpers, each with the driver's errno
        refused(errno.EINVAL, lambda: f.exec_cmd(handle + 100, cmd, [a]))
        refused(errno.EINVAL, lambda: f.exec_cmd(handle, a, [a]))  # not a CMD BO
        refused(errno.EINVAL, lambda: f.wait_cmd(handle + 100, seq))
        refused(errno.EINVAL, lambda: f.wait_cmd(handle, seq + 50, timeout_ms=10))  # never submitted
        refused(errno.EINVAL, lambda: f.config_cu(handle, []))
        refused(errno.EINVAL, lambda: f.config_cu(handle, [(4000, 0)]))
        refused(errno.EOPNOTSUPP, lambda: f.config_hwctx(handle, "CONFIG_OPCODE_TIMEOUT"))
        refused(errno.EINVAL, lambda: f.sync_bo(a, 1, offset=N * 4))
        refused(errno.ENOENT, lambda: f.sync_bo(4000, PAGE))
        refused(errno.EINVAL, lambda: f.prime_export(cmd))  # only SHARE BOs are exported
        refused(errno.ENOENT, lambda: f.prime_export(4000))
        r, w = os.pipe()
        refused(errno.EINVAL, lambda: f.prime_import(r))  # not a buffer of ours
        os.close(r)
        refused(errno.EBADF, lambda: f.prime_import(w + 100))
        os.close(w)
        refused(errno.EINVAL, lambda: f.create_hwctx(num_tiles=10_000))

        # a fence chain: a second context's job waits for this one's next job (DEPENDENCY
        # on its timeline), then signals a host syncobj (SIGNAL)
        other = f.create_hwctx()["handle"]
        host = f.syncobj_create()
        refused(errno.EINVAL, lambda: f.exec_dependency(other, [(timeline, seq + 1)]))  # no fence yet
        refused(errno.EINVAL, lambda: f.exec_dependency(other, []))
        refused(errno.ENOENT, lambda: f.exec_signal(other, [(4000, 1)]))
        vb[:] = 1
        cview[:len(pkt)] = pkt  # the command again, its state NEW
        first = f.exec_cmd(handle, cmd, [a, b, out, instr])  # out = a + 1
        f.exec_dependency(other, [(timeline, first)])
        cmd2 = f.create_bo(CMD, PAGE)
        pkt2 = ert_start_npu(addr[instr], K.DESC.size, [addr[out], addr[b], addr[a]])
        c2 = f.map_bo(cmd2, PAGE)
        c2[:len(pkt2)] = pkt2
        second = f.exec_cmd(other, cmd2, [out, b, a, instr])  # a = out + 1
        f.exec_signal(other, [(host, 5)])
        f.syncobj_wait(host, 5, timeout_s=20)
        assert f.syncobj_query(host) == 5 and second == 1, (f.syncobj_query(host), second)
        assert np.array_equal(va, np.arange(N) + 2), va[:8]  # the chain ran in order
        f.destroy_hwctx(other)
        del c2

        f.destroy_hwctx(handle)
        refused(errno.EINVAL, lambda: f.destroy_hwctx(handle))  # stale
        refused(errno.EINVAL, lambda: f.exec_cmd(handle, cmd, [a]))
        assert not [e for e in f.hw_contexts() if e["pid"] == os.getpid()]
        refused(errno.EINVAL, lambda: f.hw_context(os.getpid(), handle))
        del view, bufs, va, vb, vo, cview, sview
    print("py_job ok")


def read(parent: int, handle: int, fd: int, want: tuple[int, ...]) -> None:
    """The second process: the owner's context and BO usage, and its exported BO."""
    comm = open(f"/proc/{parent}/comm").read().strip()
    with AccelFile() as g:
        entries = [e for e in g.hw_contexts() if e["pid"] == parent]
        assert len(entries) == 1, entries
        e = entries[0]
        assert e["context_id"] == handle, e  # the owner's handle; hwctx_id is the firmware's
        assert e["name"] == comm[:T.HWCTX_PROC_NAME_LEN - 1], (e["name"], comm)
        assert (e["command_submissions"], e["command_completions"], e["errors"]) == (1, 1, 0), e
        assert (e["num_col"], e["gops"], e["fps"]) == (1, 1, 30), e
        assert e["priority"] == T.const("AMDXDNA_QOS_NORMAL_PRIORITY"), e
        assert e["state"] <= T.const("AMDXDNA_HWCTX_STATE_ACTIVE"), e
        by_id = g.hw_context(parent, handle)
        assert (by_id["pid"], by_id["context_id"], by_id["hwctx_id"]) == (
            parent, handle, e["hwctx_id"]), (by_id, e)
        assert by_id["command_completions"] == 1, by_id
        refused(errno.EINVAL, lambda: g.hw_context(parent, handle + 100))  # no such context
        refused(errno.EINVAL, lambda: g.hw_context(os.getpid(), handle))  # not this pid's
        u = g.bo_usage(parent)
        assert tuple(u[k] for k in USAGE) == want, (u, want)
        assert g.bo_usage()["total_usage"] == 0  # this process holds nothing yet
        room = bytearray(T.HWCTX_ENTRY.size)
        refused(errno.EOPNOTSUPP, lambda: g.ioctl(  # an unknown param
            "AMDXDNA_GET_ARRAY", param=99, element_size=len(room), num_element=1,
            buffer=_addr(room)))
        h = g.prime_import(fd)
        m = g.map_bo(h, 2 * PAGE)
        assert struct.unpack_from("<I", m, 0)[0] == MAGIC
        struct.pack_into("<I", m, 4, MAGIC + 1)
        del m


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run()
    else:
        read(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
             tuple(int(x) for x in sys.argv[5:8]))
