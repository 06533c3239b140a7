/*
 * Node-API binding: one context per backend = a reserved memory region (the heap), a thread pool
 * and an ISA table. JS sees the region as external ArrayBuffers over the same fixed base (a longer
 * one each time the heap grows, so the base never moves and no byte is ever copied); kernels take
 * byte offsets into it, exactly like the js and wasm backends.
 *
 * Lifetime: the region is unmapped only when the context is disposed (or collected) AND every
 * ArrayBuffer over it has been collected; dispose releases the physical pages at once.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "skymoe.h"

size_t attention_tile_floats(const ctx_t *cx);

/* ------------------------------------------------------------------ context */
static void *aligned(size_t floats) {
  void *p = NULL;
  if (posix_memalign(&p, 64, (floats ? floats : 1) * sizeof(float)) != 0) return NULL;
  return p;
}

int scratch_tiles(ctx_t *c, size_t floats) {
  for (int t = 0; t < c->threads; t++) {
    scratch_t *s = &c->scratch[t];
    if (s->tile_floats >= floats) continue;
    float *n = aligned(floats);
    if (!n) return 0;
    free(s->tile);
    s->tile = n;
    s->tile_floats = floats;
  }
  return 1;
}

int scratch_acc(ctx_t *c, size_t len) {
  for (int t = 0; t < c->threads; t++) {
    scratch_t *s = &c->scratch[t];
    if (s->acc_len >= len) continue;
    double *n = malloc(len * sizeof(double));
    if (!n) return 0;
    free(s->acc);
    s->acc = n;
    s->acc_len = len;
  }
  return 1;
}

static void ctx_unref(ctx_t *c) {
  if (--c->refs > 0) return;
  if (c->base) munmap(c->base, c->reserved);
  free(c);
}

static void ctx_dispose(ctx_t *c) {
  if (c->disposed) return;
  c->disposed = 1;
  pool_destroy(c->pool);
  for (int t = 0; c->scratch && t < c->threads; t++) {
    free(c->scratch[t].apack);
    free(c->scratch[t].bpack);
    free(c->scratch[t].tile);
    free(c->scratch[t].acc);
  }
  free(c->scratch);
  ctx_unmap_all(c);
  /* ArrayBuffers may still view the region: keep it mapped, but give its pages back now. */
  madvise(c->base, c->reserved, MADV_DONTNEED);
  ctx_unref(c);
}

static const char *ctx_create(int threads, const char *isa_name, size_t reserve, ctx_t **out) {
  const char *why = NULL;
  const isa_t *isa = isa_select(isa_name, &why);
  if (!isa) return why;
  ctx_t *c = calloc(1, sizeof *c);
  if (!c) return "out of memory";
  c->isa = isa;
  c->refs = 1;
  c->reserved = reserve;
  void *base = mmap(NULL, reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    free(c);
    return "cannot reserve the heap's address range (mmap failed)";
  }
  c->base = base;
#ifdef MADV_HUGEPAGE
  madvise(base, reserve, MADV_HUGEPAGE); /* fewer TLB misses when GEMM walks large panels */
#endif
  c->pool = pool_create(threads);
  if (!c->pool) {
    munmap(base, reserve);
    free(c);
    return "cannot start the thread pool";
  }
  c->threads = pool_threads(c->pool);
  c->scratch = calloc((size_t)c->threads, sizeof(scratch_t));
  int ok = c->scratch != NULL;
  for (int t = 0; ok && t < c->threads; t++) {
    c->scratch[t].apack = aligned((size_t)isa->mc * isa->kc + 64);
    c->scratch[t].bpack = aligned((size_t)isa->kc * isa->nc + 64);
    ok = c->scratch[t].apack && c->scratch[t].bpack;
  }
  if (!ok || !scratch_tiles(c, attention_tile_floats(c))) {
    ctx_dispose(c);
    return "out of memory for the packing buffers";
  }
  *out = c;
  return NULL;
}

#include "napi_args.h"

void register_weight_functions(napi_env env, napi_value exports);
void register_paged_functions(napi_env env, napi_value exports);

/* ------------------------------------------------------------------ context API */
static void ctx_handle_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  ctx_t *c = data;
  ctx_dispose(c); /* no-op when JS already disposed it; drops the owner's reference */
  ctx_unref(c);   /* the handle's own reference */
}

/* create(threads, isa, reserveBytes) -> context handle */
static napi_value js_create(napi_env env, napi_callback_info info) {
  napi_value v[3];
  size_t n = 3;
  napi_get_cb_info(env, info, &n, v, NULL, NULL);
  if (n < 3) return fail(env, "skymoe native: create(threads, isa, reserveBytes)");
  int32_t threads = 1;
  int64_t reserve = 0;
  char isa[32] = {0};
  size_t len = 0;
  if (napi_get_value_int32(env, v[0], &threads) != napi_ok || napi_get_value_int64(env, v[2], &reserve) != napi_ok ||
      napi_get_value_string_utf8(env, v[1], isa, sizeof isa, &len) != napi_ok || threads < 1 || reserve <= 0)
    return fail(env, "skymoe native: create(threads >= 1, isa: string, reserveBytes > 0)");
  ctx_t *c = NULL;
  const char *err = ctx_create(threads, isa, (size_t)reserve, &c);
  if (err) return fail(env, err);
  c->refs++; /* one for the JS handle, one for the owner (dropped by dispose) */
  napi_value h;
  if (napi_create_external(env, c, ctx_handle_finalize, NULL, &h) != napi_ok) {
    ctx_dispose(c);
    ctx_unref(c);
    return fail(env, "skymoe native: cannot create the context handle");
  }
  return h;
}

static void view_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  ctx_unref(hint);
}

/* view(ctx, bytes) -> ArrayBuffer over the first `bytes` of the region (no copy). */
static napi_value js_view(napi_env env, napi_callback_info info) {
  BEGIN(2)
  long bytes = I(&a, 1);
  CHECK()
  if (bytes <= 0 || (size_t)bytes > a.cx->reserved) return fail(env, "skymoe native: view length outside the reserved region");
  napi_value ab;
  if (napi_create_external_arraybuffer(env, a.cx->base, (size_t)bytes, view_finalize, a.cx, &ab) != napi_ok)
    return fail(env, "skymoe native: cannot create an external ArrayBuffer");
  a.cx->refs++;
  return ab;
}

static napi_value js_dispose(napi_env env, napi_callback_info info) {
  BEGIN(1)
  ctx_dispose(a.cx);
  return undefined(env);
}

static napi_value js_info(napi_env env, napi_callback_info info) {
  BEGIN(1)
  napi_value o, s, t, r;
  napi_create_object(env, &o);
  napi_create_string_utf8(env, a.cx->isa->name, NAPI_AUTO_LENGTH, &s);
  napi_create_int32(env, a.cx->threads, &t);
  napi_create_double(env, (double)a.cx->reserved, &r);
  napi_set_named_property(env, o, "isa", s);
  napi_set_named_property(env, o, "threads", t);
  napi_set_named_property(env, o, "reservedBytes", r);
  napi_value amx;
  napi_get_boolean(env, a.cx->amx != 0, &amx);
  napi_set_named_property(env, o, "amx", amx);
  return o;
}

/* setCompute(ctx, bf16) -> whether row-invariant products with bf16 / fp8 weights now run in bf16 on
   AMX (bf16 = 1; false when the CPU or the kernel does not allow AMX), or back in fp32 (bf16 = 0). */
static napi_value js_set_compute(napi_env env, napi_callback_info info) {
  BEGIN(2)
  long want = I(&a, 1);
  CHECK()
  int on = 0;
#if defined(SKYMOE_X86)
  if (want) on = amx_enable();
#endif
  a.cx->amx = on;
  napi_value r;
  napi_get_boolean(env, want ? on : 1, &r);
  return r;
}

/* detect() -> the best ISA this CPU supports. */
static napi_value js_detect(napi_env env, napi_callback_info info) {
  (void)info;
  const char *why = NULL;
  const isa_t *isa = isa_select(NULL, &why);
  napi_value s;
  napi_create_string_utf8(env, isa->name, NAPI_AUTO_LENGTH, &s);
  return s;
}

typedef struct {
  const isa_t *isa;
  long iters;
  double flops[256];
} probe_job;

static void probe_task(void *raw, int tid, int nt) {
  probe_job *j = raw;
  if (tid < 256) j->flops[tid] = j->isa->fma_probe(j->iters);
}

/* fmaProbe(ctx, iters) -> FLOPs done by all threads running FMA chains at once (JS times it). */
static napi_value js_fma_probe(napi_env env, napi_callback_info info) {
  BEGIN(2)
  long iters = I(&a, 1);
  CHECK()
  probe_job j = {a.cx->isa, iters, {0}};
  pool_run(a.cx->pool, probe_task, &j);
  double total = 0;
  for (int t = 0; t < a.cx->threads && t < 256; t++) total += j.flops[t];
  napi_value r;
  napi_create_double(env, total, &r);
  return r;
}

/* ------------------------------------------------------------------ kernels (Kernels order) */
static napi_value js_matmul(napi_env env, napi_callback_info info) {
  BEGIN(14)
  const float *x = F32(1), *y = F32(2);
  float *c = F32(3);
  long m = I(&a, 4), k = I(&a, 5), n = I(&a, 6);
  int ta = Bo(&a, 7), tb = Bo(&a, 8);
  long batch = I(&a, 9), sa = I(&a, 10), sb = I(&a, 11), sc = I(&a, 12);
  float beta = (float)F(&a, 13);
  CHECK()
  k_matmul(a.cx, x, y, c, m, k, n, ta, tb, batch, sa, sb, sc, beta);
  return undefined(env);
}

static napi_value js_grouped_matmul(napi_env env, napi_callback_info info) {
  BEGIN(9)
  int mode = (int)I(&a, 1);
  const float *x = F32(2), *w = F32(3);
  float *c = F32(4);
  long m = I(&a, 6), k = I(&a, 7);
  float beta = (float)F(&a, 8);
  CHECK()
  napi_typedarray_type type;
  size_t len = 0;
  void *data = NULL;
  if (napi_get_typedarray_info(env, a.v[5], &type, &len, &data, NULL, NULL) != napi_ok || type != napi_int32_array || len < 2)
    return fail(env, "skymoe native: groupedMatmul offsets must be an Int32Array of G + 1 entries");
  k_grouped_matmul(a.cx, mode, x, w, c, data, (long)len - 1, m, k, beta);
  return undefined(env);
}

static napi_value js_fill(napi_env env, napi_callback_info info) {
  BEGIN(5)
  void *o = P(&a, 1);
  long n = I(&a, 2);
  double v = F(&a, 3);
  int isint = Bo(&a, 4);
  CHECK()
  k_fill(a.cx, o, n, v, isint);
  return undefined(env);
}

static napi_value js_copy2d(napi_env env, napi_callback_info info) {
  BEGIN(7)
  const int32_t *s = I32(1);
  int32_t *d = I32(2);
  long r = I(&a, 3), c = I(&a, 4), ss = I(&a, 5), ds = I(&a, 6);
  CHECK()
  k_copy2d(a.cx, s, d, r, c, ss, ds);
  return undefined(env);
}

/* binary(ctx, op, a, b, out, d0..d3, sa0..sa3, sb0..sb3) */
static napi_value js_binary(napi_env env, napi_callback_info info) {
  BEGIN(17)
  int op = (int)I(&a, 1);
  const float *x = F32(2), *y = F32(3);
  float *o = F32(4);
  long sh[4], sa[4], sb[4];
  for (int i = 0; i < 4; i++) {
    sh[i] = I(&a, 5 + i);
    sa[i] = I(&a, 9 + i);
    sb[i] = I(&a, 13 + i);
  }
  CHECK()
  k_binary(a.cx, op, x, y, o, sh, sa, sb);
  return undefined(env);
}

static napi_value js_unary(napi_env env, napi_callback_info info) {
  BEGIN(5)
  int op = (int)I(&a, 1);
  const float *x = F32(2);
  float *y = F32(3);
  long n = I(&a, 4);
  CHECK()
  k_unary(a.cx, op, x, y, n);
  return undefined(env);
}

static napi_value js_unary_backward(napi_env env, napi_callback_info info) {
  BEGIN(7)
  int op = (int)I(&a, 1);
  const float *x = F32(2), *y = F32(3), *dy = F32(4);
  float *dx = F32(5);
  long n = I(&a, 6);
  CHECK()
  k_unary_backward(a.cx, op, x, y, dy, dx, n);
  return undefined(env);
}

static napi_value js_axpby(napi_env env, napi_callback_info info) {
  BEGIN(6)
  const float *x = F32(1);
  float *y = F32(2);
  long n = I(&a, 3);
  float al = (float)F(&a, 4), be = (float)F(&a, 5);
  CHECK()
  k_axpby(a.cx, x, y, n, al, be);
  return undefined(env);
}

/* reduceTo(ctx, g, out, d0..d3, o0..o3) */
static napi_value js_reduce_to(napi_env env, napi_callback_info info) {
  BEGIN(11)
  const float *g = F32(1);
  float *o = F32(2);
  long sh[4], os[4];
  for (int i = 0; i < 4; i++) {
    sh[i] = I(&a, 3 + i);
    os[i] = I(&a, 7 + i);
  }
  CHECK()
  if (!k_reduce_to(a.cx, g, o, sh, os)) return fail(env, "skymoe native: reduceTo: out of memory");
  return undefined(env);
}

static napi_value js_swiglu(napi_env env, napi_callback_info info) {
  BEGIN(5)
  const float *g = F32(1), *u = F32(2);
  float *y = F32(3);
  long n = I(&a, 4);
  CHECK()
  k_swiglu(a.cx, g, u, y, n);
  return undefined(env);
}

static napi_value js_swiglu_backward(napi_env env, napi_callback_info info) {
  BEGIN(7)
  const float *g = F32(1), *u = F32(2), *dy = F32(3);
  float *dg = F32(4), *du = F32(5);
  long n = I(&a, 6);
  CHECK()
  k_swiglu_backward(a.cx, g, u, dy, dg, du, n);
  return undefined(env);
}

static napi_value js_softmax(napi_env env, napi_callback_info info) {
  BEGIN(5)
  const float *x = F32(1);
  float *y = F32(2);
  long r = I(&a, 3), c = I(&a, 4);
  CHECK()
  k_softmax(a.cx, x, y, r, c);
  return undefined(env);
}

static napi_value js_softmax_backward(napi_env env, napi_callback_info info) {
  BEGIN(6)
  const float *y = F32(1), *dy = F32(2);
  float *dx = F32(3);
  long r = I(&a, 4), c = I(&a, 5);
  CHECK()
  k_softmax_backward(a.cx, y, dy, dx, r, c);
  return undefined(env);
}

static napi_value js_cross_entropy(napi_env env, napi_callback_info info) {
  BEGIN(8)
  const float *x = F32(1);
  const int32_t *t = I32(2);
  float *loss = F32(3), *lse = F32(4);
  long r = I(&a, 5), c = I(&a, 6), ig = I(&a, 7);
  CHECK()
  k_cross_entropy(a.cx, x, t, loss, lse, r, c, ig);
  return undefined(env);
}

static napi_value js_cross_entropy_backward(napi_env env, napi_callback_info info) {
  BEGIN(9)
  const float *x = F32(1);
  const int32_t *t = I32(2);
  const float *lse = F32(3);
  float *dx = F32(4);
  long r = I(&a, 5), c = I(&a, 6), ig = I(&a, 7);
  float sc = (float)F(&a, 8);
  CHECK()
  k_cross_entropy_backward(a.cx, x, t, lse, dx, r, c, ig, sc);
  return undefined(env);
}

static napi_value js_rmsnorm(napi_env env, napi_callback_info info) {
  BEGIN(8)
  const float *x = F32(1), *w = F32(2);
  float *y = F32(3), *rs = F32(4);
  long r = I(&a, 5), c = I(&a, 6);
  float eps = (float)F(&a, 7);
  CHECK()
  k_rmsnorm(a.cx, x, w, y, rs, r, c, eps);
  return undefined(env);
}

static napi_value js_rmsnorm_backward(napi_env env, napi_callback_info info) {
  BEGIN(9)
  const float *x = F32(1), *w = F32(2), *rs = F32(3), *dy = F32(4);
  float *dx = F32(5), *dw = F32(6);
  long r = I(&a, 7), c = I(&a, 8);
  CHECK()
  if (!k_rmsnorm_backward(a.cx, x, w, rs, dy, dx, dw, r, c)) return fail(env, "skymoe native: rmsnormBackward: out of memory");
  return undefined(env);
}

static napi_value js_sum_rows(napi_env env, napi_callback_info info) {
  BEGIN(5)
  const float *x = F32(1);
  float *y = F32(2);
  long r = I(&a, 3), c = I(&a, 4);
  CHECK()
  k_sum_rows(a.cx, x, y, r, c);
  return undefined(env);
}

static napi_value js_std_rows(napi_env env, napi_callback_info info) {
  BEGIN(6)
  const float *x = F32(1);
  float *y = F32(2);
  long r = I(&a, 3), c = I(&a, 4);
  int ub = Bo(&a, 5);
  CHECK()
  k_std_rows(a.cx, x, y, r, c, ub);
  return undefined(env);
}

static napi_value js_std_rows_backward(napi_env env, napi_callback_info info) {
  BEGIN(8)
  const float *x = F32(1), *sd = F32(2), *dy = F32(3);
  float *dx = F32(4);
  long r = I(&a, 5), c = I(&a, 6);
  int ub = Bo(&a, 7);
  CHECK()
  k_std_rows_backward(a.cx, x, sd, dy, dx, r, c, ub);
  return undefined(env);
}

static napi_value js_topk(napi_env env, napi_callback_info info) {
  BEGIN(7)
  const float *x = F32(1);
  float *v = F32(2);
  int32_t *ix = I32(3);
  long r = I(&a, 4), c = I(&a, 5), k = I(&a, 6);
  CHECK()
  k_topk(a.cx, x, v, ix, r, c, k);
  return undefined(env);
}

static napi_value js_transpose(napi_env env, napi_callback_info info) {
  BEGIN(6)
  const float *x = F32(1);
  float *y = F32(2);
  long b = I(&a, 3), r = I(&a, 4), c = I(&a, 5);
  CHECK()
  k_transpose(a.cx, x, y, b, r, c);
  return undefined(env);
}

/* gatherRows, scatterAddRows, scatterRows(ctx, rows, ids, rows, n, cols): one binding, the kernel is its data. */
typedef void (*rows_by_id_fn)(ctx_t *, const float *, const int32_t *, float *, long, long);

static napi_value js_rows_by_id(napi_env env, napi_callback_info info) {
  BEGIN(6)
  void *kernel = NULL;
  size_t none = 0;
  napi_get_cb_info(env, info, &none, NULL, NULL, &kernel);
  const float *s = F32(1);
  const int32_t *ids = I32(2);
  float *d = F32(3);
  long n = I(&a, 4), c = I(&a, 5);
  CHECK()
  ((rows_by_id_fn)kernel)(a.cx, s, ids, d, n, c);
  return undefined(env);
}

static napi_value js_rope(napi_env env, napi_callback_info info) {
  BEGIN(10)
  const float *x = F32(1);
  float *y = F32(2);
  const float *cs = F32(3), *sn = F32(4);
  const int32_t *pos = I32(5);
  long nt = I(&a, 6), h = I(&a, 7), d = I(&a, 8);
  int inv = Bo(&a, 9);
  CHECK()
  k_rope(a.cx, x, y, cs, sn, pos, nt, h, d, inv);
  return undefined(env);
}

static napi_value js_attention(napi_env env, napi_callback_info info) {
  BEGIN(15)
  const float *q = F32(1), *k = F32(2), *v = F32(3);
  float *o = F32(4), *lse = F32(5);
  long B = I(&a, 6), Tq = I(&a, 7), Tk = I(&a, 8), H = I(&a, 9), Hkv = I(&a, 10), D = I(&a, 11), kvbs = I(&a, 12),
       qoff = I(&a, 13);
  float scale = (float)F(&a, 14);
  CHECK()
  if (Hkv <= 0 || H % Hkv != 0) return fail(env, "skymoe native: attention: H must be a multiple of Hkv");
  k_attention(a.cx, q, k, v, o, lse, B, Tq, Tk, H, Hkv, D, kvbs, qoff, scale);
  return undefined(env);
}

static napi_value js_attention_backward(napi_env env, napi_callback_info info) {
  BEGIN(19)
  const float *q = F32(1), *k = F32(2), *v = F32(3), *o = F32(4), *lse = F32(5), *dout = F32(6);
  float *dq = F32(7), *dk = F32(8), *dv = F32(9);
  long B = I(&a, 10), Tq = I(&a, 11), Tk = I(&a, 12), H = I(&a, 13), Hkv = I(&a, 14), D = I(&a, 15),
       kvbs = I(&a, 16), qoff = I(&a, 17);
  float scale = (float)F(&a, 18);
  CHECK()
  if (Hkv <= 0 || H % Hkv != 0) return fail(env, "skymoe native: attentionBackward: H must be a multiple of Hkv");
  if (!k_attention_backward(a.cx, q, k, v, o, lse, dout, dq, dk, dv, B, Tq, Tk, H, Hkv, D, kvbs, qoff, scale))
    return fail(env, "skymoe native: attentionBackward: out of memory");
  return undefined(env);
}

static napi_value js_sum_squares(napi_env env, napi_callback_info info) {
  BEGIN(3)
  const float *x = F32(1);
  long n = I(&a, 2);
  CHECK()
  napi_value r;
  napi_create_double(env, k_sum_squares(a.cx, x, n), &r);
  return r;
}

static napi_value js_adamw(napi_env env, napi_callback_info info) {
  BEGIN(13)
  float *p = F32(1);
  const float *g = F32(2);
  float *m = F32(3), *v = F32(4);
  long n = I(&a, 5);
  float lr = (float)F(&a, 6), b1 = (float)F(&a, 7), b2 = (float)F(&a, 8), eps = (float)F(&a, 9),
        wd = (float)F(&a, 10), bc1 = (float)F(&a, 11), bc2 = (float)F(&a, 12);
  CHECK()
  k_adamw(a.cx, p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2);
  return undefined(env);
}

/* ------------------------------------------------------------------ module */
NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"create", js_create}, {"view", js_view}, {"dispose", js_dispose}, {"info", js_info}, {"detect", js_detect},
      {"fmaProbe", js_fma_probe}, {"setCompute", js_set_compute},
      {"matmul", js_matmul}, {"groupedMatmul", js_grouped_matmul}, {"fill", js_fill}, {"copy2d", js_copy2d},
      {"binary", js_binary}, {"unary", js_unary}, {"unaryBackward", js_unary_backward}, {"axpby", js_axpby},
      {"reduceTo", js_reduce_to}, {"swiglu", js_swiglu}, {"swigluBackward", js_swiglu_backward},
      {"softmax", js_softmax}, {"softmaxBackward", js_softmax_backward}, {"crossEntropy", js_cross_entropy},
      {"crossEntropyBackward", js_cross_entropy_backward}, {"rmsnorm", js_rmsnorm},
      {"rmsnormBackward", js_rmsnorm_backward}, {"sumRows", js_sum_rows}, {"stdRows", js_std_rows},
      {"stdRowsBackward", js_std_rows_backward}, {"topk", js_topk}, {"transpose", js_transpose},
      {"rope", js_rope},
      {"attention", js_attention}, {"attentionBackward", js_attention_backward}, {"sumSquares", js_sum_squares},
      {"adamw", js_adamw},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  static const struct {
    const char *name;
    rows_by_id_fn kernel;
  } rows[] = {{"gatherRows", k_gather_rows}, {"scatterAddRows", k_scatter_add_rows}, {"scatterRows", k_scatter_rows}};
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    napi_value f;
    napi_create_function(env, rows[i].name, NAPI_AUTO_LENGTH, js_rows_by_id, (void *)rows[i].kernel, &f);
    napi_set_named_property(env, exports, rows[i].name, f);
  }
  register_weight_functions(env, exports);
  register_paged_functions(env, exports);
  return exports;
}
