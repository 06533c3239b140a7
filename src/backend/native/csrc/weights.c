/*
 * Products with weights in their storage dtype (f32, bf16, f16, f8_e4m3; per-tensor and per-row
 * scales), read where they lie: in the heap or in a file mapped read-only.
 *
 * Few rows (decode, small batches): each thread streams its share of the weight rows once,
 * decoding in registers, against up to 16 activation rows held in cache (isa->wdot). This is bound
 * by memory bandwidth, which is the point of narrow weights.
 * Many rows (prefill): the weight is decoded and scaled while packing B panels for the fp32
 * micro-kernel, so the GEMM itself is the fp32 one.
 * Row-invariant products (a continuous-batching server: a request's logits must not depend on the
 * other requests in its batch) keep the streaming path's per-row summation order for every row
 * count; above 4 rows each quad of weight rows is decoded once into scratch and wdot's FMA sequence
 * replayed from the f32 copy, so the decode is amortized over a block of rows.
 * float8_e4m3 vector loads give value / 256; the 2^8 is folded into each row's multiplier.
 */
#include "skymoe.h"

/* Activation rows up to which the streaming path is used (beyond: the packed GEMM). */
#define STREAM_ROWS 16
/* Row-invariant path: activation rows each decoded weight quad is used for before the next block
   (the block stays in L2, the quad in L1). */
#define INVARIANT_ROW_BLOCK 64
/* Below this many multiply-adds one thread is faster than waking the others. */
#define PARALLEL_MIN_MACS (1L << 16)

static inline float row_mul(const wref_t *w, long r) {
  float s = w->scale * (w->row_scale ? w->row_scale[r] : 1.0f);
  return w->dtype == WD_F8E4M3 ? s * 256.0f : s;
}

/*
 * y[i, j] for i < m, j in [j0, j1): stream weight rows j0..j1 once against the m <= STREAM_ROWS rows
 * of x. `xs` is scratch for m * k floats, used when the ISA wants the activations permuted (isa->xperm).
 */
static void stream_rows(const isa_t *isa, const float *x, long m, long k, const wref_t *w, long n, long j0, long j1,
                        float *y, float *xs) {
  const long ldw = k * wd_bytes(w->dtype);
  float acc[16];
  if (isa->xperm[w->dtype]) {
    for (long i = 0; i < m; i++) isa->xperm[w->dtype](x + i * k, xs + i * k, k);
    x = xs;
  }
  /* The four rows a wdot call reads at once come from the four quarters of [j0, j1): each quarter
     is then one sequential stream, in its own pages (four adjacent rows share 4 KiB pages when a
     row is shorter than a page, and the hardware prefetcher follows them poorly). */
  const long span = j1 - j0, quarter = (span + 3) / 4;
  for (long q = 0; q < quarter; q++) {
    const long j = j0 + q;
    int nr = 0;
    long rows[4];
    for (int r = 0; r < 4; r++)
      if (j + r * quarter < j1) rows[nr++] = j + r * quarter;
    const uint8_t *wr = w->p + j * ldw;
    float mul[4];
    for (int r = 0; r < nr; r++) mul[r] = row_mul(w, rows[r]);
    for (long i0 = 0; i0 < m; i0 += 4) {
      int mm = (int)(m - i0 < 4 ? m - i0 : 4);
      isa->wdot[w->dtype][mm - 1](x + i0 * k, k, wr, quarter * ldw, nr, k, acc);
      for (int i = 0; i < mm; i++)
        for (int r = 0; r < nr; r++) y[(i0 + i) * n + rows[r]] = acc[i * 4 + r] * mul[r];
    }
  }
}

/*
 * Packed GEMM on thread `tid` for output columns [j0, j1): C[m, j] = x[m, k] @ W[j, :]^T. B panels
 * are the weight rows decoded and scaled into the fp32 strips the micro-kernel reads.
 */
static void gemm_w_cols(ctx_t *cx, int tid, const float *x, long m, long k, const wref_t *w, long n, long j0, long j1,
                        float *y) {
  const isa_t *isa = cx->isa;
  scratch_t *sc = &cx->scratch[tid];
  const long MR = isa->mr, NR = isa->nr, KC = isa->kc, MC = isa->mc, NC = isa->nc;
  const long ldw = k * wd_bytes(w->dtype), es = wd_bytes(w->dtype);
  float row[1024]; /* one decoded row chunk: KC <= 1024 on every ISA */
  for (long jc = j0; jc < j1; jc += NC) {
    long nc = j1 - jc < NC ? j1 - jc : NC;
    for (long pc = 0; pc < k; pc += KC) {
      long kc = k - pc < KC ? k - pc : KC;
      float beta = pc == 0 ? 0.0f : 1.0f;
      /* B strips: strip s holds [kc][NR] for weight rows jc + s*NR .. (zero padded past nc) */
      for (long s0 = 0; s0 < nc; s0 += NR) {
        float *dst = sc->bpack + (s0 / NR) * kc * NR;
        long nv = nc - s0 < NR ? nc - s0 : NR;
        for (long jj = 0; jj < nv; jj++) {
          long j = jc + s0 + jj;
          isa->decode_row(w->p + j * ldw + pc * es, w->dtype, row, kc, row_mul(w, j));
          for (long p = 0; p < kc; p++) dst[p * NR + jj] = row[p];
        }
        for (long jj = nv; jj < NR; jj++)
          for (long p = 0; p < kc; p++) dst[p * NR + jj] = 0.0f;
      }
      for (long ic = 0; ic < m; ic += MC) {
        long mc = m - ic < MC ? m - ic : MC;
        gemm_pack_a(isa, x + ic * k + pc, k, 0, mc, kc, sc->apack);
        for (long jr = 0; jr < nc; jr += NR) {
          int nv = (int)(nc - jr < NR ? nc - jr : NR);
          const float *bp = sc->bpack + (jr / NR) * kc * NR;
          for (long ir = 0; ir < mc; ir += MR) {
            int mv = (int)(mc - ir < MR ? mc - ir : MR);
            isa->ukernel(kc, sc->apack + ir * kc, bp, NR, y + (ic + ir) * n + jc + jr, n, 1.0f, beta, mv, nv);
          }
        }
      }
    }
  }
}

/*
 * Row-invariant y[i, j] for i < m, j in [j0, j1): what stream_rows gives each row alone. Up to
 * STREAM_ROWS rows that is stream_rows itself (decoding in registers for every 4 rows was faster
 * than decoding to scratch once at the few rows per expert of a decode step: the scratch path has
 * no prefetch and stalls on memory while it decodes); beyond, each quad of weight rows is decoded
 * once per block of
 * INVARIANT_ROW_BLOCK rows and isa->wdot_dec replays wdot's FMAs from the f32 copy. Scratch:
 * (4 + INVARIANT_ROW_BLOCK) * k floats (see stream_scratch_floats).
 */
static void invariant_rows(const isa_t *isa, const float *x, long m, long k, const wref_t *w, long n, long j0, long j1,
                           float *y, float *scratch, int amx) {
#if defined(SKYMOE_X86)
  if (amx && (w->dtype == WD_BF16 || w->dtype == WD_F8E4M3)) {
    amx_rows(x, m, k, w, n, j0, j1, y, scratch);
    return;
  }
#else
  (void)amx;
#endif
  if (m <= STREAM_ROWS) {
    stream_rows(isa, x, m, k, w, n, j0, j1, y, scratch);
    return;
  }
  const long ldw = k * wd_bytes(w->dtype), step = isa->wdot_step[w->dtype], kvec = k / step * step;
  void (*const xperm)(const float *, float *, long) = isa->xperm[w->dtype];
  float *wd = scratch, *xs = scratch + 4 * k, acc[16];
  for (long i0 = 0; i0 < m; i0 += INVARIANT_ROW_BLOCK) {
    const long mb = m - i0 < INVARIANT_ROW_BLOCK ? m - i0 : INVARIANT_ROW_BLOCK;
    const float *xb = x + i0 * k;
    if (xperm) {
      for (long i = 0; i < mb; i++) xperm(xb + i * k, xs + i * k, k);
      xb = xs;
    }
    for (long j = j0; j < j1; j += 4) {
      const int nr = (int)(j1 - j < 4 ? j1 - j : 4);
      float mul[4];
      for (int r = 0; r < nr; r++) {
        isa->wdot_decode(w->p + (j + r) * ldw, w->dtype, wd + r * k, k);
        mul[r] = row_mul(w, j + r);
      }
      for (long i = 0; i < mb; i += 4) {
        const int mm = (int)(mb - i < 4 ? mb - i : 4);
        isa->wdot_dec[mm - 1](xb + i * k, k, wd, k, nr, k, kvec, acc);
        for (int ii = 0; ii < mm; ii++)
          for (int r = 0; r < nr; r++) y[(i0 + i + ii) * n + j + r] = acc[ii * 4 + r] * mul[r];
      }
    }
  }
}

/* Per-thread scratch (floats) of the streaming paths for `rows` activation rows. */
static size_t stream_scratch_floats(const ctx_t *cx, long rows, long k, int invariant) {
  if (invariant && rows > STREAM_ROWS) rows = 4 + (rows < INVARIANT_ROW_BLOCK ? rows : INVARIANT_ROW_BLOCK);
  size_t floats = (size_t)(rows * k);
#if defined(SKYMOE_X86)
  if (invariant && cx->amx && amx_scratch_floats(k) > floats) floats = amx_scratch_floats(k);
#else
  (void)cx;
#endif
  return floats;
}

/* Row-invariant products with this weight run on AMX (bf16 compute, see amx.c). */
static inline int uses_amx(const ctx_t *cx, const wref_t *w) {
  return cx->amx && (w->dtype == WD_BF16 || w->dtype == WD_F8E4M3);
}

/* ------------------------------------------------------------------ linear */
typedef struct {
  ctx_t *cx;
  const float *x;
  const wref_t *w;
  float *y;
  long m, k, n, align;
  int invariant;
} linear_job;

static void linear_range(ctx_t *cx, int tid, const float *x, const wref_t *w, float *y, long m, long k, long n, long j0,
                         long j1, int invariant) {
  if (j1 <= j0) return;
  if (invariant) invariant_rows(cx->isa, x, m, k, w, n, j0, j1, y, cx->scratch[tid].tile, cx->amx);
  else if (m <= STREAM_ROWS) stream_rows(cx->isa, x, m, k, w, n, j0, j1, y, cx->scratch[tid].tile);
  else gemm_w_cols(cx, tid, x, m, k, w, n, j0, j1, y);
}

static void linear_task(void *raw, int tid, int nt) {
  linear_job *j = raw;
  long lo, hi;
  split_range(j->n, j->align, tid, nt, &lo, &hi);
  linear_range(j->cx, tid, j->x, j->w, j->y, j->m, j->k, j->n, lo, hi, j->invariant);
}

void k_linear_w(ctx_t *cx, const float *x, const wref_t *w, float *y, long m, long k, long n, int invariant) {
  if (m <= 0 || n <= 0) return;
  const int streamed = invariant || m <= STREAM_ROWS;
  if (k <= 0 || (streamed && !scratch_tiles(cx, stream_scratch_floats(cx, m, k, invariant)))) {
    /* k <= 0: the empty sum; no scratch: (out of memory) NaN says so rather than garbage */
    for (long i = 0; i < m * n; i++) y[i] = k <= 0 ? 0.0f : __builtin_nanf("");
    return;
  }
  if (cx->threads == 1 || m * n * k < PARALLEL_MIN_MACS) {
    linear_range(cx, 0, x, w, y, m, k, n, 0, n, invariant);
    return;
  }
  linear_job j = {cx, x, w, y, m, k, n, invariant && uses_amx(cx, w) ? 16 : streamed ? 4 : cx->isa->nr, invariant};
  pool_run(cx->pool, linear_task, &j);
}

/* ------------------------------------------------------------------ grouped (experts) */
typedef struct {
  ctx_t *cx;
  const float *x;
  const wref_t *ws;
  float *y;
  const int32_t *off;
  long groups, n, k, quads, units;
  int invariant;
  long width; /* weight rows per work unit: 4 (a wdot quad) or 16 (an AMX tile) */
} grouped_job;

/* Work units: (group, quad of 4 weight rows) over the groups that own rows; thread t takes a range. */
static void grouped_task(void *raw, int tid, int nt) {
  grouped_job *j = raw;
  long lo, hi;
  split_range(j->units, 1, tid, nt, &lo, &hi);
  long u = 0;
  for (long g = 0; g < j->groups && u < hi; g++) {
    long r0 = j->off[g], rows = j->off[g + 1] - r0;
    if (rows <= 0) continue;
    long a = lo > u ? lo - u : 0, b = hi - u < j->quads ? hi - u : j->quads;
    if (a < b) {
      long c0 = a * j->width, c1 = b * j->width < j->n ? b * j->width : j->n;
      const float *xg = j->x + r0 * j->k;
      float *yg = j->y + r0 * j->n, *scratch = j->cx->scratch[tid].tile;
      if (j->invariant) invariant_rows(j->cx->isa, xg, rows, j->k, &j->ws[g], j->n, c0, c1, yg, scratch, j->cx->amx);
      else stream_rows(j->cx->isa, xg, rows, j->k, &j->ws[g], j->n, c0, c1, yg, scratch);
    }
    u += j->quads;
  }
}

void k_grouped_linear_w(ctx_t *cx, const float *x, const wref_t *ws, float *y, const int32_t *off, long groups,
                        long n, long k, int invariant) {
  long busy = 0, most = 0;
  for (long g = 0; g < groups; g++) {
    long rows = off[g + 1] - off[g];
    if (rows > 0) busy++;
    if (rows > most) most = rows;
  }
  if (busy == 0 || n <= 0) return;
  if ((invariant || most <= STREAM_ROWS) && k > 0 && scratch_tiles(cx, stream_scratch_floats(cx, most, k, invariant))) {
    /* Decode, small batches and row-invariant products: one pass over all busy experts' weights,
       split evenly over threads. */
    const long width = invariant && uses_amx(cx, &ws[0]) ? 16 : 4;
    long quads = (n + width - 1) / width;
    grouped_job j = {cx, x, ws, y, off, groups, n, k, quads, busy * quads, invariant, width};
    if (cx->threads == 1 || busy * n * k * most < PARALLEL_MIN_MACS) grouped_task(&j, 0, 1);
    else pool_run(cx->pool, grouped_task, &j);
    return;
  }
  for (long g = 0; g < groups; g++) {
    long r0 = off[g], rows = off[g + 1] - r0;
    if (rows > 0) k_linear_w(cx, x + r0 * k, &ws[g], y + r0 * n, rows, k, n, invariant);
  }
}

/* ------------------------------------------------------------------ gather, dequantize */
typedef struct {
  ctx_t *cx;
  const wref_t *w;
  const int32_t *ids; /* NULL: rows 0..count-1 (dequantize) */
  float *out;
  long count, cols;
} rows_job;

static void rows_task(void *raw, int tid, int nt) {
  rows_job *j = raw;
  long lo, hi;
  split_range(j->count, 1, tid, nt, &lo, &hi);
  const long ldw = j->cols * wd_bytes(j->w->dtype);
  for (long i = lo; i < hi; i++) {
    long r = j->ids ? j->ids[i] : i;
    j->cx->isa->decode_row(j->w->p + r * ldw, j->w->dtype, j->out + i * j->cols, j->cols, row_mul(j->w, r));
  }
}

static void run_rows(ctx_t *cx, rows_job *j) {
  if (cx->threads == 1 || j->count * j->cols < PARALLEL_MIN_MACS) rows_task(j, 0, 1);
  else pool_run(cx->pool, rows_task, j);
}

void k_gather_rows_w(ctx_t *cx, const wref_t *w, const int32_t *ids, float *out, long count, long cols) {
  rows_job j = {cx, w, ids, out, count, cols};
  run_rows(cx, &j);
}

void k_dequantize_w(ctx_t *cx, const wref_t *w, float *out, long rows, long cols) {
  rows_job j = {cx, w, NULL, out, rows, cols};
  run_rows(cx, &j);
}

/* ------------------------------------------------------------------ memory bandwidth probe */
typedef struct {
  const isa_t *isa;
  const float *buf;
  long n;
  double sums[256];
} stream_job;

static void stream_task(void *raw, int tid, int nt) {
  stream_job *j = raw;
  long lo, hi;
  split_range(j->n, 64, tid, nt, &lo, &hi);
  double s = 0;
  if (hi > lo) s = j->isa->stream_sum(j->buf + lo, hi - lo);
  if (tid < 256) j->sums[tid] = s;
}

/* Read n floats (n a multiple of 64) once on all threads; the sum keeps the reads alive. */
double k_stream_read(ctx_t *cx, const float *buf, long n) {
  stream_job j = {cx->isa, buf, n, {0}};
  pool_run(cx->pool, stream_task, &j);
  double s = 0;
  for (int t = 0; t < cx->threads && t < 256; t++) s += j.sums[t];
  return s;
}
