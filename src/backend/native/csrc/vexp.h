/*
 * exp for float, written so compilers vectorize it (no calls, no branches, only selects):
 * (ternaries, not branches: each is a vector select; a select on a sign-dependent constant blocked
 * GCC's AVX vectorizer, hence the rounding trick below).
 * exp(x) = 2^n * e^r with n = round(x / ln 2), r = x - n ln 2 (ln 2 split in two for accuracy),
 * e^r by its Taylor series to degree 7 (|r| <= ln2/2, truncation error < 6e-9 relative).
 */
#ifndef SKYMOE_VEXP_H
#define SKYMOE_VEXP_H
#include <stdint.h>

static inline float exp_fast(float x) {
  const float hi = 88.3762626647949f, lo = -87.3365447504f;
  float xc = x > hi ? hi : (x < lo ? lo : x);
  /* Round to nearest by adding and subtracting 1.5 * 2^23 (valid for |t| < 2^22; needs IEEE float
     arithmetic without reassociation, so never build this with -ffast-math/-fassociative-math). */
  float t = xc * 1.44269504088896341f;
  float n = (t + 12582912.0f) - 12582912.0f;
  int32_t ni = (int32_t)n;
  float r = xc - n * 0.693145751953125f - n * 1.42860682030941723212e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  union { int32_t i; float f; } s;
  s.i = (ni + 127) << 23;
  float y = p * s.f;
  y = x < lo ? 0.0f : y;
  y = x > hi ? __builtin_inff() : y;
  return x != x ? x : y;
}

#endif
