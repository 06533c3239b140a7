/*
 * Causal attention, flash style (Dao et al. 2022, FlashAttention-2 loop order): queries in blocks
 * of BR rows, keys in blocks of BC, the scores of one block pair in a BR x BC tile, never T x T.
 * The block products (Q K^T, P V and the four of the backward) run on the packed GEMM micro-kernels,
 * so attention runs near GEMM speed; softmax uses the online max/sum rescaling of the paper.
 *
 * Forward parallelizes over (batch, head, query block); backward over (batch, kv head), which owns
 * its dk/dv rows and the dq rows of every query head in its group, so no two threads write the same
 * output.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include "skymoe.h"

#define BC 64

typedef struct {
  ctx_t *cx;
  const float *q, *k, *v, *o, *lse, *dout;
  float *out, *lse_out, *dq, *dk, *dv;
  long B, Tq, Tk, H, Hkv, D, kvbs, qoff;
  float scale;
  long br, nqb, ntasks;
  atomic_long next;
} attn_job;

static long block_rows(const ctx_t *cx) { return (long)cx->isa->mr * (cx->isa->mr >= 8 ? 8 : 16); }

static void fwd_block(attn_job *j, int tid, long b, long h, long i0, long ni) {
  ctx_t *cx = j->cx;
  const long D = j->D, ldq = j->H * D, ldk = j->Hkv * D, hk = h / (j->H / j->Hkv);
  const float *Q = j->q + ((b * j->Tq + i0) * j->H + h) * D;
  float *O = j->out + ((b * j->Tq + i0) * j->H + h) * D;
  float *L = j->lse_out + (b * j->H + h) * j->Tq + i0;
  const float *K = j->k + b * j->kvbs + hk * D, *V = j->v + b * j->kvbs + hk * D;
  long nk = i0 + ni + j->qoff; /* keys visible to the block's last row */
  if (nk > j->Tk) nk = j->Tk;
  float *S = cx->scratch[tid].tile;
  float *mrow = S + j->br * BC, *lrow = mrow + j->br;
  for (long r = 0; r < ni; r++) {
    mrow[r] = -INFINITY;
    lrow[r] = 0.0f;
  }
  if (nk <= 0) {
    for (long r = 0; r < ni; r++) {
      memset(O + r * ldq, 0, (size_t)D * sizeof(float));
      L[r] = -INFINITY;
    }
    return;
  }
  /* Q is packed once for all key blocks when it fits one micro-kernel panel (D <= KC). */
  float *qpack = lrow + j->br;
  const int packed = D <= cx->isa->kc;
  if (packed) gemm_pack_a(cx->isa, Q, ldq, 0, ni, D, qpack);
  for (long j0 = 0; j0 < nk; j0 += BC) {
    long nj = nk - j0 < BC ? nk - j0 : BC;
    if (packed) gemm_prepacked_a(cx, tid, qpack, ni, nj, D, j->scale, K + j0 * ldk, ldk, 1, 0.0f, S, BC);
    else gemm_st(cx, tid, 0, 1, ni, nj, D, j->scale, Q, ldq, K + j0 * ldk, ldk, 0.0f, S, BC);
    for (long r = 0; r < ni; r++) {
      float *s = S + r * BC;
      long nv = i0 + r + j->qoff - j0 + 1; /* visible columns of this row in this block */
      if (nv > nj) nv = nj;
      if (nv < 0) nv = 0;
      float mx = cx->isa->row_max(s, nv);
      mx = mx > mrow[r] ? mx : mrow[r];
      float alpha = 1.0f;
      if (nv > 0) {
        alpha = expf(mrow[r] - mx);
        float sum = cx->isa->exp_shift_sum(s, nv, mx);
        lrow[r] = lrow[r] * alpha + sum;
        mrow[r] = mx;
      }
      for (long c = nv; c < nj; c++) s[c] = 0.0f;
      if (j0 > 0 && alpha != 1.0f)
        for (long d = 0; d < D; d++) O[r * ldq + d] *= alpha;
    }
    gemm_st(cx, tid, 0, 0, ni, D, nj, 1.0f, S, BC, V + j0 * ldk, ldk, j0 == 0 ? 0.0f : 1.0f, O, ldq);
  }
  for (long r = 0; r < ni; r++) {
    if (lrow[r] > 0.0f) {
      float inv = 1.0f / lrow[r];
      for (long d = 0; d < D; d++) O[r * ldq + d] *= inv;
      L[r] = mrow[r] + logf(lrow[r]);
    } else {
      memset(O + r * ldq, 0, (size_t)D * sizeof(float));
      L[r] = -INFINITY;
    }
  }
}

static void fwd_task(void *raw, int tid, int nt) {
  (void)nt;
  attn_job *j = raw;
  for (;;) {
    long t = atomic_fetch_add(&j->next, 1);
    if (t >= j->ntasks) return;
    /* Last query blocks first: they see the most keys, so the long tasks start early. */
    long qb = j->nqb - 1 - t / (j->B * j->H), bh = t % (j->B * j->H);
    long i0 = qb * j->br, ni = j->Tq - i0 < j->br ? j->Tq - i0 : j->br;
    fwd_block(j, tid, bh / j->H, bh % j->H, i0, ni);
  }
}

void k_attention(ctx_t *cx, const float *q, const float *k, const float *v, float *o, float *lse, long B,
                 long Tq, long Tk, long H, long Hkv, long D, long kvbs, long qoff, float scale) {
  if (B <= 0 || Tq <= 0 || H <= 0) return;
  attn_job j = {0};
  j.cx = cx;
  j.q = q; j.k = k; j.v = v; j.out = o; j.lse_out = lse;
  j.B = B; j.Tq = Tq; j.Tk = Tk; j.H = H; j.Hkv = Hkv; j.D = D; j.kvbs = kvbs; j.qoff = qoff; j.scale = scale;
  j.br = block_rows(cx);
  j.nqb = (Tq + j.br - 1) / j.br;
  j.ntasks = B * H * j.nqb;
  atomic_init(&j.next, 0);
  if (j.ntasks == 1 || cx->threads == 1) fwd_task(&j, 0, 1);
  else pool_run(cx->pool, fwd_task, &j);
}

static long round_up(long n, long to) { return (n + to - 1) / to * to; }

/* C[m, n] = alpha * Apacked @ B + beta * C over k, on the micro-kernel. Apacked: MR-row strips
   [k][MR]. B: NR-column strips [k][NR] when b_packed, else row-major [k, n] with row stride ldb,
   whose full-width strips are read in place (the last, narrower one is packed into bbuf). */
static void gemm_ap(const isa_t *isa, float *bbuf, const float *ap, long m, long n, long k, float alpha,
                    const float *b, long ldb, int b_packed, float beta, float *c, long ldc) {
  const long MR = isa->mr, NR = isa->nr;
  for (long jr = 0; jr < n; jr += NR) {
    int nv = (int)(n - jr < NR ? n - jr : NR);
    const float *bs = b_packed ? b + jr * k : b + jr;
    long bld = b_packed ? NR : ldb;
    if (!b_packed && nv < NR) {
      gemm_pack_b(isa, b + jr, ldb, 0, k, nv, bbuf);
      bs = bbuf;
      bld = NR;
    }
    for (long ir = 0; ir < m; ir += MR) {
      int mv = (int)(m - ir < MR ? m - ir : MR);
      isa->ukernel(k, ap + ir * k, bs, bld, c + ir * ldc + jr, ldc, alpha, beta, mv, nv);
    }
  }
}

/* Floats of backward scratch per thread (see bwd_group's layout). */
static size_t bwd_scratch_floats(const ctx_t *cx, long Tq, long D) {
  const long MR = cx->isa->mr, NR = cx->isa->nr, br = block_rows(cx), sq = br > BC ? br : BC;
  return (size_t)(2 * br * BC + Tq + 2 * round_up(Tq, MR) * D + 2 * D * round_up(BC, NR) + round_up(sq, MR) * sq);
}

/*
 * One (batch, kv head): FlashAttention-2's backward with every operand that is reused packed once:
 * Q and dO of a head for all its query blocks, K^T and V^T of a key block for all query blocks,
 * so per block pair only the probability tiles (P^T, dS^T, dS) are packed.
 */
static void bwd_group(attn_job *j, int tid, long b, long hk) {
  ctx_t *cx = j->cx;
  const isa_t *isa = cx->isa;
  const long D = j->D, ldq = j->H * D, ldk = j->Hkv * D, grp = j->H / j->Hkv, br = j->br;
  const long MR = isa->mr, NR = isa->nr, Tq = j->Tq;
  const float *K = j->k + b * j->kvbs + hk * D, *V = j->v + b * j->kvbs + hk * D;
  float *dK = j->dk + (b * j->Tk * j->Hkv + hk) * D, *dV = j->dv + (b * j->Tk * j->Hkv + hk) * D;
  for (long t = 0; t < j->Tk; t++) {
    memset(dK + t * ldk, 0, (size_t)D * sizeof(float));
    memset(dV + t * ldk, 0, (size_t)D * sizeof(float));
  }
  for (long h = hk * grp; h < (hk + 1) * grp; h++)
    for (long i = 0; i < Tq; i++) memset(j->dq + ((b * Tq + i) * j->H + h) * D, 0, (size_t)D * sizeof(float));
  /* Scratch: P, dP tiles [br][BC]; Di [Tq]; Q and dO packed [Tq rounded to MR][D]; K^T and V^T of a key
     block packed [BC rounded to NR][D]; one packed probability tile. */
  float *P = cx->scratch[tid].tile, *dP = P + br * BC, *Di = dP + br * BC;
  float *qpack = Di + Tq, *opack = qpack + round_up(Tq, MR) * D;
  float *ktp = opack + round_up(Tq, MR) * D, *vtp = ktp + D * round_up(BC, NR), *tp = vtp + D * round_up(BC, NR);
  float *bbuf = cx->scratch[tid].bpack;
  for (long h = hk * grp; h < (hk + 1) * grp; h++) {
    const float *Qh = j->q + (b * Tq * j->H + h) * D, *Oh = j->o + (b * Tq * j->H + h) * D;
    const float *dOh = j->dout + (b * Tq * j->H + h) * D;
    float *dQh = j->dq + (b * Tq * j->H + h) * D;
    const float *Lh = j->lse + (b * j->H + h) * Tq;
    gemm_pack_a(isa, Qh, ldq, 0, Tq, D, qpack);
    gemm_pack_a(isa, dOh, ldq, 0, Tq, D, opack);
    for (long i = 0; i < Tq; i++) {
      float di = 0.0f;
      for (long d = 0; d < D; d++) di += dOh[i * ldq + d] * Oh[i * ldq + d];
      Di[i] = di;
    }
    for (long j0 = 0; j0 < j->Tk; j0 += BC) {
      long nj = j->Tk - j0 < BC ? j->Tk - j0 : BC;
      long first = j0 - j->qoff; /* first query that sees key j0 */
      if (first < 0) first = 0;
      if (first >= Tq) break;
      const float *Kj = K + j0 * ldk, *Vj = V + j0 * ldk;
      float *dKj = dK + j0 * ldk, *dVj = dV + j0 * ldk;
      gemm_pack_b(isa, Kj, ldk, 1, D, nj, ktp);
      gemm_pack_b(isa, Vj, ldk, 1, D, nj, vtp);
      for (long i0 = (first / br) * br; i0 < Tq; i0 += br) {
        long ni = Tq - i0 < br ? Tq - i0 : br;
        const float *Qi = Qh + i0 * ldq, *dOi = dOh + i0 * ldq, *Li = Lh + i0;
        /* P = exp(scale Q K^T - lse), causal */
        gemm_ap(isa, bbuf, qpack + i0 * D, ni, nj, D, j->scale, ktp, 0, 1, 0.0f, P, BC);
        for (long r = 0; r < ni; r++) {
          float *p = P + r * BC;
          long nv = i0 + r + j->qoff - j0 + 1;
          if (nv > nj) nv = nj;
          if (nv < 0 || Li[r] == -INFINITY) nv = 0;
          if (nv > 0) isa->exp_shift_sum(p, nv, Li[r]);
          for (long c = nv; c < nj; c++) p[c] = 0.0f;
        }
        /* dV += P^T dO */
        gemm_pack_a(isa, P, BC, 1, nj, ni, tp);
        gemm_ap(isa, bbuf, tp, nj, D, ni, 1.0f, dOi, ldq, 0, 1.0f, dVj, ldk);
        /* dS = P * (dO V^T - Di) * scale */
        gemm_ap(isa, bbuf, opack + i0 * D, ni, nj, D, 1.0f, vtp, 0, 1, 0.0f, dP, BC);
        for (long r = 0; r < ni; r++) {
          const float dr = Di[i0 + r];
          for (long c = 0; c < nj; c++) dP[r * BC + c] = P[r * BC + c] * (dP[r * BC + c] - dr) * j->scale;
        }
        /* dK += dS^T Q;  dQ += dS K */
        gemm_pack_a(isa, dP, BC, 1, nj, ni, tp);
        gemm_ap(isa, bbuf, tp, nj, D, ni, 1.0f, Qi, ldq, 0, 1.0f, dKj, ldk);
        gemm_pack_a(isa, dP, BC, 0, ni, nj, tp);
        gemm_ap(isa, bbuf, tp, ni, D, nj, 1.0f, Kj, ldk, 0, 1.0f, dQh + i0 * ldq, ldq);
      }
    }
  }
}

static void bwd_task(void *raw, int tid, int nt) {
  (void)nt;
  attn_job *j = raw;
  for (;;) {
    long t = atomic_fetch_add(&j->next, 1);
    if (t >= j->ntasks) return;
    bwd_group(j, tid, t / j->Hkv, t % j->Hkv);
  }
}

int k_attention_backward(ctx_t *cx, const float *q, const float *k, const float *v, const float *o,
                         const float *lse, const float *dout, float *dq, float *dk, float *dv, long B,
                         long Tq, long Tk, long H, long Hkv, long D, long kvbs, long qoff, float scale) {
  if (B <= 0 || H <= 0) return 1;
  if (!scratch_tiles(cx, bwd_scratch_floats(cx, Tq, D))) return 0;
  attn_job j = {0};
  j.cx = cx;
  j.q = q; j.k = k; j.v = v; j.o = o; j.lse = lse; j.dout = dout; j.dq = dq; j.dk = dk; j.dv = dv;
  j.B = B; j.Tq = Tq; j.Tk = Tk; j.H = H; j.Hkv = Hkv; j.D = D; j.kvbs = kvbs; j.qoff = qoff; j.scale = scale;
  j.br = block_rows(cx);
  j.ntasks = B * Hkv;
  atomic_init(&j.next, 0);
  if (j.ntasks == 1 || cx->threads == 1) bwd_task(&j, 0, 1);
  else pool_run(cx->pool, bwd_task, &j);
  return 1;
}

/* Floats of attention scratch each thread needs: two BR x BC tiles and BR row statistics, then
   (forward) Q packed, BR x D, for D up to the ISA's KC. */
size_t attention_tile_floats(const ctx_t *cx) {
  return (size_t)(2 * block_rows(cx) * BC + 2 * block_rows(cx) + block_rows(cx) * cx->isa->kc);
}
