"""The generators' one way to write files (xdna_emu/genfile.py): unchanged text is never
rewritten, so make and the compiler see no new input when nothing moved."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xdna_emu import genfile, kernelgen, protogen


def test_unchanged_text_is_not_rewritten_and_changed_text_is(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir"  # made when missing
    (a, b) = genfile.write_files(out, [("a.h", "one\n"), ("b.h", "two\n")])
    assert (a.read_text(), b.read_text()) == ("one\n", "two\n")
    os.utime(a, ns=(1, 1))
    os.utime(b, ns=(1, 1))
    genfile.write_files(out, [("a.h", "one\n"), ("b.h", "TWO\n")])
    assert a.stat().st_mtime_ns == 1  # same text: untouched
    assert b.stat().st_mtime_ns != 1 and b.read_text() == "TWO\n"


def test_a_generator_command_line_writes_where_asked_and_prints_the_paths(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert genfile.main(protogen.write, [str(tmp_path)]) == 0
    path = tmp_path / protogen.HEADER_NAME
    assert capsys.readouterr().out == f"{path}\n"
    assert path.read_text() == protogen.render()
    assert genfile.main(kernelgen.write, [str(tmp_path)]) == 0
    assert (tmp_path / kernelgen.HEADER_NAME).read_text() == kernelgen.render()


def test_the_default_directory_is_the_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Path] = []
    monkeypatch.setattr("sys.argv", ["gen"])
    genfile.main(lambda d: seen.append(d) or [], None)
    assert seen == [Path(genfile.__file__).resolve().parents[1] / "csrc" / "generated"]
