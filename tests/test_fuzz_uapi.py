"""The shim fuzz target's ioctl lines: DRM files on its own daemon, the UAPI contract model,
and its oracles firing on planted bugs (docs/spec/fuzzing.md §12)."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.planted import assert_findings
from xdna_emu import uapi_table as T
from xdna_emu.fuzz import trace as tr
from xdna_emu.fuzz.lang import TraceError, format_op
from xdna_emu.fuzz.shim_target import ShimFuzzer, random_op
from xdna_emu.fuzz.shim_trace import ShimHarness
from xdna_emu.fuzz.uapi_trace import parse_ioctl, seed_ops
from xdna_emu.shim import ErtState, ShimError
from xdna_emu.testing.inproc import InProcess
from xdna_emu.uapi import AccelFile


def _trace(body: str, chip: str = "npu4") -> tr.Trace:
    return tr.parse(f"chip {chip}\ntarget shim\n{body}")


@contextlib.contextmanager
def _applied(body: str, chip: str = "npu4", ops: int | None = None) -> Iterator[ShimHarness]:
    """A fresh shim harness with the trace's first ``ops`` lines (all by default) applied,
    closed after the block."""
    h = ShimHarness(chip).fresh()
    try:
        for op in _trace(body, chip).ops[:ops]:
            h.apply(op)
        yield h
    finally:
        h.close()


def test_a_drm_file_attaches_to_a_daemon_in_this_process() -> None:
    """AccelFile.attach: the decoder serves the file without the interposer."""
    with InProcess("npu4") as ip:
        ip.probe()
        f = ip.call(AccelFile.attach, ip.daemon.socket_path, -1)[0]
        try:
            assert f.version()["name_len"] == len("amdxdna")
            bo = f.create_bo(T.const("AMDXDNA_BO_SHARE"), 4096)
            assert f.bo_info(bo)["map_offset"] == bo << 40
            with pytest.raises(OSError) as e:  # not 'd': not a DRM ioctl
                f.ioctl_raw(T.ioctl("VERSION").number & ~0xFF00 | 0x41 << 8, bytearray(64))
            assert e.value.errno == errno.ENOTTY
            with pytest.raises(OSError) as e:
                f.ioctl("AMDXDNA_GET_BO_INFO", handle=bo + 1)
            assert e.value.errno == errno.ENOENT
        finally:
            f.close()


def test_ioctl_lines_parse_and_print_back() -> None:
    for op in seed_ops()[1:]:
        assert parse_ioctl(format_op(op).split()[1:]) == op
    for bad in (["nope"], ["exec", "0", "0"], ["bo", "0", "x", "1", "0"], []):
        with pytest.raises(TraceError):
            parse_ioctl(bad)
    with pytest.raises(TraceError):
        tr.replay(_trace("call probe\nioctl open\nioctl exec 0 0 spin\n"), ShimHarness("npu4"))


def test_the_seed_session_reaches_every_final_state() -> None:
    h = ShimHarness("npu4")
    try:
        res = tr.replay(tr.Trace("npu4", seed_ops(), [], target="shim"), h)
        assert res.ok, res.failure
        for key in ("ioctl exec:ok", "ioctl signal:ok", "ioctl sobjwait:ok", "ioctl final completed",
                    "ioctl final error", "ioctl final timeout", "ioctl final abort"):
            assert h.events[key], key
    finally:
        h.close()


#: (ioctl line, the driver's answer): each one the model predicts (docs/spec/uapi.md §6)
CASES = [
    ("open", "ok"), ("bo 0 3 64 0", "EINVAL"), ("ctx 0 1 0", "ENOENT"), ("heap 0", "ok"),
    ("bo 0 0 4096 0", "EINVAL"), ("bo 0 1 4096 0x100", "EINVAL"), ("bo 0 1 0 0", "EINVAL"),
    ("bo 0 2 4096 0", "EINVAL"), ("bo 0 1 4096 0", "ok"), ("boinfo 0 1 0", "ok"),
    ("boinfo 0 1 1", "EINVAL"), ("boinfo 0 -4096 0", "ENOENT"), ("syncbo 0 1 2 0 0", "EINVAL"),
    ("syncbo 0 1 0 0 8192", "EINVAL"), ("ctx 0 1 1", "EINVAL"), ("ctx 0 0 0", "EINVAL"),
    ("ctx 0 1 0", "ok"), ("exec 0 0 nop", {"ok"}), ("execbad 0 0 ext", "EINVAL"),
    ("execbad 0 0 argstale", "ENOENT"), ("wait 0 0 0", "ok"), ("waitseq 0 0 0", "EINVAL"),
    ("waitseq 0 0 2", "EINVAL"), ("info 0 8 4", "ok"), ("info 0 4 64", "EINVAL"), ("info 0 4 2048", "ok"),
    ("info 0 0xffff 8", "EOPNOTSUPP"), ("info 0 0xa 16", "EINVAL"), ("array 0 0 160 1024", "ok"),
    ("array 0 0 160 1025", "EINVAL"), ("array 0 1 8 1", "EINVAL"), ("array 0 6 24 1", "EINVAL"),
    ("array 0 6 32 1", "ok"), ("array 0 3 32 1", "EOPNOTSUPP"), ("config 0 0 3 0", "EOPNOTSUPP"),
    ("config 0 0 0 0", "EINVAL"), ("config 0 0 0 1", "ok"), ("config 0 0 0 1", "EINVAL"),
    ("sobj 0 2", "EINVAL"), ("sobj 0 0", "ok"), ("sobjwait 0 1 1 0", "EINVAL"),
    ("sobjwait 0 1 1 2", "ETIME"), ("sobjsignal 0 1 3", "ok"), ("sobjwait 0 1 3 0", "ok"),
    ("sobjsignal 0 0 3", "EINVAL"), ("depend 0 0 1 3", "ok"), ("depend 0 0 1 5", "EINVAL"),
    ("signal 0 0 1 9", "ok"), ("sobjdestroy 0 1 1", "EINVAL"), ("raw 0 0x41 0x40 56", "ENOTTY"),
    ("raw 0 0x64 0x4b 24", "EINVAL"), ("open", "ok"), ("boinfo 1 1 0", "ENOENT"),
    ("destroy 1 0 0", "EINVAL"), ("gemclose 0 0", "EBUSY"), ("destroy 0 0 1", "EINVAL"),
    ("destroy 0 0 0", "ok"), ("close 0", "ok"), ("info 0 8 4", "EBADF"),
]


def _errname(name: str) -> str:
    """An errno as the harness names it (EOPNOTSUPP is ENOTSUP there)."""
    return name if name == "ok" else errno.errorcode[getattr(errno, name)]


def test_the_model_predicts_each_ioctl_as_the_driver_answers() -> None:
    """Every case is predicted (not "unknown") and the decoder gives exactly that."""
    h = ShimHarness("npu4")
    try:
        h.apply(tr.parse_line("call probe", "shim"))
        for line, answer in CASES:
            op = tr.parse_line(f"ioctl {line}", "shim")
            want = h.umodel.expect(h, op.args[0], op.args[1:])
            answers = {_errname(a) for a in answer} if isinstance(answer, set) else _errname(answer)
            assert want == answers, line
            h.apply(op)  # the model checks the errno, so this is the decoder's answer too
            assert h.last in (answers if isinstance(answers, set) else {answers}), line
        h.finish()
    finally:
        h.close()


def test_the_job_oracle_fires_on_a_lying_firmware() -> None:
    """A failed job's response saying success: its ioctl job ends COMPLETED, not ERROR."""
    res = tr.replay(_trace("call probe\nfault error_as_success\nioctl open\nioctl heap 0\n"
                           "ioctl ctx 0 1 0\nioctl exec 0 0 fail\nioctl wait 0 0 0\n"))
    assert not res.ok and res.failure.name == "model_state", res.failure


def test_a_livelocked_ioctl_leaves_the_harness_usable() -> None:
    """A session stuck in a call (the livelock of docs/spec/fuzzing.md §12, or none once it
    is fixed) does not spoil the next example: the same trace gives the same verdict."""
    t = _trace("call probe\ncall ctx\ncall stop\ncall probe\nioctl open\nioctl heap 0\n"
               "ioctl ctx 0 1 0\nioctl exec 0 0 nop\n")
    h = ShimHarness("npu4")
    try:
        first, again = tr.replay(t, h), tr.replay(t, h)
        assert (first.ok, str(first.failure)) == (again.ok, str(again.failure))
    finally:
        h.close()


def test_generated_programs_draw_ioctls_on_both_generations() -> None:
    import random

    rng = random.Random(4)
    assert any(random_op(rng).verb == "ioctl" for _ in range(400))
    assert any(random_op(rng, aie4=True).verb == "ioctl" for _ in range(400))
    fz = ShimFuzzer("npu4", 1, None, None)
    try:
        fz.run_one(seed_ops())
        assert any(k.startswith("ioctl exec:ok") for k in fz.features | set(fz.session.events))
    finally:
        fz.close()


def test_the_uapi_oracles_fire_on_planted_bugs(tmp_path: Path) -> None:
    """The decoder mutated (both UAPI mutants in one scratch tree, one build): GET_ARRAY's
    count bound off by one is an errno finding, GET_INFO's dropped bound an overrun."""
    cases = [("ioctl array 0 0 160 1024\n", "model_errno"), ("ioctl info 0 8 4\n", "model_overrun")]
    assert_findings(tmp_path, ("uapi-array-count-bound", "uapi-info-overrun"),
                    [(f"chip npu4\ntarget shim\ncall probe\nioctl open\n{body}", want)
                     for body, want in cases])


def test_client_job_while_the_driver_suspended_resumes_the_device() -> None:
    """Found by the shim target (a job that ended TIMEOUT): a client's call that needs the
    device while the driver session holds it suspended asks the driver to resume it (the
    ctrl page's PM_ASK), the job runs on the client's reconnected context, and the driver's
    device is up again (docs/spec/jobs.md §1)."""
    h = ShimHarness("npu4")
    try:
        for line in ("call probe", "call ctx", "ioctl open", "ioctl heap 0", "ioctl ctx 0 1 0",
                     "call suspend", "ioctl exec 0 0 nop", "ioctl wait 0 0 0"):
            h.apply(tr.parse_line(line, "shim"))
            assert h.last == "ok", line
        assert h.uapi.observe()[0] == ErtState.COMPLETED
        assert h.model is not None and h.model.dev == "up"  # the model knows it was resumed
        assert not h.shim.power()["suspended"]
        for line, want in (("call resume", "EINVAL"), ("call exec 0 nop", "ok"),
                           ("call wait 0 3000", "ok")):
            h.apply(tr.parse_line(line, "shim"))
            assert h.last == want, line
        assert h.shim.cmd_state(h.jobs[0].cmd) == ErtState.COMPLETED  # its context restarted
        h.finish()
    finally:
        h.close()


def test_client_call_failing_its_argument_checks_leaves_the_device_suspended() -> None:
    """An exec the decoder refuses never reaches the runtime-PM get: the device stays down,
    and the model says so (a resume then succeeds)."""
    res = tr.replay(_trace("call probe\nioctl open\nioctl heap 0\nioctl ctx 0 1 0\n"
                           "call suspend\nioctl execbad 0 0 ext\nexpect errno EINVAL\n"
                           "call resume\nexpect errno ok\nioctl exec 0 0 nop\n"))
    assert res.ok, res.failure


def test_nop_job_completes_although_the_heap_grows_meanwhile() -> None:
    """Found by the shim target (seed 3): a file's nop job ended TIMEOUT when the file's heap
    grew while its jobs were pending: the shim unmapped the heap and mapped it again larger,
    and the job ran in between (an IOMMU fault, a hang, TDR). The larger mapping now
    replaces the old in one step (docs/spec/jobs.md §2, protocol.md DMA_MAP REPLACE)."""
    res = tr.replay(_trace("call probe\nioctl open\nioctl heap 0\nioctl ctx 0 1 0\n"
                           "ioctl exec 0 2 nop\nioctl exec 0 0 nop\nioctl ctx 0 1 0\n"
                           "ioctl exec 0 0 nop\nioctl heap 0\n"))
    assert res.ok, res.failure


@pytest.mark.parametrize(("chip", "down"), [("npu3", "call tick 0x1760"), ("npu3", "call suspend"),
                                           ("npu3_pf", "call suspend")])
def test_aie4_client_attach_while_suspended_resumes_the_device(chip: str, down: str) -> None:
    """Found by fuzz-bench's npu3 control row (the shim target, seed 1): a new process
    attaching while the driver holds the device suspended (its autosuspend, or a suspend
    call; a PF is never autosuspended) got ENODEV. Its attach now asks through the ctrl
    page as an AIE2 client's calls do, the driver's monitor resumes the device, and the
    model knows it is up (docs/spec/jobs.md §1)."""
    res = tr.replay(_trace(f"call probe\n{down}\ncall client\nexpect errno ok\n"
                           "call resume\nexpect errno EINVAL\n", chip))
    assert res.ok, res.failure


def test_get_array_fw_log_smaller_than_its_metadata_is_efault() -> None:
    """Found by the shim target: GET_ARRAY FW_LOG (3) with a 2-byte buffer gave EFAULT where
    the model said EOPNOTSUPP. The driver reads the dpt_metadata at the buffer's end before
    it asks whether logging runs, so a buffer smaller than the metadata is EFAULT, also where
    nothing serves the log (docs/spec/uapi.md §6); the model had the order wrong. One that
    holds the metadata reaches the driver service (none here: EOPNOTSUPP); AIE4 has no log."""
    res = tr.replay(_trace("call probe\nioctl open\nioctl array 0 3 1 2\nexpect errno EFAULT\n"
                           "ioctl array 0 4 1 15\nexpect errno EFAULT\n"
                           "ioctl array 0 3 16 1\nexpect errno ENOTSUP\n"))
    assert res.ok, res.failure
    res = tr.replay(_trace("call probe\nioctl open\nioctl array 0 3 1 2\nexpect errno ENOTSUP\n",
                           "npu3"))
    assert res.ok, res.failure


def test_get_array_backs_the_whole_buffer_it_names() -> None:
    """Found by fuzz-bench's npu4 control row (shim target, seed 2): GET_ARRAY FW_TRACE of
    1024 elements of 4 KiB gave EFAULT where the model said EOPNOTSUPP. The decoder reads
    the dpt_metadata at the end of the named buffer (docs/spec/uapi.md §6), and the harness
    backed only its first 64 KiB, so that read met whatever lay past them. The harness now
    backs every byte it names within the argument limits (a mapping the kernel fills where
    it is touched), up to 100 MiB elements x 1024; the decoder and the model were right."""
    res = tr.replay(_trace("call probe\nioctl open\nioctl array 0 4 0x1000 0x400\n"
                           "ioctl array 0 3 0x6400000 0x400\nioctl array 0 7 0x1000 0x400\n"))
    assert res.ok, res.failure


def test_aie4_aie_metadata_is_the_firmwares_tile_info() -> None:
    """Found by fuzz-bench's npu3 control row (shim target, seed 2): GET_INFO AIE_METADATA on
    an AIE4 file gave EPERM: the decoder sent AIE2's QUERY_AIE_TILE_INFO, which an AIE4
    client may not send. It now asks AIE4's own AIE_VERSION_INFO and AIE_TILE_INFO (the
    queries a client's attach sends); a PF, with no AIE array of its own, refuses the
    parameter EOPNOTSUPP (docs/spec/uapi.md §6)."""
    res = tr.replay(_trace("call probe\nioctl open\nioctl info 0 1 0\nexpect errno ok\n"
                           "ioctl info 0 1 64\nexpect errno ok\n", "npu3"))
    assert res.ok, res.failure
    res = tr.replay(_trace("call probe\nioctl open\nioctl info 0 1 64\nexpect errno ENOTSUP\n",
                           "npu3_pf"))
    assert res.ok, res.failure
    with InProcess("npu3") as ip:
        ip.probe()
        f = ip.call(AccelFile.attach, ip.daemon.socket_path, -1)[0]
        try:
            md = ip.call(f.get_info, "QUERY_AIE_METADATA", T.QUERY_AIE_METADATA)[0]
            tiles = ip.daemon.chip.tiles
            assert (md["cols"], md["rows"]) == (tiles.cols, tiles.rows)
        finally:
            f.close()


def test_get_array_dpt_config_needs_room_for_one_state() -> None:
    """GET_ARRAY FW_LOG_CONFIG with fewer than 16 bytes: ENOSPC before the driver service
    is asked (docs/spec/uapi.md §6; the model lacked the rule)."""
    res = tr.replay(_trace("call probe\nioctl open\nioctl array 0 7 1 2\nexpect errno ENOSPC\n"
                           "ioctl array 0 8 16 1\nexpect errno ENOTSUP\n"))
    assert res.ok, res.failure


def test_ioctl_lines_on_aie4_are_predicted() -> None:
    """On AIE4 (npu3) the files have no DEV heap: a heap chunk EINVAL, a context ENOENT
    (columns checked first), an exec on no context EINVAL; BOs, queries and syncobjs as on
    AIE2; across a suspend and resume (docs/spec/fuzzing.md §12)."""
    body = ("call probe\nioctl open\nioctl heap 0\nexpect errno EINVAL\nioctl bo 0 3 4096 0\n"
            "expect errno ok\nioctl ctx 0 1 0\nexpect errno ENOENT\nioctl ctx 0 0 0\n"
            "expect errno EINVAL\nioctl exec 0 0 nop\nexpect errno EINVAL\nioctl info 0 8 4\n"
            "ioctl array 0 0 160 1\nioctl sobj 0 0\nioctl sobjsignal 0 0 5\nioctl sobjwait 0 0 5 0\n"
            "expect errno ok\ncall suspend\ncall resume\nioctl boinfo 0 0 0\nexpect errno ok\n")
    res = tr.replay(_trace(body, "npu3"))
    assert res.ok, res.failure


def test_client_contexts_still_end_when_the_driver_stops() -> None:
    """Suspend and resume keep a client's context; stop ends it even while suspended
    (DRV_STOPS), and the client's call does not resume a stopped device."""
    res = tr.replay(_trace("call probe\nioctl open\nioctl heap 0\nioctl ctx 0 1 0\n"
                           "call suspend\ncall resume\nioctl exec 0 0 nop\nexpect errno ok\n"
                           "call suspend\ncall stop\nioctl exec 0 0 nop\nexpect errno ENODEV\n"))
    assert res.ok, res.failure


@pytest.mark.parametrize("chip,body", [
    ("npu3", "call probe\ncall client\ncall suspend\ncall cmgmt driver 0\n"),
    ("npu3", "call probe\ncall suspend\nfault bad_id -1 2 0\nioctl open\nfault fw_fatal 0 2 0\n"
             "call ctx\n"),
], ids=["refused-cmgmt-resumes", "aie4-file-open-resumes"])
def test_an_aie4_client_that_asks_may_resume_the_device(chip: str, body: str) -> None:
    """A client session's call asks the driver to resume before its own checks, so a refused
    one (a driver-only message: EPERM) may leave the device up, and an AIE4 DRM file's open
    asks too: the model takes the shim's power state then (false alarms of fuzz-bench's npu3
    control row, docs/spec/fuzzing.md §12)."""
    res = tr.replay(_trace(body, chip))
    assert res.ok, res.failure


def _driver_vectors(h: ShimHarness) -> list[int]:
    """The MSI-X vectors the driver session owns but the management channel's."""
    d = h.ip.daemon
    mgmt = d.device.mailbox.channels[0].vector
    return [v for v, s in d.vector_owner.items() if s is d.driver and v != mgmt]


def test_a_context_that_fails_to_start_gives_its_vector_back() -> None:
    """Found by fuzz-bench's npu4 control row (shim target, seed 1): a DRM file's exec on a
    device the driver had suspended spun for ever. The driver's own context had failed to
    start after it took its MSI-X vector (its MAP_HOST_BUFFER answer came with id 0: EPIPE),
    and the vector stayed the driver session's; after the resume the firmware gave the
    client's context that vector, its SET_IRQS met EBUSY, and the runqueue destroyed and
    re-created it without end. A context whose start fails gives its vector back with its
    channel, as the driver's channel teardown frees its interrupt (docs/spec/jobs.md §3a)."""
    res = tr.replay(_trace("call probe\nfault no_irq 0 0 0\nfault zero_id 0 0 0\ncall ctx\n"
                           "expect errno EPIPE\nioctl open\nioctl heap 0\nioctl ctx 0 1 0\n"
                           "call suspend\nioctl exec 0 0 nop\nexpect errno ok\n"))
    assert res.ok, res.failure
    with _applied("call probe\nfault no_irq 0 0 0\nfault zero_id 0 0 0\ncall ctx\n") as h:
        assert h.last == "EPIPE"
        assert _driver_vectors(h) == []


def test_a_tdr_recovery_that_cannot_restart_gives_its_vector_back() -> None:
    """TDR recovery destroys the hung context and creates it again; when the creation
    fails (here every answer has id 0: EPIPE) the context is broken and no longer live on
    the firmware, so its old vector goes back as when a first start fails: the firmware
    may give it to another session's context next."""
    with _applied("call probe\ncall ctx\ncall exec 0 hang\nfault zero_id 0 0 0\n"
                  "call tick 0x1000\n") as h:
        assert h.shim.hwctx_info(h.ctxs[0])["state"] == "broken"
        assert _driver_vectors(h) == []


def test_a_stopped_files_job_never_reads_the_next_firmwares_ring() -> None:
    """Found by fuzz-bench's npu4 control row (shim target, seed 1): a DRM file's hang was
    pending when the driver stopped the device; after the re-probe the driver's new context
    got the file's old context id, channel and ring, ran 96 jobs there, and the file's wait
    read their answers as its own: the hang ended COMPLETED, not ABORT. The client session
    now looks whether its contexts' firmware went before every receive of its event pump,
    not only before a call that needs the device, so the job ends ABORT and the stale ring
    is never read (docs/spec/jobs.md §1)."""
    res = tr.replay(_trace("call probe\nioctl open\nioctl heap 0\nioctl ctx 0 1 0\n"
                           "ioctl exec 0 0 hang\ncall ctx\ncall stop\ncall probe\ncall bulk 0 0x60\n"))
    assert res.ok, res.failure


def test_a_probe_after_a_failed_resume_is_ealready() -> None:
    """Found by fuzz-bench's npu4 control row (shim target, seed 1): a DRM file's call asked
    the driver to resume the device it had suspended, the resume failed under armed reply
    faults, and a later probe ran a whole probe again (EPIPE) where the model said EALREADY.
    A driver whose resume failed stays bound to its device: a probe is EALREADY until a stop
    unbinds it; a probe that failed binds nothing, so another may follow (docs/spec/jobs.md
    §6)."""
    res = tr.replay(_trace("call probe\ncall mgmt 0xfffe 00000000\nioctl open\nioctl heap 0\n"
                           "ioctl ctx 0 1 0\nfault dup 0 0 0\nfault bad_tail 0 0 0x128\n"
                           "call suspend\nioctl destroy 0 4 0\ncall probe\nexpect errno EALREADY\n"))
    assert res.ok, res.failure
    with _applied("call probe\nfault dup 0 0 0\nfault bad_tail 0 0 0x128\ncall suspend\n"
                  "call resume\n") as h:
        assert h.last != "ok" and h.shim.info()["state"] == "failed"  # its own resume failed
        with pytest.raises(ShimError) as e:  # nor may it become a client, which cannot stop
            h.shim.attach()
        assert e.value.errno == errno.EALREADY
        for line, want in (("call probe", "EALREADY"), ("call stop", None), ("call probe", "ok")):
            h.apply(_trace(line + "\n").ops[0])
            assert want is None or h.last == want, (line, h.last)


def test_aie4_certdetach_refused_while_suspended_keeps_the_log() -> None:
    """Found by fuzz-bench's npu3 control row: a CERT log detach refused while the driver
    held the device suspended (the context is not live on the firmware: EINVAL) changes
    nothing, so after a client's attach resumed the device the log is still bound and a
    detach succeeds. The model had taken every detach as unbinding (docs/spec/aie4.md §11)."""
    res = tr.replay(_trace("call probe\ncall ctx\ncall dbgbo 0x2000\ncall certlog 0 0 5:64,0:64\n"
                           "call suspend\ncall certdetach 0\nexpect errno EINVAL\ncall client\n"
                           "call certdetach 3\nexpect errno ok\ncall certdetach 0\n"
                           "expect errno EINVAL\n", "npu3"))
    assert res.ok, res.failure


def test_aie4_cert_log_calls_resume_a_runtime_suspended_device() -> None:
    """A CERT log attach or detach is a context config call: on a runtime-suspended device
    it resumes it, as the driver's config ioctl does, instead of finding no live context
    (EINVAL); the model's prediction for a live context holds (docs/spec/aie4.md §11)."""
    res = tr.replay(_trace("call probe\ncall ctx\ncall dbgbo 0x2000\ncall certlog 0 0 0:64\n"
                           "call tick 0x1760\ncall certdetach 0\nexpect errno ok\n"
                           "call tick 0x1760\ncall certlog 0 0 1:64\nexpect errno ok\n"
                           "call certdetach 0\nexpect errno ok\n", "npu3"))
    assert res.ok, res.failure
    with _applied("call probe\ncall ctx\ncall dbgbo 0x2000\ncall tick 0x1760\n", "npu3") as h:
        assert h.shim.power()["suspended"]
        h.apply(_trace("call certlog 0 0 0:64\n", "npu3").ops[0])
        assert h.last == "ok" and not h.shim.power()["suspended"]


def test_aie4_autosuspends_after_a_completion_nobody_waited_for() -> None:
    """Found by fuzz-bench's npu3 control row: a nop job's completion that the firmware
    signalled while a client attached (no wait of the driver session received it) kept
    the job counted, and the device never autosuspended. The monitor's step in
    deterministic mode now receives before its duties, as the monitor thread's iteration
    does (docs/spec/jobs.md §6); the client holds no context, so nothing keeps it up."""
    res = tr.replay(_trace("call probe\ncall ctx\ncall exec 0 nop\ncall client\ncall tick 0x1760\n"
                           "call resume\nexpect errno ok\n", "npu3"))
    assert res.ok, res.failure
    res = tr.replay(_trace("call probe\nioctl open\nioctl heap 0\nioctl ctx 0 1 0\ncall ctx\n"
                           "call exec 0 nop\nioctl info 0 8 4\ncall tick 0x1760\n"))
    assert res.ok, res.failure  # AIE2: a file's context holds the device up (model_power)


@pytest.mark.parametrize("down", ["call suspend\ncall client", "call suspend\ncall resume"])
def test_aie4_pf_vfs_can_be_disabled_after_a_resume(down: str) -> None:
    """Found by fuzz-bench's npu3_pf control row: after a suspend and resume (a client's, or
    the driver's own) a PF's restarted firmware no longer knew its VFs, so disabling them
    failed DESTROY_VFS (EIO). The driver now gives a restarted firmware the enabled count
    again, as its reset_done does after a firmware reload (docs/spec/aie4.md §10)."""
    res = tr.replay(_trace(f"call probe\ncall sriov 2\n{down}\ncall sriov 0\nexpect errno ok\n"
                           "call sriov 3\nexpect errno ok\ncall sriov 1\nexpect errno EBUSY\n",
                           "npu3_pf"))
    assert res.ok, res.failure


def test_a_vf_disable_that_fails_late_has_ended_the_vfs_jobs() -> None:
    """Found by fuzz-bench's npu3_pf control row (shim target, seed 1): disabling the VFs
    with the firmware's answers dropped removed the VFs first (their drivers ended the
    pending hang ABORT), then DESTROY_VFS timed out; the model allowed ABORT only after a
    disable that succeeded and said TIMEOUT. A disable that fails late has removed the VFs
    all the same (docs/spec/aie4.md §10); the shim was right."""
    res = tr.replay(_trace("call probe\ncall sriov 2\ncall vf 0 hang\nfault drop 0 2 0\n"
                           "call sriov 0\n", "npu3_pf"))
    assert res.ok, res.failure


def test_a_client_resume_that_failed_leaves_the_device_unpredicted() -> None:
    """Found by fuzz-bench's npu3_pf control row (shim target, seed 2): a client's attach
    asked the driver to resume the device it had suspended, the resume met an armed reply
    fault and failed (the attach ENODEV), and `sriov 0` then gave EINVAL (the device is
    not probed) where the model said ok. The model had taken "no longer suspended" for
    "up"; a failed resume leaves the device failed, still bound (docs/spec/jobs.md §6),
    which the model does not follow: it predicts nothing there until the next probe or
    stop. The shim was right."""
    body = ("call probe\ncall mgmt 0x1000f 00000000\ncall sriov 0\nfault noncontig_id 0 0 0\n"
            "call suspend\ncall client\nexpect errno ENODEV\ncall sriov 0\nexpect errno EINVAL\n")
    res = tr.replay(_trace(body, "npu3_pf"))
    assert res.ok, res.failure
    with _applied(body, "npu3_pf", ops=7) as h:
        assert h.shim.info()["state"] == "failed" and h.model is not None
        assert h.model.dev == "unknown"
        assert h.model.expect(h, "sriov", (0,)) is None
        h.apply(_trace("call stop\n", "npu3_pf").ops[0])
        assert h.model.dev == "off" and h.model.expect(h, "sriov", (0,)) == "EINVAL"
