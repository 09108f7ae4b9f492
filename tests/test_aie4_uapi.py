"""AIE4 through the UAPI under `xdna-emu exec` (docs/spec/aie4.md §8): a DEV BO is a plain
buffer, so one larger than AIE2's 512 MiB heap cap is accepted and the per-client BO
accounting (GET_ARRAY BO_USAGE) counts it as internal with heap 0."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXEC = [sys.executable, "-m", "xdna_emu", "exec"]


def test_dev_bo_accounting_on_aie4() -> None:
    prog = textwrap.dedent("""
        import errno, os
        from xdna_emu import uapi_table as T
        from xdna_emu.uapi import AccelFile, _addr

        def usage(f):
            buf = bytearray(T.BO_USAGE.pack(pid=os.getpid()))
            f.ioctl("AMDXDNA_GET_ARRAY", param=T.const("DRM_AMDXDNA_BO_USAGE"),
                    element_size=len(buf), num_element=1, buffer=_addr(buf))
            u = T.BO_USAGE.unpack(buf)
            return u["total_usage"], u["internal_usage"], u["heap_usage"]

        with AccelFile() as f:
            base = usage(f)
            big = f.create_bo(T.const("AMDXDNA_BO_DEV"), 600 << 20)  # above AIE2's cap
            share = f.create_bo(T.const("AMDXDNA_BO_SHARE"), 1 << 20)
            t, i, h = usage(f)
            assert (t - base[0], i - base[1], h) == ((601 << 20), (600 << 20), 0), (base, t, i, h)
            try:
                f.create_bo(T.const("AMDXDNA_BO_DEV_HEAP"), 64 << 20)
            except OSError as e:
                assert e.errno == errno.EINVAL
            else:
                raise AssertionError("a DEV heap on AIE4")
            f.close_bo(big)
            f.close_bo(share)
            assert usage(f) == base
        print("aie4 uapi ok")
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([*EXEC, "--chip", "npu3", "--", sys.executable, "-c", prog],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0 and "aie4 uapi ok" in proc.stdout, proc.stdout + proc.stderr
