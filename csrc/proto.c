/* Control-socket client: framing, fd passing, replies with deadlines (docs/spec/protocol.md). */
#include "shim_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static const char *cmd_name(uint16_t cmd)
{
    switch (cmd) {
    case XDNA_PROTO_CMD_VERSION: return "VERSION";
    case XDNA_PROTO_CMD_DMA_MAP: return "DMA_MAP";
    case XDNA_PROTO_CMD_DMA_UNMAP: return "DMA_UNMAP";
    case XDNA_PROTO_CMD_DEVICE_GET_INFO: return "DEVICE_GET_INFO";
    case XDNA_PROTO_CMD_GET_REGION_INFO: return "GET_REGION_INFO";
    case XDNA_PROTO_CMD_GET_IRQ_INFO: return "GET_IRQ_INFO";
    case XDNA_PROTO_CMD_SET_IRQS: return "SET_IRQS";
    case XDNA_PROTO_CMD_REGION_READ: return "REGION_READ";
    case XDNA_PROTO_CMD_REGION_WRITE: return "REGION_WRITE";
    case XDNA_PROTO_CMD_DEVICE_RESET: return "DEVICE_RESET";
    case XDNA_PROTO_CMD_ATTACH_WRITE_LOG: return "ATTACH_WRITE_LOG";
    case XDNA_PROTO_CMD_MGMT_PROXY: return "MGMT_PROXY";
    default: return "?";
    }
}

int xdna_connect(struct xdna_shim_ctx *ctx, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (!path || strlen(path) >= sizeof(sa.sun_path))
        return xdna_fail(ctx, EINVAL, "socket path is empty or too long");
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return xdna_fail(ctx, errno, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = errno;
        if (err == EINPROGRESS || err == EAGAIN) {
            /* AF_UNIX connect only blocks when the listen backlog is full. */
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int soerr = 0;
            socklen_t len = sizeof(soerr);
            int r = poll(&p, 1, ctx->timeouts[XDNA_SHIM_TIMEOUT_CONTROL]);
            if (r == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0)
                goto ok;
            err = r == 0 ? ETIME : (soerr ? soerr : EIO);
        }
        close(fd);
        return xdna_fail(ctx, err, "connect %s: %s", path, strerror(err));
    }
ok:
    ctx->sock = fd;
    return 0;
}

static int sock_dead(struct xdna_shim_ctx *ctx, int err, const char *what)
{
    ctx->sock_dead = true;
    return xdna_fail(ctx, err, "control socket: %s", what);
}

/* Wait for the socket to become readable or writable before the deadline. */
static int sock_wait(struct xdna_shim_ctx *ctx, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = xdna_now_ns();
        if (now >= deadline)
            return xdna_fail(ctx, ETIME, "control socket: no reply before the deadline");
        uint64_t left = deadline - now;
        struct timespec ts = {.tv_sec = (time_t)(left / 1000000000u),
                              .tv_nsec = (long)(left % 1000000000u)};
        struct pollfd p = {.fd = ctx->sock, .events = events};
        const struct xdna_shim_hooks *h = xdna_hooks();
        if (h) { /* deterministic mode: let the in-process device run, then only look */
            if (h->wait(h->user, deadline) < 0)
                return xdna_fail(ctx, EPIPE, "control socket: the wait hook gave up");
            ts = (struct timespec){0, 0};
        }
        int r = ppoll(&p, 1, &ts, NULL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return xdna_fail(ctx, errno, "control socket poll: %s", strerror(errno));
        if (r == 0)
            continue;
        if (p.revents & (events | POLLHUP | POLLERR))
            return 0;
    }
}

static int send_all(struct xdna_shim_ctx *ctx, const struct iovec *iov_in, int iovcnt,
                    const int *fds, unsigned nfds, uint64_t deadline)
{
    struct iovec iov[3];
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        iov[i] = iov_in[i];
        total += iov[i].iov_len;
    }
    union {
        char buf[CMSG_SPACE(sizeof(int) * XDNA_PROTO_MAX_MSG_FDS)];
        struct cmsghdr align;
    } cbuf;
    bool fds_pending = nfds > 0;
    int first = 0;
    while (total > 0) {
        struct msghdr mh = {.msg_iov = &iov[first], .msg_iovlen = (size_t)(iovcnt - first)};
        if (fds_pending) {
            memset(&cbuf, 0, sizeof(cbuf));
            mh.msg_control = cbuf.buf;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
            struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
            memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
        }
        ssize_t n = sendmsg(ctx->sock, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (sock_wait(ctx, POLLOUT, deadline) < 0)
                    return -1;
                continue;
            }
            return sock_dead(ctx, errno == ECONNRESET ? EPIPE : errno, strerror(errno));
        }
        fds_pending = false;
        ctx->info.ctl_sends++;
        total -= (size_t)n;
        while (n > 0 && first < iovcnt) {
            size_t take = (size_t)n < iov[first].iov_len ? (size_t)n : iov[first].iov_len;
            iov[first].iov_base = (char *)iov[first].iov_base + take;
            iov[first].iov_len -= take;
            n -= (ssize_t)take;
            if (iov[first].iov_len == 0)
                first++;
        }
    }
    return 0;
}

/* Receive exactly len bytes, collecting any fds that ride along. */
static int recv_all(struct xdna_shim_ctx *ctx, void *buf, size_t len, int *rfds, unsigned cap,
                    unsigned *nrfds, uint64_t deadline)
{
    size_t got = 0;
    while (got < len) {
        union {
            char buf[CMSG_SPACE(sizeof(int) * 32)];
            struct cmsghdr align;
        } cbuf;
        struct iovec iov = {.iov_base = (char *)buf + got, .iov_len = len - got};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
                            .msg_controllen = sizeof(cbuf.buf)};
        ssize_t n = recvmsg(ctx->sock, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (sock_wait(ctx, POLLIN, deadline) < 0)
                    return -1;
                continue;
            }
            return sock_dead(ctx, errno == ECONNRESET ? EPIPE : errno, strerror(errno));
        }
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int *in = (int *)CMSG_DATA(cm);
            for (size_t i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, &in[i], sizeof(fd));
                if (rfds && *nrfds < cap)
                    rfds[(*nrfds)++] = fd;
                else
                    close(fd); /* more fds than the reply takes */
            }
        }
        if (mh.msg_flags & MSG_CTRUNC)
            return sock_dead(ctx, EPROTO, "too many fds in a reply");
        if (n == 0)
            return sock_dead(ctx, EPIPE, "daemon closed the connection");
        got += (size_t)n;
    }
    return 0;
}

static void close_fds(int *fds, unsigned *n)
{
    for (unsigned i = 0; i < *n; i++)
        close(fds[i]);
    *n = 0;
}

/* Gather the commands sent from here on for one sendmsg, sent at the first xdna_ctl_recv
 * (or when the buffer fills, or before a command with fds): the daemon then reads a
 * pipelined batch at once and answers it in one step (docs/spec/protocol.md, "Pipelining"). */
void xdna_ctl_cork(struct xdna_shim_ctx *ctx)
{
    ctx->tx_cork = true;
}

/* Send what the cork gathered. */
static int ctl_flush(struct xdna_shim_ctx *ctx, uint64_t deadline)
{
    if (!ctx->tx_len)
        return 0;
    struct iovec iov = {ctx->tx, ctx->tx_len};
    ctx->tx_len = 0;
    return send_all(ctx, &iov, 1, NULL, 0, deadline);
}

/* Send one command without waiting for its reply; *id is what the reply must echo. The
 * daemon answers commands strictly in order (docs/spec/protocol.md), so a caller may send
 * several and then collect the replies in the same order with xdna_ctl_recv. */
int xdna_ctl_send(struct xdna_shim_ctx *ctx, uint16_t cmd, const void *req, size_t req_len,
                  const int *fds, unsigned nfds, uint16_t *id)
{
    if (ctx->sock < 0 || ctx->sock_dead)
        return xdna_fail(ctx, EPIPE, "control socket is closed");
    if (req_len + XDNA_PROTO_HEADER_SIZE > XDNA_PROTO_MAX_MSG_SIZE || nfds > XDNA_PROTO_MAX_MSG_FDS)
        return xdna_fail(ctx, EINVAL, "%s: request too large", cmd_name(cmd));
    uint64_t deadline = xdna_deadline(ctx->timeouts[XDNA_SHIM_TIMEOUT_CONTROL]);
    *id = ctx->next_msg_id++;
    struct xdna_proto_hdr h = {.msg_id = *id, .command = cmd,
                               .msg_size = (uint32_t)(XDNA_PROTO_HEADER_SIZE + req_len),
                               .flags = XDNA_PROTO_TYPE_COMMAND};
    const size_t len = sizeof(h) + req_len;
    if (ctx->tx_cork && !nfds && len <= sizeof(ctx->tx)) {
        if (ctx->tx_len + len > sizeof(ctx->tx) && ctl_flush(ctx, deadline) < 0)
            return -1;
        memcpy(ctx->tx + ctx->tx_len, &h, sizeof(h));
        if (req_len)
            memcpy(ctx->tx + ctx->tx_len + sizeof(h), req, req_len);
        ctx->tx_len += (uint32_t)len;
        return 0;
    }
    if (ctl_flush(ctx, deadline) < 0) /* what was gathered goes first, in order */
        return -1;
    struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)req, req_len}};
    return send_all(ctx, iov, req_len ? 2 : 1, fds, nfds, deadline);
}

/* Receive the reply to the command xdna_ctl_send sent as (cmd, id). resp_len in: capacity,
 * out: payload bytes got (must be >= resp_min). fds go to rfds (capacity *nrfds, out: count).
 * A reply that does not belong to (cmd, id) or does not fit leaves the socket dead: the
 * stream can no longer be trusted to line up with the commands sent. */
int xdna_ctl_recv(struct xdna_shim_ctx *ctx, uint16_t cmd, uint16_t id, void *resp,
                  size_t *resp_len, size_t resp_min, int *rfds, unsigned *nrfds)
{
    unsigned rfd_cap = nrfds ? *nrfds : 0, rfd_got = 0;
    if (nrfds)
        *nrfds = 0;
    if (ctx->sock < 0 || ctx->sock_dead)
        return xdna_fail(ctx, EPIPE, "control socket is closed");
    uint64_t deadline = xdna_deadline(ctx->timeouts[XDNA_SHIM_TIMEOUT_CONTROL]);
    ctx->tx_cork = false; /* a reply is awaited: the batch ends, what it gathered goes out */
    if (ctl_flush(ctx, deadline) < 0)
        goto fail_fds;
    struct xdna_proto_hdr r;
    if (recv_all(ctx, &r, sizeof(r), rfds, rfd_cap, &rfd_got, deadline) < 0)
        goto fail_fds;
    if (r.msg_size < XDNA_PROTO_HEADER_SIZE || r.msg_size > XDNA_PROTO_MAX_MSG_SIZE) {
        sock_dead(ctx, EPROTO, "reply size out of range");
        goto fail_fds;
    }
    if ((r.flags & XDNA_PROTO_FLAG_TYPE_MASK) != XDNA_PROTO_TYPE_REPLY || r.msg_id != id ||
        r.command != cmd) {
        xdna_fail(ctx, EPROTO, "%s: unexpected reply (id %u cmd %#x flags %#x)", cmd_name(cmd),
                  r.msg_id, r.command, r.flags);
        ctx->sock_dead = true;
        goto fail_fds;
    }
    size_t plen = r.msg_size - XDNA_PROTO_HEADER_SIZE;
    size_t cap = resp_len ? *resp_len : 0;
    if (plen > cap) {
        xdna_fail(ctx, EPROTO, "%s: reply payload %zu bytes, expected at most %zu", cmd_name(cmd),
                  plen, cap);
        ctx->sock_dead = true;
        goto fail_fds;
    }
    if (plen && recv_all(ctx, resp, plen, rfds, rfd_cap, &rfd_got, deadline) < 0)
        goto fail_fds;
    if (r.flags & XDNA_PROTO_FLAG_ERROR) {
        int err = (r.error > 0 && r.error < 4096) ? (int)r.error : EPROTO;
        xdna_fail(ctx, err, "%s refused by the daemon: %s", cmd_name(cmd), strerror(err));
        goto fail_fds;
    }
    if (plen < resp_min) {
        xdna_fail(ctx, EPROTO, "%s: reply payload %zu bytes, expected %zu", cmd_name(cmd), plen,
                  resp_min);
        goto fail_fds;
    }
    if (resp_len)
        *resp_len = plen;
    if (nrfds)
        *nrfds = rfd_got;
    else if (rfd_got)
        close_fds(rfds, &rfd_got);
    return 0;

fail_fds:
    {
        int err = errno;
        close_fds(rfds, &rfd_got);
        errno = err;
    }
    return -1;
}

int xdna_ctl(struct xdna_shim_ctx *ctx, uint16_t cmd, const void *req, size_t req_len,
             const int *fds, unsigned nfds, void *resp, size_t *resp_len, size_t resp_min,
             int *rfds, unsigned *nrfds)
{
    uint16_t id;
    if (xdna_ctl_send(ctx, cmd, req, req_len, fds, nfds, &id) < 0) {
        if (nrfds)
            *nrfds = 0;
        return -1;
    }
    return xdna_ctl_recv(ctx, cmd, id, resp, resp_len, resp_min, rfds, nrfds);
}

int xdna_region_read_send(struct xdna_shim_ctx *ctx, uint32_t region, uint64_t off,
                          uint32_t count, uint16_t *id)
{
    struct xdna_proto_region_access a = {.offset = off, .region = region, .count = count};
    return xdna_ctl_send(ctx, XDNA_PROTO_CMD_REGION_READ, &a, sizeof(a), NULL, 0, id);
}

/* The answer to xdna_region_read_send's id. Failing before it is read (out of memory) leaves
 * it unread: the caller's pipeline must treat any failure as a dead socket. */
int xdna_region_read_recv(struct xdna_shim_ctx *ctx, uint16_t id, void *buf, uint32_t count)
{
    size_t cap = sizeof(struct xdna_proto_region_access) + count;
    uint8_t *tmp = malloc(cap);
    if (!tmp)
        return xdna_fail(ctx, ENOMEM, "out of memory");
    size_t len = cap;
    int rc = xdna_ctl_recv(ctx, XDNA_PROTO_CMD_REGION_READ, id, tmp, &len, cap, NULL, NULL);
    if (rc == 0)
        memcpy(buf, tmp + sizeof(struct xdna_proto_region_access), count);
    free(tmp);
    return rc;
}

int xdna_region_read(struct xdna_shim_ctx *ctx, uint32_t region, uint64_t off, void *buf,
                     uint32_t count)
{
    struct xdna_proto_region_access a = {.offset = off, .region = region, .count = count};
    size_t cap = sizeof(a) + count;
    uint8_t *tmp = malloc(cap);
    if (!tmp)
        return xdna_fail(ctx, ENOMEM, "out of memory");
    size_t len = cap;
    int rc = xdna_ctl(ctx, XDNA_PROTO_CMD_REGION_READ, &a, sizeof(a), NULL, 0, tmp, &len, cap,
                      NULL, NULL);
    if (rc == 0)
        memcpy(buf, tmp + sizeof(a), count);
    free(tmp);
    return rc;
}

int xdna_region_write_send(struct xdna_shim_ctx *ctx, uint32_t region, uint64_t off,
                           const void *buf, uint32_t count, uint16_t *id)
{
    uint8_t tmp[sizeof(struct xdna_proto_region_access) + 64];
    if (count > 64)
        return xdna_fail(ctx, EINVAL, "region write too large");
    struct xdna_proto_region_access a = {.offset = off, .region = region, .count = count};
    memcpy(tmp, &a, sizeof(a));
    memcpy(tmp + sizeof(a), buf, count);
    return xdna_ctl_send(ctx, XDNA_PROTO_CMD_REGION_WRITE, tmp, sizeof(a) + count, NULL, 0, id);
}

int xdna_region_write_recv(struct xdna_shim_ctx *ctx, uint16_t id)
{
    struct xdna_proto_region_access back;
    size_t len = sizeof(back);
    return xdna_ctl_recv(ctx, XDNA_PROTO_CMD_REGION_WRITE, id, &back, &len, sizeof(back), NULL,
                         NULL);
}

int xdna_region_write(struct xdna_shim_ctx *ctx, uint32_t region, uint64_t off,
                      const void *buf, uint32_t count)
{
    uint16_t id;
    if (xdna_region_write_send(ctx, region, off, buf, count, &id) < 0)
        return -1;
    return xdna_region_write_recv(ctx, id);
}

int xdna_dma_alloc(struct xdna_shim_ctx *ctx, struct xdna_dma_buf *buf, size_t size,
                   uint32_t flags, const char *name)
{
    memset(buf, 0, sizeof(*buf));
    buf->fd = -1;
    size_t rounded = (size + XDNA_AIE2_PSP_FW_ALIGN - 1) & ~(size_t)(XDNA_AIE2_PSP_FW_ALIGN - 1);
    if (size == 0 || rounded < size)
        return xdna_fail(ctx, EINVAL, "%s: bad DMA buffer size %zu", name, size);
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return xdna_fail(ctx, errno, "memfd_create: %s", strerror(errno));
    /* sealed against shrinking: the daemon maps this fd, and a shrunk file would fault
     * (SIGBUS) in the device model instead of giving an IOMMU error */
    if (ftruncate(fd, (off_t)rounded) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) {
        int err = errno;
        close(fd);
        return xdna_fail(ctx, err, "DMA buffer %s: %s", name, strerror(err));
    }
    void *va = mmap(NULL, rounded, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (va == MAP_FAILED) {
        int err = errno;
        close(fd);
        return xdna_fail(ctx, err, "mmap DMA buffer: %s", strerror(err));
    }
    buf->fd = fd;
    buf->va = va;
    buf->size = rounded;
    buf->flags = flags;
    return 0;
}

int xdna_dma_map(struct xdna_shim_ctx *ctx, struct xdna_dma_buf *buf)
{
    /* bump allocator: IOVAs are never reused within a session, each is 64 KiB aligned */
    uint64_t iova = (ctx->iova_next + XDNA_AIE2_PSP_FW_ALIGN - 1) & ~(uint64_t)(XDNA_AIE2_PSP_FW_ALIGN - 1);
    struct xdna_proto_dma_map m = {.argsz = sizeof(m), .flags = buf->flags, .offset = 0,
                                   .address = iova, .size = buf->size, .pasid = 0};
    size_t len = 0;
    if (xdna_ctl(ctx, XDNA_PROTO_CMD_DMA_MAP, &m, sizeof(m), &buf->fd, 1, NULL, &len, 0, NULL,
                 NULL) < 0)
        return -1;
    ctx->iova_next = iova + buf->size;
    buf->iova = iova;
    buf->mapped = true;
    return 0;
}

int xdna_dma_unmap(struct xdna_shim_ctx *ctx, struct xdna_dma_buf *buf)
{
    if (!buf->mapped)
        return 0;
    buf->mapped = false;
    struct xdna_proto_dma_unmap u = {.argsz = sizeof(u), .flags = 0, .address = buf->iova,
                                     .size = buf->size, .pasid = 0};
    size_t len = 0;
    return xdna_ctl(ctx, XDNA_PROTO_CMD_DMA_UNMAP, &u, sizeof(u), NULL, 0, NULL, &len, 0, NULL,
                    NULL);
}

void xdna_dma_free(struct xdna_dma_buf *buf)
{
    if (buf->va)
        munmap(buf->va, buf->size);
    if (buf->fd >= 0)
        close(buf->fd);
    memset(buf, 0, sizeof(*buf));
    buf->fd = -1;
}
