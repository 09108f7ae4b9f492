"""The emulated AIE4 firmware blocks (docs/spec/aie4.md): PSP with the cert image, the
management firmware behind mailbox_info, HSA user-mode queues and their doorbells."""
