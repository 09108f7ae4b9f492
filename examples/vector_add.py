"""Add two vectors on an emulated Strix NPU through the XRT-like runtime API.

    python examples/vector_add.py [--chip npu4]
"""

from __future__ import annotations

import argparse

import numpy as np

from xdna_emu import Emulator
from xdna_emu.runtime import Device


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chip", default="npu4")
    args = ap.parse_args()
    with Emulator(chip=args.chip, private=True) as emu, Device.open(socket=emu.socket) as dev:
        ctx = dev.context()
        a = dev.buffer(np.arange(4096, dtype=np.int32))
        b = dev.buffer(np.full(4096, 7, dtype=np.int32))
        out = dev.buffer(np.zeros(4096, dtype=np.int32))
        run = ctx.run("add", a, b, out)
        state = run.wait(timeout=5)
        result = out.read()
        ok = state == "completed" and (result == np.arange(4096) + 7).all()
        print(f"{args.chip}: add of 4096 int32 -> {state}, result {'correct' if ok else 'WRONG'}")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
