/*
 * bf16 compute on Intel AMX (compiled with -mamx-tile -mamx-bf16 -mavx512f -mavx512bw; only
 * called after amx_enable() succeeded): row-invariant products with bf16 or float8_e4m3 weights,
 * the activations rounded to bf16 (round to nearest even) and the products accumulated in fp32 by
 * TDPBF16PS, as bf16 inference engines do. Each output y[i, j] is one fixed sequence of tile
 * products over k in blocks of 32, whatever the number of rows and the thread count: the
 * continuous-batching server's batch invariance holds.
 *
 * The weights are the A operand, read in place: 16 weight rows x 32 k values per tile (bf16 rows
 * loaded straight from the heap or the mapped file with their row stride; fp8 rows and tails
 * decoded into a tile first: e4m3 values are exact in bf16). The activations are the B operand in
 * the VNNI layout TDPBF16PS wants (pairs of consecutive k per row, rows across). One n-tile of 16
 * weight rows accumulates C[n, m] for up to 4 tiles of 16 activation rows; C is stored and written
 * transposed into y, times each row's scale.
 */
#include <immintrin.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "skymoe.h"

/* k blocks (of 32) ahead to prefetch the weight rows */
#define PREFETCH_BLOCKS 8
#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

typedef struct {
  uint8_t palette, start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} __attribute__((packed)) tilecfg_t;

/* Tiles: 0-3 accumulators C[16 n, 16 m] (64 bytes a row), 4 the weights A [16 n, 32 k bf16],
   5 the activations B [16 k pairs, 16 m pairs]. */
static void load_config(void) {
  tilecfg_t c;
  memset(&c, 0, sizeof c);
  c.palette = 1;
  for (int t = 0; t < 6; t++) {
    c.rows[t] = 16;
    c.colsb[t] = 64;
  }
  _tile_loadconfig(&c);
}

int amx_enable(void) {
  unsigned a, b, cc, d;
  __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(cc), "=d"(d) : "a"(7), "c"(0));
  const int tile = (d >> 24) & 1, bf16 = (d >> 22) & 1;
  if (!tile || !bf16) return 0;
  /* Linux grants the tile data state per process on request (5.16+) */
  if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return 0;
  return 1;
}

static inline uint16_t bf16_rne(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Activation rows [mb <= 64, k] -> VNNI bf16: for each tile of 16 rows, kp pairs x 16 rows x 2, zero padded. */
static void pack_activations(const float *x, long mb, long k, long kp2, uint32_t *xv) {
  const long tiles = (mb + 15) / 16;
  memset(xv, 0, (size_t)tiles * kp2 * 16 * 4);
  for (long i = 0; i < mb; i++) {
    uint32_t *t = xv + (i / 16) * kp2 * 16 + (i % 16);
    const float *r = x + i * k;
    long p = 0;
    for (; 2 * p + 1 < k; p++) t[p * 16] = (uint32_t)bf16_rne(r[2 * p]) | ((uint32_t)bf16_rne(r[2 * p + 1]) << 16);
    if (2 * p < k) t[p * 16] = bf16_rne(r[2 * p]);
  }
}

/*
 * 32 float8_e4m3 bytes -> 32 bf16 of value / 256 (exact; row_mul holds the 2^8), in 16-bit lanes:
 * normal numbers move their exponent and mantissa bits (exponent + 112), the 8 subnormal
 * magnitudes come from a table, 0x7f is NaN, the sign goes to bit 15.
 */
static inline __m512i e4m3_to_bf16(__m256i bytes) {
  const __m512i x = _mm512_cvtepu8_epi16(bytes);
  const __m512i mag = _mm512_and_si512(x, _mm512_set1_epi16(0x7f));
  const __m512i sign = _mm512_slli_epi16(_mm512_and_si512(x, _mm512_set1_epi16(0x80)), 8);
  const __m512i normal = _mm512_add_epi16(_mm512_slli_epi16(mag, 4), _mm512_set1_epi16(112 << 7));
  /* m x 2^-17 for m = 0..7: 0, 2^-17, 2^-16, 1.5 x 2^-16, 2^-15, 1.25 x 2^-15, 1.5 x 2^-15, 1.75 x 2^-15 */
  const __m512i sub_table = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                             (112 << 7) | 0x60, (112 << 7) | 0x40, (112 << 7) | 0x20, 112 << 7,
                                             (111 << 7) | 0x40, 111 << 7, 110 << 7, 0);
  const __mmask32 is_sub = _mm512_cmplt_epu16_mask(mag, _mm512_set1_epi16(8));
  const __mmask32 is_nan = _mm512_cmpeq_epi16_mask(mag, _mm512_set1_epi16(0x7f));
  __m512i v = _mm512_mask_permutexvar_epi16(normal, is_sub, mag, sub_table);
  v = _mm512_mask_mov_epi16(v, is_nan, _mm512_set1_epi16(0x7fc0));
  return _mm512_or_si512(v, sign);
}

/* Weight rows j0..j0+nr (nr <= 16), k in [k0, k0 + 32) -> a bf16 tile [16][32], zero padded (fp8 and tails). */
static void decode_tile(const wref_t *w, long ldw, long j0, int nr, long k0, long k, uint16_t *tile) {
  const long kn = k - k0 < 32 ? k - k0 : 32;
  if (w->dtype == WD_F8E4M3 && kn == 32) {
    /* the common case: whole fp8 rows, vectorized */
    for (int r = 0; r < nr; r++) _mm512_storeu_si512(tile + r * 32, e4m3_to_bf16(_mm256_loadu_si256((const __m256i *)(w->p + (j0 + r) * ldw + k0))));
    if (nr < 16) memset(tile + nr * 32, 0, (size_t)(16 - nr) * 64);
    return;
  }
  memset(tile, 0, 16 * 64);
  for (int r = 0; r < nr; r++) {
    const uint8_t *src = w->p + (j0 + r) * ldw;
    uint16_t *dst = tile + r * 32;
    if (w->dtype == WD_BF16) memcpy(dst, src + k0 * 2, (size_t)kn * 2);
    else {
      /* float8_e4m3 (bias 7, no infinities; 0x7f / 0xff NaN) -> bf16, exactly; the 2^8 is not applied (row_mul has it) */
      for (long p = 0; p < kn; p++) {
        const uint8_t b = src[k0 + p];
        const uint32_t sign = (uint32_t)(b & 0x80) << 24, e = (b >> 3) & 0xf, mnt = b & 7;
        float v;
        if ((b & 0x7f) == 0x7f) v = __builtin_nanf("");
        else if (e == 0) v = (float)mnt * (1.0f / 512.0f) / 256.0f; /* subnormal: m x 2^-9, scaled like the vector decode (value / 256) */
        else {
          uint32_t u = ((e + 127 - 7 - 8) << 23) | (mnt << 20);
          memcpy(&v, &u, 4);
        }
        uint32_t u;
        memcpy(&u, &v, 4);
        u |= sign;
        memcpy(&v, &u, 4);
        dst[p] = bf16_rne(v);
      }
    }
  }
}

/*
 * y[i, j] for i < m, j in [j0, j1), row-invariant. `scratch` holds 64 * kp2 * 2 floats of VNNI
 * activations plus two tiles (see amx_scratch_floats).
 */
void amx_rows(const float *x, long m, long k, const wref_t *w, long n, long j0, long j1, float *y, float *scratch) {
  const long kb = (k + 31) / 32, kp2 = kb * 16; /* k pairs, padded to whole tiles */
  const long ldw = k * wd_bytes(w->dtype);
  uint32_t *xv = (uint32_t *)scratch;
  uint16_t *wt = (uint16_t *)(xv + 64 * kp2 * 1); /* after 4 activation tiles' worth: 64 rows x kp2 pairs */
  float *cbuf = (float *)(wt + 16 * 32);
  load_config();
  for (long i0 = 0; i0 < m; i0 += 64) {
    const long mb = m - i0 < 64 ? m - i0 : 64, tiles = (mb + 15) / 16;
    pack_activations(x + i0 * k, mb, k, kp2, xv);
    for (long j = j0; j < j1; j += 16) {
      const int nr = (int)(j1 - j < 16 ? j1 - j : 16);
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (long b = 0; b < kb; b++) {
        const int direct = w->dtype == WD_BF16 && nr == 16 && (b + 1) * 32 <= k;
        /* the weight rows are 16 streams read 64 bytes a step: fetch ahead of the tile loads */
        if (b + PREFETCH_BLOCKS < kb)
          for (int r = 0; r < nr; r++) _mm_prefetch((const char *)(w->p + (j + r) * ldw + (b + PREFETCH_BLOCKS) * 32 * wd_bytes(w->dtype)), _MM_HINT_T0);
        if (direct) _tile_loadd(4, w->p + j * ldw + b * 64, ldw);
        else {
          decode_tile(w, ldw, j, nr, b * 32, k, wt);
          _tile_loadd(4, wt, 64);
        }
        /* the same sequence of products for every activation tile: a row's sum does not depend on m */
        const uint32_t *xb = xv + b * 16 * 16;
        _tile_loadd(5, xb, 64);
        _tile_dpbf16ps(0, 4, 5);
        if (tiles > 1) {
          _tile_loadd(5, xb + kp2 * 16, 64);
          _tile_dpbf16ps(1, 4, 5);
        }
        if (tiles > 2) {
          _tile_loadd(5, xb + 2 * kp2 * 16, 64);
          _tile_dpbf16ps(2, 4, 5);
        }
        if (tiles > 3) {
          _tile_loadd(5, xb + 3 * kp2 * 16, 64);
          _tile_dpbf16ps(3, 4, 5);
        }
      }
      for (long t = 0; t < tiles; t++) {
        switch (t) {
          case 0: _tile_stored(0, cbuf, 64); break;
          case 1: _tile_stored(1, cbuf, 64); break;
          case 2: _tile_stored(2, cbuf, 64); break;
          default: _tile_stored(3, cbuf, 64); break;
        }
        const long rows = mb - t * 16 < 16 ? mb - t * 16 : 16;
        float mul[16];
        for (int r = 0; r < nr; r++) mul[r] = w->scale * (w->row_scale ? w->row_scale[j + r] : 1.0f) * (w->dtype == WD_F8E4M3 ? 256.0f : 1.0f);
        for (long c = 0; c < rows; c++) {
          float *yr = y + (i0 + t * 16 + c) * n + j;
          for (int r = 0; r < nr; r++) yr[r] = cbuf[r * 16 + c] * mul[r];
        }
      }
    }
  }
  _tile_release();
}

/* Per-thread scratch (floats) amx_rows needs for k. */
size_t amx_scratch_floats(long k) {
  const long kp2 = (k + 31) / 32 * 16;
  return (size_t)(64 * kp2) + 16 * 32 / 2 + 16 * 16 + 64;
}
