/* C mirror of xdna_emu/protocol.py (control socket + write log, docs/spec/protocol.md).
 *
 * tests/test_proto_mirror.py parses every "#define XDNA_PROTO_*" line below and compares it
 * with the Python constant of the same meaning, so the two cannot drift.
 */
#ifndef XDNA_PROTO_H
#define XDNA_PROTO_H

#include <stdint.h>

#define XDNA_PROTO_MAJOR 1
#define XDNA_PROTO_MINOR 1
#define XDNA_PROTO_MAX_MSG_SIZE 0x100000
#define XDNA_PROTO_MAX_MSG_FDS 8
#define XDNA_PROTO_HEADER_SIZE 16

#define XDNA_PROTO_FLAG_TYPE_MASK 0xF
#define XDNA_PROTO_TYPE_COMMAND 0
#define XDNA_PROTO_TYPE_REPLY 1
#define XDNA_PROTO_FLAG_NO_REPLY 0x10
#define XDNA_PROTO_FLAG_ERROR 0x20

/* commands */
#define XDNA_PROTO_CMD_VERSION 1
#define XDNA_PROTO_CMD_DMA_MAP 2
#define XDNA_PROTO_CMD_DMA_UNMAP 3
#define XDNA_PROTO_CMD_DEVICE_GET_INFO 4
#define XDNA_PROTO_CMD_GET_REGION_INFO 5
#define XDNA_PROTO_CMD_GET_IRQ_INFO 7
#define XDNA_PROTO_CMD_SET_IRQS 8
#define XDNA_PROTO_CMD_REGION_READ 9
#define XDNA_PROTO_CMD_REGION_WRITE 10
#define XDNA_PROTO_CMD_DEVICE_RESET 13
#define XDNA_PROTO_CMD_ATTACH_WRITE_LOG 0x100
#define XDNA_PROTO_CMD_MGMT_PROXY 0x101
#define XDNA_PROTO_CMD_DEVICE_STATUS 0x102

/* regions */
#define XDNA_PROTO_REGION_CONFIG 7
#define XDNA_PROTO_NUM_REGIONS 8
#define XDNA_PROTO_REGION_READ 1
#define XDNA_PROTO_REGION_WRITE 2
#define XDNA_PROTO_REGION_MMAP 4
#define XDNA_PROTO_CONFIG_SIZE 4096

/* irqs */
#define XDNA_PROTO_IRQ_INTX 0
#define XDNA_PROTO_IRQ_MSI 1
#define XDNA_PROTO_IRQ_MSIX 2
#define XDNA_PROTO_IRQ_ERR 3
#define XDNA_PROTO_IRQ_REQ 4
#define XDNA_PROTO_NUM_IRQS 5
#define XDNA_PROTO_IRQ_DATA_NONE 1
#define XDNA_PROTO_IRQ_DATA_BOOL 2
#define XDNA_PROTO_IRQ_DATA_EVENTFD 4
#define XDNA_PROTO_IRQ_ACTION_MASK 0x8
#define XDNA_PROTO_IRQ_ACTION_UNMASK 0x10
#define XDNA_PROTO_IRQ_ACTION_TRIGGER 0x20

#define XDNA_PROTO_DEVICE_FLAG_RESET 1
#define XDNA_PROTO_DEVICE_FLAG_PCI 2

#define XDNA_PROTO_DMA_READ 1
#define XDNA_PROTO_DMA_WRITE 2
#define XDNA_PROTO_DMA_SVA 4

/* payload sizes (struct layouts below) */
#define XDNA_PROTO_VERSION_HDR_SIZE 4
#define XDNA_PROTO_DEVICE_INFO_SIZE 16
#define XDNA_PROTO_REGION_INFO_SIZE 32
#define XDNA_PROTO_IRQ_INFO_SIZE 16
#define XDNA_PROTO_SET_IRQS_SIZE 20
#define XDNA_PROTO_REGION_ACCESS_SIZE 16
#define XDNA_PROTO_DMA_MAP_SIZE 40
#define XDNA_PROTO_DMA_UNMAP_SIZE 32
#define XDNA_PROTO_WRITE_LOG_INFO_SIZE 8

/* write-log ctrl page */
#define XDNA_PROTO_CTRL_SIZE 65536
#define XDNA_PROTO_CTRL_MAGIC 0x474C4458
#define XDNA_PROTO_CTRL_VERSION 1
#define XDNA_PROTO_CTRL_OFF_MAGIC 0x00
#define XDNA_PROTO_CTRL_OFF_VERSION 0x04
#define XDNA_PROTO_CTRL_OFF_ENTRIES 0x08
#define XDNA_PROTO_CTRL_OFF_ENTRY_SIZE 0x0C
#define XDNA_PROTO_CTRL_OFF_HEAD 0x10
#define XDNA_PROTO_CTRL_OFF_TAIL 0x18
#define XDNA_PROTO_CTRL_OFF_EPOCH 0x20
#define XDNA_PROTO_CTRL_OFF_ALIVE 0x28
#define XDNA_PROTO_CTRL_OFF_FOREIGN_CTX 0x2C
#define XDNA_PROTO_CTRL_OFF_ENTRY0 0x40
#define XDNA_PROTO_LOG_ENTRY_SIZE 16
#define XDNA_PROTO_LOG_ENTRIES 4092

/* Wire layouts (all little-endian, packed by construction: natural alignment, no holes). */
struct xdna_proto_hdr {
    uint16_t msg_id;
    uint16_t command;
    uint32_t msg_size;
    uint32_t flags;
    uint32_t error;
};

struct xdna_proto_device_info {
    uint32_t argsz, flags, num_regions, num_irqs;
};

struct xdna_proto_region_info {
    uint32_t argsz, flags, index, cap_offset;
    uint64_t size, offset;
};

struct xdna_proto_irq_info {
    uint32_t argsz, flags, index, count;
};

struct xdna_proto_set_irqs {
    uint32_t argsz, flags, index, start, count;
};

struct xdna_proto_region_access {
    uint64_t offset;
    uint32_t region, count;
};

struct xdna_proto_dma_map {
    uint32_t argsz, flags;
    uint64_t offset, address, size;
    uint32_t pasid, rsvd;
};

struct xdna_proto_dma_unmap {
    uint32_t argsz, flags;
    uint64_t address, size;
    uint32_t pasid, rsvd;
};

struct xdna_proto_write_log_info {
    uint32_t entries, rsvd;
};

struct xdna_proto_log_entry {
    uint32_t bar, offset, value, rsvd;
};

_Static_assert(sizeof(struct xdna_proto_hdr) == XDNA_PROTO_HEADER_SIZE, "hdr");
_Static_assert(sizeof(struct xdna_proto_device_info) == XDNA_PROTO_DEVICE_INFO_SIZE, "devinfo");
_Static_assert(sizeof(struct xdna_proto_region_info) == XDNA_PROTO_REGION_INFO_SIZE, "reginfo");
_Static_assert(sizeof(struct xdna_proto_irq_info) == XDNA_PROTO_IRQ_INFO_SIZE, "irqinfo");
_Static_assert(sizeof(struct xdna_proto_set_irqs) == XDNA_PROTO_SET_IRQS_SIZE, "setirqs");
_Static_assert(sizeof(struct xdna_proto_region_access) == XDNA_PROTO_REGION_ACCESS_SIZE, "access");
_Static_assert(sizeof(struct xdna_proto_dma_map) == XDNA_PROTO_DMA_MAP_SIZE, "dmamap");
_Static_assert(sizeof(struct xdna_proto_dma_unmap) == XDNA_PROTO_DMA_UNMAP_SIZE, "dmaunmap");
_Static_assert(sizeof(struct xdna_proto_write_log_info) == XDNA_PROTO_WRITE_LOG_INFO_SIZE, "wlinfo");
_Static_assert(sizeof(struct xdna_proto_log_entry) == XDNA_PROTO_LOG_ENTRY_SIZE, "entry");
_Static_assert(XDNA_PROTO_CTRL_OFF_ENTRY0 + XDNA_PROTO_LOG_ENTRIES * XDNA_PROTO_LOG_ENTRY_SIZE <=
                   XDNA_PROTO_CTRL_SIZE, "ctrl page");

#endif
