"""AIE4 through the UAPI under `xdna-emu exec` (docs/spec/aie4.md §8): a DEV BO is a plain
buffer, so one larger than AIE2's 512 MiB heap cap is accepted and the per-client BO
accounting (GET_ARRAY BO_USAGE) counts it as internal with heap 0."""

from __future__ import annotations

import textwrap

from tests.test_uapi_c import run_python


def test_dev_bo_accounting_on_aie4() -> None:
    prog = textwrap.dedent("""
        import errno, os
        from xdna_emu import uapi_table as T
        from xdna_emu.uapi import AccelFile, _addr

        def usage(f):
            buf = bytearray(T.BO_USAGE.pack(pid=os.getpid()))
            f.ioctl("AMDXDNA_GET_ARRAY", param=T.const("DRM_AMDXDNA_BO_USAGE"),
                    element_size=len(buf), num_element=1, buffer=_addr(buf))
            u = T.BO_USAGE.unpack(buf)
            return u["total_usage"], u["internal_usage"], u["heap_usage"]

        with AccelFile() as f:
            base = usage(f)
            big = f.create_bo(T.const("AMDXDNA_BO_DEV"), 600 << 20)  # above AIE2's cap
            share = f.create_bo(T.const("AMDXDNA_BO_SHARE"), 1 << 20)
            t, i, h = usage(f)
            assert (t - base[0], i - base[1], h) == ((601 << 20), (600 << 20), 0), (base, t, i, h)
            try:
                f.create_bo(T.const("AMDXDNA_BO_DEV_HEAP"), 64 << 20)
            except OSError as e:
                assert e.errno == errno.EINVAL
            else:
                raise AssertionError("a DEV heap on AIE4")
            f.close_bo(big)
            f.close_bo(share)
            assert usage(f) == base
        print("aie4 uapi ok")
    """)
    run_python("npu3", "aie4 uapi ok", "-c", prog)


def test_cert_version_and_auto_coredump_on_aie4() -> None:
    """AIE4's own GET_INFO/SET_STATE parameters (docs/spec/uapi.md §6): the cert firmware
    version the probe read (what fits is copied) and the driver's auto-coredump flag, root's
    to set (state 0/1, pad MBZ), read by every process."""
    prog = textwrap.dedent("""
        import errno, os
        from xdna_emu import uapi_table as T
        from xdna_emu.chips import load_chip
        from xdna_emu.uapi import AccelFile, _addr

        def refused(err, fn, *a, **kw):
            try:
                fn(*a, **kw)
            except OSError as e:
                assert e.errno == err, (e, err)
            else:
                raise AssertionError(f"accepted, want errno {err}")

        def set_raw(f, raw, size=None):
            buf = bytearray(raw)
            f.ioctl("AMDXDNA_SET_STATE", param=T.const("DRM_AMDXDNA_SET_AUTO_COREDUMP"),
                    buffer_size=len(buf) if size is None else size, buffer=_addr(buf))

        with AccelFile() as f:
            cv = f.get_info("QUERY_CERT_FIRMWARE_VERSION", T.QUERY_FIRMWARE_VERSION)
            want = tuple(int(x) for x in load_chip("npu3").firmware.cert_version.split("."))
            assert (cv["major"], cv["minor"], cv["patch"], cv["build"]) == want, cv
            part = bytearray(b"\\xAA" * 8)  # what fits: 6 bytes, nothing past them
            f.ioctl("AMDXDNA_GET_INFO", param=T.const("DRM_AMDXDNA_QUERY_CERT_FIRMWARE_VERSION"),
                    buffer_size=6, buffer=_addr(part))
            assert part[:4] == want[0].to_bytes(4, "little") and part[6:] == b"\\xAA\\xAA", part
            refused(errno.EFAULT, f.ioctl, "AMDXDNA_GET_INFO",
                    param=T.const("DRM_AMDXDNA_QUERY_CERT_FIRMWARE_VERSION"), buffer_size=16, buffer=8)
            get = lambda g: g.get_info("GET_AUTO_COREDUMP", T.ATTRIBUTE_STATE)["state"]
            assert get(f) == 0
            set_raw(f, b"\\x01" + bytes(7))
            assert get(f) == 1
            refused(errno.EINVAL, set_raw, f, b"\\x02" + bytes(7))
            refused(errno.EINVAL, set_raw, f, b"\\x00\\x01" + bytes(6))  # pad MBZ
            refused(errno.EFAULT, f.ioctl, "AMDXDNA_SET_STATE",
                    param=T.const("DRM_AMDXDNA_SET_AUTO_COREDUMP"), buffer_size=8, buffer=8)
            assert get(f) == 1
            set_raw(f, b"\\x00\\xff", size=1)  # takes what fits: the state byte only
            assert get(f) == 0
            set_raw(f, b"\\x01" + bytes(7))
            pid = os.fork()
            if pid == 0:  # another process reads the device's flag; non-root may not set it
                with AccelFile() as g:
                    ok = get(g) == 1
                    os.setuid(65534)
                    try:
                        set_raw(g, bytes(8))
                        ok = False
                    except OSError as e:
                        ok = ok and e.errno == errno.EACCES and get(g) == 1
                os._exit(0 if ok else 1)
            assert os.waitpid(pid, 0)[1] == 0
            set_raw(f, bytes(8))
        print("aie4 info ok")
    """)
    run_python("npu3", "aie4 info ok", "-c", prog)
