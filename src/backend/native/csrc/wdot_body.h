/*
 * Kernels over weights in their storage dtype (WD_F32, WD_BF16, WD_F16, WD_F8E4M3), included by
 * each ISA file after it defines its vector primitives:
 *   vf, VL                     a vector of VL floats
 *   VZERO(), VFMA(a, b, c), VLOADU(p), VSTOREU(p, v), VHSUM(v)
 *   LD_F32(w) LD_BF16(w) LD_F16(w) LD_F8(w)   VL elements at byte address w, decoded to floats
 * float8_e4m3 decodes to value / 256 (its bits shifted into an f16; the callers fold the 2^8 into
 * the scale, see weights.c). Weights are read once, in order, and converted in registers: the
 * loop is bound by memory bandwidth, not by the conversion.
 */
#include <math.h>

/* Element i of a weight row as the vector loads give it (f8: value / 256). */
static inline float ISA(wscalar)(const uint8_t *w, int dtype, long i) {
  switch (dtype) {
    case WD_F32: {
      float f;
      memcpy(&f, w + 4 * i, 4);
      return f;
    }
    case WD_BF16: {
      uint32_t u = (uint32_t)(w[2 * i] | (w[2 * i + 1] << 8)) << 16;
      float f;
      memcpy(&f, &u, 4);
      return f;
    }
    case WD_F16:
      return f16_to_f32((uint16_t)(w[2 * i] | (w[2 * i + 1] << 8)));
    default:
      return f16_to_f32(f8_to_f16_bits(w[i]));
  }
}

/* out[p] = mul * decode(w[p]) for p < k. */
static void ISA(decode_row)(const uint8_t *w, int dtype, float *out, long k, float mul) {
  const vf m = VSET1(mul);
  long p = 0;
  switch (dtype) {
    case WD_F32: for (; p + VL <= k; p += VL) VSTOREU(out + p, VMUL(m, LD_F32(w + 4 * p))); break;
    case WD_BF16: for (; p + VL <= k; p += VL) VSTOREU(out + p, VMUL(m, LD_BF16(w + 2 * p))); break;
    case WD_F16: for (; p + VL <= k; p += VL) VSTOREU(out + p, VMUL(m, LD_F16(w + 2 * p))); break;
    default: for (; p + VL <= k; p += VL) VSTOREU(out + p, VMUL(m, LD_F8(w + p))); break;
  }
  for (; p < k; p++) out[p] = mul * ISA(wscalar)(w, dtype, p);
}

/*
 * acc[i * 4 + r] = sum_p x[i * ldx + p] * decode(W_r[p]) for i < MM and the 4 rows W_r at
 * w + r * ldw bytes (rows past `nrows` repeat the last one; their sums are ignored by the caller).
 */
/* Each weight row is prefetched this many bytes ahead: the four rows of a call are four streams,
   and requests issued early keep more of them in flight than the hardware prefetcher alone. */
#ifndef WPREFETCH
#define WPREFETCH(p) __builtin_prefetch((const void *)(p), 0, 3)
#endif
#ifndef WPF_DIST
#define WPF_DIST 2048
#endif

/*
 * t + sum_p x[p] * w[p] for p < n, one fused multiply-add at a time in order: the scalar tail of
 * every wdot kernel (and of paged attention's dot products), out of line so that each kernel's tail
 * is this same machine code. Left to the compiler, one kernel's tail became FMAs and another's
 * vector products plus adds, which round differently; the row-invariant products and batch-invariant
 * attention rely on every kernel rounding alike.
 */
SKYMOE_ONE_COPY static float ISA(dot_tail)(float t, const float *x, const float *w, long n) {
  for (long p = 0; p < n; p++) t = fmaf(x[p], w[p], t);
  return t;
}

/* The 16 accumulators of a wdot kernel (a<i><r>: activation row i, weight row r), their horizontal
   sums t[i][r], and the store of the MM rows in use. */
#define WDOT_ACC                                                                                      \
  vf a00 = VZERO(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00,       \
     a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
#define WDOT_SUMS                                                                                     \
  float t[4][4] = {{VHSUM(a00), VHSUM(a01), VHSUM(a02), VHSUM(a03)},                                 \
                   {VHSUM(a10), VHSUM(a11), VHSUM(a12), VHSUM(a13)},                                 \
                   {VHSUM(a20), VHSUM(a21), VHSUM(a22), VHSUM(a23)},                                 \
                   {VHSUM(a30), VHSUM(a31), VHSUM(a32), VHSUM(a33)}};
#define WDOT_STORE(MM)                                                                                \
  for (int i = 0; i < MM; i++)                                                                        \
    for (int r = 0; r < 4; r++) acc[i * 4 + r] = t[i][r];

#define WDOT(NAME, LD, ES, MM)                                                                        \
  static void NAME(const float *x, long ldx, const uint8_t *w, long ldw, int nrows, long k, float *acc) { \
    const uint8_t *w0 = w, *w1 = w + (nrows > 1 ? ldw : 0), *w2 = w + (nrows > 2 ? 2 * ldw : 0),     \
                  *w3 = w + (nrows > 3 ? 3 * ldw : 0);                                                \
    WDOT_ACC                                                                                          \
    long p = 0;                                                                                       \
    for (; p + VL <= k; p += VL) {                                                                    \
      if ((((ES) * p) & 63) == 0) {                                                                   \
        WPREFETCH(w0 + (ES) * p + WPF_DIST); WPREFETCH(w1 + (ES) * p + WPF_DIST);                    \
        WPREFETCH(w2 + (ES) * p + WPF_DIST); WPREFETCH(w3 + (ES) * p + WPF_DIST);                    \
      }                                                                                               \
      const vf v0 = LD(w0 + (ES) * p), v1 = LD(w1 + (ES) * p), v2 = LD(w2 + (ES) * p),              \
               v3 = LD(w3 + (ES) * p);                                                               \
      WDOT_ROW(0) if (MM > 1) WDOT_ROW(1) if (MM > 2) WDOT_ROW(2) if (MM > 3) WDOT_ROW(3)             \
    }                                                                                                 \
    WDOT_SUMS                                                                                         \
    if (p < k) {                                                                                      \
      const uint8_t *ws[4] = {w0, w1, w2, w3};                                                        \
      float wt[4][VL];                                                                                \
      for (int r = 0; r < 4; r++)                                                                     \
        for (long q = p; q < k; q++) wt[r][q - p] = ISA(wscalar)(ws[r], WDT, q);                      \
      for (int i = 0; i < MM; i++)                                                                    \
        for (int r = 0; r < 4; r++) t[i][r] = ISA(dot_tail)(t[i][r], x + i * ldx + p, wt[r], k - p);  \
    }                                                                                                 \
    WDOT_STORE(MM)                                                                                    \
  }

#define WDOT_ROW(i)                                                                                   \
  {                                                                                                   \
    const vf xi = VLOADU(x + (i) * ldx + p);                                                          \
    a##i##0 = VFMA(xi, v0, a##i##0);                                                                  \
    a##i##1 = VFMA(xi, v1, a##i##1);                                                                  \
    a##i##2 = VFMA(xi, v2, a##i##2);                                                                  \
    a##i##3 = VFMA(xi, v3, a##i##3);                                                                  \
  }

#define WDT WD_F32
WDOT(ISA(wdot_f32_1), LD_F32, 4, 1) WDOT(ISA(wdot_f32_2), LD_F32, 4, 2)
WDOT(ISA(wdot_f32_3), LD_F32, 4, 3) WDOT(ISA(wdot_f32_4), LD_F32, 4, 4)
#undef WDT
#define WDT WD_BF16
WDOT(ISA(wdot_bf16_1), LD_BF16, 2, 1) WDOT(ISA(wdot_bf16_2), LD_BF16, 2, 2)
WDOT(ISA(wdot_bf16_3), LD_BF16, 2, 3) WDOT(ISA(wdot_bf16_4), LD_BF16, 2, 4)
#undef WDT
#define WDT WD_F16
WDOT(ISA(wdot_f16_1), LD_F16, 2, 1) WDOT(ISA(wdot_f16_2), LD_F16, 2, 2)
WDOT(ISA(wdot_f16_3), LD_F16, 2, 3) WDOT(ISA(wdot_f16_4), LD_F16, 2, 4)
#undef WDT
#define WDT WD_F8E4M3
WDOT(ISA(wdot_f8_1), LD_F8, 1, 1) WDOT(ISA(wdot_f8_2), LD_F8, 1, 2)
WDOT(ISA(wdot_f8_3), LD_F8, 1, 3) WDOT(ISA(wdot_f8_4), LD_F8, 1, 4)
#undef WDT

/* One weight row as f32, exactly as the wdot kernels above decode it (f8: value / 256). */
static void ISA(wdot_decode)(const uint8_t *w, int dtype, float *out, long k) { ISA(decode_row)(w, dtype, out, k, 1.0f); }

/*
 * WDOT's arithmetic on decoded rows (w: 4 rows of f32 at stride ldw): the same FMA per vector step
 * over [0, kvec), the same horizontal sum, the same scalar tail. With kvec the end of a wdot
 * kernel's vector loop, acc is bit for bit that kernel's, while the decode is done once for many
 * activation rows (the row-invariant products of weights.c).
 */
#define WDOTD(NAME, MM)                                                                               \
  static void NAME(const float *x, long ldx, const float *w, long ldw, int nrows, long k, long kvec, float *acc) { \
    const float *w0 = w, *w1 = w + (nrows > 1 ? ldw : 0), *w2 = w + (nrows > 2 ? 2 * ldw : 0),         \
                *w3 = w + (nrows > 3 ? 3 * ldw : 0);                                                  \
    WDOT_ACC                                                                                          \
    long p = 0;                                                                                       \
    for (; p < kvec; p += VL) {                                                                       \
      const vf v0 = VLOADU(w0 + p), v1 = VLOADU(w1 + p), v2 = VLOADU(w2 + p), v3 = VLOADU(w3 + p);    \
      WDOT_ROW(0) if (MM > 1) WDOT_ROW(1) if (MM > 2) WDOT_ROW(2) if (MM > 3) WDOT_ROW(3)             \
    }                                                                                                 \
    WDOT_SUMS                                                                                         \
    const float *ws[4] = {w0, w1, w2, w3};                                                            \
    for (int i = 0; i < MM && p < k; i++)                                                             \
      for (int r = 0; r < 4; r++) t[i][r] = ISA(dot_tail)(t[i][r], x + i * ldx + p, ws[r] + p, k - p); \
    WDOT_STORE(MM)                                                                                    \
  }
WDOTD(ISA(wdot_dec_1), 1) WDOTD(ISA(wdot_dec_2), 2) WDOTD(ISA(wdot_dec_3), 3) WDOTD(ISA(wdot_dec_4), 4)

static const wdot_fn ISA(wdot_table)[4][4] = {
    {ISA(wdot_f32_1), ISA(wdot_f32_2), ISA(wdot_f32_3), ISA(wdot_f32_4)},
    {ISA(wdot_bf16_1), ISA(wdot_bf16_2), ISA(wdot_bf16_3), ISA(wdot_bf16_4)},
    {ISA(wdot_f16_1), ISA(wdot_f16_2), ISA(wdot_f16_3), ISA(wdot_f16_4)},
    {ISA(wdot_f8_1), ISA(wdot_f8_2), ISA(wdot_f8_3), ISA(wdot_f8_4)},
};
