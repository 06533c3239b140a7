/*
 * Node-API binding of paged attention. The host arrays (rowSeq, rowLen, blockTables) are read in
 * place as Int32Arrays and checked here, so the kernel never reads outside the heap: every sequence
 * id names a row of blockTables, every length is in [1, maxBlocks * blockSize], every block a row
 * uses is >= 0, and the slots of the largest one lie in the heap for both caches, as do q and o.
 */
#include <stdio.h>
#include "napi_args.h"

/* The data of an Int32Array argument, or NULL. */
static const int32_t *int32s(napi_env env, napi_value v, size_t *len) {
  napi_typedarray_type type;
  void *data = NULL;
  if (napi_get_typedarray_info(env, v, &type, len, &data, NULL, NULL) != napi_ok || type != napi_int32_array) return NULL;
  return data;
}

/* NULL when the batch is well formed, else what is wrong (in msg). */
static const char *check_batch(const int32_t *seq, const int32_t *len, const int32_t *tables, long n, size_t tlen,
                               long block, long max_blocks, long *max_block_id, char *msg, size_t cap) {
  const long seqs = (long)tlen / max_blocks;
  *max_block_id = -1;
  for (long i = 0; i < n; i++) {
    if (seq[i] < 0 || seq[i] >= seqs) {
      snprintf(msg, cap, "skymoe native: pagedAttention: rowSeq[%ld] = %d has no block table (%ld sequences)", i, seq[i], seqs);
      return msg;
    }
    if (len[i] < 1 || len[i] > max_blocks * block) {
      snprintf(msg, cap, "skymoe native: pagedAttention: rowLen[%ld] = %d is outside [1, %ld]", i, len[i], max_blocks * block);
      return msg;
    }
    const int32_t *t = tables + (long)seq[i] * max_blocks;
    for (long b = 0; b < (len[i] + block - 1) / block; b++) {
      if (t[b] < 0) {
        snprintf(msg, cap, "skymoe native: pagedAttention: sequence %d block %ld is %d", seq[i], b, t[b]);
        return msg;
      }
      if (t[b] > *max_block_id) *max_block_id = t[b];
    }
  }
  return NULL;
}

/* pagedAttention(ctx, q, kCache, vCache, o, n, H, Hkv, D, scale, blockSize, rowSeq, rowLen, blockTables, maxBlocks) */
static napi_value js_paged_attention(napi_env env, napi_callback_info info) {
  BEGIN(15)
  const long qoff = I(&a, 1), koff = I(&a, 2), voff = I(&a, 3), ooff = I(&a, 4);
  const long n = I(&a, 5), H = I(&a, 6), Hkv = I(&a, 7), D = I(&a, 8), block = I(&a, 10), max_blocks = I(&a, 14);
  const float scale = (float)F(&a, 9);
  CHECK()
  if (n < 0 || H <= 0 || Hkv <= 0 || H % Hkv != 0 || D <= 0 || block <= 0 || max_blocks <= 0)
    return fail(env, "skymoe native: pagedAttention: needs n >= 0, H a multiple of Hkv, and D, blockSize, maxBlocks >= 1");
  size_t slen = 0, llen = 0, tlen = 0;
  const int32_t *seq = int32s(env, a.v[11], &slen), *len = int32s(env, a.v[12], &llen), *tables = int32s(env, a.v[13], &tlen);
  if (!seq || !len || !tables || slen < (size_t)n || llen < (size_t)n || tlen % (size_t)max_blocks != 0)
    return fail(env, "skymoe native: pagedAttention: rowSeq, rowLen (n each) and blockTables (sequences x maxBlocks) must be Int32Arrays");
  char msg[256];
  long max_block_id;
  if (check_batch(seq, len, tables, n, tlen, block, max_blocks, &max_block_id, msg, sizeof msg)) return fail(env, msg);
  const size_t rows = (size_t)(n * H * D) * sizeof(float), cache = (size_t)((max_block_id + 1) * block * Hkv * D) * sizeof(float);
  if (!ctx_range_ok(a.cx, qoff, rows) || !ctx_range_ok(a.cx, ooff, rows) || !ctx_range_ok(a.cx, koff, cache) ||
      !ctx_range_ok(a.cx, voff, cache))
    return fail(env, "skymoe native: pagedAttention: q, o or the slots of the caches lie outside the heap");
  if (!k_paged_attention(a.cx, (const float *)(a.cx->base + qoff), (const float *)(a.cx->base + koff),
                         (const float *)(a.cx->base + voff), (float *)(a.cx->base + ooff), n, H, Hkv, D, scale, block, seq,
                         len, tables, max_blocks))
    return fail(env, "skymoe native: pagedAttention: out of memory");
  return undefined(env);
}

void register_paged_functions(napi_env env, napi_value exports) {
  napi_value f;
  napi_create_function(env, "pagedAttention", NAPI_AUTO_LENGTH, js_paged_attention, NULL, &f);
  napi_set_named_property(env, exports, "pagedAttention", f);
}
