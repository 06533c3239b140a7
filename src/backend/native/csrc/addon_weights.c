/*
 * Node-API binding of the weight side of the native backend: files mapped read-only (checkpoint
 * shards whose tensors the kernels read in place) and the kernels over weights in a storage dtype.
 *
 * A mapped file gets no heap space and no copy: JS receives the offset of its first byte from the
 * context's base, the same kind of pointer as a heap offset (it may be negative or past the heap:
 * kernels only ever add it to base). Every pointer a weight kernel receives is checked to lie in
 * the heap or in one mapped file, for the whole extent the kernel will read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "napi_args.h"

int ctx_range_ok(const ctx_t *c, long off, size_t bytes) {
  if (off >= 0 && (size_t)off <= c->reserved && bytes <= c->reserved - (size_t)off) return 1;
  const char *p = c->base + off;
  for (int i = 0; i < c->nmaps; i++) {
    const file_map_t *m = &c->maps[i];
    if (p >= m->addr && p <= m->addr + m->len && bytes <= (size_t)(m->addr + m->len - p)) return 1;
  }
  return 0;
}

void ctx_unmap_all(ctx_t *c) {
  for (int i = 0; i < c->nmaps; i++) munmap(c->maps[i].addr, c->maps[i].len);
  free(c->maps);
  c->maps = NULL;
  c->nmaps = c->mapcap = 0;
}

/* mapFile(ctx, path) -> { offset, bytes }: the file mapped read-only, shared with the page cache. */
static napi_value js_map_file(napi_env env, napi_callback_info info) {
  BEGIN(2)
  char path[4096];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, a.v[1], path, sizeof path, &len) != napi_ok || len >= sizeof path - 1)
    return fail(env, "skymoe native: mapFile(path): path must be a string shorter than 4096 bytes");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    char msg[4200];
    snprintf(msg, sizeof msg, "%s: cannot open for mapping (%s)", path, strerror(errno));
    return fail(env, msg);
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size <= 0) {
    close(fd);
    return fail(env, "skymoe native: mapFile: cannot stat the file, or it is empty");
  }
  void *addr = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd); /* the mapping keeps the file */
  if (addr == MAP_FAILED) {
    char msg[4200];
    snprintf(msg, sizeof msg, "%s: mmap failed (%s)", path, strerror(errno));
    return fail(env, msg);
  }
  if (a.cx->nmaps == a.cx->mapcap) {
    int cap = a.cx->mapcap ? 2 * a.cx->mapcap : 8;
    file_map_t *m = realloc(a.cx->maps, (size_t)cap * sizeof *m);
    if (!m) {
      munmap(addr, (size_t)st.st_size);
      return fail(env, "skymoe native: mapFile: out of memory");
    }
    a.cx->maps = m;
    a.cx->mapcap = cap;
  }
  a.cx->maps[a.cx->nmaps++] = (file_map_t){addr, (size_t)st.st_size};
  napi_value o, off, bytes;
  napi_create_object(env, &o);
  napi_create_int64(env, (int64_t)((char *)addr - a.cx->base), &off);
  napi_create_double(env, (double)st.st_size, &bytes);
  napi_set_named_property(env, o, "offset", off);
  napi_set_named_property(env, o, "bytes", bytes);
  return o;
}

/* unmapFile(ctx, offset): unmap the file mapped at that offset (a no-op when it is not mapped). */
static napi_value js_unmap_file(napi_env env, napi_callback_info info) {
  BEGIN(2)
  long off = I(&a, 1);
  CHECK()
  char *p = a.cx->base + off;
  for (int i = 0; i < a.cx->nmaps; i++) {
    if (a.cx->maps[i].addr != p) continue;
    munmap(p, a.cx->maps[i].len);
    a.cx->maps[i] = a.cx->maps[--a.cx->nmaps];
    break;
  }
  return undefined(env);
}

/* A weight from (ptr, dtype, scale, rowScale or NaN) at argument i.., checked for `rows` x `cols`. */
static int wref_at(args_t *a, int i, long rows, long cols, wref_t *w) {
  long off = I(a, i), dtype = I(a, i + 1);
  double scale = F(a, i + 2), rs = F(a, i + 3);
  if (a->bad || dtype < 0 || dtype > WD_F8E4M3 || rows < 0 || cols < 0) return 0;
  if (!ctx_range_ok(a->cx, off, (size_t)(rows * cols * wd_bytes((int)dtype)))) return 0;
  w->p = (const uint8_t *)(a->cx->base + off);
  w->dtype = (int)dtype;
  w->scale = (float)scale;
  w->row_scale = NULL;
  if (!isnan(rs)) {
    long roff = (long)rs;
    if (!ctx_range_ok(a->cx, roff, (size_t)rows * sizeof(float))) return 0;
    w->row_scale = (const float *)(a->cx->base + roff);
  }
  return 1;
}

#define WCHECK(ok) \
  if (!(ok) || a.bad) return fail(env, "skymoe native: bad weight argument (dtype, or a pointer outside the heap and the mapped files)");

/* linearW(ctx, x, wPtr, wDtype, wScale, wRowScale, y, m, k, n, rowInvariant) */
static napi_value js_linear_w(napi_env env, napi_callback_info info) {
  BEGIN(11)
  long m = I(&a, 7), k = I(&a, 8), n = I(&a, 9);
  int invariant = Bo(&a, 10);
  const float *x = F32(1);
  float *y = F32(6);
  wref_t w;
  WCHECK(wref_at(&a, 2, n, k, &w))
  k_linear_w(a.cx, x, &w, y, m, k, n, invariant);
  return undefined(env);
}

/* groupedLinearW(ctx, x, table Float64Array [ptr, dtype, scale, rowScale] x G, y, offsets Int32Array, n, k, rowInvariant) */
static napi_value js_grouped_linear_w(napi_env env, napi_callback_info info) {
  BEGIN(8)
  const float *x = F32(1);
  float *y = F32(3);
  long n = I(&a, 5), k = I(&a, 6);
  int invariant = Bo(&a, 7);
  CHECK()
  napi_typedarray_type tt, ot;
  size_t tlen = 0, olen = 0;
  void *tdata = NULL, *odata = NULL;
  if (napi_get_typedarray_info(env, a.v[2], &tt, &tlen, &tdata, NULL, NULL) != napi_ok || tt != napi_float64_array ||
      napi_get_typedarray_info(env, a.v[4], &ot, &olen, &odata, NULL, NULL) != napi_ok || ot != napi_int32_array ||
      olen < 2 || tlen != 4 * (olen - 1))
    return fail(env, "skymoe native: groupedLinearW needs a Float64Array of 4 numbers per group and Int32Array offsets of G + 1");
  long groups = (long)olen - 1;
  const double *t = tdata;
  wref_t stack[64];
  wref_t *ws = groups <= 64 ? stack : malloc((size_t)groups * sizeof *ws);
  if (!ws) return fail(env, "skymoe native: groupedLinearW: out of memory");
  int ok = 1;
  for (long g = 0; g < groups && ok; g++) {
    long off = (long)t[4 * g], dtype = (long)t[4 * g + 1];
    ok = dtype >= 0 && dtype <= WD_F8E4M3 && ctx_range_ok(a.cx, off, (size_t)(n * k * wd_bytes((int)dtype)));
    if (!ok) break;
    ws[g] = (wref_t){(const uint8_t *)(a.cx->base + off), (int)dtype, (float)t[4 * g + 2], NULL};
    if (!isnan(t[4 * g + 3])) {
      long roff = (long)t[4 * g + 3];
      ok = ctx_range_ok(a.cx, roff, (size_t)n * sizeof(float));
      ws[g].row_scale = (const float *)(a.cx->base + roff);
    }
  }
  if (ok) k_grouped_linear_w(a.cx, x, ws, y, odata, groups, n, k, invariant);
  if (ws != stack) free(ws);
  WCHECK(ok)
  return undefined(env);
}

/* gatherRowsW(ctx, wPtr, wDtype, wScale, wRowScale, rows, ids, out, count, cols) */
static napi_value js_gather_rows_w(napi_env env, napi_callback_info info) {
  BEGIN(10)
  long rows = I(&a, 5), count = I(&a, 8), cols = I(&a, 9);
  const int32_t *ids = I32(6);
  float *out = F32(7);
  wref_t w;
  WCHECK(wref_at(&a, 1, rows, cols, &w))
  for (long i = 0; i < count; i++)
    if (ids[i] < 0 || ids[i] >= rows) return fail(env, "skymoe native: gatherRowsW: an id is outside the weight's rows");
  k_gather_rows_w(a.cx, &w, ids, out, count, cols);
  return undefined(env);
}

/* dequantize(ctx, wPtr, wDtype, wScale, wRowScale, out, rows, cols) */
static napi_value js_dequantize(napi_env env, napi_callback_info info) {
  BEGIN(8)
  long rows = I(&a, 6), cols = I(&a, 7);
  float *out = F32(5);
  wref_t w;
  WCHECK(wref_at(&a, 1, rows, cols, &w))
  k_dequantize_w(a.cx, &w, out, rows, cols);
  return undefined(env);
}

/*
 * memProbe(ctx, bytes, passes) -> GB/s: the median rate at which all threads stream-read a buffer of
 * `bytes` (make it larger than the last-level cache) over `passes` timed passes after one warm-up.
 */
static napi_value js_mem_probe(napi_env env, napi_callback_info info) {
  BEGIN(3)
  long bytes = I(&a, 1), passes = I(&a, 2);
  CHECK()
  if (bytes < 4096 || passes < 1 || passes > 1000) return fail(env, "skymoe native: memProbe(bytes >= 4096, passes in [1, 1000])");
  long n = (bytes / 4) / 64 * 64;
  float *buf = NULL;
  if (posix_memalign((void **)&buf, 2 << 20, (size_t)n * sizeof(float)) != 0) return fail(env, "skymoe native: memProbe: out of memory");
#ifdef MADV_HUGEPAGE
  madvise(buf, (size_t)n * sizeof(float), MADV_HUGEPAGE); /* as the heap: the fewest TLB misses, the highest rate */
#endif
  for (long i = 0; i < n; i++) buf[i] = 1.0f;
  volatile double sink = k_stream_read(a.cx, buf, n);
  double *rates = malloc((size_t)passes * sizeof(double));
  for (long p = 0; rates && p < passes; p++) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sink += k_stream_read(a.cx, buf, n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    rates[p] = (double)n * 4.0 / s / 1e9;
  }
  (void)sink;
  free(buf);
  if (!rates) return fail(env, "skymoe native: memProbe: out of memory");
  for (long i = 1; i < passes; i++) /* insertion sort: passes is small */
    for (long k = i; k > 0 && rates[k - 1] > rates[k]; k--) {
      double t = rates[k];
      rates[k] = rates[k - 1];
      rates[k - 1] = t;
    }
  double median = rates[passes / 2];
  free(rates);
  napi_value r;
  napi_create_double(env, median, &r);
  return r;
}

void register_weight_functions(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"mapFile", js_map_file}, {"unmapFile", js_unmap_file}, {"linearW", js_linear_w},
      {"groupedLinearW", js_grouped_linear_w}, {"gatherRowsW", js_gather_rows_w}, {"dequantize", js_dequantize},
      {"memProbe", js_mem_probe},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
}
