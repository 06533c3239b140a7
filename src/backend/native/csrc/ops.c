/*
 * Every kernel that is not a matrix product: elementwise, row-wise (norms, softmax, cross-entropy),
 * indexing, RoPE and the optimizer. Plain loops the compiler vectorizes; large ones are split over
 * the pool by rows or by element ranges (never two threads on one output element).
 * Semantics: src/backend/backend.ts; reference: src/backend/js/kernels.ts.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "skymoe.h"
#include "vexp.h"

/* ------------------------------------------------------------------ parallel ranges */
typedef void (*range_fn)(void *arg, long lo, long hi, int tid);
typedef struct {
  range_fn fn;
  void *arg;
  long n;
} range_job;

static void range_task(void *raw, int tid, int nt) {
  range_job *j = raw;
  long lo, hi;
  split_range(j->n, 1, tid, nt, &lo, &hi);
  if (hi > lo) j->fn(j->arg, lo, hi, tid);
}

/* Run fn over [0, n) split by thread when the whole job is worth at least ~64K element visits. */
static void par_for(ctx_t *cx, long n, long cost_per_item, range_fn fn, void *arg) {
  if (n <= 0) return;
  if (cx->threads == 1 || n < 2 || n * cost_per_item < (1L << 16)) {
    fn(arg, 0, n, 0);
    return;
  }
  range_job j = {fn, arg, n};
  pool_run(cx->pool, range_task, &j);
}

static inline float sigmoidf_(float x) { return 1.0f / (1.0f + exp_fast(-x)); }

/* ------------------------------------------------------------------ elementwise */
void k_fill(ctx_t *cx, void *out, long n, double value, int is_int) {
  (void)cx;
  if (is_int) {
    int32_t v = (int32_t)value, *o = out;
    for (long i = 0; i < n; i++) o[i] = v;
  } else {
    float v = (float)value, *o = out;
    for (long i = 0; i < n; i++) o[i] = v;
  }
}

void k_copy2d(ctx_t *cx, const int32_t *src, int32_t *dst, long rows, long cols, long ss, long ds) {
  (void)cx;
  if (src == dst && ss == ds) return;
  if (dst > src)
    for (long r = rows - 1; r >= 0; r--) memmove(dst + r * ds, src + r * ss, (size_t)cols * 4);
  else
    for (long r = 0; r < rows; r++) memmove(dst + r * ds, src + r * ss, (size_t)cols * 4);
}

typedef struct {
  int op;
  const float *a, *b;
  float *out;
  long d[4], sa[4], sb[4];
} binary_job;

static void binary_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  binary_job *j = raw;
  const long d1 = j->d[1], d2 = j->d[2], d3 = j->d[3], s3a = j->sa[3], s3b = j->sb[3];
  for (long r = lo; r < hi; r++) { /* r indexes (i0, i1, i2) */
    long i2 = r % d2, i1 = (r / d2) % d1, i0 = r / (d1 * d2);
    const float *pa = j->a + i0 * j->sa[0] + i1 * j->sa[1] + i2 * j->sa[2];
    const float *pb = j->b + i0 * j->sb[0] + i1 * j->sb[1] + i2 * j->sb[2];
    float *o = j->out + r * d3;
#define LOOP(expr)                                                                                 \
  if (s3a == 1 && s3b == 1)                                                                        \
    for (long i = 0; i < d3; i++) { float x = pa[i], y = pb[i]; o[i] = (expr); }                   \
  else if (s3a == 1 && s3b == 0)                                                                   \
    for (long i = 0; i < d3; i++) { float x = pa[i], y = pb[0]; o[i] = (expr); }                   \
  else if (s3a == 0 && s3b == 1)                                                                   \
    for (long i = 0; i < d3; i++) { float x = pa[0], y = pb[i]; o[i] = (expr); }                   \
  else                                                                                             \
    for (long i = 0; i < d3; i++) { float x = pa[i * s3a], y = pb[i * s3b]; o[i] = (expr); }
    switch (j->op) {
      case 0: LOOP(x + y) break;
      case 1: LOOP(x - y) break;
      case 2: LOOP(x * y) break;
      default: LOOP(x / y) break;
    }
#undef LOOP
  }
}

void k_binary(ctx_t *cx, int op, const float *a, const float *b, float *out, const long *shape, const long *sa,
              const long *sb) {
  binary_job j = {op, a, b, out, {0}, {0}, {0}};
  for (int i = 0; i < 4; i++) {
    j.d[i] = shape[i];
    j.sa[i] = sa[i];
    j.sb[i] = sb[i];
  }
  if (j.d[0] * j.d[1] * j.d[2] * j.d[3] == 0) return;
  par_for(cx, j.d[0] * j.d[1] * j.d[2], j.d[3], binary_range, &j);
}

typedef struct {
  int op;
  const float *x, *y, *dy;
  float *out;
} unary_job;

static void unary_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  unary_job *j = raw;
  const float *x = j->x;
  float *y = j->out;
  switch (j->op) {
    case 0: for (long i = lo; i < hi; i++) y[i] = expf(x[i]); break;
    case 1: for (long i = lo; i < hi; i++) y[i] = logf(x[i]); break;
    case 2: for (long i = lo; i < hi; i++) y[i] = tanhf(x[i]); break;
    case 3: for (long i = lo; i < hi; i++) y[i] = sqrtf(x[i]); break;
    case 4: for (long i = lo; i < hi; i++) y[i] = x[i] * x[i]; break;
    case 5: for (long i = lo; i < hi; i++) y[i] = x[i] * sigmoidf_(x[i]); break;
    case 6: for (long i = lo; i < hi; i++) y[i] = sigmoidf_(x[i]); break;
    case 7: for (long i = lo; i < hi; i++) y[i] = -x[i]; break;
    case 8: for (long i = lo; i < hi; i++) y[i] = 1.0f / sqrtf(x[i]); break;
    default: for (long i = lo; i < hi; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f; break;
  }
}

void k_unary(ctx_t *cx, int op, const float *x, float *y, long n) {
  unary_job j = {op, x, NULL, NULL, y};
  par_for(cx, n, 1, unary_range, &j);
}

static void unary_bwd_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  unary_job *j = raw;
  const float *x = j->x, *y = j->y, *dy = j->dy;
  float *dx = j->out;
  switch (j->op) {
    case 0: for (long i = lo; i < hi; i++) dx[i] = dy[i] * y[i]; break;
    case 1: for (long i = lo; i < hi; i++) dx[i] = dy[i] * (1.0f / x[i]); break;
    case 2: for (long i = lo; i < hi; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]); break;
    case 3: for (long i = lo; i < hi; i++) dx[i] = dy[i] * (0.5f / y[i]); break;
    case 4: for (long i = lo; i < hi; i++) dx[i] = dy[i] * (2.0f * x[i]); break;
    case 5:
      for (long i = lo; i < hi; i++) {
        float s = sigmoidf_(x[i]);
        dx[i] = dy[i] * (s * (1.0f + x[i] * (1.0f - s)));
      }
      break;
    case 6: for (long i = lo; i < hi; i++) dx[i] = dy[i] * (y[i] * (1.0f - y[i])); break;
    case 7: for (long i = lo; i < hi; i++) dx[i] = -dy[i]; break;
    case 8: for (long i = lo; i < hi; i++) dx[i] = dy[i] * (-0.5f * y[i] * y[i] * y[i]); break;
    default: for (long i = lo; i < hi; i++) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f; break;
  }
}

void k_unary_backward(ctx_t *cx, int op, const float *x, const float *y, const float *dy, float *dx, long n) {
  unary_job j = {op, x, y, dy, dx};
  par_for(cx, n, 1, unary_bwd_range, &j);
}

typedef struct {
  const float *x;
  float *y;
  float alpha, beta;
} axpby_job;

static void axpby_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  axpby_job *j = raw;
  const float *x = j->x;
  float *y = j->y;
  const float a = j->alpha, b = j->beta;
  if (b == 0.0f)
    for (long i = lo; i < hi; i++) y[i] = a * x[i];
  else
    for (long i = lo; i < hi; i++) y[i] = a * x[i] + b * y[i];
}

void k_axpby(ctx_t *cx, const float *x, float *y, long n, float alpha, float beta) {
  axpby_job j = {x, y, alpha, beta};
  par_for(cx, n, 1, axpby_range, &j);
}

int k_reduce_to(ctx_t *cx, const float *g, float *out, const long *shape, const long *oshape) {
  (void)cx;
  long keep[4], st[4] = {oshape[1] * oshape[2] * oshape[3], oshape[2] * oshape[3], oshape[3], 1};
  for (int i = 0; i < 4; i++) keep[i] = (oshape[i] == 1 && shape[i] != 1) ? 0 : 1;
  long total = oshape[0] * oshape[1] * oshape[2] * oshape[3];
  double *acc = calloc((size_t)(total > 0 ? total : 1), sizeof(double));
  if (!acc) return 0;
  for (long i0 = 0; i0 < shape[0]; i0++)
    for (long i1 = 0; i1 < shape[1]; i1++)
      for (long i2 = 0; i2 < shape[2]; i2++) {
        double *dst = acc + i0 * keep[0] * st[0] + i1 * keep[1] * st[1] + i2 * keep[2] * st[2];
        if (keep[3])
          for (long i3 = 0; i3 < shape[3]; i3++) dst[i3] += g[i3];
        else {
          double s = 0;
          for (long i3 = 0; i3 < shape[3]; i3++) s += g[i3];
          dst[0] += s;
        }
        g += shape[3];
      }
  for (long i = 0; i < total; i++) out[i] = (float)acc[i];
  free(acc);
  return 1;
}

typedef struct {
  const isa_t *isa;
  const float *g, *u, *dy;
  float *y, *dg, *du;
} swiglu_job;

static void swiglu_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  swiglu_job *j = raw;
  j->isa->swiglu(j->g + lo, j->u + lo, j->y + lo, hi - lo);
}

void k_swiglu(ctx_t *cx, const float *g, const float *u, float *y, long n) {
  swiglu_job j = {cx->isa, g, u, NULL, y, NULL, NULL};
  par_for(cx, n, 1, swiglu_range, &j);
}

static void swiglu_bwd_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  swiglu_job *j = raw;
  j->isa->swiglu_bwd(j->g + lo, j->u + lo, j->dy + lo, j->dg + lo, j->du + lo, hi - lo);
}

void k_swiglu_backward(ctx_t *cx, const float *g, const float *u, const float *dy, float *dg, float *du, long n) {
  swiglu_job j = {cx->isa, g, u, dy, NULL, dg, du};
  par_for(cx, n, 1, swiglu_bwd_range, &j);
}

/* ------------------------------------------------------------------ rows */
#define LANES 16

static float row_max(const float *x, long n) {
  float m[LANES];
  for (int l = 0; l < LANES; l++) m[l] = -INFINITY;
  long c = 0;
  for (; c + LANES <= n; c += LANES)
    for (int l = 0; l < LANES; l++) m[l] = x[c + l] > m[l] ? x[c + l] : m[l];
  float mx = -INFINITY;
  for (int l = 0; l < LANES; l++) mx = m[l] > mx ? m[l] : mx;
  for (; c < n; c++) mx = x[c] > mx ? x[c] : mx;
  return mx;
}

/* sum_c exp(x[c] - mx): 16 float partial sums, added up in double. */
static double row_exp_sum(const float *x, long n, float mx) {
  float acc[LANES] = {0};
  long c = 0;
  for (; c + LANES <= n; c += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += exp_fast(x[c + l] - mx);
  double s = 0;
  for (int l = 0; l < LANES; l++) s += acc[l];
  for (; c < n; c++) s += exp_fast(x[c] - mx);
  return s;
}

static double row_dot(const float *x, const float *y, long n) {
  float acc[LANES] = {0};
  long c = 0;
  for (; c + LANES <= n; c += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += x[c + l] * y[c + l];
  double s = 0;
  for (int l = 0; l < LANES; l++) s += acc[l];
  for (; c < n; c++) s += (double)x[c] * y[c];
  return s;
}

typedef struct {
  ctx_t *cx;
  const float *x, *y, *dy, *w, *lse_in;
  const int32_t *t;
  float *out, *dx, *dw, *stat, *loss;
  long cols, ignore;
  float eps, scale;
  int flag;
} row_job;

static void softmax_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  row_job *j = raw;
  for (long r = lo; r < hi; r++) {
    const float *x = j->x + r * j->cols;
    float *y = j->out + r * j->cols;
    float mx = row_max(x, j->cols);
    float inv = (float)(1.0 / row_exp_sum(x, j->cols, mx));
    for (long c = 0; c < j->cols; c++) y[c] = exp_fast(x[c] - mx) * inv;
  }
}

void k_softmax(ctx_t *cx, const float *x, float *y, long rows, long cols) {
  row_job j = {.cx = cx, .x = x, .out = y, .cols = cols};
  par_for(cx, rows, cols * 4, softmax_range, &j);
}

static void softmax_bwd_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  row_job *j = raw;
  for (long r = lo; r < hi; r++) {
    const float *y = j->y + r * j->cols, *dy = j->dy + r * j->cols;
    float *dx = j->dx + r * j->cols;
    float dot = (float)row_dot(y, dy, j->cols);
    for (long c = 0; c < j->cols; c++) dx[c] = y[c] * (dy[c] - dot);
  }
}

void k_softmax_backward(ctx_t *cx, const float *y, const float *dy, float *dx, long rows, long cols) {
  row_job j = {.cx = cx, .y = y, .dy = dy, .dx = dx, .cols = cols};
  par_for(cx, rows, cols * 2, softmax_bwd_range, &j);
}

static void ce_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  row_job *j = raw;
  for (long r = lo; r < hi; r++) {
    const float *x = j->x + r * j->cols;
    const isa_t *isa = j->cx->isa;
    float mx = isa->row_max(x, j->cols);
    /* The exponentials go to a stack chunk and are dropped: only their sum is needed. */
    float chunk[1024];
    double sum = 0.0;
    for (long c0 = 0; c0 < j->cols; c0 += 1024)
      sum += isa->exp_scale(x + c0, chunk, j->cols - c0 < 1024 ? j->cols - c0 : 1024, mx, 1.0f);
    double l = mx + log(sum);
    j->stat[r] = (float)l;
    int32_t t = j->t[r];
    j->loss[r] = t == j->ignore ? 0.0f : (float)(l - x[t]);
  }
}

void k_cross_entropy(ctx_t *cx, const float *x, const int32_t *t, float *loss, float *lse, long rows, long cols,
                     long ignore) {
  row_job j = {.cx = cx, .x = x, .t = t, .loss = loss, .stat = lse, .cols = cols, .ignore = ignore};
  par_for(cx, rows, cols * 3, ce_range, &j);
}

static void ce_bwd_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  row_job *j = raw;
  for (long r = lo; r < hi; r++) {
    const float *x = j->x + r * j->cols;
    float *dx = j->dx + r * j->cols;
    int32_t t = j->t[r];
    if (t == j->ignore) {
      memset(dx, 0, (size_t)j->cols * sizeof(float));
      continue;
    }
    const float l = j->lse_in[r], s = j->scale;
    j->cx->isa->exp_scale(x, dx, j->cols, l, s);
    dx[t] -= s;
  }
}

void k_cross_entropy_backward(ctx_t *cx, const float *x, const int32_t *t, const float *lse, float *dx, long rows,
                              long cols, long ignore, float scale) {
  row_job j = {.cx = cx, .x = x, .t = t, .lse_in = lse, .dx = dx, .cols = cols, .ignore = ignore, .scale = scale};
  par_for(cx, rows, cols * 2, ce_bwd_range, &j);
}

static void rmsnorm_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  row_job *j = raw;
  for (long r = lo; r < hi; r++) {
    const float *x = j->x + r * j->cols;
    float *y = j->out + r * j->cols;
    float rs = (float)(1.0 / sqrt(row_dot(x, x, j->cols) / j->cols + j->eps));
    j->stat[r] = rs;
    for (long c = 0; c < j->cols; c++) y[c] = x[c] * rs * j->w[c];
  }
}

void k_rmsnorm(ctx_t *cx, const float *x, const float *w, float *y, float *rstd, long rows, long cols, float eps) {
  row_job j = {.cx = cx, .x = x, .w = w, .out = y, .stat = rstd, .cols = cols, .eps = eps};
  par_for(cx, rows, cols * 2, rmsnorm_range, &j);
}

static void rmsnorm_bwd_range(void *raw, long lo, long hi, int tid) {
  row_job *j = raw;
  const long cols = j->cols;
  double *dw = j->cx->scratch[tid].acc;
  float *dwf = j->cx->scratch[tid].tile; /* float partials per row block, folded into dw */
  for (long c = 0; c < cols; c++) dw[c] = 0.0;
  for (long c = 0; c < cols; c++) dwf[c] = 0.0f;
  long n = 0;
  for (long r = lo; r < hi; r++) {
    const float *x = j->x + r * cols, *dy = j->dy + r * cols;
    float *dx = j->dx + r * cols;
    const float rs = j->stat[r];
    float acc[LANES] = {0};
    long c = 0;
    for (; c + LANES <= cols; c += LANES)
      for (int l = 0; l < LANES; l++) acc[l] += dy[c + l] * j->w[c + l] * x[c + l];
    double dot = 0;
    for (int l = 0; l < LANES; l++) dot += acc[l];
    for (; c < cols; c++) dot += dy[c] * j->w[c] * x[c];
    const float k = (float)(rs * rs * rs * dot / cols);
    for (c = 0; c < cols; c++) {
      dx[c] = rs * dy[c] * j->w[c] - k * x[c];
      dwf[c] += dy[c] * x[c] * rs;
    }
    if (++n == 32) { /* fold every 32 rows so the float partials stay accurate */
      for (c = 0; c < cols; c++) {
        dw[c] += dwf[c];
        dwf[c] = 0.0f;
      }
      n = 0;
    }
  }
  for (long c = 0; c < cols; c++) dw[c] += dwf[c];
}

int k_rmsnorm_backward(ctx_t *cx, const float *x, const float *w, const float *rstd, const float *dy, float *dx,
                       float *dw, long rows, long cols) {
  if (!scratch_acc(cx, (size_t)cols) || !scratch_tiles(cx, (size_t)cols)) return 0;
  row_job j = {.cx = cx, .x = x, .w = w, .stat = (float *)rstd, .dy = dy, .dx = dx, .cols = cols};
  int used = 1;
  if (cx->threads > 1 && rows >= 2 && rows * cols >= (1L << 15)) {
    range_job rj = {rmsnorm_bwd_range, &j, rows};
    pool_run(cx->pool, range_task, &rj);
    used = cx->threads;
  } else {
    rmsnorm_bwd_range(&j, 0, rows, 0);
  }
  for (long c = 0; c < cols; c++) {
    double s = 0;
    for (int t = 0; t < used; t++) s += cx->scratch[t].acc[c];
    dw[c] += (float)s;
  }
  return 1;
}

static void sum_rows_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  row_job *j = raw;
  for (long r = lo; r < hi; r++) {
    const float *x = j->x + r * j->cols;
    double s = 0;
    for (long c = 0; c < j->cols; c++) s += x[c];
    j->out[r] = (float)s;
  }
}

void k_sum_rows(ctx_t *cx, const float *x, float *y, long rows, long cols) {
  row_job j = {.cx = cx, .x = x, .out = y, .cols = cols};
  par_for(cx, rows, cols, sum_rows_range, &j);
}

void k_std_rows(ctx_t *cx, const float *x, float *y, long rows, long cols, int unbiased) {
  (void)cx;
  for (long r = 0; r < rows; r++, x += cols) {
    double mean = 0, ss = 0;
    for (long c = 0; c < cols; c++) mean += x[c];
    mean /= cols;
    for (long c = 0; c < cols; c++) ss += (x[c] - mean) * (x[c] - mean);
    y[r] = (float)sqrt(ss / (unbiased ? cols - 1 : cols));
  }
}

void k_std_rows_backward(ctx_t *cx, const float *x, const float *std, const float *dy, float *dx, long rows, long cols,
                         int unbiased) {
  (void)cx;
  const double div = unbiased ? cols - 1 : cols;
  for (long r = 0; r < rows; r++, x += cols, dx += cols) {
    double mean = 0;
    for (long c = 0; c < cols; c++) mean += x[c];
    mean /= cols;
    const double g = std[r] == 0.0f ? 0.0 : dy[r] / (div * std[r]);
    for (long c = 0; c < cols; c++) dx[c] = (float)(g * (x[c] - mean));
  }
}

void k_topk(ctx_t *cx, const float *x, float *values, int32_t *idx, long rows, long cols, long k) {
  (void)cx;
  for (long r = 0; r < rows; r++, x += cols) {
    /* Insertion into a sorted list of k: strictly greater moves up, so ties keep the lower column. */
    float *v = values + r * k;
    int32_t *ix = idx + r * k;
    long have = 0;
    for (long c = 0; c < cols; c++) {
      float xv = x[c];
      if (have == k && !(xv > v[k - 1])) continue;
      long pos = have < k ? have : k - 1;
      while (pos > 0 && xv > v[pos - 1]) {
        v[pos] = v[pos - 1];
        ix[pos] = ix[pos - 1];
        pos--;
      }
      v[pos] = xv;
      ix[pos] = (int32_t)c;
      if (have < k) have++;
    }
  }
}

void k_transpose(ctx_t *cx, const float *x, float *y, long batch, long rows, long cols) {
  (void)cx;
  enum { TB = 32 };
  for (long b = 0; b < batch; b++, x += rows * cols, y += rows * cols)
    for (long i0 = 0; i0 < rows; i0 += TB)
      for (long j0 = 0; j0 < cols; j0 += TB) {
        long i1 = i0 + TB < rows ? i0 + TB : rows, j1 = j0 + TB < cols ? j0 + TB : cols;
        for (long i = i0; i < i1; i++)
          for (long jj = j0; jj < j1; jj++) y[jj * rows + i] = x[i * cols + jj];
      }
}

/* ------------------------------------------------------------------ indexing */
typedef struct {
  const float *src;
  const int32_t *ids;
  float *dst;
  long n, cols;
} index_job;

static void gather_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  index_job *j = raw;
  for (long i = lo; i < hi; i++) memcpy(j->dst + i * j->cols, j->src + (long)j->ids[i] * j->cols, (size_t)j->cols * 4);
}

void k_gather_rows(ctx_t *cx, const float *table, const int32_t *ids, float *out, long n, long cols) {
  index_job j = {table, ids, out, n, cols};
  par_for(cx, n, cols, gather_range, &j);
}

/* The ids are distinct, so threads split the rows. */
static void scatter_rows_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  index_job *j = raw;
  for (long i = lo; i < hi; i++) memcpy(j->dst + (long)j->ids[i] * j->cols, j->src + i * j->cols, (size_t)j->cols * 4);
}

void k_scatter_rows(ctx_t *cx, const float *src, const int32_t *ids, float *dst, long n, long cols) {
  index_job j = {src, ids, dst, n, cols};
  par_for(cx, n, cols, scatter_rows_range, &j);
}

/* Threads split the columns, so repeated ids never race. */
static void scatter_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  index_job *j = raw;
  for (long i = 0; i < j->n; i++) {
    float *d = j->dst + (long)j->ids[i] * j->cols;
    const float *s = j->src + i * j->cols;
    for (long c = lo; c < hi; c++) d[c] += s[c];
  }
}

void k_scatter_add_rows(ctx_t *cx, const float *src, const int32_t *ids, float *table, long n, long cols) {
  index_job j = {src, ids, table, n, cols};
  if (cols < 64 * cx->threads) scatter_range(&j, 0, cols, 0);
  else par_for(cx, cols, n, scatter_range, &j);
}

/* ------------------------------------------------------------------ transformer */
typedef struct {
  const float *x, *cs, *sn;
  float *y;
  const int32_t *pos;
  long heads, dim;
  float sign;
} rope_job;

static void rope_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  rope_job *j = raw;
  const long half = j->dim / 2;
  for (long t = lo; t < hi; t++) {
    const float *C = j->cs + (long)j->pos[t] * half, *S = j->sn + (long)j->pos[t] * half;
    for (long h = 0; h < j->heads; h++) {
      const float *x = j->x + (t * j->heads + h) * j->dim;
      float *y = j->y + (t * j->heads + h) * j->dim;
      for (long i = 0; i < half; i++) {
        float c = C[i], s = j->sign * S[i], x1 = x[i], x2 = x[i + half];
        y[i] = x1 * c - x2 * s;
        y[i + half] = x2 * c + x1 * s;
      }
    }
  }
}

void k_rope(ctx_t *cx, const float *x, float *y, const float *cs, const float *sn, const int32_t *pos, long ntok,
            long heads, long dim, int inverse) {
  rope_job j = {x, cs, sn, y, pos, heads, dim, inverse ? -1.0f : 1.0f};
  par_for(cx, ntok, heads * dim, rope_range, &j);
}

/* ------------------------------------------------------------------ optimizer */
typedef struct {
  float *p, *m, *v;
  const float *g;
  float lr, b1, b2, eps, wd, bc1, bc2;
  double part[64];
} opt_job;

/* Float lanes over chunks of 4096, summed in double, so long vectors keep full precision. */
static double sum_squares_chunked(const float *x, long n) {
  double s = 0;
  for (long c = 0; c < n; c += 4096) s += row_dot(x + c, x + c, n - c < 4096 ? n - c : 4096);
  return s;
}

static void sumsq_range(void *raw, long lo, long hi, int tid) {
  opt_job *j = raw;
  j->part[tid] = sum_squares_chunked(j->g + lo, hi - lo);
}

double k_sum_squares(ctx_t *cx, const float *x, long n) {
  if (n <= 0) return 0.0;
  if (cx->threads == 1 || cx->threads > 64 || n < (1L << 16)) return sum_squares_chunked(x, n);
  opt_job j = {0};
  j.g = x;
  range_job rj = {sumsq_range, &j, n};
  pool_run(cx->pool, range_task, &rj);
  double s = 0;
  for (int t = 0; t < cx->threads; t++) s += j.part[t];
  return s;
}

static void adamw_range(void *raw, long lo, long hi, int tid) {
  (void)tid;
  opt_job *j = raw;
  const float b1 = j->b1, b2 = j->b2, lr = j->lr, wd = j->wd, eps = j->eps, ibc1 = 1.0f / j->bc1, bc2 = j->bc2;
  for (long i = lo; i < hi; i++) {
    float gi = j->g[i];
    float mi = b1 * j->m[i] + (1.0f - b1) * gi;
    float vi = b2 * j->v[i] + (1.0f - b2) * gi * gi;
    j->m[i] = mi;
    j->v[i] = vi;
    float pi = j->p[i];
    j->p[i] = pi - lr * (mi * ibc1 / (sqrtf(vi / bc2) + eps) + wd * pi);
  }
}

void k_adamw(ctx_t *cx, float *p, const float *g, float *m, float *v, long n, float lr, float b1, float b2, float eps,
             float wd, float bc1, float bc2) {
  opt_job j = {p, m, v, g, lr, b1, b2, eps, wd, bc1, bc2, {0}};
  par_for(cx, n, 4, adamw_range, &j);
}
