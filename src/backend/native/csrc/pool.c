/*
 * A persistent thread pool: threads-1 workers plus the calling thread run every job together.
 *
 * Dispatch bumps a generation counter; idle workers spin on it for ~100 us (a training step issues
 * kernels back to back, so most jobs arrive while they still spin) and then sleep on a condition
 * variable, so an idle backend costs no CPU. The caller runs its share, then spins until the
 * workers report done (their shares are equal, so that wait is short).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include "skymoe.h"

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

struct pool {
  int n;
  pthread_t *th;
  atomic_uint gen;
  atomic_int pending;
  atomic_int stop;
  task_fn fn;
  void *arg;
  pthread_mutex_t mu;
  pthread_cond_t cv;
};

typedef struct {
  pool_t *p;
  int tid;
} worker_arg;

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

static void *worker(void *raw) {
  worker_arg wa = *(worker_arg *)raw;
  free(raw);
  pool_t *p = wa.p;
  unsigned seen = 0;
  for (;;) {
    double t0 = now_us();
    unsigned spins = 0;
    while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen && !atomic_load(&p->stop)) {
      cpu_relax();
      if ((++spins & 255) == 0 && now_us() - t0 > 100.0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
      }
    }
    if (atomic_load(&p->stop)) return NULL;
    seen = atomic_load_explicit(&p->gen, memory_order_acquire);
    p->fn(p->arg, wa.tid, p->n);
    atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
  }
}

pool_t *pool_create(int threads) {
  pool_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->n = threads < 1 ? 1 : threads;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  p->th = calloc((size_t)p->n, sizeof(pthread_t));
  if (!p->th) {
    free(p);
    return NULL;
  }
  for (int t = 1; t < p->n; t++) {
    worker_arg *wa = malloc(sizeof *wa);
    if (wa) {
      wa->p = p;
      wa->tid = t;
    }
    if (!wa || pthread_create(&p->th[t], NULL, worker, wa) != 0) {
      free(wa);
      p->n = t; /* run with the threads that did start */
      break;
    }
  }
  return p;
}

int pool_threads(const pool_t *p) { return p->n; }

void pool_run(pool_t *p, task_fn fn, void *arg) {
  if (p->n == 1) {
    fn(arg, 0, 1);
    return;
  }
  p->fn = fn;
  p->arg = arg;
  atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  fn(arg, 0, p->n);
  unsigned spins = 0;
  while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
    cpu_relax();
    if (++spins > 4096) sched_yield(); /* a worker was descheduled: give it the core */
  }
}

void pool_destroy(pool_t *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->stop, 1);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (int t = 1; t < p->n; t++) pthread_join(p->th[t], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->th);
  free(p);
}
