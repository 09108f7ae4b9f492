"""How every C header generator writes its output (docs/spec/firmware.md §10).

The generators (``chips.cgen``, ``fw.iface.cgen``, ``protogen``, ``uapigen``, ``kernelgen``)
each render text from their one Python source; this module is the one place that puts that
text on disk and the one command line they share (``python3 -m xdna_emu.<generator> [DIR]``).
A file is rewritten only when its text changed, so make and the compiler see no new input
when nothing moved.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path

#: Where the build puts every generated header (gitignored).
GENERATED = Path(__file__).resolve().parent.parent / "csrc" / "generated"


def write_if_changed(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` unless the file already holds exactly that."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def write_files(out_dir: Path, files: Iterable[tuple[str, str]]) -> list[Path]:
    """Write each ``(file name, text)`` into ``out_dir`` (made if missing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_if_changed(out_dir / name, text) for name, text in files]


def main(write: Callable[[Path], Path | list[Path]], argv: list[str] | None = None) -> int:
    """A generator's command line: write into the directory named (default the build's
    ``csrc/generated``) and print each path written."""
    args = sys.argv[1:] if argv is None else argv
    out = write(Path(args[0]) if args else GENERATED)
    for path in out if isinstance(out, list) else [out]:
        print(path)
    return 0
