"""The emulated AIE2 firmware blocks: image format, PSP, SMU, mailbox engine, mgmt firmware.

See docs/spec/firmware.md for the registers, state machines and status codes.
"""
