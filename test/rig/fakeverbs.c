/* fakeverbs: a strict test double for libibverbs, loaded by the addon through its
 * dlopen seam (DWCP_VERBS_LIB). One device "fake0"; RC queue pairs connect to
 * other queue pairs of the same process by QP number.
 *
 * It models what a permissive fake would let slip and real hardware would not:
 *   - the QP state machine (RESET -> INIT -> RTR -> RTS, with the attribute masks
 *     each transition requires); post_send only in RTS, post_recv not in RESET;
 *   - memory regions: an SGE must lie inside a registered MR of the same PD with
 *     the right lkey; receive buffers need LOCAL_WRITE; REMOTE_WRITE needs LOCAL_WRITE;
 *   - receive queues: bounded by max_recv_wr (ENOMEM); a SEND longer than the
 *     posted receive buffer is a length error on both sides; a SEND with no receive
 *     posted waits (rnr_retry 7 = retry forever) or fails with RNR_RETRY_EXC_ERR;
 *   - completion queues: bounded by their depth (overrun is an error), completion
 *     channels with req_notify arming, events that must be acknowledged;
 *   - a QP moved to ERR flushes its posted receives (WR_FLUSH_ERR).
 * Environment: FAKEVERBS_DEVICES=0 gives an empty device list, FAKEVERBS_ENOSYS=1
 * a NULL list with errno ENOSYS (what this machine's kernel gives).
 * Counters (fakeverbs_counters) let tests check that bytes really went through verbs. */
#include <errno.h>
#include <infiniband/verbs.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct ibv_device dev = {.name = "fake0", .dev_name = "fake0"};
static struct ibv_device *devlist[2] = {&dev, NULL};

struct fmr { struct ibv_mr mr; int access; struct fmr *next; };
static struct fmr *mrs;

struct fcq {
  struct ibv_cq cq; struct ibv_wc *wc; int cap, head, n, overrun, armed; struct ibv_comp_channel *ch;
};
struct fchan { struct ibv_comp_channel ch; int rd, wr; struct fcq *pending[1024]; int np; unsigned events; };

struct rwr { uint64_t id; struct ibv_sge sge; };
struct pend { struct ibv_send_wr wr; struct ibv_sge sge; struct fqp *from; };
struct fqp {
  struct ibv_qp qp; uint32_t dest; int rnr_retry; struct ibv_qp_cap cap;
  struct rwr *rq; int rq_head, rq_n;
  struct pend *rnr; int rnr_n, rnr_cap;
};
static struct fqp *qps[256];
static uint32_t next_qpn = 0x11;
static uint32_t next_key = 0x100;

/* Bytes and messages carried, for tests: [sends, send_bytes, recvs, recv_bytes]. */
uint64_t fakeverbs_counters[4];

static int cq_push(struct fcq *c, struct ibv_wc wc) {
  if (c->n == c->cap) { c->overrun = 1; return -1; }
  c->wc[(c->head + c->n) % c->cap] = wc;
  c->n++;
  if (c->armed && c->ch) {
    struct fchan *f = (struct fchan *)c->ch;
    c->armed = 0;
    if (f->np < 1024) f->pending[f->np++] = c;
    char b = 1;
    if (write(f->wr, &b, 1) < 0) { /* the reader is gone */ }
  }
  return 0;
}

static struct fmr *find_mr(struct ibv_pd *pd, uint32_t lkey, uint64_t addr, uint32_t len) {
  for (struct fmr *m = mrs; m; m = m->next)
    if (m->mr.lkey == lkey && m->mr.pd == pd && addr >= (uintptr_t)m->mr.addr &&
        addr + len <= (uintptr_t)m->mr.addr + m->mr.length) return m;
  return NULL;
}

static struct fqp *find_qp(uint32_t qpn) {
  for (int i = 0; i < 256; i++) if (qps[i] && qps[i]->qp.qp_num == qpn) return qps[i];
  return NULL;
}

static void to_error(struct fqp *q) {
  q->qp.state = IBV_QPS_ERR;
  while (q->rq_n > 0) {
    struct rwr r = q->rq[q->rq_head];
    q->rq_head = (q->rq_head + 1) % (int)q->cap.max_recv_wr; q->rq_n--;
    cq_push((struct fcq *)q->qp.recv_cq, (struct ibv_wc){.wr_id = r.id, .status = IBV_WC_WR_FLUSH_ERR, .opcode = IBV_WC_RECV, .qp_num = q->qp.qp_num});
  }
}

/* Delivers one SEND into the target's next posted receive. 1 = done, 0 = no receive posted. */
static int deliver(struct fqp *from, struct fqp *to, const struct ibv_send_wr *wr, const struct ibv_sge *sge) {
  if (to->rq_n == 0) return 0;
  struct rwr r = to->rq[to->rq_head];
  to->rq_head = (to->rq_head + 1) % (int)to->cap.max_recv_wr; to->rq_n--;
  uint32_t len = wr->num_sge ? sge->length : 0;
  struct fcq *scq = (struct fcq *)from->qp.send_cq, *rcq = (struct fcq *)to->qp.recv_cq;
  if (len > r.sge.length) {
    cq_push(rcq, (struct ibv_wc){.wr_id = r.id, .status = IBV_WC_LOC_LEN_ERR, .opcode = IBV_WC_RECV, .qp_num = to->qp.qp_num});
    cq_push(scq, (struct ibv_wc){.wr_id = wr->wr_id, .status = IBV_WC_REM_INV_REQ_ERR, .opcode = IBV_WC_SEND, .qp_num = from->qp.qp_num});
    to_error(to); to_error(from);
    return 1;
  }
  if (len) memcpy((void *)(uintptr_t)r.sge.addr, (void *)(uintptr_t)sge->addr, len);
  struct ibv_wc rw = {.wr_id = r.id, .status = IBV_WC_SUCCESS, .opcode = IBV_WC_RECV, .byte_len = len, .qp_num = to->qp.qp_num};
  if (wr->opcode == IBV_WR_SEND_WITH_IMM) { rw.wc_flags = IBV_WC_WITH_IMM; rw.imm_data = wr->imm_data; }
  cq_push(rcq, rw);
  fakeverbs_counters[0]++; fakeverbs_counters[1] += len; fakeverbs_counters[2]++; fakeverbs_counters[3] += len;
  if ((wr->send_flags & IBV_SEND_SIGNALED) || from->qp.qp_context == (void *)1)
    cq_push(scq, (struct ibv_wc){.wr_id = wr->wr_id, .status = IBV_WC_SUCCESS, .opcode = IBV_WC_SEND, .byte_len = len, .qp_num = from->qp.qp_num});
  return 1;
}

static int f_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad) {
  pthread_mutex_lock(&mu);
  struct fqp *q = (struct fqp *)qp;
  int rc = 0;
  for (; wr; wr = wr->next) {
    if (qp->state != IBV_QPS_RTS) { rc = EINVAL; break; }
    if (wr->opcode != IBV_WR_SEND && wr->opcode != IBV_WR_SEND_WITH_IMM) { rc = EINVAL; break; }
    if (wr->num_sge > (int)q->cap.max_send_sge) { rc = EINVAL; break; }
    const struct ibv_sge *sge = wr->num_sge ? &wr->sg_list[0] : NULL;
    if (sge && !find_mr(qp->pd, sge->lkey, sge->addr, sge->length)) {
      /* A bad lkey is a completion error on real hardware. */
      cq_push((struct fcq *)qp->send_cq, (struct ibv_wc){.wr_id = wr->wr_id, .status = IBV_WC_LOC_PROT_ERR, .opcode = IBV_WC_SEND, .qp_num = qp->qp_num});
      to_error(q);
      continue;
    }
    struct fqp *to = find_qp(q->dest);
    if (!to || (to->qp.state != IBV_QPS_RTR && to->qp.state != IBV_QPS_RTS)) {
      cq_push((struct fcq *)qp->send_cq, (struct ibv_wc){.wr_id = wr->wr_id, .status = IBV_WC_RETRY_EXC_ERR, .opcode = IBV_WC_SEND, .qp_num = qp->qp_num});
      to_error(q);
      continue;
    }
    /* Behind sends already waiting for a receive, never ahead of them. */
    if (to->rnr_n > 0 || !deliver(q, to, wr, sge)) {
      if (q->rnr_retry < 7) {
        cq_push((struct fcq *)qp->send_cq, (struct ibv_wc){.wr_id = wr->wr_id, .status = IBV_WC_RNR_RETRY_EXC_ERR, .opcode = IBV_WC_SEND, .qp_num = qp->qp_num});
        to_error(q);
        continue;
      }
      if (to->rnr_n == to->rnr_cap) {
        to->rnr_cap = to->rnr_cap ? to->rnr_cap * 2 : 64;
        to->rnr = realloc(to->rnr, sizeof *to->rnr * to->rnr_cap);
      }
      struct pend *p = &to->rnr[to->rnr_n++];
      p->wr = *wr; p->wr.next = NULL; p->from = q;
      if (sge) { p->sge = *sge; p->wr.sg_list = &p->sge; }
    }
  }
  if (rc && bad) *bad = wr;
  pthread_mutex_unlock(&mu);
  return rc;
}

static int f_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad) {
  pthread_mutex_lock(&mu);
  struct fqp *q = (struct fqp *)qp;
  int rc = 0;
  for (; wr; wr = wr->next) {
    if (qp->state == IBV_QPS_RESET || qp->state == IBV_QPS_ERR) { rc = EINVAL; break; }
    if (wr->num_sge != 1) { rc = EINVAL; break; }
    struct fmr *m = find_mr(qp->pd, wr->sg_list[0].lkey, wr->sg_list[0].addr, wr->sg_list[0].length);
    if (!m || !(m->access & IBV_ACCESS_LOCAL_WRITE)) { rc = EINVAL; break; }
    if (q->rq_n == (int)q->cap.max_recv_wr) { rc = ENOMEM; break; }
    q->rq[(q->rq_head + q->rq_n) % (int)q->cap.max_recv_wr] = (struct rwr){wr->wr_id, wr->sg_list[0]};
    q->rq_n++;
  }
  /* Sends that met "receiver not ready" go through now, in order. */
  int done = 0;
  while (done < q->rnr_n && q->rq_n > 0) {
    struct pend *p = &q->rnr[done];
    if (p->from->qp.state != IBV_QPS_RTS) { done++; continue; }
    deliver(p->from, q, &p->wr, &p->sge);
    done++;
  }
  if (done) { memmove(q->rnr, q->rnr + done, sizeof *q->rnr * (q->rnr_n - done)); q->rnr_n -= done; }
  if (rc && bad) *bad = wr;
  pthread_mutex_unlock(&mu);
  return rc;
}

static int f_poll_cq(struct ibv_cq *cq, int max, struct ibv_wc *wc) {
  pthread_mutex_lock(&mu);
  struct fcq *c = (struct fcq *)cq;
  if (c->overrun) { pthread_mutex_unlock(&mu); return -EOVERFLOW; }
  int k = c->n < max ? c->n : max;
  for (int i = 0; i < k; i++) wc[i] = c->wc[(c->head + i) % c->cap];
  c->head = (c->head + k) % c->cap; c->n -= k;
  pthread_mutex_unlock(&mu);
  return k;
}

static int f_req_notify(struct ibv_cq *cq, int solicited) {
  (void)solicited;
  pthread_mutex_lock(&mu);
  ((struct fcq *)cq)->armed = 1;
  pthread_mutex_unlock(&mu);
  return 0;
}

struct ibv_device **ibv_get_device_list(int *n) {
  if (getenv("FAKEVERBS_ENOSYS")) { errno = ENOSYS; return NULL; }
  int none = getenv("FAKEVERBS_DEVICES") && atoi(getenv("FAKEVERBS_DEVICES")) == 0;
  if (n) *n = none ? 0 : 1;
  static struct ibv_device *empty[1] = {NULL};
  return none ? empty : devlist;
}
void ibv_free_device_list(struct ibv_device **l) { (void)l; }
const char *ibv_get_device_name(struct ibv_device *d) { return d->name; }

struct ibv_context *ibv_open_device(struct ibv_device *d) {
  struct ibv_context *c = calloc(1, sizeof *c);
  c->device = d;
  c->ops.poll_cq = f_poll_cq; c->ops.req_notify_cq = f_req_notify;
  c->ops.post_send = f_post_send; c->ops.post_recv = f_post_recv;
  return c;
}
int ibv_close_device(struct ibv_context *c) { free(c); return 0; }

/* The exported symbol takes the compat struct, a prefix of ibv_port_attr. */
#undef ibv_query_port
int ibv_query_port(struct ibv_context *c, uint8_t port, struct _compat_ibv_port_attr *compat) {
  (void)c;
  struct ibv_port_attr *a = (struct ibv_port_attr *)compat;
  if (port != 1) return EINVAL;
  a->state = IBV_PORT_ACTIVE; a->max_mtu = IBV_MTU_4096; a->active_mtu = IBV_MTU_1024;
  a->gid_tbl_len = 2; a->lid = 0; a->link_layer = IBV_LINK_LAYER_ETHERNET;
  return 0;
}
int ibv_query_gid(struct ibv_context *c, uint8_t port, int index, union ibv_gid *gid) {
  (void)c;
  if (port != 1 || index < 0 || index > 1) return EINVAL;
  memset(gid, 0, sizeof *gid);
  if (index == 0) { gid->raw[0] = 0xfe; gid->raw[1] = 0x80; gid->raw[15] = 1; }
  else { gid->raw[10] = gid->raw[11] = 0xff; gid->raw[12] = 127; gid->raw[15] = 1; }
  return 0;
}

struct ibv_pd *ibv_alloc_pd(struct ibv_context *c) { struct ibv_pd *p = calloc(1, sizeof *p); p->context = c; return p; }
int ibv_dealloc_pd(struct ibv_pd *p) { free(p); return 0; }

struct ibv_mr *(ibv_reg_mr)(struct ibv_pd *pd, void *addr, size_t len, int access) {
  if ((access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) && !(access & IBV_ACCESS_LOCAL_WRITE)) { errno = EINVAL; return NULL; }
  if (!addr || !len) { errno = EINVAL; return NULL; }
  pthread_mutex_lock(&mu);
  struct fmr *m = calloc(1, sizeof *m);
  m->mr.context = pd->context; m->mr.pd = pd; m->mr.addr = addr; m->mr.length = len;
  m->mr.lkey = m->mr.rkey = next_key++; m->access = access; m->next = mrs; mrs = m;
  pthread_mutex_unlock(&mu);
  return &m->mr;
}
int ibv_dereg_mr(struct ibv_mr *mr) {
  pthread_mutex_lock(&mu);
  for (struct fmr **p = &mrs; *p; p = &(*p)->next)
    if (&(*p)->mr == mr) { struct fmr *m = *p; *p = m->next; free(m); break; }
  pthread_mutex_unlock(&mu);
  return 0;
}

struct ibv_comp_channel *ibv_create_comp_channel(struct ibv_context *c) {
  struct fchan *f = calloc(1, sizeof *f);
  int fds[2];
  if (pipe(fds) != 0) { free(f); return NULL; }
  f->rd = fds[0]; f->wr = fds[1]; f->ch.fd = fds[0]; f->ch.context = c;
  return &f->ch;
}
int ibv_destroy_comp_channel(struct ibv_comp_channel *ch) {
  struct fchan *f = (struct fchan *)ch;
  close(f->rd); close(f->wr); free(f); return 0;
}
int ibv_get_cq_event(struct ibv_comp_channel *ch, struct ibv_cq **cq, void **ctx) {
  struct fchan *f = (struct fchan *)ch;
  char b;
  if (read(f->rd, &b, 1) != 1) return -1;
  pthread_mutex_lock(&mu);
  if (f->np == 0) { pthread_mutex_unlock(&mu); return -1; }
  *cq = &f->pending[0]->cq; memmove(f->pending, f->pending + 1, sizeof f->pending[0] * --f->np);
  f->events++;
  pthread_mutex_unlock(&mu);
  *ctx = (*cq)->cq_context;
  return 0;
}
void ibv_ack_cq_events(struct ibv_cq *cq, unsigned int n) {
  pthread_mutex_lock(&mu);
  struct fchan *f = (struct fchan *)((struct fcq *)cq)->ch;
  if (f) f->events -= n;
  pthread_mutex_unlock(&mu);
}

struct ibv_cq *ibv_create_cq(struct ibv_context *c, int cqe, void *ctx, struct ibv_comp_channel *ch, int vec) {
  (void)vec;
  if (cqe < 1) { errno = EINVAL; return NULL; }
  struct fcq *q = calloc(1, sizeof *q);
  q->cq.context = c; q->cq.cq_context = ctx; q->cq.channel = ch; q->cq.cqe = cqe;
  q->cap = cqe; q->wc = calloc(cqe, sizeof *q->wc); q->ch = ch;
  return &q->cq;
}
int ibv_destroy_cq(struct ibv_cq *cq) {
  struct fcq *q = (struct fcq *)cq;
  struct fchan *f = (struct fchan *)q->ch;
  if (f && f->events) return EBUSY; /* unacknowledged events: the real library refuses too */
  free(q->wc); free(q); return 0;
}

struct ibv_qp *ibv_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *a) {
  if (a->qp_type != IBV_QPT_RC || !a->send_cq || !a->recv_cq || !a->cap.max_recv_wr || !a->cap.max_send_wr) { errno = EINVAL; return NULL; }
  pthread_mutex_lock(&mu);
  int slot = -1;
  for (int i = 0; i < 256 && slot < 0; i++) if (!qps[i]) slot = i;
  if (slot < 0) { pthread_mutex_unlock(&mu); errno = ENOMEM; return NULL; }
  struct fqp *q = calloc(1, sizeof *q);
  q->qp.context = pd->context; q->qp.pd = pd; q->qp.send_cq = a->send_cq; q->qp.recv_cq = a->recv_cq;
  q->qp.qp_type = a->qp_type; q->qp.qp_num = next_qpn++; q->qp.state = IBV_QPS_RESET;
  q->qp.qp_context = a->sq_sig_all ? (void *)1 : NULL;
  q->cap = a->cap; q->rq = calloc(a->cap.max_recv_wr, sizeof *q->rq);
  qps[slot] = q;
  pthread_mutex_unlock(&mu);
  return &q->qp;
}
int ibv_destroy_qp(struct ibv_qp *qp) {
  pthread_mutex_lock(&mu);
  for (int i = 0; i < 256; i++) if (qps[i] == (struct fqp *)qp) qps[i] = NULL;
  struct fqp *q = (struct fqp *)qp;
  free(q->rq); free(q->rnr); free(q);
  pthread_mutex_unlock(&mu);
  return 0;
}

int ibv_modify_qp(struct ibv_qp *qp, struct ibv_qp_attr *at, int mask) {
  pthread_mutex_lock(&mu);
  struct fqp *q = (struct fqp *)qp;
  int rc = 0;
  if (mask & IBV_QP_STATE) {
    enum ibv_qp_state f = qp->state, t = at->qp_state;
    const int init = IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
    const int rtr = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
    const int rts = IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC;
    if (t == IBV_QPS_RESET || t == IBV_QPS_ERR) { if (t == IBV_QPS_ERR) to_error(q); else qp->state = t; }
    else if (f == IBV_QPS_RESET && t == IBV_QPS_INIT && (mask & init) == init && at->port_num == 1) qp->state = t;
    else if (f == IBV_QPS_INIT && t == IBV_QPS_RTR && (mask & rtr) == rtr && at->path_mtu >= IBV_MTU_256 && at->path_mtu <= IBV_MTU_1024 &&
             (at->ah_attr.is_global ? at->ah_attr.grh.sgid_index < 2 : 1)) { q->dest = at->dest_qp_num; qp->state = t; }
    else if (f == IBV_QPS_RTR && t == IBV_QPS_RTS && (mask & rts) == rts) { q->rnr_retry = at->rnr_retry; qp->state = t; }
    else rc = EINVAL;
  }
  pthread_mutex_unlock(&mu);
  return rc;
}
