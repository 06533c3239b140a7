/*
 * Blocked, packed SGEMM on the per-ISA micro-kernels, plus the matmul and grouped-matmul kernels.
 *
 * Loop nest (per thread, on its own block of C): for each nc-wide column panel, for each kc-deep
 * slice, pack op(B)[kc, nc] into NR-wide strips (L3), then for each mc-tall row block pack
 * op(A)[mc, kc] into MR-tall strips (L2) and sweep the micro-kernel over the strips: the B strip
 * (kc x NR) stays in L1 while the A strips stream from L2. When op(B) is B itself (not
 * transposed) and the A side is a single row block, full-width B strips are read in place instead
 * of packed: every strip is used once, so packing would only add a copy.
 * Threads split C by columns when it has enough NR strips, else by rows; rows 1-3 (GEMV) skip
 * packing altogether and stream the matrix once.
 */
#include <string.h>
#include "skymoe.h"

/* op(A)[i, p] for i < mc, p < kc into strips of MR rows: strip s holds [kc][MR], zero padded. */
static void pack_a(const float *a, long lda, int ta, long mc, long kc, int mr, float *dst) {
  for (long i0 = 0; i0 < mc; i0 += mr) {
    long mv = mc - i0 < mr ? mc - i0 : mr;
    if (ta) {
      for (long p = 0; p < kc; p++) {
        const float *src = a + p * lda + i0;
        long i = 0;
        for (; i < mv; i++) dst[p * mr + i] = src[i];
        for (; i < mr; i++) dst[p * mr + i] = 0.0f;
      }
    } else {
      for (long i = 0; i < mv; i++) {
        const float *src = a + (i0 + i) * lda;
        for (long p = 0; p < kc; p++) dst[p * mr + i] = src[p];
      }
      for (long i = mv; i < mr; i++)
        for (long p = 0; p < kc; p++) dst[p * mr + i] = 0.0f;
    }
    dst += kc * mr;
  }
}

/* op(B)[p, j] for p < kc, j < nc into strips of NR columns: strip s holds [kc][NR], zero padded. */
static void pack_b(const float *b, long ldb, int tb, long kc, long nc, int nr, float *dst) {
  for (long j0 = 0; j0 < nc; j0 += nr) {
    long nv = nc - j0 < nr ? nc - j0 : nr;
    if (tb) {
      /* A transpose: 8 k-steps of every row at a time, so reads stay sequential per row and the
         writes fill whole cache lines of the strip. */
      const float *src = b + j0 * ldb;
      for (long p0 = 0; p0 < kc; p0 += 8) {
        long pn = kc - p0 < 8 ? kc - p0 : 8;
        for (long j = 0; j < nv; j++)
          for (long p = 0; p < pn; p++) dst[(p0 + p) * nr + j] = src[j * ldb + p0 + p];
        for (long j = nv; j < nr; j++)
          for (long p = 0; p < pn; p++) dst[(p0 + p) * nr + j] = 0.0f;
      }
    } else {
      for (long p = 0; p < kc; p++) {
        const float *src = b + p * ldb + j0;
        long j = 0;
        for (; j < nv; j++) dst[p * nr + j] = src[j];
        for (; j < nr; j++) dst[p * nr + j] = 0.0f;
      }
    }
    dst += kc * nr;
  }
}

static void scale_c(float *c, long ldc, long m, long n, float beta) {
  for (long i = 0; i < m; i++)
    for (long j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}

/* Rows 1-3: one GEMV per row of C, streaming op(B) without packing. */
static void gemm_rows(const isa_t *isa, float *xbuf, int ta, int tb, long m, long n, long k, float alpha,
                      const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
  for (long i = 0; i < m; i++) {
    const float *x = a + i * lda;
    if (ta) { /* op(A) row i is column i of A: gather it */
      for (long p = 0; p < k; p++) xbuf[p] = a[p * lda + i];
      x = xbuf;
    }
    if (tb) isa->gemv_t(x, b, ldb, c + i * ldc, n, k, alpha, beta);
    else isa->gemv_n(x, b, ldb, c + i * ldc, n, k, alpha, beta);
  }
}

void gemm_st(ctx_t *cx, int tid, int ta, int tb, long m, long n, long k, float alpha, const float *a, long lda,
             const float *b, long ldb, float beta, float *c, long ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    scale_c(c, ldc, m, n, beta);
    return;
  }
  const isa_t *isa = cx->isa;
  scratch_t *sc = &cx->scratch[tid];
  if (m < 4 && (!ta || k <= (long)isa->kc * isa->nc)) {
    gemm_rows(isa, sc->bpack, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const long MR = isa->mr, NR = isa->nr, KC = isa->kc, MC = isa->mc, NC = isa->nc;
  const int in_place = !tb && m <= MC;
  for (long jc = 0; jc < n; jc += NC) {
    long nc = n - jc < NC ? n - jc : NC;
    for (long pc = 0; pc < k; pc += KC) {
      long kc = k - pc < KC ? k - pc : KC;
      float bk = pc == 0 ? beta : 1.0f;
      const float *bsrc = tb ? b + jc * ldb + pc : b + pc * ldb + jc;
      if (!in_place) pack_b(bsrc, ldb, tb, kc, nc, (int)NR, sc->bpack);
      for (long ic = 0; ic < m; ic += MC) {
        long mc = m - ic < MC ? m - ic : MC;
        pack_a(ta ? a + pc * lda + ic : a + ic * lda + pc, lda, ta, mc, kc, (int)MR, sc->apack);
        for (long jr = 0; jr < nc; jr += NR) {
          int nv = (int)(nc - jr < NR ? nc - jr : NR);
          const float *bp;
          long bld;
          if (!in_place) {
            bp = sc->bpack + (jr / NR) * kc * NR;
            bld = NR;
          } else if (nv == NR) {
            bp = bsrc + jr;
            bld = ldb;
          } else {
            pack_b(bsrc + jr, ldb, 0, kc, nv, (int)NR, sc->bpack);
            bp = sc->bpack;
            bld = NR;
          }
          float *cc = c + ic * ldc + jc + jr;
          for (long ir = 0; ir < mc; ir += MR) {
            int mv = (int)(mc - ir < MR ? mc - ir : MR);
            isa->ukernel(kc, sc->apack + ir * kc, bp, bld, cc + ir * ldc, ldc, alpha, bk, mv, nv);
          }
        }
      }
    }
  }
}

void gemm_pack_a(const isa_t *isa, const float *a, long lda, int ta, long m, long k, float *apack) {
  pack_a(a, lda, ta, m, k, isa->mr, apack);
}

void gemm_pack_b(const isa_t *isa, const float *b, long ldb, int tb, long k, long n, float *bpack) {
  pack_b(b, ldb, tb, k, n, isa->nr, bpack);
}

void gemm_prepacked_a(ctx_t *cx, int tid, const float *apack, long m, long n, long k, float alpha, const float *b,
                      long ldb, int tb, float beta, float *c, long ldc) {
  const isa_t *isa = cx->isa;
  float *bp = cx->scratch[tid].bpack;
  const long MR = isa->mr, NR = isa->nr;
  for (long j0 = 0; j0 < n; j0 += isa->nc) {
    long nc = n - j0 < isa->nc ? n - j0 : isa->nc;
    const float *bsrc = tb ? b + j0 * ldb : b + j0;
    if (tb) pack_b(bsrc, ldb, 1, k, nc, (int)NR, bp);
    for (long jr = 0; jr < nc; jr += NR) {
      int nv = (int)(nc - jr < NR ? nc - jr : NR);
      const float *bs = bp + (jr / NR) * k * NR;
      long bld = NR;
      if (!tb && nv == NR) {
        bs = bsrc + jr;
        bld = ldb;
      } else if (!tb) {
        pack_b(bsrc + jr, ldb, 0, k, nv, (int)NR, bp);
        bs = bp;
      }
      for (long ir = 0; ir < m; ir += MR) {
        int mv = (int)(m - ir < MR ? m - ir : MR);
        isa->ukernel(k, apack + ir * k, bs, bld, c + ir * ldc + j0 + jr, ldc, alpha, beta, mv, nv);
      }
    }
  }
}

/* ------------------------------------------------------------------ threading */
typedef struct {
  ctx_t *cx;
  int ta, tb;
  long m, n, k;
  float alpha, beta;
  const float *a, *b;
  long lda, ldb, ldc;
  float *c;
  int by_cols;
  long align;
} gemm_job;

static void gemm_task(void *raw, int tid, int nt) {
  gemm_job *j = raw;
  long lo, hi;
  if (j->by_cols) {
    split_range(j->n, j->align, tid, nt, &lo, &hi);
    if (hi > lo)
      gemm_st(j->cx, tid, j->ta, j->tb, j->m, hi - lo, j->k, j->alpha, j->a, j->lda,
              j->tb ? j->b + lo * j->ldb : j->b + lo, j->ldb, j->beta, j->c + lo, j->ldc);
  } else {
    split_range(j->m, j->align, tid, nt, &lo, &hi);
    if (hi > lo)
      gemm_st(j->cx, tid, j->ta, j->tb, hi - lo, j->n, j->k, j->alpha, j->ta ? j->a + lo : j->a + lo * j->lda,
              j->lda, j->b, j->ldb, j->beta, j->c + lo * j->ldc, j->ldc);
  }
}

/* Below this many multiply-adds one thread is faster than waking the others. */
#define PARALLEL_MIN_MACS (1L << 17)

void gemm_mt(ctx_t *cx, int ta, int tb, long m, long n, long k, float alpha, const float *a, long lda,
             const float *b, long ldb, float beta, float *c, long ldc) {
  int nt = cx->threads;
  if (nt == 1 || m * n * (k > 0 ? k : 1) < PARALLEL_MIN_MACS) {
    gemm_st(cx, 0, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const isa_t *isa = cx->isa;
  gemm_job j = {cx, ta, tb, m, n, k, alpha, beta, a, b, lda, ldb, ldc, c, 0, 0};
  long nstrips = (n + isa->nr - 1) / isa->nr, mstrips = (m + isa->mr - 1) / isa->mr;
  /* Columns when C is wide (each thread then reads only its part of B, the larger operand for
     the skinny products of training and decode), rows when it is tall and narrow. */
  j.by_cols = m < 4 || (nstrips >= 2L * nt && (n >= m || mstrips < 2L * nt));
  j.align = j.by_cols ? (m < 4 ? 16 : isa->nr) : isa->mr;
  pool_run(cx->pool, gemm_task, &j);
}

/* ------------------------------------------------------------------ kernels */
typedef struct {
  ctx_t *cx;
  const float *a, *b;
  float *c;
  long m, k, n, batch, sa, sb, sc;
  int ta, tb;
  float beta;
} batch_job;

static void batch_task(void *raw, int tid, int nt) {
  batch_job *j = raw;
  long lo, hi;
  split_range(j->batch, 1, tid, nt, &lo, &hi);
  for (long i = lo; i < hi; i++)
    gemm_st(j->cx, tid, j->ta, j->tb, j->m, j->n, j->k, 1.0f, j->a + i * j->sa, j->ta ? j->m : j->k,
            j->b + i * j->sb, j->tb ? j->k : j->n, j->beta, j->c + i * j->sc, j->n);
}

void k_matmul(ctx_t *cx, const float *a, const float *b, float *c, long m, long k, long n, int ta, int tb,
              long batch, long sa, long sb, long sc, float beta) {
  if (m <= 0 || n <= 0 || batch <= 0) return;
  long lda = ta ? m : k, ldb = tb ? k : n;
  /* Many small products: one thread per product (distinct outputs, so no races). */
  if (batch >= cx->threads && cx->threads > 1 && sc != 0 && m * n * k < (1L << 22)) {
    batch_job j = {cx, a, b, c, m, k, n, batch, sa, sb, sc, ta, tb, beta};
    pool_run(cx->pool, batch_task, &j);
    return;
  }
  for (long i = 0; i < batch; i++)
    gemm_mt(cx, ta, tb, m, n, k, 1.0f, a + i * sa, lda, b + i * sb, ldb, beta, c + i * sc, n);
}

void k_grouped_matmul(ctx_t *cx, int mode, const float *a, const float *b, float *c, const int32_t *off,
                      long groups, long m, long k, float beta) {
  for (long g = 0; g < groups; g++) {
    long r0 = off[g], rows = off[g + 1] - off[g];
    if (mode == 0) { /* XWt: c[rows] [rows, m] = a[rows] [rows, k] @ w[g]^T, w[g] [m, k] */
      if (rows > 0) gemm_mt(cx, 0, 1, rows, m, k, 1.0f, a + r0 * k, k, b + g * m * k, k, 0.0f, c + r0 * m, m);
    } else if (mode == 1) { /* XW: c[rows] [rows, k] = a[rows] [rows, m] @ w[g] [m, k] */
      if (rows > 0) gemm_mt(cx, 0, 0, rows, k, m, 1.0f, a + r0 * m, m, b + g * m * k, k, 0.0f, c + r0 * k, k);
    } else { /* AtB: c[g] [m, k] (+)= a[rows]^T [m, rows] @ b[rows] [rows, k] */
      float *cg = c + g * m * k;
      if (rows > 0) gemm_mt(cx, 1, 0, m, k, rows, 1.0f, a + r0 * m, m, b + r0 * k, k, beta, cg, k);
      else if (beta == 0.0f) memset(cg, 0, (size_t)(m * k) * sizeof(float));
    }
  }
}
