/* triad.c — `ufb bench triad`: this machine's memory bandwidth, STREAM style, as the ceiling
 * that CMM (which streams weight rows from DRAM) is measured against.
 *
 *   ufb bench triad [--mib 256] [--threads 1,2] [--runs 10] [--json]
 *
 * Three arrays of --mib MiB doubles each (default 3 x 256 MiB, far beyond the ~32 MB L3).
 * Kernels, each over all three arrays' worth of data:
 *   triad     a[i] = b[i] + s * c[i]   GB/s counts 24 bytes per element (STREAM's convention:
 *             2 reads + 1 write; the write-allocate read the hardware adds is not counted)
 *   read_sum  sum of b[i] over one array, 8 bytes per element: read-only traffic, which is what
 *             CMM does with weights (8 independent accumulators so that add latency is not the
 *             limit)
 * Threads are pthreads pinned to the first CPUs of the affinity mask, each owning one
 * contiguous slice (first-touched by that thread); a barrier starts and ends each run, and
 * thread 0 times it. Reported: best and median GB/s over --runs runs (after one warm-up).
 *
 * Also the compute ceiling of one core: 12 independent chains of vector FMAs (AVX-512 and AVX2,
 * where the CPU has them), GFLOP/s = 2 x lanes x FMAs / s, median of 5 runs. Hosts of this VM
 * differ (one executes 512-bit FMAs at twice the 256-bit rate, another at the same rate), so
 * GEMM and dense-baseline numbers are read against the peak measured in the same session.
 */
#include "bench.h"

#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 64
#define MAX_RUNS    100

enum kernel { K_TRIAD, K_READ, N_K };

static const char *const knames[N_K] = {"triad", "read_sum"};
static const double kbytes[N_K] = {24.0, 8.0}; /* counted bytes per element */

typedef struct triad {
    double *a, *b, *c; /* (n,) each */
    size_t n;
    int n_threads, runs;
    enum kernel k;
    pthread_barrier_t bar; /* n_threads: starts and ends each run */
    pthread_mutex_t mu;    /* with cv: the start gate, opened once all threads exist */
    pthread_cond_t cv;
    int open;                  /* guarded by mu */
    double secs[MAX_RUNS + 1]; /* written by thread 0 */
    double sums[MAX_THREADS];  /* read_sum results, so the loads are not optimised away */
} triad;

typedef struct worker {
    triad *t;
    int id, cpu;
} worker;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- Kernels on [lo, hi) ---- */

static void init_slice(triad *t, size_t lo, size_t hi) {
    for (size_t i = lo; i < hi; i++)
        t->a[i] = 0.0, t->b[i] = 1.0 + (double)(i & 7), t->c[i] = 0.5;
}

static void triad_slice(double *restrict a, const double *restrict b, const double *restrict c,
                        size_t lo, size_t hi) {
    const double s = 3.0;
    for (size_t i = lo; i < hi; i++)
        a[i] = b[i] + s * c[i];
}

static double sum_slice(const double *restrict b, size_t lo, size_t hi) {
    double acc[8] = {0};
    size_t i = lo;
    for (; i + 8 <= hi; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += b[i + j];
    for (; i < hi; i++) /* leftovers */
        acc[0] += b[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static void *worker_main(void *arg) {
    worker *w = arg;
    triad *t = w->t;
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set); // best effort
    }
    pthread_mutex_lock(&t->mu);
    while (!t->open)
        pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
    const size_t per = (t->n + (size_t)t->n_threads - 1) / (size_t)t->n_threads;
    const size_t lo = per * (size_t)w->id, hi = lo + per < t->n ? lo + per : t->n;
    init_slice(t, lo, hi);               /* first touch by the owner */
    for (int r = 0; r <= t->runs; r++) { /* run 0 is the warm-up */
        pthread_barrier_wait(&t->bar);
        double t0 = now();
        if (t->k == K_TRIAD)
            triad_slice(t->a, t->b, t->c, lo, hi);
        else
            t->sums[w->id] += sum_slice(t->b, lo, hi);
        pthread_barrier_wait(&t->bar);
        if (w->id == 0) t->secs[r] = now() - t0;
    }
    return NULL;
}

/* ---- Driver ---- */

static int first_cpus(int *cpus, int n) {
    cpu_set_t set;
    int k = 0;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    for (int c = 0; c < CPU_SETSIZE && k < n; c++)
        if (CPU_ISSET(c, &set)) cpus[k++] = c;
    return k;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Run kernel k on n_threads threads; best and median GB/s into gbs[0..1]. @return 0, or -1
 * when not every thread could be started (the others then finish the runs among themselves). */
static int measure(triad *t, enum kernel k, int n_threads, double gbs[2]) {
    pthread_t th[MAX_THREADS];
    worker w[MAX_THREADS];
    int cpus[MAX_THREADS], n_cpus = first_cpus(cpus, n_threads), started = 1;
    t->k = k, t->open = 0;
    for (int i = 0; i < n_threads; i++) {
        w[i] = (worker){t, i, n_cpus == n_threads ? cpus[i] : -1};
        if (i > 0 && pthread_create(&th[i], NULL, worker_main, &w[i]) == 0) started++;
        if (started <= i) break;
    }
    t->n_threads = started; /* read by the workers only after the gate opens */
    pthread_barrier_init(&t->bar, NULL, (unsigned)started);
    pthread_mutex_lock(&t->mu);
    t->open = 1;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    worker_main(&w[0]);
    for (int i = 1; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&t->bar);
    if (started != n_threads) return -1;
    double s[MAX_RUNS];
    memcpy(s, t->secs + 1, sizeof(double) * (size_t)t->runs);
    qsort(s, (size_t)t->runs, sizeof(double), cmp_double);
    const double bytes = kbytes[k] * (double)t->n;
    gbs[0] = bytes / s[0] * 1e-9;
    gbs[1] = bytes / s[t->runs / 2] * 1e-9;
    return 0;
}

static int check_triad(const triad *t) {
    for (size_t i = 0; i < t->n; i += 4099)
        if (t->a[i] != t->b[i] + 3.0 * t->c[i]) return -1;
    return 0;
}

static int parse_threads(const char *s, int *out) {
    int n = 0;
    while (*s && n < 8) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > MAX_THREADS) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return *s ? -1 : n;
}

/* ---- FMA peak of one core ---- */

#define PEAK_ITERS  10000000L
#define PEAK_CHAINS 12 /* > latency x FMA ports, so throughput and not latency is measured */
#define PEAK_RUNS   5

static volatile float peak_sink; /* keeps the chains' results alive */

__attribute__((target("avx512f,fma"))) static double fma_run_avx512(void) {
    const __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
    __m512 acc[PEAK_CHAINS];
    for (int i = 0; i < PEAK_CHAINS; i++)
        acc[i] = _mm512_set1_ps((float)i);
    const double t0 = now();
    for (long n = 0; n < PEAK_ITERS; n++)
#pragma GCC unroll 12
        for (int i = 0; i < PEAK_CHAINS; i++)
            acc[i] = _mm512_fmadd_ps(acc[i], m, c);
    const double t = now() - t0;
    for (int i = 1; i < PEAK_CHAINS; i++)
        acc[0] = _mm512_add_ps(acc[0], acc[i]);
    peak_sink = _mm512_reduce_add_ps(acc[0]);
    return (double)PEAK_ITERS * PEAK_CHAINS * 32 / t / 1e9;
}

__attribute__((target("avx2,fma"))) static double fma_run_avx2(void) {
    const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
    __m256 acc[PEAK_CHAINS];
    for (int i = 0; i < PEAK_CHAINS; i++)
        acc[i] = _mm256_set1_ps((float)i);
    const double t0 = now();
    for (long n = 0; n < PEAK_ITERS; n++)
#pragma GCC unroll 12
        for (int i = 0; i < PEAK_CHAINS; i++)
            acc[i] = _mm256_fmadd_ps(acc[i], m, c);
    const double t = now() - t0;
    float out[8], sum = 0.0f;
    for (int i = 1; i < PEAK_CHAINS; i++)
        acc[0] = _mm256_add_ps(acc[0], acc[i]);
    _mm256_storeu_ps(out, acc[0]);
    for (int i = 0; i < 8; i++)
        sum += out[i];
    peak_sink = sum;
    return (double)PEAK_ITERS * PEAK_CHAINS * 16 / t / 1e9;
}

/* median GFLOP/s of PEAK_RUNS runs of run(), or 0 when the CPU lacks the instructions */
static double fma_peak(double (*run)(void), int supported) {
    double r[PEAK_RUNS];
    if (!supported) return 0.0;
    for (int i = 0; i < PEAK_RUNS; i++)
        r[i] = run();
    qsort(r, PEAK_RUNS, sizeof r[0], cmp_double);
    return r[PEAK_RUNS / 2];
}

int ufb_bench_triad_main(int argc, char **argv) {
    triad *t = calloc(1, sizeof *t);
    int threads[8] = {1, 2}, n_thr = 2, json = 0, mib = 256, rc = 1;
    if (!t) return 1;
    t->runs = 10;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json"))
            json = 1;
        else if (v && !strcmp(a, "--mib"))
            mib = atoi(v), i++;
        else if (v && !strcmp(a, "--runs"))
            t->runs = atoi(v), i++;
        else if (v && !strcmp(a, "--threads"))
            n_thr = parse_threads(v, threads), i++;
        else
            n_thr = -1;
    }
    if (n_thr < 1 || mib < 1 || mib > 65536 || t->runs < 1 || t->runs > MAX_RUNS) {
        fprintf(stderr, "usage: ufb bench triad [--mib 256] [--threads 1,2] [--runs 10] "
                        "[--json]\n");
        free(t);
        return 2;
    }
    t->n = (size_t)mib * 1024 * 1024 / sizeof(double);
    t->a = aligned_alloc(64, t->n * sizeof(double));
    t->b = aligned_alloc(64, t->n * sizeof(double));
    t->c = aligned_alloc(64, t->n * sizeof(double));
    if (!t->a || !t->b || !t->c) {
        fprintf(stderr, "ufb bench triad: out of memory (3 x %d MiB)\n", mib);
        goto fail;
    }
    double gbs[N_K][8][2];
    for (int ti = 0; ti < n_thr; ti++)
        for (int k = 0; k < N_K; k++)
            if (measure(t, (enum kernel)k, threads[ti], gbs[k][ti]) ||
                (k == K_TRIAD && check_triad(t))) {
                fprintf(stderr, "ufb bench triad: thread start or result check failed\n");
                goto fail;
            }
    __builtin_cpu_init();
    const double peak512 = fma_peak(fma_run_avx512, __builtin_cpu_supports("avx512f")),
                 peak256 = fma_peak(fma_run_avx2, __builtin_cpu_supports("avx2") &&
                                                      __builtin_cpu_supports("fma"));
    if (!json)
        printf("FMA peak of one core (fp32, median of %d): AVX-512 %.1f GFLOP/s, AVX2 %.1f "
               "GFLOP/s (0: not supported)\n"
               "memory bandwidth, 3 arrays of %d MiB (doubles), best / median GB/s of %d runs\n",
               PEAK_RUNS, peak512, peak256, mib, t->runs);
    else
        printf("{\"bench\":\"triad\",\"config\":{\"array_mib\":%d,\"runs\":%d},"
               "\"fma_peak_gflops_1core\":{\"avx512\":%.1f,\"avx2\":%.1f},\"results\":[",
               mib, t->runs, peak512, peak256);
    for (int ti = 0; ti < n_thr; ti++)
        for (int k = 0; k < N_K; k++)
            if (json)
                printf("%s{\"kernel\":\"%s\",\"threads\":%d,\"bytes_per_element\":%g,"
                       "\"best_gbs\":%.2f,\"median_gbs\":%.2f}",
                       ti + k ? "," : "", knames[k], threads[ti], kbytes[k], gbs[k][ti][0],
                       gbs[k][ti][1]);
            else
                printf("  %-9s threads=%d  %7.2f / %7.2f GB/s\n", knames[k], threads[ti],
                       gbs[k][ti][0], gbs[k][ti][1]);
    if (json) printf("]}\n");
    rc = 0;
fail:
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t->a), free(t->b), free(t->c), free(t);
    return rc;
}
