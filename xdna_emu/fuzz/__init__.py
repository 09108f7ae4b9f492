"""Fuzzing the device model (our firmware): op streams, replayable traces and invariants.

Modules, lowest first (docs/architecture.md, Layers):

- :mod:`.invariants`: the checks run after every op (reference model of PSP/SMU, channel
  and context accounting, no spurious interrupts, no internal errors).
- :mod:`.lang`: the trace language: :class:`~.lang.Op`, operand text, ``expect`` forms.
- :mod:`.ops`: the in-process :class:`~.ops.DeviceHarness` (device, host memory, driver helpers)
  and a QEMU generic-fuzz-style interpreter that turns fuzz bytes into trace ops.
- :mod:`.faults`, :mod:`.model`, :mod:`.uapi_trace`, :mod:`.shim_trace`: firmware
  misbehaviours, the driver's contract, the ``ioctl`` lines on DRM files with the UAPI
  contract, and the shim harness (:class:`~.shim_trace.ShimHarness`), the real C shim in
  deterministic in-process mode.
- :mod:`.trace`: the line-oriented text trace, replay, ddmin minimiser, recorder and the
  golden-trace generator (``python -m xdna_emu.fuzz.trace record-golden``).
- :mod:`.atheris_target`, :mod:`.shim_target`: coverage-guided targets (device, parsers,
  shim) for atheris/libFuzzer or the built-in loop.
- :mod:`.machines`, :mod:`.shim_machine`: the Hypothesis state machines of the test suite.
- :mod:`.cli`: ``xdna-emu fuzz`` and ``xdna-emu trace``, registered into the main CLI
  through the ``xdna_emu.commands`` entry point.
"""
