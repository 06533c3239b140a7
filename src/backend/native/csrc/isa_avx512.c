/*
 * AVX-512 kernels (compiled with -mavx512f -mavx512vl -mavx512bw -mavx512dq -mfma; only called after
 * isa_select has checked the CPU). Micro-tile 12 x 32: 24 zmm accumulators, two B loads and one
 * broadcast per row per k step, i.e. 24 FMAs per 2 vector loads (Zen 4 retires one 512-bit FMA per
 * cycle, so the loads and broadcasts fit in the remaining ports).
 */
#include <immintrin.h>
#include <string.h>
#include "skymoe.h"

#define ISA(name) name##_avx512
#include "isa_body.h"

typedef __m512 vf;
#define VL 16
#define VZERO() _mm512_setzero_ps()
#define VSET1(a) _mm512_set1_ps(a)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VLOADU(p) _mm512_loadu_ps(p)
#define VSTOREU(p, v) _mm512_storeu_ps(p, v)
#define VHSUM(v) _mm512_reduce_add_ps(v)
#define LD_F32(w) _mm512_loadu_ps((const float *)(w))
#define LD_BF16(w) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w))), 16))
#define LD_F16(w) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w)))
/* 16 e4m3 bytes -> 16 f16 (value / 256, see f8_to_f16_bits) -> 16 floats. */
static inline __m512 ld_f8_avx512(const uint8_t *w) {
  const __m256i h = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)w));
  const __m256i mag = _mm256_and_si256(_mm256_slli_epi16(h, 7), _mm256_set1_epi16(0x3F80));
  const __m256i sgn = _mm256_and_si256(_mm256_slli_epi16(h, 8), _mm256_set1_epi16((short)0x8000));
  return _mm512_cvtph_ps(_mm256_or_si256(mag, sgn));
}
#define LD_F8(w) ld_f8_avx512(w)
#include "wdot_body.h"
#include "paged_body.h"

/*
 * FP8 rows at memory speed. The 16-byte path above spends ~9 port-0/5 uops per 16 weights (with
 * 512-bit code in flight only ports 0 and 5 run vector ops), which caps a core near 5 weights per
 * cycle, below the bandwidth of two cores. Here 64 bytes become 64 f16 with 6 integer uops:
 * unpacking with zero bytes puts each byte in the high half of a word (b << 8), an arithmetic shift
 * by 1 gives sign in bit 15 and the 7 magnitude bits at 13..7 (value / 256 as an f16, as
 * f8_to_f16_bits), and an AND clears the copy of the sign in bit 14. Unpacking works within
 * 128-bit lanes, so the 64 floats come out in the order below; the activations are permuted into
 * the same order once per call (f8_xperm, isa->xperm) instead of shuffling every weight.
 *   f0: bytes 0-7, 16-23   f1: 32-39, 48-55   f2: 8-15, 24-31   f3: 40-47, 56-63
 */
static inline void ld_f8x64_avx512(const uint8_t *w, __m512 f[4]) {
  const __m512i v = _mm512_loadu_si512((const void *)w), z = _mm512_setzero_si512();
  const __m512i keep = _mm512_set1_epi16((short)0xBFFF);
  const __m512i lo = _mm512_and_si512(_mm512_srai_epi16(_mm512_unpacklo_epi8(z, v), 1), keep);
  const __m512i hi = _mm512_and_si512(_mm512_srai_epi16(_mm512_unpackhi_epi8(z, v), 1), keep);
  f[0] = _mm512_cvtph_ps(_mm512_castsi512_si256(lo));
  f[1] = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(lo, 1));
  f[2] = _mm512_cvtph_ps(_mm512_castsi512_si256(hi));
  f[3] = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(hi, 1));
}

/* x in the order ld_f8x64 produces, per full 64-block; the tail stays in natural order. */
static void f8_xperm_avx512(const float *x, float *out, long k) {
  static const int src[8] = {0, 16, 32, 48, 8, 24, 40, 56};
  long p = 0;
  for (; p + 64 <= k; p += 64)
    for (int b = 0; b < 8; b++) memcpy(out + p + 8 * b, x + p + src[b], 8 * sizeof(float));
  for (; p < k; p++) out[p] = x[p];
}

/* FP8 decode keeps the core busy, so memory requests are issued late: each row is prefetched this
   many bytes ahead (past a row's end it touches the next rows, which the next calls read). */
#ifndef F8_PREFETCH
#define F8_PREFETCH 2048
#endif

/* The end of a wdot kernel with accumulators a[MM][4] over [0, p): each horizontal sum, then the
   scalar tail [p, k) (fewer than STEP weights, decoded one by one) in natural order. */
#define WDOT_FINISH(MM, DTYPE, STEP)                                                                  \
  float wt[4][STEP];                                                                                  \
  for (int r = 0; r < 4; r++)                                                                         \
    for (long q = p; q < k; q++) wt[r][q - p] = ISA(wscalar)(ws[r], DTYPE, q);                        \
  for (int i = 0; i < MM; i++)                                                                        \
    for (int r = 0; r < 4; r++) {                                                                     \
      const float t = _mm512_reduce_add_ps(a[i][r]);                                                  \
      acc[i * 4 + r] = p < k ? ISA(dot_tail)(t, x + i * ldx + p, wt[r], k - p) : t;                   \
    }

#define WDOT_F8(NAME, MM)                                                                             \
  static void NAME(const float *x, long ldx, const uint8_t *w, long ldw, int nrows, long k, float *acc) { \
    const uint8_t *ws[4] = {w, w + (nrows > 1 ? ldw : 0), w + (nrows > 2 ? 2 * ldw : 0), w + (nrows > 3 ? 3 * ldw : 0)}; \
    __m512 a[MM][4];                                                                                  \
    for (int i = 0; i < MM; i++)                                                                      \
      for (int r = 0; r < 4; r++) a[i][r] = _mm512_setzero_ps();                                      \
    long p = 0;                                                                                       \
    for (; p + 64 <= k; p += 64)                                                                      \
      for (int r = 0; r < 4; r++) {                                                                   \
        __m512 f[4];                                                                                  \
        _mm_prefetch((const char *)(ws[r] + p + F8_PREFETCH), _MM_HINT_T0);                           \
        ld_f8x64_avx512(ws[r] + p, f);                                                                \
        for (int i = 0; i < MM; i++) {                                                                \
          const float *xi = x + i * ldx + p;                                                          \
          a[i][r] = _mm512_fmadd_ps(_mm512_loadu_ps(xi), f[0], a[i][r]);                              \
          a[i][r] = _mm512_fmadd_ps(_mm512_loadu_ps(xi + 16), f[1], a[i][r]);                         \
          a[i][r] = _mm512_fmadd_ps(_mm512_loadu_ps(xi + 32), f[2], a[i][r]);                         \
          a[i][r] = _mm512_fmadd_ps(_mm512_loadu_ps(xi + 48), f[3], a[i][r]);                         \
        }                                                                                             \
      }                                                                                               \
    WDOT_FINISH(MM, WD_F8E4M3, 64)                                                                    \
  }
WDOT_F8(wdot_f8p_1, 1) WDOT_F8(wdot_f8p_2, 2) WDOT_F8(wdot_f8p_3, 3) WDOT_F8(wdot_f8p_4, 4)

/*
 * bf16 rows with one integer uop per 16 weights. A 64-byte load holds 32 bf16 as 16 dwords: the
 * even elements are the low halves (a left shift by 16 makes them floats), the odd ones the high
 * halves (an AND clears the low half). Widening 16 bf16 instead (vpmovzxwd + vpslld) costs two
 * port-0/5 uops, which compete with the FMAs: at 4 x 4 tiles that capped the kernel at 2/3 of the
 * FMA peak. The activations are permuted once per call into the same order (bf16_xperm): per full
 * 32-block, the 16 even elements, then the 16 odd ones.
 */
static inline __m512 bf16_even(__m512i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }
static inline __m512 bf16_odd(__m512i v) {
  return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u)));
}

static void bf16_xperm_avx512(const float *x, float *out, long k) {
  long p = 0;
  for (; p + 32 <= k; p += 32)
    for (int j = 0; j < 16; j++) {
      out[p + j] = x[p + 2 * j];
      out[p + 16 + j] = x[p + 2 * j + 1];
    }
  for (; p < k; p++) out[p] = x[p];
}

#define WDOT_BF16EO(NAME, MM)                                                                         \
  static void NAME(const float *x, long ldx, const uint8_t *w, long ldw, int nrows, long k, float *acc) { \
    const uint8_t *ws[4] = {w, w + (nrows > 1 ? ldw : 0), w + (nrows > 2 ? 2 * ldw : 0), w + (nrows > 3 ? 3 * ldw : 0)}; \
    __m512 a[MM][4];                                                                                  \
    for (int i = 0; i < MM; i++)                                                                      \
      for (int r = 0; r < 4; r++) a[i][r] = _mm512_setzero_ps();                                      \
    long p = 0;                                                                                       \
    for (; p + 32 <= k; p += 32)                                                                      \
      for (int r = 0; r < 4; r++) {                                                                   \
        _mm_prefetch((const char *)(ws[r] + 2 * p + WPF_DIST), _MM_HINT_T0);                          \
        const __m512i v = _mm512_loadu_si512((const void *)(ws[r] + 2 * p));                          \
        const __m512 e = bf16_even(v), o = bf16_odd(v);                                               \
        for (int i = 0; i < MM; i++) {                                                                \
          const float *xi = x + i * ldx + p;                                                          \
          a[i][r] = _mm512_fmadd_ps(_mm512_loadu_ps(xi), e, a[i][r]);                                 \
          a[i][r] = _mm512_fmadd_ps(_mm512_loadu_ps(xi + 16), o, a[i][r]);                            \
        }                                                                                             \
      }                                                                                               \
    WDOT_FINISH(MM, WD_BF16, 32)                                                                      \
  }
WDOT_BF16EO(wdot_bf16eo_1, 1) WDOT_BF16EO(wdot_bf16eo_2, 2) WDOT_BF16EO(wdot_bf16eo_3, 3) WDOT_BF16EO(wdot_bf16eo_4, 4)

/* A weight row as the wdot kernels read it: FP8's full 64-blocks in ld_f8x64's order and bf16's full
   32-blocks even-then-odd (matching the permuted activations), everything else in natural order. */
static void wdot_decode_perm(const uint8_t *w, int dtype, float *out, long k) {
  if (dtype == WD_BF16) {
    long p = 0;
    for (; p + 32 <= k; p += 32) {
      const __m512i v = _mm512_loadu_si512((const void *)(w + 2 * p));
      _mm512_storeu_ps(out + p, bf16_even(v));
      _mm512_storeu_ps(out + p + 16, bf16_odd(v));
    }
    for (; p < k; p++) out[p] = ISA(wscalar)(w, WD_BF16, p);
    return;
  }
  if (dtype != WD_F8E4M3) {
    ISA(wdot_decode)(w, dtype, out, k);
    return;
  }
  long p = 0;
  for (; p + 64 <= k; p += 64) {
    __m512 f[4];
    ld_f8x64_avx512(w + p, f);
    for (int b = 0; b < 4; b++) _mm512_storeu_ps(out + p + 16 * b, f[b]);
  }
  for (; p < k; p++) out[p] = ISA(wscalar)(w, WD_F8E4M3, p);
}

static const wdot_fn wdot_avx512[4][4] = {
    {ISA(wdot_f32_1), ISA(wdot_f32_2), ISA(wdot_f32_3), ISA(wdot_f32_4)},
    {wdot_bf16eo_1, wdot_bf16eo_2, wdot_bf16eo_3, wdot_bf16eo_4},
    {ISA(wdot_f16_1), ISA(wdot_f16_2), ISA(wdot_f16_3), ISA(wdot_f16_4)},
    {wdot_f8p_1, wdot_f8p_2, wdot_f8p_3, wdot_f8p_4},
};

#define MR 12
#define NR 32

#define ROW(i)                                                                                     \
  {                                                                                                \
    __m512 av = _mm512_set1_ps(ap[i]);                                                             \
    c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                                                    \
    c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);                                                    \
  }

#define OUT(i)                                                                                     \
  {                                                                                                \
    float *cr = dst + (i) * ldd;                                                                   \
    __m512 r0 = _mm512_mul_ps(va, c##i##0), r1 = _mm512_mul_ps(va, c##i##1);                       \
    if (bd != 0.0f) {                                                                              \
      r0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr), r0);                                           \
      r1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr + 16), r1);                                      \
    }                                                                                              \
    _mm512_storeu_ps(cr, r0);                                                                      \
    _mm512_storeu_ps(cr + 16, r1);                                                                 \
  }

static void ukernel_avx512(long kc, const float *ap, const float *b, long ldb, float *c, long ldc,
                           float alpha, float beta, int mv, int nv) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
         c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00,
         c71 = c00, c80 = c00, c81 = c00, c90 = c00, c91 = c00, c100 = c00, c101 = c00, c110 = c00,
         c111 = c00;
  for (long p = 0; p < kc; p++) {
    __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
    ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7) ROW(8) ROW(9) ROW(10) ROW(11)
    ap += MR;
    b += ldb;
  }
  const __m512 va = _mm512_set1_ps(alpha);
  if (mv == MR && nv == NR) {
    const __m512 vb = _mm512_set1_ps(beta);
    const float bd = beta;
    float *dst = c;
    long ldd = ldc;
    OUT(0) OUT(1) OUT(2) OUT(3) OUT(4) OUT(5) OUT(6) OUT(7) OUT(8) OUT(9) OUT(10) OUT(11)
    return;
  }
  float t[MR * NR] __attribute__((aligned(64)));
  {
    float *dst = t;
    long ldd = NR;
    const __m512 vb = _mm512_setzero_ps();
    const float bd = 0.0f;
    OUT(0) OUT(1) OUT(2) OUT(3) OUT(4) OUT(5) OUT(6) OUT(7) OUT(8) OUT(9) OUT(10) OUT(11)
  }
  ISA(store_edge)(t, NR, c, ldc, beta, mv, nv);
}

/* 12 independent zmm FMA chains: enough to cover latency x throughput on current cores. */
static double fma_probe_avx512(long iters) {
  __m512 c[12];
  const __m512 m = _mm512_set1_ps(0.99999f), d = _mm512_set1_ps(1e-6f);
#pragma GCC unroll 12
  for (int i = 0; i < 12; i++) c[i] = _mm512_set1_ps((float)i);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) c[i] = _mm512_fmadd_ps(c[i], m, d);
  }
  __m512 s = c[0];
#pragma GCC unroll 12
  for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, c[i]);
  volatile float sink = _mm512_reduce_add_ps(s);
  (void)sink;
  return 12.0 * 32.0 * (double)iters;
}

static const isa_t table = {
    .name = "avx512", .mr = MR, .nr = NR, .kc = 512, .mc = 144, .nc = 3072,
    .ukernel = ukernel_avx512, .gemv_t = ISA(gemv_t), .gemv_n = ISA(gemv_n), .exp_shift_sum = ISA(exp_shift_sum),
    .exp_scale = ISA(exp_scale),
    .row_max = ISA(row_max), .swiglu = ISA(swiglu), .swiglu_bwd = ISA(swiglu_bwd),
    .fma_probe = fma_probe_avx512, .decode_row = ISA(decode_row), .stream_sum = ISA(stream_sum), .wdot = wdot_avx512,
    .xperm = {NULL, bf16_xperm_avx512, NULL, f8_xperm_avx512}, .wdot_decode = wdot_decode_perm,
    .wdot_step = {VL, 32, VL, 64},
    .wdot_dec = {ISA(wdot_dec_1), ISA(wdot_dec_2), ISA(wdot_dec_3), ISA(wdot_dec_4)}, .paged_unit = ISA(paged_unit),
};

const isa_t *isa_avx512(void) { return &table; }
