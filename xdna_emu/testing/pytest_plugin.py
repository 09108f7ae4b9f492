"""pytest plugin (entry point ``pytest11``): fixtures for a running emulator and a probed shim.

Parametrise by chip by overriding the ``xdna_chip`` fixture::

    @pytest.mark.parametrize("xdna_chip", ["npu1", "npu4"])
    def test_x(xdna_shim): ...

The C extension is imported lazily so the plugin loads even where the shim is not built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def xdna_chip() -> str:
    """The chip the emulator fixtures start; override with parametrize."""
    return "npu4"


@pytest.fixture
def xdna_datapath() -> str | None:
    """The daemon job path the emulator fixtures start with (docs/spec/jobs.md §7): ``"c"``,
    ``"python"``, or None for the environment's choice. Parametrise it to run a test both
    ways: ``@pytest.mark.parametrize("xdna_datapath", ["c", "python"])``."""
    return None


@pytest.fixture
def xdna_runtime_dir(tmp_path_factory: pytest.TempPathFactory,
                     monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private runtime dir per test, so discovery sees only this test's daemons. It is also
    exported as ``$XDNA_EMU_RUNTIME_DIR``, so ``Device.open()``, ``xdna-emu probe`` and
    ``xdna-emu status`` run from the test find the fixture's daemon."""
    from xdna_emu.rundir import RUNTIME_DIR_ENV

    path = tmp_path_factory.mktemp("xdna-rt")
    path.chmod(0o700)  # ours, just made: private as every runtime dir must be
    monkeypatch.setenv(RUNTIME_DIR_ENV, str(path))
    return path


@pytest.fixture
def xdna_emulator_factory(xdna_runtime_dir: Path,
                          xdna_datapath: str | None) -> Iterator[Callable[..., Any]]:
    """Start any number of emulators (on the ``xdna_datapath`` job path); all are stopped
    at teardown."""
    from xdna_emu.datapath import DATAPATH_ENV
    from xdna_emu.emulator import Emulator

    started: list[Emulator] = []

    def start(chip: str = "npu4", **kw: Any) -> Emulator:
        kw.setdefault("runtime_dir", xdna_runtime_dir)
        if xdna_datapath is not None:
            kw["env"] = {DATAPATH_ENV: xdna_datapath, **(kw.get("env") or {})}
        emu = Emulator(chip=chip, **kw).start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def xdna_emulator(xdna_chip: str, xdna_emulator_factory: Callable[..., Any]) -> Any:
    """A running daemon for ``xdna_chip``."""
    return xdna_emulator_factory(xdna_chip)


@pytest.fixture(scope="session")
def xdna_firmware_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good firmware images for every chip, made once per session."""
    from xdna_emu.chips import emulated_chip_names
    from xdna_emu.fw.image import write_firmware

    out = tmp_path_factory.mktemp("firmware")
    for name in emulated_chip_names():
        write_firmware(name, out)
    return out


@pytest.fixture
def xdna_shim(xdna_emulator: Any, xdna_firmware_dir: Path) -> Iterator[Any]:
    """A C driver shim attached to ``xdna_emulator`` and fully probed."""
    from xdna_emu.shim import Shim

    shim = Shim.open(xdna_emulator.socket)
    try:
        shim.probe(xdna_firmware_dir)
        yield shim
    finally:
        shim.close()
