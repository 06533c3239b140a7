/*
 * Paged attention (Kernels.pagedAttention): every query row of a continuous batch, each against its
 * own sequence's keys in the paged KV cache. Work units are (query row, kv head), handed out
 * dynamically to the pool's threads; a unit runs the ISA's paged_unit (paged_body.h), whose result
 * depends on nothing but the row's inputs, so which thread runs it and in what order changes no bit.
 */
#include <stdatomic.h>
#include "skymoe.h"

typedef struct {
  ctx_t *cx;
  const float *q, *k, *v;
  float *o;
  long n, H, Hkv, D, block, max_blocks;
  float scale;
  const int32_t *row_seq, *row_len, *tables;
  atomic_long next;
} paged_job;

static void paged_task(void *raw, int tid, int nt) {
  (void)nt;
  paged_job *j = raw;
  const long G = j->H / j->Hkv, units = j->n * j->Hkv;
  for (;;) {
    const long u = atomic_fetch_add(&j->next, 1);
    if (u >= units) return;
    const long i = u / j->Hkv, hk = u % j->Hkv;
    const paged_unit_t unit = {
        .q = j->q + (i * j->H + hk * G) * j->D, .k = j->k + hk * j->D, .v = j->v + hk * j->D,
        .o = j->o + (i * j->H + hk * G) * j->D, .table = j->tables + (long)j->row_seq[i] * j->max_blocks,
        .G = G, .D = j->D, .ldkv = j->Hkv * j->D, .len = j->row_len[i], .block = j->block, .scale = j->scale,
        .scratch = j->cx->scratch[tid].tile,
    };
    j->cx->isa->paged_unit(&unit);
  }
}

/* Below this many multiply-adds (scores and values) one thread is faster than waking the others. */
#define PARALLEL_MIN_MACS (1L << 16)

int k_paged_attention(ctx_t *cx, const float *q, const float *k, const float *v, float *o, long n, long H, long Hkv,
                      long D, float scale, long block, const int32_t *row_seq, const int32_t *row_len,
                      const int32_t *tables, long max_blocks) {
  if (n <= 0 || H <= 0) return 1;
  long longest = 0, keys = 0;
  for (long i = 0; i < n; i++) {
    longest = row_len[i] > longest ? row_len[i] : longest;
    keys += row_len[i];
  }
  if (!scratch_tiles(cx, paged_unit_floats(H / Hkv, D, longest))) return 0;
  paged_job j = {cx, q, k, v, o, n, H, Hkv, D, block, max_blocks, scale, row_seq, row_len, tables, 0};
  atomic_init(&j.next, 0);
  if (cx->threads == 1 || n * Hkv == 1 || 2 * keys * H * D < PARALLEL_MIN_MACS) paged_task(&j, 0, 1);
  else pool_run(cx->pool, paged_task, &j);
  return 1;
}
