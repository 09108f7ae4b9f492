"""End to end on AIE4: the C driver shim probes an AIE4 daemon in the driver's AIE4 order
(docs/spec/aie4.md §3-§6): SMU POWER_ON, PSP npu + cert images, mailbox_info, the mgmt
channel and the AIE4 init messages; PF and VF functions; bad and missing cert images."""

from __future__ import annotations

import errno
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from xdna_emu import Emulator
from xdna_emu.chips import load_chip
from xdna_emu.cli import main as cli_main
from xdna_emu.control import ControlClient
from xdna_emu.fw.aie4.messages import MESSAGES, Opcode, PspCmd, PspStatus, Status
from xdna_emu.fw.image import write_firmware
from xdna_emu.shim import Shim, ShimError

IDENTIFY = int(Opcode.IDENTIFY)
IDENTIFY_RESP = MESSAGES[Opcode.IDENTIFY].resp.size


@pytest.fixture
def attached(xdna_emulator: Emulator) -> Iterator[tuple[Emulator, Shim]]:
    with Shim.open(xdna_emulator.socket) as shim:
        yield xdna_emulator, shim


def _status(emu: Emulator) -> dict:
    with ControlClient(emu.socket) as cl:
        cl.version()
        return cl.status()["device"]


@pytest.mark.parametrize("xdna_chip", ["npu3", "npu7", "npu10", "npu3_1b0a"])
def test_probe_reports_what_the_chip_file_says(attached, xdna_firmware_dir: Path) -> None:  # noqa: ANN001
    emu, shim = attached
    chip = load_chip(emu.chip)
    info = shim.probe(xdna_firmware_dir)
    assert info["state"] == "probed" and info["family"] == "aie4"
    assert info["fw_version"] == chip.firmware.version
    assert info["protocol_version"] == chip.firmware.protocol
    assert info["cert_fw_version"] == chip.firmware.cert_version
    assert info["partition_id"] != 0 and info["function"] == "plain"
    assert info["aie_version"] == "4.0" and info["tiles"]["cols"] == chip.cols
    assert info["async_pending"] == chip.cols  # one ASYNC_EVENT_MSG per column, held
    assert [s["name"] for s in info["stages"]] == ["smu", "psp", "mailbox_info", "query", "mgmt_init"]
    st = _status(emu)
    assert st["psp"]["state"] == "running" and st["psp"]["cert"] == chip.firmware.cert_version
    fw = st["firmware"]
    assert fw["work_buffer"] and fw["partitions"][0]["col_count"] == chip.aie4.partition_col_count
    assert fw["async_events_pending"] == chip.cols
    assert set(fw["runtime_config"]) == {"12", "13"}  # CONTEXT_TIMEOUT, CTX_SWITCH_HYSTERESIS
    resp = shim.mgmt_msg(IDENTIFY, bytes(4), IDENTIFY_RESP)
    assert struct.unpack_from("<I", resp)[0] == Status.SUCCESS


@pytest.mark.parametrize("xdna_chip", ["npu3"])
def test_unknown_opcode_is_notsupp_through_the_shim(attached, xdna_firmware_dir: Path) -> None:  # noqa: ANN001
    _, shim = attached
    shim.probe(xdna_firmware_dir)
    resp = shim.mgmt_msg(int(Opcode.GET_TELEMETRY), bytes(4), 4)
    assert struct.unpack("<I", resp)[0] == Status.NOTSUPP


@pytest.mark.parametrize("xdna_chip", ["npu3_pf"])
def test_pf_skips_tile_info_and_partition(attached, xdna_firmware_dir: Path) -> None:  # noqa: ANN001
    emu, shim = attached
    info = shim.probe(xdna_firmware_dir)
    assert info["function"] == "pf" and info["partition_id"] == 0
    assert info["tiles"]["cols"] == 0
    assert _status(emu)["firmware"]["partitions"] == []


@pytest.mark.parametrize("xdna_chip", ["npu3_vf"])
def test_vf_loads_no_firmware(attached, tmp_path: Path) -> None:  # noqa: ANN001
    """A VF probes with an empty firmware directory: no PSP, no SMU, no work buffer."""
    emu, shim = attached
    info = shim.probe(tmp_path)
    assert info["function"] == "vf" and info["partition_id"] != 0
    assert [s["name"] for s in info["stages"]] == ["mailbox_info", "query", "mgmt_init"]
    st = _status(emu)
    assert st["psp"]["state"] == "idle" and st["smu"]["power"] == "off"
    assert not st["firmware"]["work_buffer"]


@pytest.mark.parametrize("xdna_chip", ["npu3"])
def test_corrupted_cert_fails_validate_cert_then_a_good_one_probes(
        attached, xdna_firmware_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    emu, shim = attached
    chip = load_chip(emu.chip)
    write_firmware(chip.name, tmp_path)
    cert = tmp_path / chip.aie4.cert_path
    data = bytearray(cert.read_bytes())
    data[len(data) // 2] ^= 0x01
    cert.write_bytes(bytes(data))
    with pytest.raises(ShimError) as ei:
        shim.probe(tmp_path)
    assert ei.value.errno == errno.EIO
    assert "VALIDATE_CERT" in ei.value.strerror and "CERT_INVALID" in ei.value.strerror
    assert shim.info()["state"] == "failed"
    psp = _status(emu)["psp"]  # the unwinding powered the SMU off, so the PSP is idle again
    assert (psp["last_cmd"], psp["last_resp"]) == (PspCmd.VALIDATE_CERT, PspStatus.CERT_INVALID)
    assert shim.probe(xdna_firmware_dir)["state"] == "probed"


@pytest.mark.parametrize("xdna_chip", ["npu3"])
def test_missing_cert_is_enoent(attached, tmp_path: Path) -> None:  # noqa: ANN001
    emu, shim = attached
    chip = load_chip(emu.chip)
    write_firmware(chip.name, tmp_path)
    (tmp_path / chip.aie4.cert_path).unlink()
    with pytest.raises(ShimError) as ei:
        shim.probe(tmp_path)
    assert ei.value.errno == errno.ENOENT and "cert.dev.sbin" in ei.value.strerror


@pytest.mark.parametrize("xdna_chip", ["npu3"])
def test_stop_releases_and_suspend_resume_redo_the_handshake(attached, xdna_firmware_dir: Path) -> None:  # noqa: ANN001
    emu, shim = attached
    shim.probe(xdna_firmware_dir)
    shim.suspend()
    st = _status(emu)
    assert st["firmware"] is None and st["psp"]["state"] == "idle" and st["smu"]["power"] == "off"
    with pytest.raises(ShimError) as ei:
        shim.mgmt_msg(IDENTIFY, bytes(4), IDENTIFY_RESP)
    assert ei.value.errno == errno.ENODEV
    shim.resume()
    info = shim.info()
    assert info["state"] == "probed" and info["partition_id"] != 0
    shim.stop()
    assert shim.info()["state"] == "stopped" and _status(emu)["firmware"] is None
    assert shim.probe(xdna_firmware_dir)["state"] == "probed"


@pytest.mark.parametrize("xdna_chip", ["npu3"])
def test_cli_probe_json_has_cert_version_and_partition(xdna_emulator: Emulator,
                                                       xdna_firmware_dir: Path, capsys) -> None:  # noqa: ANN001
    rc = cli_main(["probe", "--socket", str(xdna_emulator.socket), "--json",
                   "--firmware-path", str(xdna_firmware_dir)])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cert_fw_version"] == "1.0.0.1" and info["partition_id"] != 0


def test_mkfw_writes_the_cert_beside_the_image(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert cli_main(["mkfw", "--chip", "npu3", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(tmp_path / "amdnpu/17f1_10/npu.dev.sbin"),
                   str(tmp_path / "amdnpu/17f1_10/cert.dev.sbin")]
    assert (tmp_path / "amdnpu/17f1_10/cert.dev.sbin").stat().st_size <= 32 * 1024 + 256


@pytest.mark.parametrize("xdna_chip", ["npu3"])
def test_power_mode_changes_send_power_override(attached, xdna_firmware_dir: Path) -> None:  # noqa: ANN001
    emu, shim = attached
    shim.probe(xdna_firmware_dir)
    assert _status(emu)["firmware"]["power_mode"] == 0  # DEFAULT: nothing sent at probe
    msgs = _status(emu)["channels"][0]["msgs_in"]
    shim.set_power_mode("low")
    st = _status(emu)
    assert st["firmware"]["power_mode"] == 1 and st["channels"][0]["msgs_in"] == msgs + 1
    shim.set_power_mode("low")  # no change: no message
    assert _status(emu)["channels"][0]["msgs_in"] == msgs + 1
    shim.suspend()
    shim.resume()  # a fresh firmware is told the mode again
    assert _status(emu)["firmware"]["power_mode"] == 1
    assert shim.power()["mode"] == "low"
