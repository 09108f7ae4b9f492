"""Our own signed firmware image format (real AMD firmware is not redistributable).

Layout (little-endian, ``HEADER_SIZE`` = 128 bytes, then the payload):

=====  ====  ===================================================================
off    size  field
=====  ====  ===================================================================
0x00   8     magic ``b"XDNAEMFW"``
0x08   2     format version (1)
0x0A   2     header size (128)
0x0C   4     payload size in bytes
0x10   2     target PCI device id
0x12   1     target PCI revision
0x13   1     reserved, 0
0x14   16    firmware version major, minor, patch, build (u32 each)
0x24   4     protocol version major, minor (u16 each)
0x28   32    SHA-256 digest of the payload
0x48   24    reserved, 0
0x60   32    HMAC-SHA256 over bytes 0x00..0x60 of the header followed by the payload
=====  ====  ===================================================================

The HMAC key (:data:`TEST_KEY`) ships with the package. It is a **test key, not a
secret**: it lets the emulated PSP tell a damaged image from a good one, nothing more.
The target is the (device, revision) the firmware *file* is for, taken from the chip's
``fw_path`` directory (``amdnpu/17f0_10/...``), so chips that share a file (npu6 uses npu4's)
accept the same image, as they do on real hardware. Bytes after header+payload are ignored
(the driver pads its copy to a 64 KiB multiple).

AIE4 chips also load a cert image (``cert.dev.sbin`` beside the npu image, docs/spec/aie4.md
§3): the same layout with magic ``b"XDNAEMCT"``, its version read as major, minor, hotfix,
build, a 16 KiB payload (the driver caps cert images at 32 KiB + 256 bytes) and its own
PSP statuses, so a damaged cert is told apart from a damaged npu image.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..chips import Chip, chip_names, load_chip
from .aie4.messages import CERT_MAX
from .aie4.messages import PspStatus as Aie4PspStatus
from .messages import PspStatus

MAGIC = b"XDNAEMFW"
CERT_MAGIC = b"XDNAEMCT"
CERT_PAYLOAD_SIZE = 16 * 1024
FORMAT_VERSION = 1
HEADER_SIZE = 128
PAYLOAD_SIZE = 96 * 1024  # > 64 KiB so the driver's 64 KiB-rounded buffer is exercised
TEST_KEY = b"xdna-emu firmware TEST signing key - public, not a secret"
_HDR = struct.Struct("<8sHHIHBB4I2H32s24s")  # everything before the signature
_SIG_OFF = _HDR.size  # 0x60
assert _SIG_OFF == 0x60 and _SIG_OFF + 32 == HEADER_SIZE


class ImageError(ValueError):
    """An image the PSP refuses; ``code`` is the PSP status it reports."""

    def __init__(self, code: PspStatus, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class FirmwareImage:
    target: tuple[int, int]
    version: tuple[int, int, int, int]
    protocol: tuple[int, int]
    payload_size: int
    digest: bytes

    @property
    def version_str(self) -> str:
        return ".".join(map(str, self.version))


def fw_target(chip: Chip) -> tuple[int, int]:
    """(device, revision) the chip's firmware file is for: the ``DDDD_RR`` directory name."""
    m = re.search(r"([0-9a-fA-F]{4})_([0-9a-fA-F]{2})/", chip.fw_path)
    return (int(m.group(1), 16), int(m.group(2), 16)) if m else chip.pci_id


def _ints(text: str, count: int, what: str) -> tuple[int, ...]:
    parts = str(text).split(".")
    if len(parts) != count or not all(p.isdigit() for p in parts):
        raise ValueError(f"{what} must be {count} dot-separated numbers, got {text!r}")
    return tuple(int(p) for p in parts)


def _payload(target: tuple[int, int], version: str, size: int) -> bytes:
    seed = f"xdna-emu fw payload {target[0]:04x}_{target[1]:02x} {version}".encode()
    return hashlib.shake_256(seed).digest(size)


def cert_target(chip: Chip) -> tuple[int, int]:
    """(device, revision) the chip's cert file is for (its ``DDDD_RR`` directory)."""
    if chip.aie4 is None:
        raise ValueError(f"{chip.name} loads no cert image")
    m = re.search(r"([0-9a-fA-F]{4})_([0-9a-fA-F]{2})/", chip.aie4.cert_path)
    return (int(m.group(1), 16), int(m.group(2), 16)) if m else chip.pci_id


def _signed(magic: bytes, target: tuple[int, int], version: str, protocol: str, size: int) -> bytes:
    ver = _ints(version, 4, "firmware version")
    prot = _ints(protocol, 2, "protocol version")
    if any(v > 0xFFFFFFFF for v in ver) or any(p > 0xFFFF for p in prot):
        raise ValueError("version number out of range")
    payload = _payload(target, version if magic == MAGIC else f"cert {version}", size)
    head = _HDR.pack(magic, FORMAT_VERSION, HEADER_SIZE, len(payload), target[0], target[1], 0,
                     *ver, *prot, hashlib.sha256(payload).digest(), bytes(24))
    sig = hmac.new(TEST_KEY, head + payload, hashlib.sha256).digest()
    return head + sig + payload


def build_image(chip: Chip, version: str | None = None, protocol: str | None = None) -> bytes:
    """A valid signed image for ``chip`` (defaults from the chip's ``[firmware]`` table)."""
    return _signed(MAGIC, fw_target(chip), version or chip.firmware.version,
                   protocol or chip.firmware.protocol, PAYLOAD_SIZE)


def build_cert(chip: Chip, version: str | None = None) -> bytes:
    """A valid signed cert image for an AIE4 ``chip`` (version M.m.hotfix.build)."""
    version = version or chip.firmware.cert_version
    ver = _ints(version, 4, "cert version")
    if any(v > 0xFF for v in ver):
        raise ValueError("cert version numbers are bytes (0..255)")
    return _signed(CERT_MAGIC, cert_target(chip), version, "0.0", CERT_PAYLOAD_SIZE)


#: the last image accepted per (fw_path, pci id): its exact bytes and the parse result.
#: The check is a pure function of those, and drivers (and fuzzers) VALIDATE the same
#: image over and over, so an identical buffer skips the SHA-256 and HMAC passes.
_ACCEPTED: dict[tuple[str, tuple[int, int]], tuple[bytes, FirmwareImage]] = {}


def parse_image(data: bytes | memoryview, chip: Chip) -> FirmwareImage:
    """Check an image as the emulated PSP does; raise ImageError with a distinct code."""
    view = memoryview(data).cast("B")
    key = (chip.fw_path, chip.pci_id)
    hit = _ACCEPTED.get(key)
    if hit is not None and len(view) == len(hit[0]) and (
            data if type(data) is bytes else bytes(view)) == hit[0]:
        return hit[1]
    img = _parse_image(view, chip)
    _ACCEPTED[key] = (data if type(data) is bytes else bytes(view), img)
    return img


#: The AIE4 PSP status of each way a cert image can be bad (docs/spec/aie4.md §3).
_CERT_CODES = {PspStatus.IMG_CHIP: Aie4PspStatus.CERT_CHIP}


def parse_cert(data: bytes | memoryview, chip: Chip) -> FirmwareImage:
    """Check a cert image as the emulated AIE4 PSP does; ImageError codes are CERT_*."""
    view = memoryview(data).cast("B")
    if not view:
        raise ImageError(Aie4PspStatus.CERT_SIZE, "empty cert buffer")
    if len(view) >= HEADER_SIZE:  # the image, not its (padded) buffer, has the size limit
        hsize, psize = struct.unpack_from("<HI", view, 0x0A)
        if hsize + psize > CERT_MAX:
            raise ImageError(Aie4PspStatus.CERT_SIZE,
                             f"cert image of {hsize + psize} bytes (max {CERT_MAX})")
    try:
        return _parse_image(view, chip, CERT_MAGIC, cert_target(chip))
    except ImageError as exc:
        raise ImageError(_CERT_CODES.get(exc.code, Aie4PspStatus.CERT_INVALID),
                         f"cert: {exc}") from None


def _parse_image(data: memoryview, chip: Chip, magic_want: bytes = MAGIC,
                 target: tuple[int, int] | None = None) -> FirmwareImage:
    if len(data) < HEADER_SIZE:
        raise ImageError(PspStatus.IMG_TRUNCATED, f"image of {len(data)} bytes has no header")
    (magic, fmt, hsize, psize, dev, rev, rsvd, *rest) = _HDR.unpack_from(data)
    ver, prot, digest = tuple(rest[0:4]), tuple(rest[4:6]), rest[6]
    if magic != magic_want:
        raise ImageError(PspStatus.IMG_MAGIC, "bad image magic")
    if fmt != FORMAT_VERSION or hsize < HEADER_SIZE:
        raise ImageError(PspStatus.IMG_FORMAT, f"unsupported format {fmt} / header size {hsize}")
    if hsize + psize > len(data):
        raise ImageError(PspStatus.IMG_TRUNCATED,
                         f"image needs {hsize + psize} bytes, buffer has {len(data)}")
    payload = data[hsize : hsize + psize]
    if hashlib.sha256(payload).digest() != digest:
        raise ImageError(PspStatus.IMG_DIGEST, "payload digest mismatch")
    mac = hmac.new(TEST_KEY, data[:_SIG_OFF], hashlib.sha256)
    mac.update(data[HEADER_SIZE:hsize])
    mac.update(payload)
    if not hmac.compare_digest(mac.digest(), bytes(data[_SIG_OFF:HEADER_SIZE])):
        raise ImageError(PspStatus.IMG_SIGNATURE, "bad image signature")
    if (dev, rev) != (target or fw_target(chip)):
        raise ImageError(PspStatus.IMG_CHIP,
                         f"image is for {dev:04x}:{rev:02x}, not {chip.name}")
    return FirmwareImage((dev, rev), ver, prot, psize, bytes(digest))  # type: ignore[arg-type]


def write_firmware(chip_name: str, out_dir: Path, version: str | None = None,
                   protocol: str | None = None) -> Path:
    """Write an image to ``out_dir/<chip.fw_path>`` atomically (temp file + rename); an AIE4
    chip's cert image is written beside it (:func:`write_cert`)."""
    chip = load_chip(chip_name)
    if chip.aie4 is not None:
        write_cert(chip_name, out_dir)
    return _write(Path(out_dir) / chip.fw_path, build_image(chip, version, protocol))


def write_cert(chip_name: str, out_dir: Path, version: str | None = None) -> Path:
    """Write an AIE4 chip's cert image to ``out_dir/<cert_path>`` atomically."""
    chip = load_chip(chip_name)
    if chip.aie4 is None:
        raise ValueError(f"{chip_name} loads no cert image")
    return _write(Path(out_dir) / chip.aie4.cert_path, build_cert(chip, version))


def _write(dest: Path, data: bytes) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fw-", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def default_firmware_dir() -> Path:
    """The per-user firmware search path, filled with a valid image for every chip.

    ``$XDNA_EMU_FIRMWARE_PATH`` if set, else ``$XDG_CACHE_HOME/xdna-emu/firmware``
    (``~/.cache/...``). Missing or unreadable images are (re)written; concurrent callers
    are safe because every write is a rename of a complete temp file.
    """
    env = os.environ.get("XDNA_EMU_FIRMWARE_PATH")
    if env:
        root = Path(env)
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(cache) / "xdna-emu" / "firmware"
    root.mkdir(parents=True, exist_ok=True)
    owners: dict[str, str] = {}
    for name in chip_names():
        chip = load_chip(name)
        # A shared file is built with the defaults of the chip whose id names it.
        if chip.fw_path not in owners or chip.pci_id == fw_target(chip):
            owners[chip.fw_path] = name
    for path, name in owners.items():
        chip = load_chip(name)
        try:
            parse_image((root / path).read_bytes(), chip)
            if chip.aie4 is not None:
                parse_cert((root / chip.aie4.cert_path).read_bytes(), chip)
        except (OSError, ImageError):
            write_firmware(name, root)
    return root
