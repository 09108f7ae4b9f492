/* Attach (the PCI side of probe) and the AIE2 driver bring-up / teardown sequences.
 *
 * The order and the checks follow amdxdna-facts.md §1-§6 (OOT order): id-table match,
 * SMU POWER_OFF/POWER_ON, PSP VALIDATE/START, FW-alive handshake, management channel,
 * mgmt_fw_init, pm_init, mgmt_fw_query, async event registration, GET_DEV_REVISION.
 */
#include "shim_int.h"
#include "parse.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
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

/* PSP (facts §2) */
#define PSP_VALIDATE 1
#define PSP_START 2
#define PSP_RELEASE_TMR 3
#define PSP_START_COPY_FW 1
#define PSP_STATUS_READY (1u << 31)
#define PSP_PWAITMODE_READY 1u

/* SMU (facts §3) */
#define SMU_POWER_ON 3
#define SMU_POWER_OFF 4
#define SMU_SET_MPNPUCLK_FREQ 5
#define SMU_SET_HCLK_FREQ 6
#define SMU_SET_SOFT_DPMLEVEL 7
#define SMU_SET_HARD_DPMLEVEL 8
#define SMU_RESULT_OK 1

/* management opcodes (facts §5) */
#define MSG_QUERY_AIE_TILE_INFO 0xE
#define MSG_QUERY_AIE_VERSION 0xF
#define MSG_SUSPEND 0x101
#define MSG_RESUME 0x102
#define MSG_ASSIGN_MGMT_PASID 0x103
#define MSG_GET_FIRMWARE_VERSION 0x108
#define MSG_SET_RUNTIME_CONFIG 0x10A
#define MSG_REGISTER_ASYNC_EVENT_MSG 0x10C
#define MSG_UPDATE_PROPERTY 0x113
#define MSG_GET_DEV_REVISION 0x117
#define MSG_CALIBRATE_TIME 0x11C

#define UPDATE_PROPERTY_TIME_QUOTA 0
#define TIME_QUOTA_US 30000
#define AIE2_MAX_COL 128 /* the driver's default column limit (module parameter) */
#define FINE_PREEMPT_VALUE 0 /* we leave fine-grained preemption disabled */

static const int default_timeouts[5] = {1000, 1000, 1000, 5000, 5000};

/* ---- small helpers ----------------------------------------------------------------- */

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

static void stage_done(struct xdna_shim_ctx *ctx, const char *name, uint64_t t0)
{
    struct xdna_shim_info *in = &ctx->info;
    if (in->nstages >= XDNA_SHIM_MAX_STAGES)
        return;
    copy_str(in->stages[in->nstages].name, sizeof(in->stages[0].name), name);
    in->stages[in->nstages].ns = xdna_now_ns() - t0;
    in->nstages++;
}

/* ---- attach ------------------------------------------------------------------------ */

static int do_version(struct xdna_shim_ctx *ctx)
{
    static const char caps[] = "{\"client\":\"xdna-shim\",\"max_msg_fds\":8}";
    uint8_t req[4 + sizeof(caps)];
    uint16_t v[2] = {XDNA_PROTO_MAJOR, XDNA_PROTO_MINOR};
    memcpy(req, v, 4);
    memcpy(req + 4, caps, sizeof(caps)); /* includes the NUL */
    char resp[4096];
    size_t len = sizeof(resp) - 1;
    if (xdna_ctl(ctx, XDNA_PROTO_CMD_VERSION, req, sizeof(req), NULL, 0, resp, &len, 5, NULL,
                 NULL) < 0)
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

static int do_device_info(struct xdna_shim_ctx *ctx)
{
    struct xdna_proto_device_info di;
    size_t len = sizeof(di);
    if (xdna_ctl(ctx, XDNA_PROTO_CMD_DEVICE_GET_INFO, NULL, 0, NULL, 0, &di, &len, sizeof(di),
                 NULL, NULL) < 0)
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

static int map_bars(struct xdna_shim_ctx *ctx)
{
    for (unsigned i = 0; i < XDNA_NUM_BARS; i++) {
        struct xdna_proto_region_info ri = {.argsz = sizeof(ri), .index = i};
        size_t len = sizeof(ri);
        int fd = -1;
        unsigned nfd = 1;
        if (xdna_ctl(ctx, XDNA_PROTO_CMD_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0, &ri, &len,
                     sizeof(ri), &fd, &nfd) < 0)
            return -1;
        if (!(ri.flags & XDNA_PROTO_REGION_MMAP) || ri.size == 0) {
            if (nfd)
                close(fd);
            continue;
        }
        if (!nfd)
            return xdna_fail(ctx, EPROTO, "GET_REGION_INFO: BAR%u is mappable but came without fd", i);
        if (ri.size > (1ull << 30) || (ri.size & 3) || !fd_holds(fd, ri.size)) {
            close(fd);
            return xdna_fail(ctx, EPROTO,
                             "GET_REGION_INFO: BAR%u size %#llx is implausible or past its fd", i,
                             (unsigned long long)ri.size);
        }
        void *va = mmap(NULL, ri.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        int err = errno;
        close(fd);
        if (va == MAP_FAILED)
            return xdna_fail(ctx, err, "mmap BAR%u: %s", i, strerror(err));
        ctx->bars[i].va = va;
        ctx->bars[i].size = ri.size;
        ctx->bars[i].flags = ri.flags;
    }
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

static int attach_write_log(struct xdna_shim_ctx *ctx)
{
    struct xdna_proto_write_log_info wl;
    size_t len = sizeof(wl);
    int fds[3] = {-1, -1, -1};
    unsigned nfd = 3;
    if (xdna_ctl(ctx, XDNA_PROTO_CMD_ATTACH_WRITE_LOG, NULL, 0, NULL, 0, &wl, &len, sizeof(wl), fds,
                 &nfd) < 0)
        return -1;
    if (nfd != 3) {
        for (unsigned i = 0; i < nfd; i++)
            close(fds[i]);
        return xdna_fail(ctx, EPROTO, "ATTACH_WRITE_LOG: %u fds, expected 3", nfd);
    }
    ctx->kick_fd = fds[1];
    ctx->notify_fd = fds[2];
    if (!fd_holds(fds[0], XDNA_PROTO_CTRL_SIZE)) {
        close(fds[0]);
        return xdna_fail(ctx, EPROTO, "write log: ctrl page fd is smaller than %u bytes",
                         (unsigned)XDNA_PROTO_CTRL_SIZE);
    }
    void *va = mmap(NULL, XDNA_PROTO_CTRL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    int err = errno;
    close(fds[0]);
    if (va == MAP_FAILED)
        return xdna_fail(ctx, err, "mmap write log: %s", strerror(err));
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
    return 0;
}

static int setup_msix(struct xdna_shim_ctx *ctx)
{
    unsigned cap = 0;
    if (cfg16(ctx, PCI_STATUS) & PCI_STATUS_CAP_LIST) {
        unsigned pos = ctx->config[PCI_CAPABILITY_LIST] & 0xFC;
        for (unsigned hops = 0; pos >= 0x40 && pos < 0x100 && hops < 48; hops++) {
            if (ctx->config[pos] == PCI_CAP_ID_MSIX) {
                cap = pos;
                break;
            }
            pos = ctx->config[pos + 1] & 0xFC;
        }
    }
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

    struct xdna_proto_irq_info ii = {.argsz = sizeof(ii), .index = XDNA_PROTO_IRQ_MSIX};
    size_t len = sizeof(ii);
    if (xdna_ctl(ctx, XDNA_PROTO_CMD_GET_IRQ_INFO, &ii, sizeof(ii), NULL, 0, &ii, &len, sizeof(ii),
                 NULL, NULL) < 0)
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
    uint16_t nf = (uint16_t)((flags | PCI_MSIX_FLAGS_ENABLE) & ~PCI_MSIX_FLAGS_MASKALL);
    if (cfg_write16(ctx, cap + PCI_MSIX_FLAGS, nf) < 0)
        return -1;
    for (unsigned i = 0; i < nvec; i++) {
        struct xdna_loc vc = {.bar = tl.bar,
                              .off = tl.off + i * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL};
        uint32_t v = xdna_rd(ctx, vc);
        if (xdna_wr_trap(ctx, vc, v & ~(uint32_t)PCI_MSIX_ENTRY_CTRL_MASKBIT) < 0)
            return -1;
    }
    ctx->info.msix_vectors = nvec;
    return 0;
}

static int attach(struct xdna_shim_ctx *ctx, const char *path)
{
    if (xdna_connect(ctx, path) < 0 || do_version(ctx) < 0 || do_device_info(ctx) < 0)
        return -1;
    if (xdna_region_read(ctx, XDNA_PROTO_REGION_CONFIG, 0, ctx->config, sizeof(ctx->config)) < 0)
        return -1;
    if (match_id(ctx) < 0)
        return -1;
    uint16_t cmd = cfg16(ctx, PCI_COMMAND) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
    if (cfg_write16(ctx, PCI_COMMAND, cmd) < 0)
        return -1;
    if (map_bars(ctx) < 0 || attach_write_log(ctx) < 0 || setup_msix(ctx) < 0)
        return -1;
    ctx->state = XDNA_SHIM_STATE_ATTACHED;
    return 0;
}

static void release(struct xdna_shim_ctx *ctx)
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
    if (ctx->sock >= 0)
        close(ctx->sock);
    xdna_dma_free(&ctx->fw);
    xdna_dma_free(&ctx->async_buf);
    xdna_sess_fini(ctx);
    free(ctx);
}

struct xdna_shim_ctx *xdna_shim_open(const char *socket_path, int timeout_ms)
{
    struct xdna_shim_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        xdna_set_tls_error(ENOMEM, "out of memory");
        return NULL;
    }
    ctx->sock = ctx->kick_fd = ctx->notify_fd = -1;
    ctx->fw.fd = ctx->async_buf.fd = -1;
    if (xdna_sess_init(ctx) < 0) {
        int err = errno;
        xdna_set_tls_error(err, "%s", ctx->last_error);
        free(ctx);
        errno = err;
        return NULL;
    }
    memcpy(ctx->timeouts, default_timeouts, sizeof(default_timeouts));
    ctx->timeouts[XDNA_SHIM_TIMEOUT_CONTROL] = timeout_ms > 0 ? timeout_ms : 5000;
    ctx->max_msg_fds = XDNA_PROTO_MAX_MSG_FDS;
    ctx->iova_next = XDNA_IOVA_BASE;
    if (attach(ctx, socket_path) < 0) {
        int err = errno;
        xdna_set_tls_error(err, "%s", ctx->last_error);
        release(ctx);
        errno = err;
        return NULL;
    }
    return ctx;
}

/* ---- SMU / PSP --------------------------------------------------------------------- */

static int smu_exec(struct xdna_shim_ctx *ctx, uint32_t cmd, uint32_t arg, uint32_t *out)
{
    if (xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_SMU_RESP), 0) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_SMU_ARG), arg) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_SMU_CMD), cmd) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_SMU_INTR), 0) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_SMU_INTR), 1) < 0)
        return -1;
    uint32_t resp;
    char what[48];
    snprintf(what, sizeof(what), "smu: cmd %u (arg %u)", cmd, arg);
    if (xdna_poll_reg(ctx, xdna_role(ctx, XDNA_ROLE_SMU_RESP), 0xFFFFFFFFu,
                      ctx->timeouts[XDNA_SHIM_TIMEOUT_SMU], &resp, what) < 0)
        return -1;
    if (resp != SMU_RESULT_OK)
        return xdna_fail(ctx, EINVAL, "smu: cmd %u (arg %u) failed, resp %#x", cmd, arg, resp);
    if (out)
        *out = xdna_rd(ctx, xdna_role(ctx, XDNA_ROLE_SMU_OUT));
    return 0;
}

static int set_dpm(struct xdna_shim_ctx *ctx, uint32_t level)
{
    const struct xdna_chip_desc *c = ctx->chip;
    if (level >= c->ndpm)
        return xdna_fail(ctx, EINVAL, "dpm level %u out of range (%u levels)", level, c->ndpm);
    if (c->dpm_method == XDNA_DPM_CLOCK) {
        uint32_t got;
        if (smu_exec(ctx, SMU_SET_MPNPUCLK_FREQ, c->dpm[level].npuclk_mhz, &got) < 0 ||
            smu_exec(ctx, SMU_SET_HCLK_FREQ, c->dpm[level].hclk_mhz, &got) < 0)
            return -1;
    } else {
        if (smu_exec(ctx, SMU_SET_HARD_DPMLEVEL, level, NULL) < 0 ||
            smu_exec(ctx, SMU_SET_SOFT_DPMLEVEL, level, NULL) < 0)
            return -1;
    }
    ctx->info.dpm_level = level;
    return 0;
}

static const char *psp_name(uint32_t cmd)
{
    switch (cmd) {
    case PSP_VALIDATE: return "VALIDATE";
    case PSP_START: return "START";
    case PSP_RELEASE_TMR: return "RELEASE_TMR";
    default: return "CMD";
    }
}

static int psp_exec(struct xdna_shim_ctx *ctx, uint32_t cmd, uint32_t a0, uint32_t a1, uint32_t a2)
{
    if (xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_PSP_CMD), cmd) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_PSP_ARG0), a0) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_PSP_ARG1), a1) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_PSP_ARG2), a2) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_PSP_INTR), 0) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_PSP_INTR), 1) < 0)
        return -1;
    char what[32];
    snprintf(what, sizeof(what), "psp: %s", psp_name(cmd));
    if (xdna_poll_reg(ctx, xdna_role(ctx, XDNA_ROLE_PSP_STATUS), PSP_STATUS_READY,
                      ctx->timeouts[XDNA_SHIM_TIMEOUT_PSP], NULL, what) < 0)
        return -1;
    uint32_t resp = xdna_rd(ctx, xdna_role(ctx, XDNA_ROLE_PSP_RESP));
    if (resp != 0)
        return xdna_fail(ctx, EIO, "psp: %s failed, resp %#010x", psp_name(cmd), resp);
    return 0;
}

/* Find <dir>/<fw_path> along the search path and copy it into a DMA-able memfd buffer. */
static int fw_load(struct xdna_shim_ctx *ctx, const char *search)
{
    const char *fw_path = ctx->chip->fw_path;
    if (!search || !*search)
        return xdna_fail(ctx, EINVAL, "empty firmware search path");
    int fd = -1;
    char path[4096];
    for (const char *p = search; *p;) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        if (n > 0 && n + strlen(fw_path) + 2 < sizeof(path)) {
            snprintf(path, sizeof(path), "%.*s/%s", (int)n, p, fw_path);
            fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd >= 0)
                break;
        }
        if (!colon)
            break;
        p = colon + 1;
    }
    if (fd < 0)
        return xdna_fail(ctx, ENOENT, "firmware %s not found in %s", fw_path, search);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        st.st_size > XDNA_FW_MAX_SIZE) {
        close(fd);
        return xdna_fail(ctx, EINVAL, "firmware %s: not a regular file of 1..%u bytes", path,
                         XDNA_FW_MAX_SIZE);
    }
    if (ctx->fw.mapped)
        xdna_dma_unmap(ctx, &ctx->fw);
    xdna_dma_free(&ctx->fw);
    if (xdna_dma_alloc(ctx, &ctx->fw, (size_t)st.st_size, XDNA_PROTO_DMA_READ, "xdna-fw") < 0) {
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, (char *)ctx->fw.va + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int err = k < 0 ? errno : EIO;
            close(fd);
            xdna_dma_free(&ctx->fw);
            return xdna_fail(ctx, err, "firmware %s: short read", path);
        }
        got += (size_t)k;
    }
    close(fd);
    return 0;
}

static int psp_start(struct xdna_shim_ctx *ctx)
{
    if (!ctx->fw.va)
        return xdna_fail(ctx, ENOENT, "no firmware image loaded");
    if (!ctx->fw.mapped && xdna_dma_map(ctx, &ctx->fw) < 0)
        return -1;
    if (psp_exec(ctx, PSP_VALIDATE, (uint32_t)ctx->fw.iova, (uint32_t)(ctx->fw.iova >> 32),
                 (uint32_t)ctx->fw.size) < 0)
        return -1;
    /* as in the driver, a failed VALIDATE or START is not followed by RELEASE_TMR */
    if (psp_exec(ctx, PSP_START, PSP_START_COPY_FW, 0, 0) < 0)
        return -1;
    ctx->psp_on = true;
    return 0;
}

/* ---- FW alive + management channel ------------------------------------------------ */

static int fw_alive(struct xdna_shim_ctx *ctx, struct xdna_mbox_chann_info *ci)
{
    struct xdna_loc alive = xdna_role(ctx, XDNA_ROLE_SRAM_FW_ALIVE);
    uint32_t addr;
    if (xdna_poll_reg(ctx, alive, 0xFFFFFFFFu, ctx->timeouts[XDNA_SHIM_TIMEOUT_FW_ALIVE], &addr,
                      "firmware alive") < 0)
        return -1;
    struct xdna_loc il;
    if (addr & 3)
        return xdna_fail(ctx, EINVAL, "mgmt channel info address %#x is not 4-aligned", addr);
    if (xdna_dev_loc(ctx, addr, MGMT_INFO_SIZE, &il, "mgmt channel info") < 0)
        return -1;
    if ((int)il.bar != ctx->chip->sram_bar)
        return xdna_fail(ctx, EINVAL, "mgmt channel info %#x is outside SRAM", addr);
    uint32_t w[MGMT_INFO_SIZE / 4];
    for (unsigned i = 0; i < MGMT_INFO_SIZE / 4; i++)
        w[i] = xdna_rd(ctx, (struct xdna_loc){.bar = il.bar, .off = il.off + 4 * i});
    memcpy(ci, w, sizeof(*ci));
    if (xdna_wr_auto(ctx, alive, 0) < 0)
        return -1;
    const struct xdna_chip_desc *c = ctx->chip;
    struct xdna_pz_mgmt_info pi;
    switch (xdna_pz_mgmt_hdr((const uint8_t *)w, sizeof(w), c->protocol_major,
                             c->protocol_min_minor, &pi)) {
    case XDNA_PZ_OK:
        break;
    case XDNA_PZ_BAD_INFO_MAGIC:
        return xdna_fail(ctx, EINVAL, "mgmt channel info magic %#x, expected %#x", ci->magic,
                         MGMT_INFO_MAGIC);
    case XDNA_PZ_OLD_PROTO_MINOR:
        return xdna_fail(ctx, EOPNOTSUPP, "firmware protocol %u.%u is older than %u.%u",
                         ci->prot_major, ci->prot_minor, c->protocol_major, c->protocol_min_minor);
    default:
        return xdna_fail(ctx, EINVAL, "firmware protocol %u.%u: %s needs major %u", ci->prot_major,
                         ci->prot_minor, c->name, c->protocol_major);
    }
    ctx->info.protocol_major = ci->prot_major;
    ctx->info.protocol_minor = ci->prot_minor;
    ctx->info.mgmt_msi_id = ci->msi_id;
    return 0;
}

static bool has(struct xdna_shim_ctx *ctx, enum xdna_feature f)
{
    return xdna_chip_has_feature(ctx->chip, f, ctx->info.protocol_major, ctx->info.protocol_minor);
}

/* A management message whose response starts with a status word that must be 0. */
static int mgmt(struct xdna_shim_ctx *ctx, uint32_t op, const void *req, size_t req_len,
                void *resp, size_t resp_len)
{
    uint32_t status_only;
    if (!resp) {
        resp = &status_only;
        resp_len = sizeof(status_only);
    }
    if (xdna_mbox_call(ctx, &ctx->mgmt, op, req, req_len, resp, resp_len, 0) < 0)
        return -1;
    uint32_t status;
    memcpy(&status, resp, 4);
    if (status != 0)
        return xdna_fail(ctx, EIO, "mgmt: %s (%#x) failed, status %#x", xdna_opcode_name(op), op,
                         status);
    return 0;
}

static int set_runtime_config(struct xdna_shim_ctx *ctx, uint32_t type, uint64_t value)
{
    uint8_t req[12];
    memcpy(req, &type, 4);
    memcpy(req + 4, &value, 8);
    if (mgmt(ctx, MSG_SET_RUNTIME_CONFIG, req, sizeof(req), NULL, 0) < 0) {
        char msg[sizeof(ctx->last_error)];
        memcpy(msg, ctx->last_error, sizeof(msg));
        return xdna_fail(ctx, errno, "%.200s (type %u value %llu)", msg, type,
                         (unsigned long long)value);
    }
    return 0;
}

static int mgmt_u32(struct xdna_shim_ctx *ctx, uint32_t op, void *resp, size_t resp_len)
{
    uint32_t rsvd = 0;
    return mgmt(ctx, op, &rsvd, sizeof(rsvd), resp, resp_len);
}

static int mgmt_fw_init(struct xdna_shim_ctx *ctx)
{
    const struct xdna_chip_desc *c = ctx->chip;
    for (unsigned i = 0; i < c->nrt_init; i++)
        if (set_runtime_config(ctx, c->rt_init[i].type, c->rt_init[i].value) < 0)
            return -1;
    if (c->fine_preempt_type >= 0 && has(ctx, XDNA_FEAT_PREEMPT) &&
        set_runtime_config(ctx, (uint32_t)c->fine_preempt_type, FINE_PREEMPT_VALUE) < 0)
        return -1;
    uint16_t pasid[2] = {0, 0};
    if (mgmt(ctx, MSG_ASSIGN_MGMT_PASID, pasid, sizeof(pasid), NULL, 0) < 0)
        return -1;
    if (has(ctx, XDNA_FEAT_UPDATE_PROPERTY)) {
        uint8_t req[20] = {0};
        uint32_t type = UPDATE_PROPERTY_TIME_QUOTA, quota = TIME_QUOTA_US;
        memcpy(req, &type, 4);
        req[4] = 0xFF; /* all contexts */
        memcpy(req + 12, &quota, 4);
        if (mgmt(ctx, MSG_UPDATE_PROPERTY, req, sizeof(req), NULL, 0) < 0)
            return -1;
    }
    if (mgmt_u32(ctx, MSG_SUSPEND, NULL, 0) < 0)
        return -1;
    if (xdna_poll_reg(ctx, xdna_role(ctx, XDNA_ROLE_PSP_PWAITMODE), PSP_PWAITMODE_READY,
                      ctx->timeouts[XDNA_SHIM_TIMEOUT_PSP], NULL, "psp: wait mode") < 0)
        return -1;
    if (mgmt_u32(ctx, MSG_RESUME, NULL, 0) < 0)
        return -1;
    if (has(ctx, XDNA_FEAT_CALIBRATE_TIME)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        if (mgmt(ctx, MSG_CALIBRATE_TIME, &ns, sizeof(ns), NULL, 0) < 0)
            return -1;
    }
    return 0;
}

static int pm_init(struct xdna_shim_ctx *ctx)
{
    const struct xdna_chip_desc *c = ctx->chip;
    if (c->ndpm == 0)
        return xdna_fail(ctx, EINVAL, "%s has no DPM table", c->name);
    if (set_dpm(ctx, c->ndpm - 1) < 0)
        return -1;
    ctx->pm_on = true;
    for (unsigned i = 0; i < c->nclock_gating; i++)
        if (set_runtime_config(ctx, c->clock_gating[i], 1) < 0)
            return -1;
    return 0;
}

static int get_fw_version(struct xdna_shim_ctx *ctx)
{
    uint32_t r[5];
    if (mgmt_u32(ctx, MSG_GET_FIRMWARE_VERSION, r, sizeof(r)) < 0)
        return -1;
    ctx->info.fw_major = r[1];
    ctx->info.fw_minor = r[2];
    ctx->info.fw_sub = r[3];
    ctx->info.fw_build = r[4];
    return 0;
}

static int mgmt_fw_query(struct xdna_shim_ctx *ctx)
{
    if (get_fw_version(ctx) < 0)
        return -1;
    uint8_t av[8];
    if (mgmt_u32(ctx, MSG_QUERY_AIE_VERSION, av, sizeof(av)) < 0)
        return -1;
    uint8_t ti[48];
    if (mgmt_u32(ctx, MSG_QUERY_AIE_TILE_INFO, ti, sizeof(ti)) < 0)
        return -1;
    return xdna_decode_aie_info(ctx, av, ti);
}

/* QUERY_AIE_VERSION (8 B) and QUERY_AIE_TILE_INFO (48 B) responses into ctx->info, with
 * the driver's sanity check (no columns or no core rows: the AIE array is unusable). */
int xdna_decode_aie_info(struct xdna_shim_ctx *ctx, const uint8_t av[8], const uint8_t ti[48])
{
    struct xdna_shim_info *in = &ctx->info;
    uint16_t maj, min, f[19];
    memcpy(&maj, av + 4, 2);
    memcpy(&min, av + 6, 2);
    in->aie_major = maj;
    in->aie_minor = min;
    memcpy(f, ti + 8, sizeof(f)); /* major, minor, cols, rows, core/mem/shim rows, row starts... */
    in->cols = f[2];
    in->rows = f[3];
    in->core_rows = f[4];
    in->mem_rows = f[5];
    in->shim_rows = f[6];
    in->core_row_start = f[7];
    in->mem_row_start = f[8];
    in->shim_row_start = f[9];
    if (in->cols == 0 || in->core_rows == 0 || in->rows == 0)
        return xdna_fail(ctx, EINVAL, "tile info: %u cols, %u rows, %u core rows", in->cols,
                         in->rows, in->core_rows);
    in->total_col = in->cols < AIE2_MAX_COL ? in->cols : AIE2_MAX_COL;
    return 0;
}

static int async_events(struct xdna_shim_ctx *ctx)
{
    uint32_t n = ctx->info.total_col;
    if (ctx->async_buf.mapped)
        xdna_dma_unmap(ctx, &ctx->async_buf);
    xdna_dma_free(&ctx->async_buf);
    if (xdna_dma_alloc(ctx, &ctx->async_buf, (size_t)n * ASYNC_BUF_SIZE,
                       XDNA_PROTO_DMA_READ | XDNA_PROTO_DMA_WRITE, "xdna-async") < 0 ||
        xdna_dma_map(ctx, &ctx->async_buf) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t req[12];
        uint64_t addr = ctx->async_buf.iova + (uint64_t)i * ASYNC_BUF_SIZE;
        uint32_t size = ASYNC_BUF_SIZE;
        memcpy(req, &addr, 8);
        memcpy(req + 8, &size, 4);
        (void)req;
        if (xdna_async_post(ctx, i) < 0) /* decoded and re-registered on each reply */
            return -1;
    }
    return 0;
}

/* ---- hw_start / hw_stop ----------------------------------------------------------- */

/* Undo bring-up in the driver's stop order; keeps the first error. */
static int hw_stop(struct xdna_shim_ctx *ctx, bool send_suspend)
{
    int first_err = 0;
    char first_msg[sizeof(ctx->last_error)] = "";
#define STEP(expr)                                                                     \
    do {                                                                               \
        if ((expr) < 0 && !first_err) {                                                \
            first_err = errno;                                                         \
            memcpy(first_msg, ctx->last_error, sizeof(first_msg));                     \
        }                                                                              \
    } while (0)
    if (ctx->mgmt.active) {
        if (send_suspend)
            STEP(mgmt_u32(ctx, MSG_SUSPEND, NULL, 0));
        xdna_mbox_destroy(ctx, &ctx->mgmt);
    }
    if (ctx->psp_on) {
        ctx->psp_on = false;
        STEP(psp_exec(ctx, PSP_RELEASE_TMR, 0, 0, 0));
    }
    if (ctx->smu_on) {
        ctx->smu_on = false;
        ctx->pm_on = false;
        if (ctx->chip->ndpm)
            STEP(set_dpm(ctx, 0));
        STEP(smu_exec(ctx, SMU_POWER_OFF, 0, NULL));
    }
    STEP(xdna_dma_unmap(ctx, &ctx->async_buf));
    xdna_dma_free(&ctx->async_buf);
    STEP(xdna_dma_unmap(ctx, &ctx->fw));
#undef STEP
    if (first_err) {
        memcpy(ctx->last_error, first_msg, sizeof(first_msg));
        errno = first_err;
        return -1;
    }
    return 0;
}

/* hw_start; `probing` adds the probe tail (GET_DEV_REVISION), which resume does not redo. */
static int hw_start(struct xdna_shim_ctx *ctx, bool probing)
{
    struct xdna_mbox_chann_info ci;
    uint64_t t;
    ctx->info.nstages = 0;
    if (probing)
        ctx->info.dev_revision = 0;

    t = xdna_now_ns();
    /* the driver unwinds the SMU only once it is powered on (a dead SMU is left alone) */
    if (smu_exec(ctx, SMU_POWER_OFF, 0, NULL) < 0 || smu_exec(ctx, SMU_POWER_ON, 0, NULL) < 0)
        return -1;
    ctx->smu_on = true;
    stage_done(ctx, "smu", t);

    t = xdna_now_ns();
    if (psp_start(ctx) < 0)
        return -1;
    stage_done(ctx, "psp", t);

    t = xdna_now_ns();
    if (fw_alive(ctx, &ci) < 0 || xdna_irq_own(ctx, ci.msi_id) < 0)
        return -1;
    stage_done(ctx, "fw_alive", t);

    t = xdna_now_ns();
    if (xdna_mbox_create(ctx, &ctx->mgmt, "mgmt", &ci) < 0 || mgmt_fw_init(ctx) < 0)
        return -1;
    stage_done(ctx, "mgmt_init", t);

    t = xdna_now_ns();
    if (pm_init(ctx) < 0)
        return -1;
    stage_done(ctx, "pm", t);

    t = xdna_now_ns();
    if (mgmt_fw_query(ctx) < 0 || async_events(ctx) < 0 || get_fw_version(ctx) < 0)
        return -1;
    if (probing && has(ctx, XDNA_FEAT_GET_DEV_REVISION)) {
        uint32_t r[3];
        if (mgmt_u32(ctx, MSG_GET_DEV_REVISION, r, sizeof(r)) < 0)
            return -1;
        ctx->info.dev_revision = r[1];
    }
    stage_done(ctx, "query", t);
    return 0;
}

static int start_or_unwind(struct xdna_shim_ctx *ctx, bool probing)
{
    if (hw_start(ctx, probing) == 0) {
        ctx->state = XDNA_SHIM_STATE_PROBED;
        return 0;
    }
    int err = errno;
    char msg[sizeof(ctx->last_error)];
    memcpy(msg, ctx->last_error, sizeof(msg));
    hw_stop(ctx, false);
    memcpy(ctx->last_error, msg, sizeof(msg));
    ctx->state = XDNA_SHIM_STATE_FAILED;
    errno = err;
    return -1;
}

/* ---- public lifecycle -------------------------------------------------------------- */

static int need_ctx(struct xdna_shim_ctx *ctx)
{
    if (!ctx) {
        xdna_set_tls_error(EBADF, "no context");
        return -1;
    }
    return 0;
}

int xdna_probe_unlocked(struct xdna_shim_ctx *ctx, const char *fw_search_path)
{
    if (need_ctx(ctx) < 0)
        return -1;
    if (!ctx->chip->supported)
        return xdna_fail(ctx, EOPNOTSUPP, "%s (%s) is known by id only; probing it is not supported",
                         ctx->chip->name, ctx->chip->family);
    if (ctx->state == XDNA_SHIM_STATE_PROBED)
        return xdna_fail(ctx, EALREADY, "device is already probed");
    if (ctx->state == XDNA_SHIM_STATE_SUSPENDED)
        return xdna_fail(ctx, EBUSY, "device is suspended; resume it instead");
    if (fw_load(ctx, fw_search_path) < 0)
        return -1;
    return start_or_unwind(ctx, true);
}

int xdna_stop_unlocked(struct xdna_shim_ctx *ctx)
{
    if (need_ctx(ctx) < 0)
        return -1;
    int rc = 0;
    if (ctx->state == XDNA_SHIM_STATE_PROBED)
        rc = hw_stop(ctx, true);
    if (ctx->state == XDNA_SHIM_STATE_PROBED || ctx->state == XDNA_SHIM_STATE_SUSPENDED)
        ctx->state = XDNA_SHIM_STATE_STOPPED;
    return rc;
}

int xdna_suspend_unlocked(struct xdna_shim_ctx *ctx)
{
    if (need_ctx(ctx) < 0)
        return -1;
    if (ctx->state != XDNA_SHIM_STATE_PROBED)
        return xdna_fail(ctx, EINVAL, "suspend: device is not probed");
    int rc = hw_stop(ctx, true);
    ctx->state = XDNA_SHIM_STATE_SUSPENDED;
    return rc;
}

int xdna_resume_unlocked(struct xdna_shim_ctx *ctx)
{
    if (need_ctx(ctx) < 0)
        return -1;
    if (ctx->state != XDNA_SHIM_STATE_SUSPENDED)
        return xdna_fail(ctx, EINVAL, "resume: device is not suspended");
    return start_or_unwind(ctx, false);
}

int xdna_mgmt_msg_unlocked(struct xdna_shim_ctx *ctx, uint32_t opcode, const void *req,
                       size_t req_len, void *resp, size_t resp_len, int timeout_ms)
{
    if (need_ctx(ctx) < 0)
        return -1;
    if (!ctx->mgmt.active)
        return xdna_fail(ctx, ENODEV, "management channel is not up");
    return xdna_mbox_call(ctx, &ctx->mgmt, opcode, req, req_len, resp, resp_len, timeout_ms);
}

void xdna_close_unlocked(struct xdna_shim_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->state == XDNA_SHIM_STATE_PROBED && !ctx->sock_dead)
        hw_stop(ctx, true);
    else
        xdna_mbox_destroy(ctx, &ctx->mgmt);
    release(ctx);
}

/* Power-management entry points for sess.c (set_dpm and runtime config stay local). */
int xdna_pm_set_dpm(struct xdna_shim_ctx *ctx, uint32_t level)
{
    return set_dpm(ctx, level);
}

int xdna_pm_runtime_config(struct xdna_shim_ctx *ctx, uint32_t type, uint64_t value)
{
    return set_runtime_config(ctx, type, value);
}
