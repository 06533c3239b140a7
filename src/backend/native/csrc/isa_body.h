/*
 * The parts of a per-ISA kernel table that plain C expresses well: included by isa_avx512.c,
 * isa_avx2.c and isa_generic.c, each compiled with its own target flags so the same loops
 * vectorize to that instruction set. ISA(name) gives each copy its own symbol.
 * Reductions keep 16 explicit lanes so they vectorize without reassociation flags.
 */
#include "vexp.h"

#define LANES 16

static void ISA(gemv_t)(const float *x, const float *w, long ldw, float *y, long n, long k, float alpha, float beta) {
  long j = 0;
  /* Four rows at a time: each x chunk is loaded once for four weight rows. */
  for (; j + 4 <= n; j += 4) {
    const float *w0 = w + j * ldw, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;
    float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};
    long p = 0;
    for (; p + LANES <= k; p += LANES) {
      for (int l = 0; l < LANES; l++) {
        float xv = x[p + l];
        a0[l] += xv * w0[p + l];
        a1[l] += xv * w1[p + l];
        a2[l] += xv * w2[p + l];
        a3[l] += xv * w3[p + l];
      }
    }
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int l = 0; l < LANES; l++) { s0 += a0[l]; s1 += a1[l]; s2 += a2[l]; s3 += a3[l]; }
    for (; p < k; p++) { s0 += x[p] * w0[p]; s1 += x[p] * w1[p]; s2 += x[p] * w2[p]; s3 += x[p] * w3[p]; }
    float s[4] = {s0, s1, s2, s3};
    for (int r = 0; r < 4; r++) y[j + r] = beta == 0.0f ? alpha * s[r] : alpha * s[r] + beta * y[j + r];
  }
  for (; j < n; j++) {
    const float *w0 = w + j * ldw;
    float a0[LANES] = {0};
    long p = 0;
    for (; p + LANES <= k; p += LANES)
      for (int l = 0; l < LANES; l++) a0[l] += x[p + l] * w0[p + l];
    float s0 = 0;
    for (int l = 0; l < LANES; l++) s0 += a0[l];
    for (; p < k; p++) s0 += x[p] * w0[p];
    y[j] = beta == 0.0f ? alpha * s0 : alpha * s0 + beta * y[j];
  }
}

static void ISA(gemv_n)(const float *x, const float *b, long ldb, float *y, long n, long k, float alpha, float beta) {
  /* Column chunks that stay in L1 while every row of b streams past them once. */
  enum { CH = 512 };
  float acc[CH];
  for (long j0 = 0; j0 < n; j0 += CH) {
    long nj = n - j0 < CH ? n - j0 : CH;
    for (long j = 0; j < nj; j++) acc[j] = 0.0f;
    for (long p = 0; p < k; p++) {
      const float xv = x[p];
      const float *row = b + p * ldb + j0;
      for (long j = 0; j < nj; j++) acc[j] += xv * row[j];
    }
    for (long j = 0; j < nj; j++) y[j0 + j] = beta == 0.0f ? alpha * acc[j] : alpha * acc[j] + beta * y[j0 + j];
  }
}

static float ISA(exp_shift_sum)(float *s, long n, float mx) {
  float acc[LANES] = {0};
  long j = 0;
  for (; j + LANES <= n; j += LANES)
    for (int l = 0; l < LANES; l++) {
      float e = exp_fast(s[j + l] - mx);
      s[j + l] = e;
      acc[l] += e;
    }
  float sum = 0.0f;
  for (int l = 0; l < LANES; l++) sum += acc[l];
  for (; j < n; j++) {
    s[j] = exp_fast(s[j] - mx);
    sum += s[j];
  }
  return sum;
}

static float ISA(exp_scale)(const float *x, float *y, long n, float shift, float scale) {
  float acc[LANES] = {0};
  long j = 0;
  for (; j + LANES <= n; j += LANES)
    for (int l = 0; l < LANES; l++) {
      float e = exp_fast(x[j + l] - shift);
      y[j + l] = scale * e;
      acc[l] += e;
    }
  float sum = 0.0f;
  for (int l = 0; l < LANES; l++) sum += acc[l];
  for (; j < n; j++) {
    float e = exp_fast(x[j] - shift);
    y[j] = scale * e;
    sum += e;
  }
  return sum;
}

static float ISA(row_max)(const float *x, long n) {
  float m[LANES];
  for (int l = 0; l < LANES; l++) m[l] = -__builtin_inff();
  long c = 0;
  for (; c + LANES <= n; c += LANES)
    for (int l = 0; l < LANES; l++) m[l] = x[c + l] > m[l] ? x[c + l] : m[l];
  float mx = -__builtin_inff();
  for (int l = 0; l < LANES; l++) mx = m[l] > mx ? m[l] : mx;
  for (; c < n; c++) mx = x[c] > mx ? x[c] : mx;
  return mx;
}

static void ISA(swiglu)(const float *g, const float *u, float *y, long n) {
  for (long i = 0; i < n; i++) {
    float x = g[i];
    y[i] = x / (1.0f + exp_fast(-x)) * u[i];
  }
}

static void ISA(swiglu_bwd)(const float *g, const float *u, const float *dy, float *dg, float *du, long n) {
  for (long i = 0; i < n; i++) {
    float x = g[i], d = dy[i], s = 1.0f / (1.0f + exp_fast(-x));
    du[i] = d * x * s;
    dg[i] = d * u[i] * s * (1.0f + x * (1.0f - s));
  }
}

/* Copy a micro-tile computed in `t` ([MR][NR]) to its mv x nv corner of C. */
__attribute__((unused)) static void ISA(store_edge)(const float *t, int nr, float *c, long ldc, float beta, int mv, int nv) {
  for (int i = 0; i < mv; i++)
    for (int j = 0; j < nv; j++) c[i * ldc + j] = beta == 0.0f ? t[i * nr + j] : t[i * nr + j] + beta * c[i * ldc + j];
}

static double ISA(stream_sum)(const float *p, long n) {
  enum { S = 8 };
  const long part = (n / S) / LANES * LANES;
  float acc[S][LANES];
  for (int s = 0; s < S; s++)
    for (int l = 0; l < LANES; l++) acc[s][l] = 0.0f;
  for (long i = 0; i < part; i += LANES)
    for (int s = 0; s < S; s++) {
      __builtin_prefetch(p + s * part + i + 512, 0, 3);
      for (int l = 0; l < LANES; l++) acc[s][l] += p[s * part + i + l];
    }
  double sum = 0;
  for (long i = S * part; i < n; i++) sum += p[i];
  for (int s = 0; s < S; s++)
    for (int l = 0; l < LANES; l++) sum += acc[s][l];
  return sum;
}
