"""Fuzzing the device model (our firmware): op streams, replayable traces and invariants.

- :mod:`.ops`: the in-process :class:`~.ops.DeviceHarness` (device, host memory, driver helpers)
  and a QEMU generic-fuzz-style interpreter that turns fuzz bytes into trace ops.
- :mod:`.invariants`: the checks run after every op (reference model of PSP/SMU, channel
  and context accounting, no spurious interrupts, no internal errors).
- :mod:`.trace`: the line-oriented text trace, replay, ddmin minimiser, recorder and the
  golden-trace generator (``python -m xdna_emu.fuzz.trace record-golden``).
- :mod:`.atheris_target`: coverage-guided harnesses (device, parsers) for atheris/libFuzzer.
- :mod:`.cli`: ``xdna-emu fuzz`` and ``xdna-emu trace``.
"""
