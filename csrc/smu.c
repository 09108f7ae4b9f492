/* The SMU: one command at a time through its mailbox registers, power on/off and the DPM
 * level (docs/spec/firmware.md §4); the driver's aie2_smu.c counterpart. */
#include "shim_int.h"

#include <errno.h>
#include <stdio.h>

static int smu_exec(struct xdna_shim_ctx *ctx, uint32_t cmd, uint32_t arg, uint32_t *out)
{
    if (xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_SMU_RESP), 0) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_SMU_ARG), arg) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_SMU_CMD), cmd) < 0 ||
        xdna_wr_auto_lazy(ctx, xdna_role(ctx, XDNA_ROLE_SMU_INTR), 0) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_SMU_INTR), 1) < 0)
        return -1;
    uint32_t resp;
    char what[48];
    snprintf(what, sizeof(what), "smu: cmd %u (arg %u)", cmd, arg);
    if (xdna_poll_reg(ctx, xdna_role(ctx, XDNA_ROLE_SMU_RESP), 0xFFFFFFFFu,
                      ctx->timeouts[XDNA_SHIM_TIMEOUT_SMU], &resp, what) < 0)
        return -1;
    if (resp != XDNA_AIE2_SMU_RESP_OK)
        return xdna_fail(ctx, EINVAL, "smu: cmd %u (arg %u) failed, resp %#x", cmd, arg, resp);
    if (out)
        *out = xdna_rd(ctx, xdna_role(ctx, XDNA_ROLE_SMU_OUT));
    return 0;
}

/* Power cycle: a forced POWER_OFF clears whatever state the SMU was left in, then POWER_ON. */
int xdna_smu_start(struct xdna_shim_ctx *ctx)
{
    if (smu_exec(ctx, XDNA_AIE2_SMU_CMD_POWER_OFF, 0, NULL) < 0 ||
        smu_exec(ctx, XDNA_AIE2_SMU_CMD_POWER_ON, 0, NULL) < 0)
        return -1;
    return 0;
}

int xdna_smu_power_on(struct xdna_shim_ctx *ctx)
{
    return smu_exec(ctx, XDNA_AIE2_SMU_CMD_POWER_ON, 0, NULL);
}

int xdna_smu_stop(struct xdna_shim_ctx *ctx)
{
    return smu_exec(ctx, XDNA_AIE2_SMU_CMD_POWER_OFF, 0, NULL);
}

int xdna_smu_set_dpm(struct xdna_shim_ctx *ctx, uint32_t level)
{
    const struct xdna_chip_desc *c = ctx->chip;
    if (level >= c->ndpm)
        return xdna_fail(ctx, EINVAL, "dpm level %u out of range (%u levels)", level, c->ndpm);
    if (c->dpm_method == XDNA_DPM_CLOCK) {
        uint32_t got;
        if (smu_exec(ctx, XDNA_AIE2_SMU_CMD_SET_MPNPUCLK_FREQ, c->dpm[level].npuclk_mhz, &got) < 0 ||
            smu_exec(ctx, XDNA_AIE2_SMU_CMD_SET_HCLK_FREQ, c->dpm[level].hclk_mhz, &got) < 0)
            return -1;
    } else {
        if (smu_exec(ctx, XDNA_AIE2_SMU_CMD_SET_HARD_DPMLEVEL, level, NULL) < 0 ||
            smu_exec(ctx, XDNA_AIE2_SMU_CMD_SET_SOFT_DPMLEVEL, level, NULL) < 0)
            return -1;
    }
    ctx->info.dpm_level = level;
    /* the driver's own clock query reads it (docs/spec/jobs.md §6); no kick: the daemon
     * publishes the SMU model's level to every session at the SMU command's step, and the
     * driver's word only once the SMU is off, at the power-off's step */
    if (!ctx->s.client)
        xdna_ctrl_store(ctx, XDNA_PROTO_CTRL_OFF_DPM_NOW, level + 1);
    return 0;
}
