"""The shim's control-protocol header is generated from xdna_emu/protocol.py: it says exactly
what protocol.py says, compiles, and the built copy is not stale."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from xdna_emu import protocol as P
from xdna_emu import protogen

ROOT = Path(__file__).resolve().parents[1]


def c_defines(text: str | None = None) -> dict[str, int]:
    out = {}
    for m in re.finditer(r"^#define (XDNA_PROTO_\w+) (0x[0-9A-Fa-f]+|\d+)u?\s*$",
                         text if text is not None else protogen.render(), re.M):
        out[m.group(1)[len("XDNA_PROTO_"):]] = int(m.group(2), 0)
    return out


def python_values() -> dict[str, int]:
    """The C name (without prefix) -> the value protocol.py gives it."""
    vals: dict[str, int] = {
        "MAJOR": P.PROTO_MAJOR, "MINOR": P.PROTO_MINOR, "MAX_MSG_SIZE": P.MAX_MSG_SIZE,
        "MAX_MSG_FDS": P.MAX_MSG_FDS, "HEADER_SIZE": P.HEADER.size,
        "VERSION_HDR_SIZE": P.VERSION_HDR.size, "DEVICE_INFO_SIZE": P.DEVICE_INFO.size,
        "REGION_INFO_SIZE": P.REGION_INFO.size, "IRQ_INFO_SIZE": P.IRQ_INFO.size,
        "SET_IRQS_SIZE": P.SET_IRQS.size, "REGION_ACCESS_SIZE": P.REGION_ACCESS.size,
        "DMA_MAP_SIZE": P.DMA_MAP.size, "DMA_UNMAP_SIZE": P.DMA_UNMAP.size,
        "WRITE_LOG_INFO_SIZE": P.WRITE_LOG_INFO.size, "LOG_ENTRY_SIZE": P.LOG_ENTRY.size,
        "MGMT_PROXY_HDR_SIZE": P.MGMT_PROXY_HDR.size, "LOG_ENTRIES": P.LOG_ENTRIES,
        "IRQ_INTX": P.IRQ_INTX, "IRQ_MSI": P.IRQ_MSI, "IRQ_MSIX": P.IRQ_MSIX,
        "IRQ_ERR": P.IRQ_ERR, "IRQ_REQ": P.IRQ_REQ,
    }  # fmt: skip
    for cmd in P.Cmd:
        vals[f"CMD_{cmd.name}"] = int(cmd)
    for name in dir(P):
        if name.isupper() and isinstance(getattr(P, name), int) and not isinstance(getattr(P, name), bool):
            vals.setdefault(name, getattr(P, name))
    return vals


def test_every_c_constant_matches_python() -> None:
    c = c_defines()
    py = python_values()
    assert len(c) > 50
    missing = sorted(set(c) - set(py))
    assert not missing, f"C constants with no Python twin: {missing}"
    wrong = {k: (c[k], py[k]) for k in c if c[k] != py[k]}
    assert not wrong, f"C != Python: {wrong}"
    unmirrored = set(py) - set(c) - {"PROTO_MAJOR", "PROTO_MINOR"}  # C: MAJOR, MINOR
    assert not unmirrored, f"Python constants missing from the C header: {sorted(unmirrored)}"


@pytest.mark.parametrize("name", [
    "TYPE_COMMAND", "TYPE_REPLY", "FLAG_NO_REPLY", "FLAG_ERROR", "REGION_CONFIG", "CONFIG_SIZE",
    "IRQ_DATA_EVENTFD", "IRQ_ACTION_TRIGGER", "DMA_READ", "DMA_WRITE", "DMA_SVA", "CTRL_MAGIC",
    "CTRL_OFF_HEAD", "CTRL_OFF_TAIL", "CTRL_OFF_ALIVE", "CTRL_OFF_ENTRY0", "CTRL_SIZE",
])  # fmt: skip
def test_constants_the_shim_uses_are_mirrored(name: str) -> None:
    assert c_defines()[name] == getattr(P, name)


def test_every_command_is_mirrored() -> None:
    c = c_defines()
    for cmd in P.Cmd:
        assert c[f"CMD_{cmd.name}"] == int(cmd)


def test_built_header_is_current() -> None:
    built = ROOT / "csrc/generated" / protogen.HEADER_NAME
    if not built.exists():
        pytest.skip("shim not built in this tree")
    assert built.read_text() == protogen.render(), f"{built} is stale: rebuild the shim"


def test_c_layouts_match_python(tmp_path: Path) -> None:
    """Compile the header and print every struct's size and field offsets."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    protogen.write(tmp_path)
    lines = [f'#include "{protogen.HEADER_NAME}"', "#include <stdio.h>", "int main(void) {"]
    want = []
    for s in P.LAYOUTS.values():
        lines.append(f'    printf("{s.name} %zu\\n", sizeof(struct xdna_proto_{s.name}));')
        want.append(f"{s.name} {s.size}")
        for field, off in s.offsets.items():
            lines.append(f'    printf("{s.name}.{field} %zu\\n", offsetof(struct xdna_proto_{s.name}, {field}));')
            want.append(f"{s.name}.{field} {off}")
    lines += ["    return 0;", "}"]
    (tmp_path / "probe.c").write_text("\n".join(lines) + "\n")
    subprocess.run([cc, "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", str(tmp_path),
                    str(tmp_path / "probe.c"), "-o", str(tmp_path / "probe")], check=True,
                   capture_output=True)
    out = subprocess.run([str(tmp_path / "probe")], check=True, capture_output=True, text=True)
    assert out.stdout.split("\n")[:-1] == want
