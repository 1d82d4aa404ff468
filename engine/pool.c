/* pool.c — persistent, pinned engine threads that split one forward pass between them.
 *
 * DESIGN: ufb_pool_run() hands out the tasks of one phase through an atomic counter; the
 * calling thread works too, then waits until every task is done (a barrier between phases,
 * as ggml does). Threads spin briefly on the phase counter before sleeping on a condition
 * variable: a system call costs about as much as a whole FFF layer for one token, so
 * back-to-back phases must not go through the kernel (../shared/docs/perf-notes.md).
 * A pool of size 1 runs every task inline, in order: deterministic, no threads.
 * Results never depend on the pool size: each task writes its own rows/columns and every
 * kernel computes an element the same way whoever runs it.
 *
 * Tasks are claimed from one atomic word holding (phase, task count, next task): a claim
 * succeeds only while that phase still has tasks, so a thread that is late for a phase can
 * never take a task of the next one, and the fn/arg it read are the phase's own (the next
 * phase is published only after every task of this one was claimed). Found by TSan: with the
 * count kept apart, a late thread could pair the new phase's count with the old phase.
 * Locks: `mu` only pairs with `cv` for sleeping threads; `state` and `done` are atomics.
 */
#include "engine_impl.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPIN_ROUNDS 20000 /* ~tens of µs of polling before sleeping */

struct ufb_pool {
    int n_threads; /* including the caller */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_ullong state; /* phase << 40 | n_tasks << 20 | next task to take */
    atomic_int done;     /* tasks finished in this phase */
    atomic_bool stop;
    /* the current phase: written before `state` moves to it, read after it is seen; atomic
       because a late thread may read them while the next phase is being set (its claim then
       fails, whatever it read) */
    _Atomic(ufb_pool_task_fn) fn;
    _Atomic(void *) arg;
};

typedef struct pool_thread_arg {
    ufb_pool *p;
    int id;
    int cpu;
} pool_thread_arg;

#define TASK_BITS 20 /* up to 1,048,575 tasks per phase */
#define TASK_MASK ((1ull << TASK_BITS) - 1)

static unsigned phase_of(unsigned long long v) {
    return (unsigned)(v >> (2 * TASK_BITS));
}

/* @return a task index of `phase`, or -1 when none is left (or the phase is over). */
static int claim(ufb_pool *p, unsigned phase) {
    unsigned long long v = atomic_load_explicit(&p->state, memory_order_acquire);
    for (;;) {
        unsigned long long next = v & TASK_MASK, n = (v >> TASK_BITS) & TASK_MASK;
        if (phase_of(v) != phase || next >= n) return -1;
        if (atomic_compare_exchange_weak_explicit(&p->state, &v, v + 1, memory_order_acq_rel,
                                                  memory_order_acquire))
            return (int)next;
    }
}

static void work(ufb_pool *p, int thread, unsigned phase) {
    ufb_pool_task_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
    void *arg = atomic_load_explicit(&p->arg, memory_order_relaxed);
    int t;
    while ((t = claim(p, phase)) >= 0) {
        fn(arg, t, thread);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

static void *pool_main(void *varg) {
    pool_thread_arg a = *(pool_thread_arg *)varg;
    free(varg);
    if (a.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(a.cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set); /* best effort */
    }
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = phase_of(atomic_load_explicit(&a.p->state, memory_order_acquire))) == seen &&
               !atomic_load(&a.p->stop) && ++spins < SPIN_ROUNDS)
            sched_yield();
        if (g == seen && !atomic_load(&a.p->stop)) {
            pthread_mutex_lock(&a.p->mu);
            while ((g = phase_of(atomic_load_explicit(&a.p->state, memory_order_acquire))) ==
                       seen &&
                   !atomic_load(&a.p->stop))
                pthread_cond_wait(&a.p->cv, &a.p->mu);
            pthread_mutex_unlock(&a.p->mu);
        }
        if (atomic_load(&a.p->stop)) return NULL;
        seen = g;
        work(a.p, a.id, g);
    }
}

ufb_pool *ufb_pool_create(int n_threads, const int *cpus) {
    ufb_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads > 1 ? n_threads : 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)p->n_threads, sizeof *p->threads);
    if (!p->threads) goto fail;
    if (cpus) { /* the caller's thread takes the first CPU */
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpus[0], &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set); /* best effort */
    }
    for (int i = 1; i < p->n_threads; i++) {
        pool_thread_arg *a = malloc(sizeof *a);
        if (!a) goto fail;
        *a = (pool_thread_arg){p, i, cpus ? cpus[i] : -1};
        if (pthread_create(&p->threads[i], NULL, pool_main, a)) {
            free(a);
            goto fail;
        }
    }
    return p;
fail:
    ufb_pool_free(p);
    return NULL;
}

void ufb_pool_free(ufb_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; p->threads && i < p->n_threads; i++)
        if (p->threads[i]) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int ufb_pool_size(const ufb_pool *p) {
    return p ? p->n_threads : 1;
}

void ufb_pool_run(ufb_pool *p, ufb_pool_task_fn fn, void *arg, int n_tasks) {
    if (!p || p->n_threads == 1 || n_tasks <= 1 || (unsigned long long)n_tasks > TASK_MASK) {
        for (int t = 0; t < n_tasks; t++)
            fn(arg, t, 0);
        return;
    }
    atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&p->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    unsigned phase = phase_of(atomic_load_explicit(&p->state, memory_order_relaxed)) + 1;
    unsigned long long v = ((unsigned long long)(phase & 0xffffffu) << (2 * TASK_BITS)) |
                           ((unsigned long long)n_tasks << TASK_BITS);
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->state, v, memory_order_release); /* publishes fn and arg */
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    work(p, 0, phase_of(v));
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks)
        sched_yield();
}
