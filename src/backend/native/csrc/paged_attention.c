/*
 * Paged attention (Kernels.pagedAttention): every query row of a continuous batch, each against its
 * own sequence's keys in the paged KV cache. Consecutive rows of one sequence (a prefill chunk) form
 * groups of up to PAGED_ROWS that read each key row once; work units are (kv head, group), handed
 * out dynamically to the pool's threads in that order (a chunk's groups then find the head's keys
 * in cache). A unit runs the ISA's paged_unit (paged_body.h), where each row's result depends on
 * nothing but its own inputs, so the grouping, the thread and the order change no bit.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include "skymoe.h"

typedef struct {
  ctx_t *cx;
  const float *q, *k, *v;
  float *o;
  long H, Hkv, D, block, max_blocks, groups;
  float scale;
  const int32_t *row_seq, *row_len, *tables;
  const long *first; /* first row of each group, groups + 1 entries */
  atomic_long next;
} paged_job;

static void paged_task(void *raw, int tid, int nt) {
  (void)nt;
  paged_job *j = raw;
  const long G = j->H / j->Hkv, units = j->groups * j->Hkv;
  for (;;) {
    const long u = atomic_fetch_add(&j->next, 1);
    if (u >= units) return;
    const long gi = u / j->Hkv, hk = u % j->Hkv, i = j->first[gi];
    const paged_unit_t unit = {
        .q = j->q + (i * j->H + hk * G) * j->D, .k = j->k + hk * j->D, .v = j->v + hk * j->D,
        .o = j->o + (i * j->H + hk * G) * j->D, .table = j->tables + (long)j->row_seq[i] * j->max_blocks,
        .lens = j->row_len + i, .rows = j->first[gi + 1] - i, .G = G, .D = j->D, .ldq = j->H * j->D,
        .ldkv = j->Hkv * j->D, .block = j->block, .scale = j->scale, .scratch = j->cx->scratch[tid].tile,
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
  long *first = malloc((size_t)(n + 1) * sizeof(long));
  if (!first) return 0;
  const long G = H / Hkv;
  long groups = 0, keys = 0;
  size_t need = 0;
  for (long i = 0; i < n;) {
    long longest = 0, e = i;
    for (; e < n && e - i < PAGED_ROWS && row_seq[e] == row_seq[i]; e++) {
      longest = row_len[e] > longest ? row_len[e] : longest;
      keys += row_len[e];
    }
    const size_t floats = paged_unit_floats((e - i) * G, D, longest);
    need = floats > need ? floats : need;
    first[groups++] = i;
    i = e;
  }
  first[groups] = n;
  if (!scratch_tiles(cx, need)) {
    free(first);
    return 0;
  }
  paged_job j = {cx, q, k, v, o, H, Hkv, D, block, max_blocks, groups, scale, row_seq, row_len, tables, first, 0};
  atomic_init(&j.next, 0);
  if (cx->threads == 1 || groups * Hkv == 1 || 2 * keys * H * D < PARALLEL_MIN_MACS) paged_task(&j, 0, 1);
  else pool_run(cx->pool, paged_task, &j);
  free(first);
  return 1;
}
