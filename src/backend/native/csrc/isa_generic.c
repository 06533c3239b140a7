/*
 * Portable kernels for any CPU (the baseline flags of the build; SSE2 on x86-64, NEON on arm64),
 * and the CPU detection that picks a table.
 */
#include <stdlib.h>
#include <string.h>
#include "skymoe.h"

#define ISA(name) name##_generic
#include "isa_body.h"

/* One lane: the weight kernels in plain C (correct everywhere, fast nowhere). */
typedef float vf;
#define VL 1
#define VZERO() 0.0f
#define VSET1(a) (a)
#define VMUL(a, b) ((a) * (b))
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VLOADU(p) (*(p))
#define VSTOREU(p, v) (*(p) = (v))
#define VHSUM(v) (v)
static inline float ld_f32_generic(const uint8_t *w) {
  float f;
  memcpy(&f, w, 4);
  return f;
}
static inline float ld_bf16_generic(const uint8_t *w) {
  uint32_t u = (uint32_t)(w[0] | (w[1] << 8)) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
#define LD_F32(w) ld_f32_generic(w)
#define LD_BF16(w) ld_bf16_generic(w)
#define LD_F16(w) f16_to_f32((uint16_t)((w)[0] | ((w)[1] << 8)))
#define LD_F8(w) f16_to_f32(f8_to_f16_bits((w)[0]))
#include "wdot_body.h"
#include "paged_body.h"

#define MR 4
#define NR 16

static void ukernel_generic(long kc, const float *ap, const float *b, long ldb, float *c, long ldc,
                            float alpha, float beta, int mv, int nv) {
  float acc[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = 0.0f;
  for (long p = 0; p < kc; p++) {
    for (int i = 0; i < MR; i++) {
      const float av = ap[i];
      for (int j = 0; j < NR; j++) acc[i][j] += av * b[j];
    }
    ap += MR;
    b += ldb;
  }
  for (int i = 0; i < mv; i++)
    for (int j = 0; j < nv; j++) {
      float r = alpha * acc[i][j];
      c[i * ldc + j] = beta == 0.0f ? r : r + beta * c[i * ldc + j];
    }
}

/* Independent multiply-add chains in plain C (the compiler's vector width). */
static double fma_probe_generic(long iters) {
  float c[32];
  for (int i = 0; i < 32; i++) c[i] = (float)i;
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 32
    for (int i = 0; i < 32; i++) c[i] = c[i] * 0.99999f + 1e-6f;
  }
  volatile float sink = c[0] + c[31];
  (void)sink;
  return 32.0 * 2.0 * (double)iters;
}

static const isa_t table = {
    .name = "generic", .mr = MR, .nr = NR, .kc = 256, .mc = 64, .nc = 2048,
    .ukernel = ukernel_generic, .gemv_t = ISA(gemv_t), .gemv_n = ISA(gemv_n), .exp_shift_sum = ISA(exp_shift_sum),
    .exp_scale = ISA(exp_scale),
    .row_max = ISA(row_max), .swiglu = ISA(swiglu), .swiglu_bwd = ISA(swiglu_bwd),
    .fma_probe = fma_probe_generic, .decode_row = ISA(decode_row), .stream_sum = ISA(stream_sum), .wdot = ISA(wdot_table),
    .wdot_decode = ISA(wdot_decode), .wdot_step = {VL, VL, VL, VL},
    .wdot_dec = {ISA(wdot_dec_1), ISA(wdot_dec_2), ISA(wdot_dec_3), ISA(wdot_dec_4)}, .paged_unit = ISA(paged_unit),
};

const isa_t *isa_generic(void) { return &table; }

const isa_t *isa_select(const char *forced, const char **why) {
  *why = NULL;
#if defined(SKYMOE_X86)
  __builtin_cpu_init();
  int has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (forced == NULL || forced[0] == '\0') return has512 ? isa_avx512() : has2 ? isa_avx2() : isa_generic();
  if (strcmp(forced, "avx512") == 0) {
    if (has512) return isa_avx512();
    *why = "this CPU lacks AVX-512 (F, VL, BW, DQ)";
    return NULL;
  }
  if (strcmp(forced, "avx2") == 0) {
    if (has2) return isa_avx2();
    *why = "this CPU lacks AVX2, FMA and F16C";
    return NULL;
  }
#else
  if (forced == NULL || forced[0] == '\0') return isa_generic();
#endif
  if (strcmp(forced, "generic") == 0) return isa_generic();
  *why = "unknown ISA (expected avx512, avx2 or generic)";
  return NULL;
}
