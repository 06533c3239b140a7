/*
 * Node-API argument plumbing shared by the binding files (addon.c, addon_weights.c): argument 0 of
 * every call is the context; numbers, booleans and heap offsets are read with a sticky `bad` flag
 * that CHECK() turns into one JS exception.
 */
#ifndef SKYMOE_NAPI_ARGS_H
#define SKYMOE_NAPI_ARGS_H
#include <node_api.h>
#include <stdbool.h>
#include "skymoe.h"

#define MAX_ARGS 24
typedef struct {
  napi_env env;
  napi_value v[MAX_ARGS];
  size_t n;
  ctx_t *cx;
  int bad;
} args_t;

static inline napi_value fail(napi_env env, const char *msg) {
  napi_throw_error(env, "ERR_SKYMOE_NATIVE", msg);
  return NULL;
}

/* Parse the call; argument 0 is the context. Returns 0 (after throwing) when unusable. */
static inline int args(napi_env env, napi_callback_info info, args_t *a, size_t need) {
  a->env = env;
  a->n = MAX_ARGS;
  a->bad = 0;
  if (napi_get_cb_info(env, info, &a->n, a->v, NULL, NULL) != napi_ok || a->n < need) {
    fail(env, "skymoe native: wrong number of arguments");
    return 0;
  }
  void *p = NULL;
  if (napi_get_value_external(env, a->v[0], &p) != napi_ok || !p) {
    fail(env, "skymoe native: argument 0 is not a context");
    return 0;
  }
  a->cx = p;
  if (a->cx->disposed) {
    fail(env, "skymoe native: the backend was disposed");
    return 0;
  }
  return 1;
}

static inline long I(args_t *a, int i) {
  int64_t v = 0;
  if (napi_get_value_int64(a->env, a->v[i], &v) != napi_ok) a->bad = 1;
  return (long)v;
}

static inline double F(args_t *a, int i) {
  double v = 0;
  if (napi_get_value_double(a->env, a->v[i], &v) != napi_ok) a->bad = 1;
  return v;
}

static inline int Bo(args_t *a, int i) {
  bool v = false;
  if (napi_get_value_bool(a->env, a->v[i], &v) != napi_ok) a->bad = 1;
  return v;
}

/* A heap byte offset -> pointer; offsets outside the region mark the call bad. */
static inline void *P(args_t *a, int i) {
  long off = I(a, i);
  if (off < 0 || (size_t)off >= a->cx->reserved) a->bad = 1;
  return a->cx->base + (off < 0 ? 0 : off);
}

#define F32(i) ((float *)P(&a, i))
#define I32(i) ((int32_t *)P(&a, i))
#define BEGIN(need)                                                                                \
  args_t a;                                                                                        \
  if (!args(env, info, &a, need)) return NULL;
#define CHECK()                                                                                    \
  if (a.bad) return fail(env, "skymoe native: bad argument (not a number, or a pointer outside the heap)");

static inline napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

#endif
