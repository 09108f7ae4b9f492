/* The PCI function over the control socket: the attach half of probe, the driver's
 * aie2_pci.c PCI side and its VFIO-style plumbing (docs/spec/protocol.md).
 *
 * Protocol VERSION and DEVICE_GET_INFO, config space and the id-table match, memory and bus
 * mastering on, the BARs mapped, the write log attached, MSI-X enabled with one eventfd per
 * vector, and per-vector interrupt ownership (SET_IRQS) for the channels that need one.
 */
#include "shim_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* PCI configuration space (PCI Local Bus spec). */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_CAPABILITY_LIST 0x34
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_CAP_ID_MSIX 0x11
#define PCI_CAP_ID_EXP 0x10
#define PCI_EXP_DEVCAP 4
#define PCI_EXP_DEVCAP_FLR 0x10000000u
#define PCI_EXP_DEVCTL 8
#define PCI_EXP_DEVCTL_BCR_FLR 0x8000
#define PCI_EXT_CAP_START 0x100
#define PCI_EXT_CAP_ID_SRIOV 0x10
#define PCI_SRIOV_CTRL 0x08
#define PCI_SRIOV_CTRL_VFE 0x01
#define PCI_SRIOV_CTRL_MSE 0x08
#define PCI_SRIOV_TOTAL_VF 0x0E
#define PCI_SRIOV_NUM_VF 0x10
#define PCI_MSIX_FLAGS 2
#define PCI_MSIX_TABLE 4
#define PCI_MSIX_FLAGS_QSIZE 0x7FF
#define PCI_MSIX_FLAGS_MASKALL 0x4000
#define PCI_MSIX_FLAGS_ENABLE 0x8000
#define PCI_MSIX_BIR_MASK 0x7
#define PCI_MSIX_ENTRY_SIZE 16
#define PCI_MSIX_ENTRY_VECTOR_CTRL 12
#define PCI_MSIX_ENTRY_CTRL_MASKBIT 1

#define AMD_VENDOR_ID 0x1022
#define NPU_CLASS_PREFIX 0x1180 /* PCI_CLASS_SP_OTHER, bound by class in the OOT driver */

/* ---- config space ------------------------------------------------------------------ */

static uint16_t cfg16(struct xdna_shim_ctx *ctx, unsigned off)
{
    if (off + 2 > sizeof(ctx->config))
        return 0;
    return (uint16_t)(ctx->config[off] | ctx->config[off + 1] << 8);
}

static uint32_t cfg32(struct xdna_shim_ctx *ctx, unsigned off)
{
    if (off + 4 > sizeof(ctx->config))
        return 0;
    return (uint32_t)cfg16(ctx, off) | (uint32_t)cfg16(ctx, off + 2) << 16;
}

static int cfg_write16(struct xdna_shim_ctx *ctx, unsigned off, uint16_t val)
{
    uint8_t b[2] = {(uint8_t)val, (uint8_t)(val >> 8)};
    if (xdna_region_write(ctx, XDNA_PROTO_REGION_CONFIG, off, b, 2) < 0)
        return -1;
    ctx->config[off] = b[0];
    ctx->config[off + 1] = b[1];
    return 0;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* ---- attach ------------------------------------------------------------------------ */

/* Find "key": in a flat JSON object; returns a pointer to the value or NULL. */
static const char *json_value(const char *js, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    const char *p = strstr(js, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static void json_string(const char *js, const char *key, char *out, size_t cap)
{
    const char *p = json_value(js, key);
    out[0] = 0;
    if (!p || *p != '"')
        return;
    p++;
    size_t n = 0;
    while (*p && *p != '"' && n + 1 < cap) {
        if (*p == '\\' && p[1])
            p++;
        out[n++] = *p++;
    }
    out[n] = 0;
}

static long json_long(const char *js, const char *key, long dflt)
{
    const char *p = json_value(js, key);
    if (!p)
        return dflt;
    char *end;
    long v = strtol(p, &end, 10);
    return end == p ? dflt : v;
}

static int send_version(struct xdna_shim_ctx *ctx, uint16_t *id)
{
    static const char caps[] = "{\"client\":\"xdna-shim\",\"max_msg_fds\":8}";
    uint8_t req[4 + sizeof(caps)];
    uint16_t v[2] = {XDNA_PROTO_MAJOR, XDNA_PROTO_MINOR};
    memcpy(req, v, 4);
    memcpy(req + 4, caps, sizeof(caps)); /* includes the NUL */
    return xdna_ctl_send(ctx, XDNA_PROTO_CMD_VERSION, req, sizeof(req), NULL, 0, id);
}

/* Check the answer to the VERSION sent as id and take the daemon's caps. */
static int do_version(struct xdna_shim_ctx *ctx, uint16_t id)
{
    char resp[4096];
    size_t len = sizeof(resp) - 1;
    if (xdna_ctl_recv(ctx, XDNA_PROTO_CMD_VERSION, id, resp, &len, 5, NULL, NULL) < 0)
        return -1;
    uint16_t major, minor;
    memcpy(&major, resp, 2);
    memcpy(&minor, resp + 2, 2);
    if (major != XDNA_PROTO_MAJOR)
        return xdna_fail(ctx, EPROTO, "VERSION: daemon speaks protocol %u.%u, we need major %u",
                         major, minor, XDNA_PROTO_MAJOR);
    if (minor > XDNA_PROTO_MINOR)
        return xdna_fail(ctx, EPROTO, "VERSION: daemon answered minor %u > ours (%u)", minor,
                         XDNA_PROTO_MINOR);
    if (resp[len - 1] != 0)
        return xdna_fail(ctx, EPROTO, "VERSION: caps are not NUL-terminated");
    resp[len] = 0;
    const char *js = resp + 4;
    json_string(js, "bdf", ctx->info.bdf, sizeof(ctx->info.bdf));
    const char *probed = json_value(js, "probed");
    ctx->s.caps_probed = probed && strncmp(probed, "true", 4) == 0;
    long pasid = json_long(js, "pasid", 0);
    ctx->info.pasid = pasid >= 0 && pasid <= 0xFFFFF ? (uint32_t)pasid : 0;
    long mf = json_long(js, "max_msg_fds", XDNA_PROTO_MAX_MSG_FDS);
    ctx->max_msg_fds = mf >= 1 && mf <= XDNA_PROTO_MAX_MSG_FDS ? (uint32_t)mf : 1;
    return 0;
}

static int do_device_info(struct xdna_shim_ctx *ctx, uint16_t id)
{
    struct xdna_proto_device_info di;
    size_t len = sizeof(di);
    if (xdna_ctl_recv(ctx, XDNA_PROTO_CMD_DEVICE_GET_INFO, id, &di, &len, sizeof(di), NULL,
                      NULL) < 0)
        return -1;
    if (!(di.flags & XDNA_PROTO_DEVICE_FLAG_PCI) || di.num_regions < XDNA_PROTO_NUM_REGIONS ||
        di.num_irqs <= XDNA_PROTO_IRQ_MSIX)
        return xdna_fail(ctx, ENODEV, "DEVICE_GET_INFO: not a PCI device (flags %#x, %u regions,"
                                      " %u irq indices)", di.flags, di.num_regions, di.num_irqs);
    return 0;
}

static int match_id(struct xdna_shim_ctx *ctx)
{
    uint16_t vendor = cfg16(ctx, PCI_VENDOR_ID), device = cfg16(ctx, PCI_DEVICE_ID);
    uint8_t rev = ctx->config[PCI_REVISION_ID];
    uint32_t cls = cfg32(ctx, PCI_REVISION_ID) >> 8;
    ctx->info.vendor = vendor;
    ctx->info.device = device;
    ctx->info.revision = rev;
    ctx->info.class_code = cls;
    if (vendor != AMD_VENDOR_ID || (cls >> 8) != NPU_CLASS_PREFIX)
        return xdna_fail(ctx, ENODEV, "%04x:%04x class %06x is not an AMD NPU", vendor, device, cls);
    ctx->chip = xdna_chip_lookup(device, rev);
    if (!ctx->chip)
        return xdna_fail(ctx, ENODEV, "%04x:%04x rev %02x is in no id table entry", vendor, device,
                         rev);
    const struct xdna_chip_desc *c = ctx->chip;
    copy_str(ctx->info.chip, sizeof(ctx->info.chip), c->name);
    copy_str(ctx->info.family, sizeof(ctx->info.family), c->family);
    copy_str(ctx->info.vbnv, sizeof(ctx->info.vbnv), c->vbnv);
    ctx->info.dpm_levels = c->ndpm;
    ctx->info.first_col = c->first_col;
    ctx->info.hwctx_limit = c->hwctx_limit;
    return 0;
}

/* The daemon's fd must really hold `size` bytes: touching a shared mapping past the end
 * of its file raises SIGBUS, which no caller could turn into an errno. */
static bool fd_holds(int fd, uint64_t size)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_size >= 0 && (uint64_t)st.st_size >= size;
}

/* Map BAR i from the answer to its GET_REGION_INFO (id: what ask_region_infos sent; a region
 * that is not mappable is skipped). The fd is closed on every path: the mapping keeps the
 * memory. */
static int map_bar(struct xdna_shim_ctx *ctx, unsigned i, uint16_t id)
{
    struct xdna_proto_region_info ri;
    size_t len = sizeof(ri);
    int fd = -1, rc = -1;
    unsigned nfd = 1;
    if (xdna_ctl_recv(ctx, XDNA_PROTO_CMD_GET_REGION_INFO, id, &ri, &len, sizeof(ri), &fd,
                      &nfd) < 0)
        return -1;
    if (ri.index != i) {
        xdna_fail(ctx, EPROTO, "GET_REGION_INFO: asked for BAR%u, the reply is for %u", i,
                  ri.index);
        goto close_fd;
    }
    if (!(ri.flags & XDNA_PROTO_REGION_MMAP) || ri.size == 0) {
        rc = 0;
        goto close_fd;
    }
    if (!nfd) {
        xdna_fail(ctx, EPROTO, "GET_REGION_INFO: BAR%u is mappable but came without fd", i);
        goto close_fd;
    }
    if (ri.size > (1ull << 30) || (ri.size & 3) || !fd_holds(fd, ri.size)) {
        xdna_fail(ctx, EPROTO, "GET_REGION_INFO: BAR%u size %#llx is implausible or past its fd",
                  i, (unsigned long long)ri.size);
        goto close_fd;
    }
    void *va = mmap(NULL, ri.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (va == MAP_FAILED) {
        xdna_fail(ctx, errno, "mmap BAR%u: %s", i, strerror(errno));
        goto close_fd;
    }
    ctx->bars[i].va = va;
    ctx->bars[i].size = ri.size;
    ctx->bars[i].flags = ri.flags;
    rc = 0;
close_fd:
    if (nfd && fd >= 0)
        close(fd); /* succeeds, so errno still says why rc is -1 */
    return rc;
}

static int ask_region_infos(struct xdna_shim_ctx *ctx, uint16_t *ids)
{
    for (unsigned i = 0; i < XDNA_NUM_BARS; i++) {
        struct xdna_proto_region_info ri = {.argsz = sizeof(ri), .index = i};
        if (xdna_ctl_send(ctx, XDNA_PROTO_CMD_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0,
                          &ids[i]) < 0)
            return -1;
    }
    return 0;
}

/* Map every BAR from the answers to ask_region_infos (ids: what it sent). */
static int map_bars(struct xdna_shim_ctx *ctx, const uint16_t *ids)
{
    for (unsigned i = 0; i < XDNA_NUM_BARS; i++)
        if (map_bar(ctx, i, ids[i]) < 0)
            return -1;
    /* every BAR the chip's tables use must be there and large enough */
    const struct xdna_chip_desc *c = ctx->chip;
    for (unsigned i = 0; i < c->nbars; i++) {
        const struct xdna_aperture *a = &c->bars[i];
        if (a->bar < 0 || a->bar >= XDNA_NUM_BARS || !ctx->bars[a->bar].va ||
            ctx->bars[a->bar].size < a->size)
            return xdna_fail(ctx, ENODEV, "%s: BAR%d missing or smaller than %#llx bytes", c->name,
                             a->bar, (unsigned long long)a->size);
    }
    return 0;
}

/* Map the write log from the answer to the ATTACH_WRITE_LOG sent as id. */
static int attach_write_log(struct xdna_shim_ctx *ctx, uint16_t id)
{
    struct xdna_proto_write_log_info wl;
    size_t len = sizeof(wl);
    /* room for one fd more than the protocol sends: a reply with too many is seen */
    int fds[XDNA_PROTO_WRITE_LOG_FDS_DOORBELL + 1];
    unsigned nfd = XDNA_PROTO_WRITE_LOG_FDS_DOORBELL + 1;
    for (unsigned i = 0; i < nfd; i++)
        fds[i] = -1;
    if (xdna_ctl_recv(ctx, XDNA_PROTO_CMD_ATTACH_WRITE_LOG, id, &wl, &len, sizeof(wl), fds,
                      &nfd) < 0)
        return -1;
    /* the doorbell eventfd comes from protocol minor DOORBELL_MINOR on */
    if (nfd != XDNA_PROTO_WRITE_LOG_FDS && nfd != XDNA_PROTO_WRITE_LOG_FDS_DOORBELL) {
        xdna_fail(ctx, EPROTO, "ATTACH_WRITE_LOG: %u fds, expected %u or %u", nfd,
                  (unsigned)XDNA_PROTO_WRITE_LOG_FDS, (unsigned)XDNA_PROTO_WRITE_LOG_FDS_DOORBELL);
        goto close_fds;
    }
    ctx->kick_fd = fds[1]; /* the context owns these now (released with it) */
    ctx->notify_fd = fds[2];
    ctx->bell_fd = fds[3];
    nfd = 1;               /* left to close: the ctrl page's fd */
    if (!fd_holds(fds[0], XDNA_PROTO_CTRL_SIZE)) {
        xdna_fail(ctx, EPROTO, "write log: ctrl page fd is smaller than %u bytes",
                  (unsigned)XDNA_PROTO_CTRL_SIZE);
        goto close_fds;
    }
    void *va = mmap(NULL, XDNA_PROTO_CTRL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    if (va == MAP_FAILED) {
        xdna_fail(ctx, errno, "mmap write log: %s", strerror(errno));
        goto close_fds;
    }
    close(fds[0]);
    ctx->ctrl = va;
    const volatile uint32_t *w = (const volatile uint32_t *)ctx->ctrl;
    uint32_t magic = w[XDNA_PROTO_CTRL_OFF_MAGIC / 4], ver = w[XDNA_PROTO_CTRL_OFF_VERSION / 4];
    uint32_t n = w[XDNA_PROTO_CTRL_OFF_ENTRIES / 4], esz = w[XDNA_PROTO_CTRL_OFF_ENTRY_SIZE / 4];
    if (magic != XDNA_PROTO_CTRL_MAGIC || ver != XDNA_PROTO_CTRL_VERSION ||
        esz != XDNA_PROTO_LOG_ENTRY_SIZE || n == 0 || n != wl.entries ||
        n > (XDNA_PROTO_CTRL_SIZE - XDNA_PROTO_CTRL_OFF_ENTRY0) / XDNA_PROTO_LOG_ENTRY_SIZE)
        return xdna_fail(ctx, EPROTO, "write log: bad ctrl page (magic %#x version %u entries %u/%u"
                                      " size %u)", magic, ver, n, wl.entries, esz);
    ctx->log_entries = n;
    ctx->resets_seen = __atomic_load_n(&w[XDNA_PROTO_CTRL_OFF_RESETS / 4], __ATOMIC_ACQUIRE);
    ctx->boots_seen = __atomic_load_n(&w[XDNA_PROTO_CTRL_OFF_FW_BOOTS / 4], __ATOMIC_ACQUIRE);
    ctx->stops_seen = __atomic_load_n(&w[XDNA_PROTO_CTRL_OFF_DRV_STOPS / 4], __ATOMIC_ACQUIRE);
    if (ctx->bell_fd >= 0) { /* fixed from attach on (docs/spec/protocol.md "Doorbells") */
        ctx->bell_bar = w[XDNA_PROTO_CTRL_OFF_DOORBELL_BAR / 4];
        ctx->bell_base = w[XDNA_PROTO_CTRL_OFF_DOORBELL_BASE / 4];
        ctx->bell_stride = w[XDNA_PROTO_CTRL_OFF_DOORBELL_STRIDE / 4];
        ctx->bell_count = w[XDNA_PROTO_CTRL_OFF_DOORBELL_COUNT / 4];
        if (ctx->bell_count > XDNA_PROTO_CTRL_DOORBELLS_MAX || !ctx->bell_stride)
            ctx->bell_count = 0;
    }
    return 0;

close_fds:
    for (unsigned i = 0; i < nfd; i++)
        close(fds[i]);
    return -1;
}

/* The offset of capability `id` in the cached config space, 0 when absent. */
static unsigned find_cap(struct xdna_shim_ctx *ctx, uint8_t id)
{
    if (!(cfg16(ctx, PCI_STATUS) & PCI_STATUS_CAP_LIST))
        return 0;
    unsigned pos = ctx->config[PCI_CAPABILITY_LIST] & 0xFC;
    for (unsigned hops = 0; pos >= 0x40 && pos < 0x100 && hops < 48; hops++) {
        if (ctx->config[pos] == id)
            return pos;
        pos = ctx->config[pos + 1] & 0xFC;
    }
    return 0;
}

/* The MSI-X Message Control the driver writes: Enable set, Function Mask clear. */
static uint16_t msix_enabled_flags(struct xdna_shim_ctx *ctx, unsigned cap)
{
    return (uint16_t)((cfg16(ctx, cap + PCI_MSIX_FLAGS) | PCI_MSIX_FLAGS_ENABLE) &
                      ~PCI_MSIX_FLAGS_MASKALL);
}

/* Check the MSI-X capability against the answer to the GET_IRQ_INFO sent as irq_id, take the
 * answer to the MSI-X enable sent behind it as msix_id (0 when there was no capability to
 * enable), then unmask every vector. */
static int setup_msix(struct xdna_shim_ctx *ctx, uint16_t irq_id, uint16_t msix_id)
{
    unsigned cap = find_cap(ctx, PCI_CAP_ID_MSIX);
    if (!cap)
        return xdna_fail(ctx, ENODEV, "config space has no MSI-X capability");
    ctx->msix_cap = cap;
    uint16_t flags = cfg16(ctx, cap + PCI_MSIX_FLAGS);
    unsigned nvec = (flags & PCI_MSIX_FLAGS_QSIZE) + 1u;
    uint32_t table = cfg32(ctx, cap + PCI_MSIX_TABLE);
    struct xdna_loc tl = {.bar = table & PCI_MSIX_BIR_MASK, .off = table & ~(uint32_t)PCI_MSIX_BIR_MASK};
    if (tl.bar >= XDNA_NUM_BARS || !xdna_loc_ok(ctx, tl, nvec * PCI_MSIX_ENTRY_SIZE))
        return xdna_fail(ctx, EPROTO, "MSI-X table BAR%u+%#x (%u vectors) is not inside a mapped BAR",
                         tl.bar, tl.off, nvec);

    struct xdna_proto_irq_info ii;
    size_t len = sizeof(ii);
    if (xdna_ctl_recv(ctx, XDNA_PROTO_CMD_GET_IRQ_INFO, irq_id, &ii, &len, sizeof(ii), NULL,
                      NULL) < 0)
        return -1;
    if (ii.count < nvec)
        return xdna_fail(ctx, EPROTO, "GET_IRQ_INFO: %u MSI-X vectors, config space says %u",
                         ii.count, nvec);

    ctx->irq_fds = calloc(nvec, sizeof(int));
    if (!ctx->irq_fds)
        return xdna_fail(ctx, ENOMEM, "out of memory");
    for (unsigned i = 0; i < nvec; i++)
        ctx->irq_fds[i] = -1;
    ctx->nvec = nvec;
    ctx->msix_table = tl;
    for (unsigned i = 0; i < nvec; i++) {
        ctx->irq_fds[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (ctx->irq_fds[i] < 0)
            return xdna_fail(ctx, errno, "eventfd: %s", strerror(errno));
    }
    /* eventfds are installed per vector when a channel needs one (xdna_irq_own): the
     * mgmt vector after FW alive, a context's vector when its channel opens */
    ctx->s.vec_owned = calloc(nvec, 1);
    if (!ctx->s.vec_owned)
        return xdna_fail(ctx, ENOMEM, "out of memory");
    uint16_t nf = msix_enabled_flags(ctx, cap);
    if (xdna_region_write_recv(ctx, msix_id) < 0)
        return -1;
    ctx->config[cap + PCI_MSIX_FLAGS] = (uint8_t)nf;
    ctx->config[cap + PCI_MSIX_FLAGS + 1] = (uint8_t)(nf >> 8);
    if (xdna_msix_restore(ctx) < 0)
        return -1;
    ctx->info.msix_vectors = nvec;
    return 0;
}

/* Unmask every vector in the table: the writes go into the write log together and the
 * last one kicks, so the daemon applies them in one step (docs/spec/protocol.md). */
int xdna_msix_restore(struct xdna_shim_ctx *ctx)
{
    struct xdna_loc tl = ctx->msix_table;
    for (unsigned i = 0; i < ctx->nvec; i++) {
        struct xdna_loc vc = {.bar = tl.bar,
                              .off = tl.off + i * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL};
        uint32_t v = xdna_rd(ctx, vc) & ~(uint32_t)PCI_MSIX_ENTRY_CTRL_MASKBIT;
        if ((i + 1 < ctx->nvec ? xdna_wr_trap_lazy(ctx, vc, v) : xdna_wr_trap(ctx, vc, v)) < 0)
            return -1;
    }
    return 0;
}

/* After a function reset config space is at power-on: restore what the driver set (the
 * command register, MSI-X enable, the unmasked table entries), as the PCI core's
 * pci_restore_state does (docs/spec/aie4.md §8). */
int xdna_pci_restore(struct xdna_shim_ctx *ctx, uint16_t cmd, uint16_t msix_flags)
{
    if (xdna_region_read(ctx, XDNA_PROTO_REGION_CONFIG, 0, ctx->config, sizeof(ctx->config)) < 0)
        return -1;
    if (cfg_write16(ctx, PCI_COMMAND, cmd) < 0 ||
        cfg_write16(ctx, ctx->msix_cap + PCI_MSIX_FLAGS, msix_flags) < 0)
        return -1;
    return xdna_msix_restore(ctx);
}

/* The function's resets so far, as the ctrl page counts them (docs/spec/aie4.md §8). */
uint32_t xdna_pci_resets(struct xdna_shim_ctx *ctx)
{
    return ctx->ctrl ? xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_RESETS) : ctx->resets_seen;
}

/* A start after the function was reset while this session held no device (the ctrl page's
 * resets moved: an FLR, a device reset, or the driver before it going away) finds config
 * space at power-on: it puts back what the session set at attach, the command register
 * (memory, bus mastering) and MSI-X, as the driver's probe enables the device and sets bus
 * mastering and the PCI core restores state after a reset (docs/spec/device.md §2.2). */
int xdna_pci_restore_if_reset(struct xdna_shim_ctx *ctx)
{
    uint32_t now = xdna_pci_resets(ctx);
    if (now == ctx->resets_seen)
        return 0;
    uint16_t cmd, flags;
    xdna_pci_state(ctx, &cmd, &flags);
    if (xdna_pci_restore(ctx, cmd, flags) < 0)
        return -1;
    ctx->resets_seen = now;
    return 0;
}

/* Function-level reset through config space, as the PCI core's pcie_flr: the function must
 * say it can (Device Capabilities FLR), then Device Control "Initiate FLR"; the config state
 * the reset cleared is restored after it. */
int xdna_pci_flr_capable(struct xdna_shim_ctx *ctx)
{
    unsigned exp = find_cap(ctx, PCI_CAP_ID_EXP);
    if (!exp || !(cfg32(ctx, exp + PCI_EXP_DEVCAP) & PCI_EXP_DEVCAP_FLR))
        return xdna_fail(ctx, ENOTTY, "flr: the function is not FLR capable");
    return 0;
}

int xdna_pci_flr(struct xdna_shim_ctx *ctx)
{
    if (xdna_pci_flr_capable(ctx) < 0)
        return -1;
    unsigned exp = find_cap(ctx, PCI_CAP_ID_EXP);
    uint16_t cmd = cfg16(ctx, PCI_COMMAND), flags = cfg16(ctx, ctx->msix_cap + PCI_MSIX_FLAGS);
    uint16_t ctl = cfg16(ctx, exp + PCI_EXP_DEVCTL) | PCI_EXP_DEVCTL_BCR_FLR;
    if (cfg_write16(ctx, exp + PCI_EXP_DEVCTL, ctl) < 0)
        return -1;
    return xdna_pci_restore(ctx, cmd, flags);
}

/* The SR-IOV extended capability's offset in the cached config space, 0 when absent. */
static unsigned find_ext_cap(struct xdna_shim_ctx *ctx, uint16_t id)
{
    unsigned pos = PCI_EXT_CAP_START;
    for (unsigned hops = 0; pos >= PCI_EXT_CAP_START && pos + 4 <= sizeof(ctx->config) && hops < 64;
         hops++) {
        uint32_t h = cfg32(ctx, pos);
        if (h == 0 || h == 0xFFFFFFFFu)
            return 0;
        if ((h & 0xFFFF) == id)
            return pos;
        pos = (h >> 20) & 0xFFC;
    }
    return 0;
}

/* SR-IOV state as the PCI core reads it: TotalVFs and the VFs enabled now. */
int xdna_pci_sriov(struct xdna_shim_ctx *ctx, uint16_t *total, uint16_t *num)
{
    unsigned cap = find_ext_cap(ctx, PCI_EXT_CAP_ID_SRIOV);
    if (!cap)
        return xdna_fail(ctx, EOPNOTSUPP, "sriov: %s has no SR-IOV capability", ctx->chip->name);
    *total = cfg16(ctx, cap + PCI_SRIOV_TOTAL_VF);
    *num = cfg16(ctx, cap + PCI_SRIOV_CTRL) & PCI_SRIOV_CTRL_VFE ? cfg16(ctx, cap + PCI_SRIOV_NUM_VF)
                                                                   : 0;
    return 0;
}

/* pci_enable_sriov / pci_disable_sriov: NumVFs, then VF Enable and VF MSE (the device
 * creates the VF functions); 0 clears VF Enable first (they vanish), then NumVFs. */
int xdna_pci_sriov_set(struct xdna_shim_ctx *ctx, uint16_t num)
{
    unsigned cap = find_ext_cap(ctx, PCI_EXT_CAP_ID_SRIOV);
    if (!cap)
        return xdna_fail(ctx, EOPNOTSUPP, "sriov: %s has no SR-IOV capability", ctx->chip->name);
    if (num)
        return cfg_write16(ctx, cap + PCI_SRIOV_NUM_VF, num) < 0 ? -1
               : cfg_write16(ctx, cap + PCI_SRIOV_CTRL, PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE);
    return cfg_write16(ctx, cap + PCI_SRIOV_CTRL, 0) < 0 ? -1
                                                        : cfg_write16(ctx, cap + PCI_SRIOV_NUM_VF, 0);
}

/* The cached command register and MSI-X flags (what xdna_pci_restore writes back). */
void xdna_pci_state(struct xdna_shim_ctx *ctx, uint16_t *cmd, uint16_t *msix_flags)
{
    *cmd = cfg16(ctx, PCI_COMMAND);
    *msix_flags = cfg16(ctx, ctx->msix_cap + PCI_MSIX_FLAGS);
}

/* Enable the function, then map its BARs and write log and set up MSI-X. Every query goes
 * out behind the command-register write, and the MSI-X enable (its capability is in the
 * config space read before) behind them, before any answer is read, in the order the
 * answers are used (docs/spec/protocol.md, "Pipelining"): one round trip for ten commands.
 * A failure leaves later answers unread, so the socket is dead and attach fails. */
static int attach_resources(struct xdna_shim_ctx *ctx)
{
    uint16_t cmd = cfg16(ctx, PCI_COMMAND) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
    uint8_t b[2] = {(uint8_t)cmd, (uint8_t)(cmd >> 8)};
    struct xdna_proto_irq_info ii = {.argsz = sizeof(ii), .index = XDNA_PROTO_IRQ_MSIX};
    uint16_t cmd_id, bar_ids[XDNA_NUM_BARS], wl_id, irq_id, msix_id = 0;
    unsigned cap = find_cap(ctx, PCI_CAP_ID_MSIX); /* none: setup_msix fails the attach */
    uint16_t nf = cap ? msix_enabled_flags(ctx, cap) : 0;
    uint8_t f[2] = {(uint8_t)nf, (uint8_t)(nf >> 8)};
    xdna_ctl_cork(ctx);
    if (xdna_region_write_send(ctx, XDNA_PROTO_REGION_CONFIG, PCI_COMMAND, b, 2, &cmd_id) < 0 ||
        ask_region_infos(ctx, bar_ids) < 0 ||
        xdna_ctl_send(ctx, XDNA_PROTO_CMD_ATTACH_WRITE_LOG, NULL, 0, NULL, 0, &wl_id) < 0 ||
        xdna_ctl_send(ctx, XDNA_PROTO_CMD_GET_IRQ_INFO, &ii, sizeof(ii), NULL, 0, &irq_id) < 0 ||
        (cap && xdna_region_write_send(ctx, XDNA_PROTO_REGION_CONFIG, cap + PCI_MSIX_FLAGS, f, 2,
                                       &msix_id) < 0))
        goto dead;
    if (xdna_region_write_recv(ctx, cmd_id) < 0)
        goto dead;
    memcpy(&ctx->config[PCI_COMMAND], b, 2);
    if (map_bars(ctx, bar_ids) < 0 || attach_write_log(ctx, wl_id) < 0)
        goto dead;
    if (setup_msix(ctx, irq_id, msix_id) < 0)
        goto dead;
    return 0;

dead: /* answers may be left unread: the stream no longer lines up with its commands */
    ctx->sock_dead = true;
    return -1;
}

/* VERSION, DEVICE_GET_INFO and the config-space read go out together, before any answer
 * is read (docs/spec/protocol.md, "Pipelining"): the daemon takes VERSION first and drops
 * a client it refuses, so the two reads behind it are never answered to a stranger. */
static int identify(struct xdna_shim_ctx *ctx)
{
    uint16_t ver_id, info_id, cfg_id;
    xdna_ctl_cork(ctx);
    if (send_version(ctx, &ver_id) < 0 ||
        xdna_ctl_send(ctx, XDNA_PROTO_CMD_DEVICE_GET_INFO, NULL, 0, NULL, 0, &info_id) < 0 ||
        xdna_region_read_send(ctx, XDNA_PROTO_REGION_CONFIG, 0, sizeof(ctx->config), &cfg_id) < 0)
        goto dead;
    if (do_version(ctx, ver_id) < 0 || do_device_info(ctx, info_id) < 0 ||
        xdna_region_read_recv(ctx, cfg_id, ctx->config, sizeof(ctx->config)) < 0)
        goto dead;
    return 0;

dead: /* answers may be left unread: the stream no longer lines up with its commands */
    ctx->sock_dead = true;
    return -1;
}

int xdna_pci_attach(struct xdna_shim_ctx *ctx, const char *path)
{
    if (xdna_connect(ctx, path) < 0 || identify(ctx) < 0)
        return -1;
    if (match_id(ctx) < 0)
        return -1;
    if (attach_resources(ctx) < 0)
        return -1;
    ctx->state = XDNA_SHIM_STATE_ATTACHED;
    return 0;
}

/* Undo what attach set up: BARs, the write log, the MSI-X eventfds and the socket. */
void xdna_pci_release(struct xdna_shim_ctx *ctx)
{
    for (unsigned i = 0; i < XDNA_NUM_BARS; i++)
        if (ctx->bars[i].va)
            munmap((void *)ctx->bars[i].va, ctx->bars[i].size);
    if (ctx->ctrl)
        munmap((void *)ctx->ctrl, XDNA_PROTO_CTRL_SIZE);
    if (ctx->irq_fds) {
        for (unsigned i = 0; i < ctx->nvec; i++)
            if (ctx->irq_fds[i] >= 0)
                close(ctx->irq_fds[i]);
        free(ctx->irq_fds);
    }
    if (ctx->kick_fd >= 0)
        close(ctx->kick_fd);
    if (ctx->notify_fd >= 0)
        close(ctx->notify_fd);
    if (ctx->bell_fd >= 0)
        close(ctx->bell_fd);
    if (ctx->sock >= 0)
        close(ctx->sock);
}

/* ---- interrupts -------------------------------------------------------------------- */

static int set_irqs(struct xdna_shim_ctx *ctx, uint32_t flags, unsigned start, unsigned count,
                    const int *fds)
{
    struct xdna_proto_set_irqs si = {.argsz = sizeof(si), .flags = flags,
                                     .index = XDNA_PROTO_IRQ_MSIX, .start = start,
                                     .count = count};
    size_t rl = 0;
    return xdna_ctl(ctx, XDNA_PROTO_CMD_SET_IRQS, &si, sizeof(si), fds, count, NULL, &rl, 0,
                    NULL, NULL);
}

int xdna_irq_own(struct xdna_shim_ctx *ctx, unsigned vec)
{
    if (vec >= ctx->nvec || !ctx->s.vec_owned)
        return xdna_fail(ctx, EINVAL, "MSI-X vector %u out of range (%u)", vec, ctx->nvec);
    if (ctx->s.vec_owned[vec])
        return 0;
    if (set_irqs(ctx, XDNA_PROTO_IRQ_DATA_EVENTFD | XDNA_PROTO_IRQ_ACTION_TRIGGER, vec, 1,
                 &ctx->irq_fds[vec]) < 0) {
        int err = errno;
        return xdna_fail(ctx, err, "SET_IRQS vector %u: %s", vec, strerror(err));
    }
    ctx->s.vec_owned[vec] = 1;
    xdna_wake_monitor(ctx);
    return 0;
}

/* The protocol removes a session's eventfds all at once; put back the ones still needed. */
int xdna_irq_release(struct xdna_shim_ctx *ctx, unsigned vec)
{
    if (vec >= ctx->nvec || !ctx->s.vec_owned || !ctx->s.vec_owned[vec])
        return 0;
    if (set_irqs(ctx, XDNA_PROTO_IRQ_DATA_NONE | XDNA_PROTO_IRQ_ACTION_TRIGGER, 0, 0, NULL) < 0)
        return -1;
    ctx->s.vec_owned[vec] = 0;
    int rc = 0;
    for (unsigned v = 0; v < ctx->nvec; v++) {
        if (!ctx->s.vec_owned[v])
            continue;
        ctx->s.vec_owned[v] = 0;
        if (xdna_irq_own(ctx, v) < 0)
            rc = -1;
    }
    xdna_wake_monitor(ctx);
    return rc;
}
