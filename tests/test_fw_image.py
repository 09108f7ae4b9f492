"""Firmware image format: build, parse, every rejection code, the cache directory."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import pytest

from xdna_emu.chips import chip_names, load_chip
from xdna_emu.fw.image import (
    HEADER_SIZE,
    PAYLOAD_SIZE,
    ImageError,
    build_image,
    default_firmware_dir,
    fw_target,
    parse_image,
    write_firmware,
)
from xdna_emu.fw.messages import PspStatus

NPU4 = load_chip("npu4")


def _flip(data: bytes, off: int) -> bytes:
    b = bytearray(data)
    b[off] ^= 0x40
    return bytes(b)


def _code(data: bytes | memoryview, chip=NPU4) -> PspStatus:
    with pytest.raises(ImageError) as exc:
        parse_image(data, chip)
    return exc.value.code


@pytest.mark.parametrize("name", chip_names())
def test_image_roundtrip_every_chip(name: str) -> None:
    chip = load_chip(name)
    img = build_image(chip)
    assert len(img) == HEADER_SIZE + PAYLOAD_SIZE
    parsed = parse_image(img, chip)
    assert parsed.target == fw_target(chip)
    assert parsed.version_str == chip.firmware.version


def test_image_versions_from_arguments() -> None:
    img = parse_image(build_image(NPU4, "7.8.9.10", "6.12"), NPU4)
    assert img.version == (7, 8, 9, 10) and img.protocol == (6, 12)
    with pytest.raises(ValueError):
        build_image(NPU4, "1.2.3")
    with pytest.raises(ValueError):
        build_image(NPU4, protocol="six.twelve")


def test_image_is_deterministic_and_padding_is_ignored() -> None:
    img = build_image(NPU4)
    assert img == build_image(NPU4)
    padded = img + bytes(0x20000 - len(img))
    assert parse_image(memoryview(padded), NPU4).payload_size == PAYLOAD_SIZE


def test_image_rejections_have_distinct_codes() -> None:
    img = build_image(NPU4)
    assert _code(_flip(img, HEADER_SIZE + 1000)) == PspStatus.IMG_DIGEST
    assert _code(_flip(img, 0x28)) == PspStatus.IMG_DIGEST  # the stored digest itself
    assert _code(_flip(img, 0x14)) == PspStatus.IMG_SIGNATURE  # firmware version byte
    assert _code(_flip(img, 0x70)) == PspStatus.IMG_SIGNATURE  # the signature
    assert _code(_flip(img, 0)) == PspStatus.IMG_MAGIC
    assert _code(img[:HEADER_SIZE - 1]) == PspStatus.IMG_TRUNCATED
    assert _code(img[:-1]) == PspStatus.IMG_TRUNCATED
    bad_fmt = bytearray(img)
    struct.pack_into("<H", bad_fmt, 8, 2)
    assert _code(bytes(bad_fmt)) == PspStatus.IMG_FORMAT


def test_image_for_another_chip_is_refused() -> None:
    npu1 = load_chip("npu1")
    assert _code(build_image(npu1), NPU4) == PspStatus.IMG_CHIP
    assert _code(build_image(NPU4), npu1) == PspStatus.IMG_CHIP


def test_npu6_accepts_the_npu4_file() -> None:
    npu6 = load_chip("npu6")
    assert npu6.fw_path == NPU4.fw_path
    parse_image(build_image(NPU4), npu6)


def test_write_firmware_places_file_at_fw_path(tmp_path: Path) -> None:
    path = write_firmware("npu4", tmp_path, protocol="6.15")
    assert path == tmp_path / NPU4.fw_path
    assert parse_image(path.read_bytes(), NPU4).protocol == (6, 15)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".fw-")]


def test_default_firmware_dir_creates_and_repairs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDNA_EMU_FIRMWARE_PATH", str(tmp_path / "fw"))
    root = default_firmware_dir()
    assert root == tmp_path / "fw"
    for name in chip_names():
        chip = load_chip(name)
        parse_image((root / chip.fw_path).read_bytes(), chip)
    # a corrupted file is rewritten, a valid custom one is kept
    (root / NPU4.fw_path).write_bytes(b"junk")
    npu1 = load_chip("npu1")
    write_firmware("npu1", root, protocol="5.7")
    default_firmware_dir()
    parse_image((root / NPU4.fw_path).read_bytes(), NPU4)
    assert parse_image((root / npu1.fw_path).read_bytes(), npu1).protocol == (5, 7)


def test_default_firmware_dir_concurrent(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("XDNA_EMU_FIRMWARE_PATH", raising=False)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            default_firmware_dir()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    root = tmp_path / "xdna-emu" / "firmware"
    parse_image((root / NPU4.fw_path).read_bytes(), NPU4)
