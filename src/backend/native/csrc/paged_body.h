/*
 * One unit of paged attention (paged_attention.c): a query row's G = H / Hkv heads that share one kv
 * head, against the row's sequence's keys and values in the paged cache. Included by each ISA file
 * after wdot_body.h, with its vector primitives (vf, VL, VZERO, VSET1, VMUL, VFMA, VLOADU, VSTOREU,
 * VHSUM).
 *
 * Two passes: the scaled scores of every key into scratch (each key row read once for the G
 * heads), then per head max and exp-sum (exp_shift_sum), then the values weighted by the
 * exponentials (each value row read once for the G heads), divided by the sum. Batch invariance:
 * every sum runs in an order set by D, the key count and the ISA alone, in code the compiler cannot
 * reshape per call (intrinsics, explicit fmaf, the shared dot_tail; the score rows' layout depends
 * on the row's own key count only), so a row's output does not depend on the rest of the batch, on
 * the thread or on where the sequence's blocks lie.
 */
/* q . k over D floats: one vector FMA chain, its horizontal sum, the scalar tail. */
static inline float ISA(paged_dot)(const float *q, const float *k, long D) {
  vf a = VZERO();
  long d = 0;
  for (; d + VL <= D; d += VL) a = VFMA(VLOADU(q + d), VLOADU(k + d), a);
  return ISA(dot_tail)(VHSUM(a), q + d, k + d, D - d);
}

static void ISA(paged_unit)(const paged_unit_t *u) {
  const long G = u->G, D = u->D, len = u->len, ls = (len + 15) / 16 * 16; /* score rows 64-byte aligned, set by len alone */
  float *scores = u->scratch, *acc = scores + G * ls, *sums = acc + G * D;
  for (long p = 0; p < len; p++) {
    const long slot = (long)u->table[p / u->block] * u->block + p % u->block;
    const float *kr = u->k + slot * u->ldkv;
    for (long g = 0; g < G; g++) scores[g * ls + p] = ISA(paged_dot)(u->q + g * D, kr, D) * u->scale;
  }
  for (long g = 0; g < G; g++) {
    float *s = scores + g * ls;
    sums[g] = ISA(exp_shift_sum)(s, len, ISA(row_max)(s, len));
  }
  memset(acc, 0, (size_t)(G * D) * sizeof(float));
  for (long p = 0; p < len; p++) {
    const long slot = (long)u->table[p / u->block] * u->block + p % u->block;
    const float *vr = u->v + slot * u->ldkv;
    for (long g = 0; g < G; g++) {
      const float e = scores[g * ls + p];
      const vf ve = VSET1(e);
      float *a = acc + g * D;
      long d = 0;
      for (; d + VL <= D; d += VL) VSTOREU(a + d, VFMA(ve, VLOADU(vr + d), VLOADU(a + d)));
      for (; d < D; d++) a[d] = fmaf(e, vr[d], a[d]);
    }
  }
  for (long g = 0; g < G; g++) {
    const float inv = 1.0f / sums[g];
    for (long d = 0; d < D; d++) u->o[g * D + d] = acc[g * D + d] * inv;
  }
}
