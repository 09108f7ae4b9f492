"""Operator polish, tried as a new user would: version, help, BDF forms, runtime-dir
errors, the fixture's runtime dir reaching every tool, packaging."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import xdna_emu
from xdna_emu.cli import build_parser
from xdna_emu.rundir import (
    RUNTIME_DIR_ENV,
    RuntimeDirError,
    default_runtime_dir,
    prepare_runtime_dir,
)

ROOT = Path(__file__).resolve().parent.parent
#: Subcommands a kit adds (the fuzzing kit) document their options in the kit's own module.
CORE = ("run", "devices", "probe", "status", "mkfw", "demo", "bench")


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xdna_emu", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, **(env or {})))


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:  # noqa: SLF001 - argparse has no public walk
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def test_version() -> None:
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"xdna-emu {xdna_emu.__version__}"


def test_every_core_option_has_help_and_no_internal_names() -> None:
    top = build_parser()
    subs = _subparsers(top)
    assert set(CORE) <= set(subs)
    for name, parser in [("", top), *((n, subs[n]) for n in CORE)]:
        text = parser.format_help()
        for internal in ("cmd", "trace_cmd", "dest", "==SUPPRESS=="):
            assert internal not in text.replace("command", ""), (name, internal)
        for action in parser._actions:  # noqa: SLF001
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                continue
            assert action.help, (name, action.option_strings)
    # defaults and choices are shown
    assert "(default: npu4)" in subs["demo"].format_help()
    assert "npu1, " in subs["run"].format_help()
    assert "{debug,info,warning,error}" in subs["status"].format_help()


def test_missing_subcommand_names_command_not_dest() -> None:
    out = run_cli()
    assert out.returncode == 2 and out.stderr.strip() == (
        "xdna-emu: error: the following arguments are required: COMMAND")


@pytest.mark.parametrize("text, want", [
    ("c7:00.1", "0000:c7:00.1"), ("C7:00.1", "0000:c7:00.1"), ("0001:c7:1f.7", "0001:c7:1f.7"),
])  # fmt: skip
def test_short_bdf_is_accepted(text: str, want: str) -> None:
    args = build_parser().parse_args(["run", "--chip", "npu4", "--bdf", text])
    assert args.bdf == want


@pytest.mark.parametrize("text", ["c7:00", "c7:20.1", "c7:00.8", "0000:c7:00.1x", "g7:00.1"])
def test_bad_bdf_is_one_line_exit_2(text: str) -> None:
    out = run_cli("run", "--chip", "npu4", "--bdf", text)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "bad BDF" in out.stderr


def test_short_bdf_reaches_a_running_daemon(xdna_emulator) -> None:
    short = xdna_emulator.bdf.split(":", 1)[1]
    out = run_cli("status", "--bdf", short, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["bdf"] == xdna_emulator.bdf


def test_open_runtime_dir_is_refused_not_chmodded(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    rt.mkdir(mode=0o755)
    rt.chmod(0o755)
    with pytest.raises(RuntimeDirError, match="open to other users"):
        prepare_runtime_dir(rt)
    assert stat.S_IMODE(rt.stat().st_mode) == 0o755
    out = run_cli("run", "--chip", "npu4", "--runtime-dir", str(rt))
    assert out.returncode == 2, out
    assert out.stderr.count("\n") == 1 and "chmod 700" in out.stderr
    assert out.stderr.startswith("xdna-emu: error: runtime dir ")
    assert stat.S_IMODE(rt.stat().st_mode) == 0o755 and not any(rt.iterdir())


@pytest.mark.parametrize("how", ["file", "readonly", "missing-parent-file"])
def test_unwritable_runtime_dir_is_one_line_exit_2(tmp_path: Path, how: str) -> None:
    if how == "file":
        rt = tmp_path / "f"
        rt.write_text("")
    elif how == "readonly":
        if os.getuid() == 0:
            pytest.skip("root writes to a read-only directory")
        rt = tmp_path / "ro"
        rt.mkdir(mode=0o500)
    else:
        (tmp_path / "f").write_text("")
        rt = tmp_path / "f" / "sub"
    for args in (["run", "--chip", "npu4", "--runtime-dir", str(rt)], ["devices"],
                 ["status"]):
        out = run_cli(*args, env={RUNTIME_DIR_ENV: str(rt)})
        assert out.returncode == 2, (args, out)
        assert out.stderr.count("\n") == 1 and "runtime dir" in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr


def test_runtime_dir_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    monkeypatch.setenv(RUNTIME_DIR_ENV, str(tmp_path / "mine"))
    assert default_runtime_dir() == tmp_path / "mine"
    assert stat.S_IMODE((tmp_path / "mine").stat().st_mode) == 0o700


def test_fixture_daemon_is_found_without_flags(xdna_emulator, xdna_firmware_dir: Path) -> None:
    """The fixture exports its runtime dir: probe, status and Device.open() need no target."""
    assert os.environ[RUNTIME_DIR_ENV] == str(xdna_emulator.runtime_dir)
    out = run_cli("status", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["bdf"] == xdna_emulator.bdf
    out = run_cli("probe", "--json", "--firmware-path", str(xdna_firmware_dir))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["bdf"] == xdna_emulator.bdf
    from xdna_emu.runtime import Device

    with Device.open(firmware_path=xdna_firmware_dir) as dev:
        assert dev.shim.info()["bdf"] == xdna_emulator.bdf


def test_two_daemons_need_a_bdf(xdna_emulator_factory) -> None:
    a, b = xdna_emulator_factory("npu4"), xdna_emulator_factory("npu1")
    out = run_cli("status")
    assert out.returncode == 2 and "pick one with --bdf" in out.stderr
    assert a.bdf in out.stderr and b.bdf in out.stderr


def test_too_old_python_is_one_clear_line() -> None:
    with pytest.raises(ImportError, match=r"needs Python 3\.11 or later; this is Python 3\.10\.12"):
        xdna_emu._check_python((3, 10, 12, "final", 0))
    xdna_emu._check_python((3, 11, 0))
    meta = (ROOT / "pyproject.toml").read_text()
    want = ".".join(map(str, xdna_emu.MIN_PYTHON))
    assert f'requires-python = ">={want}"' in meta


def test_license_and_typing_marker_are_shipped() -> None:
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()
    assert (ROOT / "xdna_emu" / "py.typed").exists()


@pytest.mark.skipif(not os.environ.get("XDNA_EMU_WHEEL_TEST"),
                    reason="builds a wheel (slow): set XDNA_EMU_WHEEL_TEST=1")
def test_wheel_is_abi3_with_header_license_and_marker(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                          str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (whl,) = tmp_path.glob("*.whl")
    assert whl.name.endswith("-cp311-abi3-linux_x86_64.whl")
    names = zipfile.ZipFile(whl).namelist()
    for shipped in ("xdna_emu/include/xdna_shim.h", "xdna_emu/include/amdxdna_accel.h",
                    "xdna_emu/pkgconfig/xdna-emu.pc", "xdna_emu/py.typed"):
        assert shipped in names, shipped
    assert any(n.endswith("/LICENSE") for n in names)
    for lib in ("_shim.abi3", "_xdna_shim_c", "_accel", "_datapath.abi3"):
        assert any(n.startswith(f"xdna_emu/{lib}") for n in names), lib
    for init in (ROOT / "xdna_emu").rglob("__init__.py"):  # every package, none left out
        assert init.relative_to(ROOT).as_posix() in names, init
    meta = zipfile.ZipFile(whl).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Python: >=3.11" in meta
    _c_user_of_the_installed_wheel(whl, tmp_path)


def _c_user_of_the_installed_wheel(whl: Path, tmp_path: Path) -> None:
    """The wheel in a fresh venv (its dependencies from this one's site-packages, after its
    own): a C program on both headers, built with `xdna-emu config --cflags --libs` and with
    pkg-config through `--pkg-config-path`, links and runs from the venv alone, no source
    tree (docs/spec/uapi.md §4)."""
    import shutil
    import sysconfig
    import textwrap

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(whl)], check=True, timeout=300)
    py, cli = venv / "bin" / "python", [str(venv / "bin" / "python"), "-m", "xdna_emu", "config"]
    where = subprocess.run([py, "-c", "import xdna_emu; print(xdna_emu.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where
    subprocess.run([py, "-c", "import xdna_emu.daemon, xdna_emu.fw.aie4, xdna_emu._datapath"],
                   cwd=tmp_path, check=True)
    flags = subprocess.run([*cli, "--cflags", "--libs"], cwd=tmp_path, capture_output=True,
                           text=True, check=True).stdout.split()
    assert all(str(site) in f for f in flags if f.startswith(("-I", "-L"))), flags
    src = tmp_path / "user.c"
    src.write_text(textwrap.dedent("""
        #include <stdio.h>
        #include "amdxdna_accel.h"
        #include "xdna_shim.h"
        int main(void) {
            /* nothing listens there: the library answers NULL, linked and loaded */
            struct xdna_shim_ctx *c = xdna_shim_open("/nonexistent/xdna.sock", 10);
            printf("%s %lu\\n", c ? "open" : "refused", (unsigned long)DRM_IOCTL_AMDXDNA_CREATE_BO);
            return c != NULL;
        }
    """))
    cc = shutil.which("gcc") or shutil.which("cc")
    assert cc, "no C compiler"
    builds = [flags]
    if shutil.which("pkg-config"):
        pcdir = subprocess.run([*cli, "--pkg-config-path"], cwd=tmp_path, capture_output=True,
                               text=True, check=True).stdout.strip()
        assert pcdir.startswith(str(site)), pcdir
        builds.append(subprocess.run(["pkg-config", "--cflags", "--libs", "xdna-emu"],
                                     env=dict(os.environ, PKG_CONFIG_PATH=pcdir), check=True,
                                     capture_output=True, text=True).stdout.split())
    from xdna_emu import uapi_table as T

    for i, fl in enumerate(builds):
        exe = tmp_path / f"user{i}"
        subprocess.run([cc, "-std=gnu11", "-Wall", "-Werror", "-o", str(exe), str(src), *fl],
                       check=True)
        out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.split() == ["refused", str(T.ioctl("AMDXDNA_CREATE_BO").number)], out.stdout
