"""Syncobjs across processes under `xdna-emu exec` (docs/spec/uapi.md §6): the C program
tests/c/uapi_fence_test.c per chip, and the same from Python (xdna_emu.uapi.AccelFile)."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.test_uapi_c import CC, EXEC, _compile, run_python

pytestmark = pytest.mark.skipif(CC is None, reason="needs a C compiler")


@pytest.fixture(scope="module")
def fence_test(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile(tmp_path_factory, "uapi_fence_test")


@pytest.mark.parametrize("chip", ["npu1", "npu4"])
def test_c_fences_across_processes(fence_test: Path, chip: str) -> None:
    proc = subprocess.run([*EXEC, "--chip", chip, "--", str(fence_test)], capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "uapi_fence_test: " in proc.stdout and " 0 failed" in proc.stdout, proc.stdout


_CHILD = textwrap.dedent("""
    import socket, sys
    from xdna_emu.uapi import AccelFile
    sock = socket.socket(fileno=int(sys.argv[1]))
    _, fds, _, _ = socket.recv_fds(sock, 16, 3)
    with AccelFile() as g:
        tl, done = (g.fd_to_syncobj(fd) for fd in fds[:2])
        g.syncobj_wait(tl, 4, timeout_s=20, for_submit=True)  # the parent's point 4
        assert g.syncobj_query(tl) == 4
        into = g.syncobj_create()
        g.import_sync_file(into, fds[2], point=9)  # the parent's sync file
        assert g.syncobj_query(into) == 9
        g.syncobj_signal(done)
""")

_PARENT = textwrap.dedent("""
    import errno, os, select, socket, subprocess, sys
    from xdna_emu import uapi_table as T
    from xdna_emu.uapi import AccelFile

    def refused(call, err):
        try:
            call()
        except OSError as e:
            assert e.errno == err, (e.errno, err)
        else:
            raise AssertionError("accepted")

    with AccelFile() as f:
        tl, done = f.syncobj_create(), f.syncobj_create()
        a, c = socket.socketpair()
        child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(c.fileno())],
                                 pass_fds=[c.fileno()])
        sig = f.syncobj_create(signaled=True)
        sync_file = f.export_sync_file(sig)
        assert select.select([sync_file], [], [], 0)[0] == [sync_file]  # signalled: readable
        refused(lambda: f.export_sync_file(tl, point=1), errno.EINVAL)  # no fence yet
        refused(lambda: f.export_sync_file(999), errno.ENOENT)
        refused(lambda: f.import_sync_file(tl, f.syncobj_to_fd(sig)), errno.EINVAL)  # no sync file
        fds = [f.syncobj_to_fd(tl), f.syncobj_to_fd(done), sync_file]
        socket.send_fds(a, [b"x"], fds)  # an unrelated process, over SCM_RIGHTS
        refused(lambda: f.syncobj_wait(done), errno.EINVAL)  # no fence yet
        f.syncobj_signal(tl, 4)
        f.syncobj_wait(done, timeout_s=20, for_submit=True)  # the child's signal
        assert child.wait(timeout=60) == 0
        assert f.syncobj_query(tl) == 4
        # bad input: an fd that is not ours, unknown flags, a pad, a stale handle
        r, w = os.pipe()
        refused(lambda: f.fd_to_syncobj(r), errno.EINVAL)
        refused(lambda: f.ioctl("SYNCOBJ_HANDLE_TO_FD", handle=tl, flags=0x100), errno.EINVAL)
        refused(lambda: f.ioctl("SYNCOBJ_FD_TO_HANDLE", fd=fds[0], pad=1), errno.EINVAL)
        f.syncobj_destroy(done)
        refused(lambda: f.syncobj_to_fd(done), errno.EINVAL)
        refused(lambda: f.syncobj_signal(done), errno.ENOENT)
        again = f.fd_to_syncobj(fds[1])  # the fd still holds it
        f.syncobj_wait(again)
        f.syncobj_wait(tl, 4)
        refused(lambda: f.syncobj_wait(tl, 5, timeout_s=0.05, for_submit=True), errno.ETIME)
    print("python fences ok")
""")


def test_python_fences_across_processes() -> None:
    run_python("npu4", "python fences ok", "-c", _PARENT, _CHILD)
