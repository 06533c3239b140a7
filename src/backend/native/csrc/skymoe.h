/*
 * skymoe native kernels: shared declarations.
 *
 * Memory: every kernel works on float/int32 pointers into one reserved region (the heap that JS
 * sees as an external ArrayBuffer); addon.c turns the byte offsets JS passes into pointers.
 * Threads: a persistent pool (pool.c); kernels split work with pool_run.
 * ISA: one isa_t table per instruction set (isa_avx512.c, isa_avx2.c, isa_generic.c), picked at
 * context creation from the CPU (or forced, for tests), so each code path can be exercised.
 */
#ifndef SKYMOE_H
#define SKYMOE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A function every caller must run as the same machine code (never inlined, cloned or specialized). */
#if defined(__clang__)
#define SKYMOE_ONE_COPY __attribute__((noinline))
#else
#define SKYMOE_ONE_COPY __attribute__((noinline, noipa))
#endif

/* ------------------------------------------------------------------ thread pool */
typedef void (*task_fn)(void *arg, int tid, int nthreads);
typedef struct pool pool_t;
pool_t *pool_create(int threads);
void pool_run(pool_t *p, task_fn fn, void *arg);
int pool_threads(const pool_t *p);
void pool_destroy(pool_t *p);

/* ------------------------------------------------------------------ weight dtypes */
/* Storage dtypes of weights (backend.ts WeightDType). */
enum { WD_F32 = 0, WD_BF16 = 1, WD_F16 = 2, WD_F8E4M3 = 3 };
static inline long wd_bytes(int dtype) { return dtype == WD_F32 ? 4 : dtype == WD_F8E4M3 ? 1 : 2; }

/* IEEE half -> float, exactly (subnormals, infinities, NaN). */
static inline float f16_to_f32(uint16_t h) {
  uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 31, m = h & 1023, u;
  float f;
  if (e == 0) {
    f = (float)m * (1.0f / 16777216.0f); /* m x 2^-24 */
    memcpy(&u, &f, 4);
    u |= s;
  } else if (e == 31) {
    u = s | 0x7f800000u | (m << 13);
  } else {
    u = s | ((e + 112) << 23) | (m << 13);
  }
  memcpy(&f, &u, 4);
  return f;
}

/* float8_e4m3fn bits -> the bits of an f16 holding value / 256: exponent bias 7 vs 15 is a factor
   2^8 and subnormals line up, so a shift is the whole conversion (the NaN codes become 480 / 256). */
static inline uint16_t f8_to_f16_bits(uint8_t b) { return (uint16_t)(((b & 0x7F) << 7) | ((b & 0x80) << 8)); }

/* acc[i * 4 + r] = sum_p x[i * ldx + p] * W_r[p], for i < m (the table index) and 4 weight rows. */
typedef void (*wdot_fn)(const float *x, long ldx, const uint8_t *w, long ldw, int nrows, long k, float *acc);
/* The same from weight rows already decoded to f32 (row stride ldw floats): vector steps over
   [0, kvec), then the scalar tail [kvec, k), exactly as a wdot_fn whose vector loop ends at kvec. */
typedef void (*wdotd_fn)(const float *x, long ldx, const float *w, long ldw, int nrows, long k, long kvec, float *acc);

/* ------------------------------------------------------------------ per-ISA kernels */
/*
 * Micro-kernel: C[mv, nv] = alpha * Ap^T-panel @ B-panel + beta * C over kc steps.
 * Ap is packed [kc][MR]; B is [kc][NR] with row stride ldb (NR when packed, the matrix row
 * stride when read in place). mv <= MR, nv <= NR; beta 0 never reads C.
 */
typedef void (*ukernel_fn)(long kc, const float *ap, const float *b, long ldb, float *c, long ldc,
                           float alpha, float beta, int mv, int nv);

/* Query rows of one sequence a paged-attention unit takes together (they share each key row read). */
#define PAGED_ROWS 16

/* One unit of paged attention (paged_attention.c, paged_body.h): rows of one sequence (at most
   PAGED_ROWS) x the G query heads of one kv head. */
typedef struct {
  const float *q;       /* row r's query heads of this kv head: q + r * ldq, [G, D] */
  const float *k, *v;   /* the caches offset to this kv head: slot s at s * ldkv */
  float *o;             /* row r's output: o + r * ldq, [G, D] */
  const int32_t *table; /* the sequence's block ids */
  const int32_t *lens;  /* keys each row sees, [rows] */
  long rows, G, D, ldq, ldkv, block;
  float scale;
  float *scratch;       /* paged_unit_floats(rows * G, D, longest length) */
} paged_unit_t;

/* Score row stride of a row with `len` keys: whole 16-float lanes, 64-byte aligned, set by len alone
   (so a row's layout, and the code path over it, never depends on the batch). */
#define PAGED_SCORE_STRIDE(len) (((len) + 15) / 16 * 16)
/* Scratch floats of a unit of `heads` rows x heads: score rows, accumulators of D, sums, a float of
   padding (the longs are 8-byte aligned), row offsets (longs) of the longest row's keys. */
static inline size_t paged_unit_floats(long heads, long D, long len) {
  return (size_t)(heads * PAGED_SCORE_STRIDE(len) + heads * D + heads + 1 + 2 * len);
}

typedef struct isa {
  const char *name;
  int mr, nr;    /* micro-tile */
  int kc, mc, nc; /* cache blocking: A block mc x kc in L2, B panel kc x nc in L3 */
  ukernel_fn ukernel;
  /* y[j] = alpha * dot(x, w + j*ldw) + beta * y[j], j < n (GEMV against a row-major [n, k] matrix). */
  void (*gemv_t)(const float *x, const float *w, long ldw, float *y, long n, long k, float alpha, float beta);
  /* y[j] = alpha * sum_p x[p] * b[p*ldb + j] + beta * y[j], j < n. */
  void (*gemv_n)(const float *x, const float *b, long ldb, float *y, long n, long k, float alpha, float beta);
  /* s[j] = exp(s[j] - mx) for j < n; returns the sum. */
  float (*exp_shift_sum)(float *s, long n, float mx);
  /* y[j] = scale * exp(x[j] - shift) for j < n (y may be scratch); returns sum_j exp(x[j] - shift). */
  float (*exp_scale)(const float *x, float *y, long n, float shift, float scale);
  /* max(x[0..n)), -inf when n == 0. */
  float (*row_max)(const float *x, long n);
  /* Fused SwiGLU forward / backward over [0, n) (transcendental-heavy: worth the wide vectors). */
  void (*swiglu)(const float *g, const float *u, float *y, long n);
  void (*swiglu_bwd)(const float *g, const float *u, const float *dy, float *dg, float *du, long n);
  /* Independent FMA chains, `iters` rounds (for measuring this core's FMA peak); returns FLOPs. */
  double (*fma_probe)(long iters);
  /* Weights in a storage dtype: out[p] = mul * decode(w[p]) (f8 decodes to value / 256). */
  void (*decode_row)(const uint8_t *w, int dtype, float *out, long k, float mul);
  /* wdot[dtype][m - 1]: dot products of m <= 4 activation rows with 4 weight rows, decoded in registers. */
  const wdot_fn (*wdot)[4];
  /* When xperm[dtype] is set, wdot[dtype] wants each activation row in this order (k floats: the
     kernel's decode order of its vector blocks, see isa_avx512.c); NULL: natural order. */
  void (*xperm[4])(const float *x, float *out, long k);
  /* Row-invariant products (weights.c) replay wdot's FMA sequence from decoded rows: wdot_decode
     writes one weight row as f32 exactly as wdot[dtype] sees it (f8: value / 256; in the vector
     part, in the order wdot reads it), wdot_step[dtype] is the k-step of wdot[dtype]'s vector loop
     (so its vector part is k rounded down to it), and wdot_dec[m - 1] runs the FMAs. */
  void (*wdot_decode)(const uint8_t *w, int dtype, float *out, long k);
  int wdot_step[4];
  wdotd_fn wdot_dec[4];
  /* One unit of paged attention; each row batch invariant (see paged_body.h). */
  void (*paged_unit)(const paged_unit_t *u);
  /* Sum of n floats (n a multiple of 64) read as 8 concurrent prefetched streams: the best
     streaming read rate, the memory-bandwidth probe's loop. */
  double (*stream_sum)(const float *p, long n);
} isa_t;

const isa_t *isa_generic(void);
#if defined(SKYMOE_X86)
const isa_t *isa_avx2(void);
const isa_t *isa_avx512(void);
#endif
/* The best table this CPU supports, or the one named (NULL when unknown or unsupported). */
const isa_t *isa_select(const char *forced, const char **why);

/* ------------------------------------------------------------------ context */
typedef struct scratch {
  float *apack, *bpack; /* GEMM packing buffers */
  float *tile;          /* attention tiles and row scratch, tile_floats long */
  size_t tile_floats;
  double *acc;          /* per-thread reduction buffer (rmsnorm dw) */
  size_t acc_len;
} scratch_t;

typedef struct ctx {
  char *base;           /* start of the reserved region; JS offsets are relative to it */
  size_t reserved;      /* bytes reserved (virtual) */
  const isa_t *isa;
  pool_t *pool;
  int threads;
  scratch_t *scratch;   /* one per thread */
  int refs;             /* owner + live external ArrayBuffers; munmap at zero */
  int disposed;
  struct file_map *maps; /* files mapped read-only for weights (addon_weights.c) */
  int nmaps, mapcap;
  int amx;              /* bf16 compute on AMX for row-invariant products with bf16 / fp8 weights (amx.c) */
} ctx_t;

/* A file mapped read-only; kernels address it by offsets from ctx->base like the heap. */
typedef struct file_map {
  char *addr;
  size_t len;
} file_map_t;
/* Whether [off, off + bytes) lies in the heap or in one mapped file. */
int ctx_range_ok(const ctx_t *c, long off, size_t bytes);
/* Unmap every mapped file (at dispose). */
void ctx_unmap_all(ctx_t *c);

/* Grow every thread's tile / acc scratch to at least `floats` / `len` (call before pool_run); 0 on failure. */
int scratch_tiles(ctx_t *c, size_t floats);
int scratch_acc(ctx_t *c, size_t len);

/* ------------------------------------------------------------------ GEMM (gemm.c) */
/* Single-threaded strided GEMM on thread `tid`'s scratch: C = alpha op(A) op(B) + beta C. */
void gemm_st(ctx_t *c, int tid, int ta, int tb, long m, long n, long k, float alpha,
             const float *a, long lda, const float *b, long ldb, float beta, float *cm, long ldc);
/* The same split over all threads. */
/* op(A) [m, k] packed once for several products (m <= isa->mc, k <= isa->kc); apack holds
   ceil(m / MR) * MR * k floats. Then C = alpha * Apacked @ op(B) + beta * C with op(B) [k, n]. */
void gemm_pack_a(const isa_t *isa, const float *a, long lda, int ta, long m, long k, float *apack);
/* op(B) [k, n] into NR-column strips [k][NR], zero padded: ceil(n / NR) * NR * k floats. */
void gemm_pack_b(const isa_t *isa, const float *b, long ldb, int tb, long k, long n, float *bpack);
void gemm_prepacked_a(ctx_t *c, int tid, const float *apack, long m, long n, long k, float alpha, const float *b,
                      long ldb, int tb, float beta, float *cm, long ldc);
void gemm_mt(ctx_t *c, int ta, int tb, long m, long n, long k, float alpha,
             const float *a, long lda, const float *b, long ldb, float beta, float *cm, long ldc);
void k_matmul(ctx_t *c, const float *a, const float *b, float *cm, long m, long k, long n, int ta, int tb,
              long batch, long sa, long sb, long sc, float beta);
void k_grouped_matmul(ctx_t *c, int mode, const float *a, const float *b, float *cm, const int32_t *off,
                      long groups, long m, long k, float beta);

/* ------------------------------------------------------------------ attention (attention.c) */
void k_attention(ctx_t *c, const float *q, const float *k, const float *v, float *o, float *lse, long B,
                 long Tq, long Tk, long H, long Hkv, long D, long kvbs, long qoff, float scale);
/* 0 when the per-thread scratch (it grows with Tq * D) cannot be allocated. */
int k_attention_backward(ctx_t *c, const float *q, const float *k, const float *v, const float *o,
                         const float *lse, const float *dout, float *dq, float *dk, float *dv, long B,
                         long Tq, long Tk, long H, long Hkv, long D, long kvbs, long qoff, float scale);

/* ------------------------------------------------------------------ paged attention (paged_attention.c) */
/* Kernels.pagedAttention; 0 when the per-thread scratch cannot be allocated. The host arrays have been
   validated by the binding (addon_paged.c). */
int k_paged_attention(ctx_t *c, const float *q, const float *k, const float *v, float *o, long n, long H, long Hkv,
                      long D, float scale, long block, const int32_t *row_seq, const int32_t *row_len,
                      const int32_t *tables, long max_blocks);

/* ------------------------------------------------------------------ weights (weights.c) */
/* A weight [rows, cols] in a storage dtype: real value = decode(p) * scale * (row_scale ? row_scale[r] : 1). */
typedef struct wref {
  const uint8_t *p;
  int dtype;
  float scale;
  const float *row_scale;
} wref_t;
#if defined(SKYMOE_X86)
/* amx.c: 1 when this CPU has AMX-TILE and AMX-BF16 and the kernel granted the tile state. */
int amx_enable(void);
void amx_rows(const float *x, long m, long k, const wref_t *w, long n, long j0, long j1, float *y, float *scratch);
size_t amx_scratch_floats(long k);
#endif
/* invariant: each y[i, j] is bit for bit what the call gives row i alone (m = 1), see weights.c. */
void k_linear_w(ctx_t *c, const float *x, const wref_t *w, float *y, long m, long k, long n, int invariant);
void k_grouped_linear_w(ctx_t *c, const float *x, const wref_t *ws, float *y, const int32_t *off, long groups,
                        long n, long k, int invariant);
void k_gather_rows_w(ctx_t *c, const wref_t *w, const int32_t *ids, float *out, long count, long cols);
void k_dequantize_w(ctx_t *c, const wref_t *w, float *out, long rows, long cols);
/* Read n floats (a multiple of 64) once on every thread of the pool: the memory bandwidth probe. */
double k_stream_read(ctx_t *c, const float *buf, long n);

/* ------------------------------------------------------------------ everything else (ops.c) */
void k_fill(ctx_t *c, void *out, long n, double value, int is_int);
void k_copy2d(ctx_t *c, const int32_t *src, int32_t *dst, long rows, long cols, long ss, long ds);
void k_binary(ctx_t *c, int op, const float *a, const float *b, float *out, const long *shape,
              const long *sa, const long *sb);
void k_unary(ctx_t *c, int op, const float *x, float *y, long n);
void k_unary_backward(ctx_t *c, int op, const float *x, const float *y, const float *dy, float *dx, long n);
void k_axpby(ctx_t *c, const float *x, float *y, long n, float alpha, float beta);
int k_reduce_to(ctx_t *c, const float *g, float *out, const long *shape, const long *oshape);
void k_swiglu(ctx_t *c, const float *g, const float *u, float *y, long n);
void k_swiglu_backward(ctx_t *c, const float *g, const float *u, const float *dy, float *dg, float *du, long n);
void k_softmax(ctx_t *c, const float *x, float *y, long rows, long cols);
void k_softmax_backward(ctx_t *c, const float *y, const float *dy, float *dx, long rows, long cols);
void k_cross_entropy(ctx_t *c, const float *x, const int32_t *t, float *loss, float *lse, long rows,
                     long cols, long ignore);
void k_cross_entropy_backward(ctx_t *c, const float *x, const int32_t *t, const float *lse, float *dx,
                              long rows, long cols, long ignore, float scale);
void k_rmsnorm(ctx_t *c, const float *x, const float *w, float *y, float *rstd, long rows, long cols, float eps);
int k_rmsnorm_backward(ctx_t *c, const float *x, const float *w, const float *rstd, const float *dy, float *dx,
                       float *dw, long rows, long cols);
void k_sum_rows(ctx_t *c, const float *x, float *y, long rows, long cols);
void k_std_rows(ctx_t *c, const float *x, float *y, long rows, long cols, int unbiased);
void k_std_rows_backward(ctx_t *c, const float *x, const float *std, const float *dy, float *dx, long rows,
                         long cols, int unbiased);
void k_topk(ctx_t *c, const float *x, float *values, int32_t *idx, long rows, long cols, long k);
void k_transpose(ctx_t *c, const float *x, float *y, long batch, long rows, long cols);
void k_gather_rows(ctx_t *c, const float *table, const int32_t *ids, float *out, long n, long cols);
void k_scatter_add_rows(ctx_t *c, const float *src, const int32_t *ids, float *table, long n, long cols);
void k_scatter_rows(ctx_t *c, const float *src, const int32_t *ids, float *dst, long n, long cols);
void k_rope(ctx_t *c, const float *x, float *y, const float *cs, const float *sn, const int32_t *pos,
            long ntok, long heads, long dim, int inverse);
double k_sum_squares(ctx_t *c, const float *x, long n);
void k_adamw(ctx_t *c, float *p, const float *g, float *m, float *v, long n, float lr, float b1, float b2,
             float eps, float wd, float bc1, float bc2);

/* ------------------------------------------------------------------ helpers */
/* Split [0, n) into nthreads nearly equal ranges aligned to `align`; range of thread tid. */
static inline void split_range(long n, long align, int tid, int nthreads, long *lo, long *hi) {
  long units = (n + align - 1) / align;
  long per = units / nthreads, extra = units % nthreads;
  long u0 = tid * per + (tid < extra ? tid : extra);
  long u1 = u0 + per + (tid < extra ? 1 : 0);
  *lo = u0 * align < n ? u0 * align : n;
  *hi = u1 * align < n ? u1 * align : n;
}

#endif
