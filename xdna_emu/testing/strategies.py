"""Hypothesis strategies for fuzzing the device: values drivers write, good and hostile.

Integers lean on the numbers the firmware compares against (magics, ring sizes, the
edges of ranges) so a few hundred examples reach the checks behind them.
"""

from __future__ import annotations

from hypothesis import strategies as st

from ..fw.image import MAGIC as IMAGE_MAGIC
from ..fw.messages import (
    LAYOUTS,
    MGMT_INFO_MAGIC,
    MSG_ID_MAGIC,
    TOMBSTONE,
    Opcode,
    PspCmd,
    SmuCmd,
)
from ..fw.messages import (
    PSP_STATUS_READY as BIT31,
)
from ..kernels import MAGIC as KERNEL_MAGIC

OPCODES = sorted(int(o) for o in Opcode)
#: interesting 32-bit values: magics, ring-size edges, sign and range edges
MAGICS = (0, 1, 2, 3, 4, 0x10, 0x7FF, 0x800, 0xFFC, 0x1000, 0x1004, 0x2000, 0x10000,
          0x7FFFFFFF, BIT31, 0xFFFFFFFF, TOMBSTONE, MSG_ID_MAGIC, MSG_ID_MAGIC | 0xFF,
          MGMT_INFO_MAGIC, KERNEL_MAGIC, int.from_bytes(IMAGE_MAGIC[:4], "little"))

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.one_of(st.sampled_from(MAGICS), st.integers(0, 0xFFFFFFFF))
small = st.integers(0, 7)
opcodes = st.one_of(st.sampled_from(OPCODES), st.integers(0, 0xFFFFFFFF))
known_opcodes = st.sampled_from([int(o) for o in LAYOUTS])
psp_cmds = st.one_of(st.sampled_from([int(c) for c in PspCmd]), st.integers(0, 8))
smu_cmds = st.one_of(st.sampled_from([int(c) for c in SmuCmd]), st.integers(0, 12))
ticks = st.one_of(st.just(0), st.integers(1, 10_000), st.integers(1, 5_000_000_000))
payloads = st.binary(max_size=96)
#: malformation flags of a posted message (xdna_emu.fuzz.ops LIE_SIZE..NO_KICK); 0 = good
post_flags = st.one_of(st.just(0), st.just(0), st.sampled_from([1 << i for i in range(8)]),
                       st.integers(0, 0xFF))
#: ``submit`` kinds: kernel kind + 6 × form (xdna_emu.fuzz.ops.SUBMIT_FORMS: slot types, debug BO)
kernel_kinds = st.integers(0, 35)


@st.composite
def request_payload(draw: st.DrawFn, opcode: int) -> bytes:
    """A payload of the opcode's request size (mostly), filled with drawn bytes."""
    lay = LAYOUTS.get(opcode)  # type: ignore[call-overload]
    if lay is not None and draw(st.booleans()):
        size = lay.req.size
        return draw(st.binary(min_size=size, max_size=size))
    return draw(payloads)
