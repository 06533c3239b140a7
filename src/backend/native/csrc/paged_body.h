/*
 * One unit of paged attention (paged_attention.c): up to PAGED_ROWS query rows of one sequence
 * (consecutive in the batch: a prefill chunk; a decode row is a unit of its own), each with its G =
 * H / Hkv heads that share one kv head, against the sequence's keys and values in the paged cache.
 * Included by each ISA file after wdot_body.h, with its vector primitives (vf, VL, VZERO, VSET1,
 * VFMA, VLOADU, VSTOREU, VHSUM).
 *
 * Two passes: the scaled scores of every key a row sees into scratch (each key row read once for
 * the unit's rows and heads), then per row and head max and exp-sum (exp_shift_sum), then the values
 * weighted by the exponentials (each value row read once for the unit), divided by the sum. A unit
 * reads D floats every Hkv * D (one kv head of each slot): too far apart for the hardware
 * prefetcher, and 4 KiB-strided rows share cache sets, so rows are prefetched PAGED_PREFETCH keys
 * ahead, and reading them once for several rows is what makes a prefill chunk fast.
 *
 * Batch invariance: every sum runs in an order set by D, the key count and the ISA alone, in code
 * the compiler cannot reshape per call (intrinsics, explicit fmaf, the shared dot_tail; the score
 * rows' layout depends on the row's own key count only), so a row's output does not depend on the
 * rest of the batch, on the thread or on where the sequence's blocks lie. Grouping rows into a unit
 * changes no row's arithmetic: each row's dots, sums and FMAs are those it gets alone.
 */

#ifndef PAGED_PREFETCH
#define PAGED_PREFETCH 16
#endif

/* q . k_j over D floats for nk (1 to 4) keys: per key one vector FMA chain, its horizontal sum, the
   scalar tail; the chains of the keys run side by side, each exactly as it would alone. */
static inline __attribute__((always_inline)) void ISA(paged_dots)(const float *q, const float *const *k, int nk, long D,
                                                                  float *out) {
  vf a[4] = {VZERO(), VZERO(), VZERO(), VZERO()};
  long d = 0;
  for (; d + VL <= D; d += VL) {
    const vf qv = VLOADU(q + d);
    for (int j = 0; j < nk; j++) a[j] = VFMA(qv, VLOADU(k[j] + d), a[j]);
  }
  for (int j = 0; j < nk; j++) out[j] = d < D ? ISA(dot_tail)(VHSUM(a[j]), q + d, k[j] + d, D - d) : VHSUM(a[j]);
}

/* The cache rows of keys [p, p + 4) (fewer at the end: returns how many), while prefetching into L2
   those of the keys PAGED_PREFETCH further on, a cache line at a time. */
static inline int ISA(paged_rows)(const float *cache, const long *row, long p, long len, long D, const float **out) {
  const int n = len - p < 4 ? (int)(len - p) : 4;
  for (int j = 0; j < n; j++) {
    if (p + j + PAGED_PREFETCH < len)
      for (long d = 0; d < D; d += 16) __builtin_prefetch(cache + row[p + j + PAGED_PREFETCH] + d, 0, 2);
    out[j] = cache + row[p + j];
  }
  return n;
}

/* acc[0, D) += e[j] * v_j[0, D) for j < nv (1 to 4, in order), one fused multiply-add per term:
   the same as nv calls with one key each, with the accumulator kept in registers between them. */
static inline __attribute__((always_inline)) void ISA(paged_axpy)(float *acc, const float *e, const float *const *v, int nv, long D) {
  long d = 0;
  for (; d + VL <= D; d += VL) {
    vf a = VLOADU(acc + d);
    for (int j = 0; j < nv; j++) a = VFMA(VSET1(e[j]), VLOADU(v[j] + d), a);
    VSTOREU(acc + d, a);
  }
  for (; d < D; d++)
    for (int j = 0; j < nv; j++) acc[d] = fmaf(e[j], v[j][d], acc[d]);
}

/* One pass over a unit's keys, four at a time, for each row that sees them: the scaled scores into
   srow (values == 0), or the values weighted by srow into acc (values == 1). */
static inline __attribute__((always_inline)) void ISA(paged_pass)(const paged_unit_t *u, const long *row, long len,
                                                                  float *const *srow, float *acc, int values) {
  const long G = u->G, D = u->D;
  for (long p = 0; p < len; p += 4) {
    const float *kv[4];
    const int nk = ISA(paged_rows)(values ? u->v : u->k, row, p, len, D, kv);
    for (long r = 0; r < u->rows; r++) {
      const long lr = u->lens[r], ls = PAGED_SCORE_STRIDE(lr);
      if (p >= lr) continue;
      const int n = lr - p < nk ? (int)(lr - p) : nk;
      for (long g = 0; g < G; g++) {
        float *s = srow[r] + g * ls + p, *a = acc + (r * G + g) * D, dots[4];
        const float *q = u->q + r * u->ldq + g * D;
        /* the calls with a constant 4 unroll */
        if (values && n == 4) ISA(paged_axpy)(a, s, kv, 4, D);
        else if (values) ISA(paged_axpy)(a, s, kv, n, D);
        else {
          if (n == 4) ISA(paged_dots)(q, kv, 4, D, dots);
          else ISA(paged_dots)(q, kv, n, D, dots);
          for (int j = 0; j < n; j++) s[j] = dots[j] * u->scale;
        }
      }
    }
  }
}

static void ISA(paged_unit)(const paged_unit_t *u) {
  const long G = u->G, D = u->D, R = u->rows, heads = R * G;
  long len = 0, total = 0; /* keys of the longest row; score floats of all rows */
  float *srow[PAGED_ROWS];  /* row r's G score rows, PAGED_SCORE_STRIDE(its length) apart */
  for (long r = 0; r < R; r++) {
    srow[r] = u->scratch + total;
    total += G * PAGED_SCORE_STRIDE(u->lens[r]);
    len = u->lens[r] > len ? u->lens[r] : len;
  }
  float *acc = u->scratch + total, *sums = acc + heads * D;
  long *row = (long *)(sums + heads + ((heads * D + heads) & 1)); /* element offset of position p's row in the caches */
  for (long b = 0, p = 0; p < len; b++)
    for (long slot = (long)u->table[b] * u->block, end = p + u->block < len ? p + u->block : len; p < end; p++, slot++)
      row[p] = slot * u->ldkv;
  ISA(paged_pass)(u, row, len, srow, acc, 0);
  for (long r = 0; r < R; r++)
    for (long g = 0; g < G; g++) {
      const long lr = u->lens[r];
      float *s = srow[r] + g * PAGED_SCORE_STRIDE(lr);
      sums[r * G + g] = ISA(exp_shift_sum)(s, lr, ISA(row_max)(s, lr));
    }
  memset(acc, 0, (size_t)(heads * D) * sizeof(float));
  ISA(paged_pass)(u, row, len, srow, acc, 1);
  for (long r = 0; r < R; r++)
    for (long g = 0; g < G; g++) {
      const float inv = 1.0f / sums[r * G + g], *a = acc + (r * G + g) * D;
      float *o = u->o + r * u->ldq + g * D;
      for (long d = 0; d < D; d++) o[d] = a[d] * inv;
    }
}
