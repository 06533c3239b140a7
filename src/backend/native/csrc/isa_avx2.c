/*
 * AVX2 + FMA kernels (compiled with -mavx2 -mfma; only called after isa_select checked the CPU).
 * Micro-tile 6 x 16: 12 ymm accumulators, two B loads and six broadcasts per k step.
 */
#include <immintrin.h>
#include "skymoe.h"

#define ISA(name) name##_avx2
#include "isa_body.h"

typedef __m256 vf;
#define VL 8
#define VZERO() _mm256_setzero_ps()
#define VSET1(a) _mm256_set1_ps(a)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VLOADU(p) _mm256_loadu_ps(p)
#define VSTOREU(p, v) _mm256_storeu_ps(p, v)
static inline float hsum_avx2(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#define VHSUM(v) hsum_avx2(v)
#define LD_F32(w) _mm256_loadu_ps((const float *)(w))
#define LD_BF16(w) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w))), 16))
#define LD_F16(w) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w)))
/* 8 e4m3 bytes -> 8 f16 (value / 256, see f8_to_f16_bits) -> 8 floats (F16C). */
static inline __m256 ld_f8_avx2(const uint8_t *w) {
  const __m128i h = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)w));
  const __m128i mag = _mm_and_si128(_mm_slli_epi16(h, 7), _mm_set1_epi16(0x3F80));
  const __m128i sgn = _mm_and_si128(_mm_slli_epi16(h, 8), _mm_set1_epi16((short)0x8000));
  return _mm256_cvtph_ps(_mm_or_si128(mag, sgn));
}
#define LD_F8(w) ld_f8_avx2(w)
#include "wdot_body.h"
#include "paged_body.h"

#define MR 6
#define NR 16

#define ROW(i)                                                                                     \
  {                                                                                                \
    __m256 av = _mm256_broadcast_ss(ap + (i));                                                     \
    c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);                                                    \
    c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);                                                    \
  }

#define OUT(i)                                                                                     \
  {                                                                                                \
    float *cr = dst + (i) * ldd;                                                                   \
    __m256 r0 = _mm256_mul_ps(va, c##i##0), r1 = _mm256_mul_ps(va, c##i##1);                       \
    if (bd != 0.0f) {                                                                              \
      r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), r0);                                           \
      r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), r1);                                       \
    }                                                                                              \
    _mm256_storeu_ps(cr, r0);                                                                      \
    _mm256_storeu_ps(cr + 8, r1);                                                                  \
  }

static void ukernel_avx2(long kc, const float *ap, const float *b, long ldb, float *c, long ldc,
                         float alpha, float beta, int mv, int nv) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
         c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (long p = 0; p < kc; p++) {
    __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
    ap += MR;
    b += ldb;
  }
  const __m256 va = _mm256_set1_ps(alpha);
  if (mv == MR && nv == NR) {
    const __m256 vb = _mm256_set1_ps(beta);
    const float bd = beta;
    float *dst = c;
    long ldd = ldc;
    OUT(0) OUT(1) OUT(2) OUT(3) OUT(4) OUT(5)
    return;
  }
  float t[MR * NR] __attribute__((aligned(32)));
  {
    const __m256 vb = _mm256_setzero_ps();
    const float bd = 0.0f;
    float *dst = t;
    long ldd = NR;
    OUT(0) OUT(1) OUT(2) OUT(3) OUT(4) OUT(5)
  }
  ISA(store_edge)(t, NR, c, ldc, beta, mv, nv);
}

/* 12 independent ymm FMA chains. */
static double fma_probe_avx2(long iters) {
  __m256 c[12];
  const __m256 m = _mm256_set1_ps(0.99999f), d = _mm256_set1_ps(1e-6f);
#pragma GCC unroll 12
  for (int i = 0; i < 12; i++) c[i] = _mm256_set1_ps((float)i);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) c[i] = _mm256_fmadd_ps(c[i], m, d);
  }
  __m256 s = c[0];
#pragma GCC unroll 12
  for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, c[i]);
  float t[8];
  _mm256_storeu_ps(t, s);
  volatile float sink = t[0] + t[7];
  (void)sink;
  return 12.0 * 16.0 * (double)iters;
}

static const isa_t table = {
    .name = "avx2", .mr = MR, .nr = NR, .kc = 256, .mc = 96, .nc = 3072,
    .ukernel = ukernel_avx2, .gemv_t = ISA(gemv_t), .gemv_n = ISA(gemv_n), .exp_shift_sum = ISA(exp_shift_sum),
    .exp_scale = ISA(exp_scale),
    .row_max = ISA(row_max), .swiglu = ISA(swiglu), .swiglu_bwd = ISA(swiglu_bwd),
    .fma_probe = fma_probe_avx2, .decode_row = ISA(decode_row), .stream_sum = ISA(stream_sum), .wdot = ISA(wdot_table),
    .wdot_decode = ISA(wdot_decode), .wdot_step = {VL, VL, VL, VL},
    .wdot_dec = {ISA(wdot_dec_1), ISA(wdot_dec_2), ISA(wdot_dec_3), ISA(wdot_dec_4)}, .paged_unit = ISA(paged_unit),
};

const isa_t *isa_avx2(void) { return &table; }
