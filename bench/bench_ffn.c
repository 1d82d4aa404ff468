/* bench_ffn.c — `ufb bench ffn`: one feed-forward layer shape, every dense and FFF method,
 * side by side in one process, with weights that do not stay in cache.
 *
 *   ufb bench ffn [--hidden 768] [--depth 11] [--trees 1] [--layers 16]
 *                 [--batch 1,8,32,128,1024] [--threads 1,2] [--runs 5] [--json]
 *                 [--only cmm_int8_avx512,dense_gemm]   (time only these variants)
 *
 * Each variant runs the same random input through L layers of distinct random weights
 * (16 x 2 x 4095 x 768 floats = 403 MB per method for UltraFastBERT-1x11), so every layer's
 * weights come from DRAM, as in a real model. Dense baselines have the FFF's neuron count:
 *   dense_sgemm   OpenBLAS sgemm -> GELU -> sgemm (level 3; OpenBLAS threads = T)
 *   dense_gemm    our batch-invariant GEMM (engine/gemm*.c, packed weights, the engine's dense
 *                 projections) -> GELU -> GEMM, tokens split over T threads: at B >= 32 it is
 *                 faster than OpenBLAS here, so the best dense baseline must include it
 *   dense_sgemv   per token: sgemv -> GELU -> sgemv (level 2; with fewer tokens than threads,
 *                 each sgemv on T OpenBLAS threads)
 *   dense_l1      per token and neuron: sdot -> GELU -> saxpy (level 1, as in the paper)
 *   fff_l1        per token and visited node: sdot -> GELU -> saxpy (the paper's CPU method)
 *   cmm_scalar, cmm_avx2, cmm_avx512   our kernels (engine/cmm*.c), F32 rows
 *   cmm_avx512_prefetch         the same, prefetching both children's rows and Wout
 *   cmm_{bf16,int8}_{avx2,avx512}   BF16 / INT8 rows with the F32 routing check (cmm_quant.c)
 *   cmm_int8_avx512_prefetch    INT8 with prefetching
 * Every weight array is allocated as the engine does (ufb_alloc_weights: 2 MB pages).
 * Per-token variants (all but dense_sgemm) split tokens over a ufb_pool of T threads with
 * OpenBLAS on one thread. Dense GELU uses an exp-free erf approximation (A&S 7.1.28, error
 * < 3e-7) that the compiler vectorises, so the dense baselines are not slowed by erff calls.
 * dense_sgemv and dense_l1 cost the same per token at any batch size (no weight reuse), so
 * they are timed on at most 32 tokens. Reported: median µs per token and layer over --runs
 * runs after a warm-up (each run on fresh tokens from a pool of 8192 or more, so no run finds the
 * previous run's paths in cache), the speedup of the fastest FFF variant over the fastest dense one
 * per (threads, batch), and each variant's relative error against its scalar reference.
 */
#include "bench.h"
#include "engine_impl.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern void openblas_set_num_threads(int n);
extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);

enum variant {
    V_SGEMM,
    V_GEMM,
    V_SGEMV,
    V_L1,
    V_FFF_L1,
    V_CMM_SCALAR,
    V_CMM_AVX2,
    V_CMM_AVX512,
    V_CMM_AVX512_PF,
    V_BF16_AVX2,
    V_INT8_AVX2,
    V_BF16_AVX512,
    V_INT8_AVX512,
    V_INT8_AVX512_PF,
    N_V
};

/* what each CMM variant runs: weight format, kernel, prefetching of both children */
static const struct vinfo {
    const char *name;
    enum ufb_wfmt fmt;
    enum ufb_kernel kernel;
    int prefetch;
} vinfo[N_V] = {
    [V_SGEMM] = {"dense_sgemm", UFB_WFMT_F32, UFB_KERNEL_AUTO, 0},
    [V_GEMM] = {"dense_gemm", UFB_WFMT_F32, UFB_KERNEL_AUTO, 0},
    [V_SGEMV] = {"dense_sgemv", UFB_WFMT_F32, UFB_KERNEL_AUTO, 0},
    [V_L1] = {"dense_l1", UFB_WFMT_F32, UFB_KERNEL_AUTO, 0},
    [V_FFF_L1] = {"fff_l1", UFB_WFMT_F32, UFB_KERNEL_AUTO, 0},
    [V_CMM_SCALAR] = {"cmm_scalar", UFB_WFMT_F32, UFB_KERNEL_SCALAR, 0},
    [V_CMM_AVX2] = {"cmm_avx2", UFB_WFMT_F32, UFB_KERNEL_AVX2, 0},
    [V_CMM_AVX512] = {"cmm_avx512", UFB_WFMT_F32, UFB_KERNEL_AVX512, 0},
    [V_CMM_AVX512_PF] = {"cmm_avx512_prefetch", UFB_WFMT_F32, UFB_KERNEL_AVX512, 1},
    [V_BF16_AVX2] = {"cmm_bf16_avx2", UFB_WFMT_BF16, UFB_KERNEL_AVX2, 0},
    [V_INT8_AVX2] = {"cmm_int8_avx2", UFB_WFMT_INT8, UFB_KERNEL_AVX2, 0},
    [V_BF16_AVX512] = {"cmm_bf16_avx512", UFB_WFMT_BF16, UFB_KERNEL_AVX512, 0},
    [V_INT8_AVX512] = {"cmm_int8_avx512", UFB_WFMT_INT8, UFB_KERNEL_AVX512, 0},
    [V_INT8_AVX512_PF] = {"cmm_int8_avx512_prefetch", UFB_WFMT_INT8, UFB_KERNEL_AVX512, 1},
};

#define vnames(v) (vinfo[v].name)

#define PER_TOKEN_CAP 32 /* tokens timed for dense_sgemv / dense_l1 */

typedef struct layer_w {
    float *w1, *b1, *w2t; /* dense: (I, H), (I), (I, H) = W2 transposed */
    ufb_linear g1, g2;    /* the same W1 (I, H) and W2 (H, I) packed for ufb_gemm */
    ufb_fff fff;          /* FFF of the same neuron count */
    ufb_fff fq[3][2];     /* the same FFF by [weight format][prefetch]; nodes shared */
    void *qbuf[3];        /* quantized copies (BF16, INT8) */
} layer_w;

typedef struct bench {
    int H, D, T, L, n_mid, runs, json, group; /* n_mid: neurons per layer */
    int batches[16], n_batches, threads[8], n_threads;
    const char *only; /* --only: comma-separated variants to time (NULL: all) */
    layer_w *layers;
    float *x, *y, *mid; /* (Bmax, H) inputs of the current run, (Bmax, H), (Bmax, I) */
    float *x_pool;      /* (n_pool, H): each timed run takes the next tokens from here */
    size_t n_pool, pool_next;
    float *path_act;
    int32_t *path_node, *leaves;
    ufb_pool *pool;
    ufb_gemm_fn gemm;
    double qerr[3][2]; /* RMS quantization error of Win / Wout rows, relative */
} bench;

static uint64_t rng = 0x2545f4914f6cdd1dull;

static float frand(float scale) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 40) * (2.0 / (1 << 24)) - 1.0) * scale;
}

static float *rand_floats(size_t n, float scale) {
    float *p = ufb_alloc_weights(sizeof(float) * n);
    for (size_t i = 0; p && i < n; i++)
        p[i] = frand(scale);
    return p;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* erf for x >= 0 by Abramowitz & Stegun 7.1.28 (|error| < 3e-7): no exp, so it vectorises */
static inline float erf_poly(float x) {
    float t =
        1.0f + x * (0.0705230784f +
                    x * (0.0422820123f +
                         x * (0.0092705272f +
                              x * (0.0001520143f + x * (0.0002765672f + x * 0.0000430638f)))));
    t *= t, t *= t, t *= t, t *= t; /* ^16 */
    return 1.0f - 1.0f / t;
}

static void gelu_fast(float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float z = v[i] * 0.70710678f, e = erf_poly(fabsf(z));
        v[i] = 0.5f * v[i] * (1.0f + (z < 0 ? -e : e));
    }
}

/* ---- The variants, on tokens [t0, t0 + n) of layer l ---- */

static void dense_sgemv(bench *b, const layer_w *w, int t0, int n, float *mid) {
    for (int t = t0; t < t0 + n; t++) {
        memcpy(mid, w->b1, sizeof(float) * (size_t)b->n_mid);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, b->n_mid, b->H, 1.0f, w->w1, b->H,
                    b->x + (size_t)t * b->H, 1, 1.0f, mid, 1);
        gelu_fast(mid, (size_t)b->n_mid);
        cblas_sgemv(CblasRowMajor, CblasTrans, b->n_mid, b->H, 1.0f, w->w2t, b->H, mid, 1, 0.0f,
                    b->y + (size_t)t * b->H, 1);
    }
}

static void dense_l1(bench *b, const layer_w *w, int t0, int n) {
    for (int t = t0; t < t0 + n; t++) {
        const float *x = b->x + (size_t)t * b->H;
        float *y = b->y + (size_t)t * b->H;
        memset(y, 0, sizeof(float) * (size_t)b->H);
        for (int i = 0; i < b->n_mid; i++) {
            float a = cblas_sdot(b->H, x, 1, w->w1 + (size_t)i * b->H, 1) + w->b1[i];
            gelu_fast(&a, 1);
            cblas_saxpy(b->H, a, w->w2t + (size_t)i * b->H, 1, y, 1);
        }
    }
}

/* our GEMM on rows [t0, t0 + n): mid = GELU(x W1ᵀ + b1), y = mid W2ᵀ */
static void dense_gemm(bench *b, const layer_w *w, int t0, int n) {
    float *mid = b->mid + (size_t)t0 * b->n_mid;
    b->gemm(&w->g1, mid, b->n_mid, b->x + (size_t)t0 * b->H, b->H, n);
    gelu_fast(mid, (size_t)n * b->n_mid);
    b->gemm(&w->g2, b->y + (size_t)t0 * b->H, b->H, mid, b->n_mid, n);
}

/* the paper's CPU method: BLAS level 1 on the visited nodes only */
static void fff_l1(bench *b, const ufb_fff *f, int t0, int n) {
    for (int t = t0; t < t0 + n; t++) {
        const float *x = b->x + (size_t)t * b->H;
        float *y = b->y + (size_t)t * b->H;
        memset(y, 0, sizeof(float) * (size_t)b->H);
        for (int tree = 0; tree < f->n_trees; tree++) {
            int k = 0;
            for (int level = 0; level <= f->depth; level++) {
                const int r = tree * f->n_nodes + k;
                const float *win = f->nodes + (size_t)r * 2 * f->hp;
                float a = cblas_sdot(b->H, x, 1, win, 1) + f->bias[r];
                cblas_saxpy(b->H, ufb_gelu(a), win + f->hp, 1, y, 1);
                if (level == f->depth) b->leaves[(size_t)t * f->n_trees + tree] = k;
                k = 2 * k + 1 + (a > 0.0f);
            }
        }
    }
}

typedef struct task_arg {
    bench *b;
    enum variant v;
    int layer, n_tok, per_task;
    ufb_cmm_fn cmm;
} task_arg;

static void token_task(void *varg, int task, int thread) {
    task_arg *a = varg;
    bench *b = a->b;
    const layer_w *w = &b->layers[a->layer];
    const int t0 = task * a->per_task;
    const int n = a->n_tok - t0 < a->per_task ? a->n_tok - t0 : a->per_task;
    const size_t P = (size_t)b->T * (b->D + 1);
    if (n <= 0) return;
    switch (a->v) {
    case V_SGEMV:
        dense_sgemv(b, w, t0, n, b->mid + (size_t)thread * b->n_mid);
        break;
    case V_GEMM:
        dense_gemm(b, w, t0, n);
        break;
    case V_L1:
        dense_l1(b, w, t0, n);
        break;
    case V_FFF_L1:
        fff_l1(b, &w->fff, t0, n);
        break;
    case V_CMM_SCALAR:
    case V_CMM_AVX2:
    case V_CMM_AVX512:
    case V_CMM_AVX512_PF:
    case V_BF16_AVX2:
    case V_INT8_AVX2:
    case V_BF16_AVX512:
    case V_INT8_AVX512:
    case V_INT8_AVX512_PF:
        a->cmm(&w->fq[vinfo[a->v].fmt][vinfo[a->v].prefetch], b->y + (size_t)t0 * b->H,
               b->leaves + (size_t)t0 * b->T, b->path_act + (size_t)t0 * P,
               b->path_node + (size_t)t0 * P, b->x + (size_t)t0 * b->H, b->H, n);
        break;
    case V_SGEMM:
    case N_V:
        break;
    }
}

static void dense_sgemm(bench *b, const layer_w *w, int n) {
    for (int r = 0; r < n; r++)
        memcpy(b->mid + (size_t)r * b->n_mid, w->b1, sizeof(float) * (size_t)b->n_mid);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, b->n_mid, b->H, 1.0f, b->x, b->H, w->w1,
                b->H, 1.0f, b->mid, b->n_mid);
    gelu_fast(b->mid, (size_t)n * b->n_mid);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, b->H, b->n_mid, 1.0f, b->mid,
                b->n_mid, w->w2t, b->H, 0.0f, b->y, b->H);
}

/* One pass: n_tok tokens through every layer. */
static void run_pass(bench *b, enum variant v, ufb_cmm_fn cmm, int threads, int n_tok) {
    for (int l = 0; l < b->L; l++) {
        if (v == V_SGEMM) {
            dense_sgemm(b, &b->layers[l], n_tok);
            continue;
        }
        task_arg a = {b, v, l, n_tok, (n_tok + threads - 1) / threads, cmm};
        ufb_pool_run(threads > 1 ? b->pool : NULL, token_task, &a, threads);
    }
}

/* ---- Correctness: every variant against its scalar reference, on layer 0 ---- */

/* Dense reference in double on the first n tokens of layer 0 (exact GELU). */
static void dense_reference(const bench *b, double *ref, int n) {
    const layer_w *w = &b->layers[0];
    for (int t = 0; t < n; t++) {
        const float *x = b->x + (size_t)t * b->H;
        for (int c = 0; c < b->H; c++)
            ref[(size_t)t * b->H + c] = 0;
        for (int i = 0; i < b->n_mid; i++) {
            double a = w->b1[i];
            for (int k = 0; k < b->H; k++)
                a += (double)x[k] * w->w1[(size_t)i * b->H + k];
            double g = 0.5 * a * (1.0 + erf(a / sqrt(2.0)));
            for (int c = 0; c < b->H; c++)
                ref[(size_t)t * b->H + c] += g * w->w2t[(size_t)i * b->H + c];
        }
    }
}

static double rel_err(const float *y, const double *ref, size_t n) {
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        e = fmax(e, fabs(y[i] - ref[i]));
        s = fmax(s, fabs(ref[i]));
    }
    return s > 0 ? e / s : e;
}

/* @return relative error of variant v on layer 0 vs its reference; -1 on a routing mismatch */
static double check_variant(bench *b, enum variant v, ufb_cmm_fn cmm, const double *dense_ref,
                            const double *fff_ref, const int32_t *leaves_ref, int n) {
    bench one = *b;
    one.L = 1;
    openblas_set_num_threads(1);
    run_pass(&one, v, cmm, 1, n);
    bool fff = v >= V_FFF_L1;
    if (fff && memcmp(b->leaves, leaves_ref, sizeof(int32_t) * (size_t)n * b->T) != 0) return -1;
    return rel_err(b->y, fff ? fff_ref : dense_ref, (size_t)n * b->H);
}

/* ---- Timing ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Fresh tokens for the next run: a run that repeated the previous one's inputs would find
 * the rows of its paths still in cache (at B=1: 16 layers x 12 rows, 1.2 MB). */
static void next_inputs(bench *b, int n) {
    if (b->pool_next + (size_t)n > b->n_pool) b->pool_next = 0;
    b->x = b->x_pool + b->pool_next * b->H;
    b->pool_next += (size_t)n;
}

/* @return median µs per token and layer */
static double time_variant(bench *b, enum variant v, ufb_cmm_fn cmm, int threads, int batch) {
    int n = (v == V_SGEMV || v == V_L1) && batch > PER_TOKEN_CAP ? PER_TOKEN_CAP : batch;
    double t[64];
    /* Fewer tokens than threads: splitting tokens would leave threads idle, so sgemv runs
       each token on all threads inside OpenBLAS instead (2 threads read DRAM ~1.8x faster) */
    const bool blas_mt = v == V_SGEMM || (v == V_SGEMV && n < threads);
    openblas_set_num_threads(blas_mt ? threads : 1);
    if (blas_mt && v == V_SGEMV) threads = 1;
    run_pass(b, v, cmm, threads, n); /* warm-up */
    for (int r = 0; r < b->runs; r++) {
        next_inputs(b, n);
        double t0 = now();
        run_pass(b, v, cmm, threads, n);
        t[r] = (now() - t0) * 1e6 / ((double)n * b->L);
    }
    b->x = b->x_pool;
    qsort(t, (size_t)b->runs, sizeof(double), cmp_double);
    return t[b->runs / 2];
}

/* ---- Setup and main ---- */

static int parse_list(const char *s, int *out, int cap) {
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 65536) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return *s ? -1 : n;
}

static int parse_args(bench *b, int argc, char **argv) {
    *b = (bench){.H = 768, .D = 11, .T = 1, .L = 16, .runs = 5, .group = 16};
    b->n_batches = parse_list("1,8,32,128,1024", b->batches, 16);
    b->n_threads = parse_list("1,2", b->threads, 8);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json"))
            b->json = 1;
        else if (!v)
            return -1;
        else if (!strcmp(a, "--hidden"))
            b->H = atoi(v), i++;
        else if (!strcmp(a, "--depth"))
            b->D = atoi(v), i++;
        else if (!strcmp(a, "--trees"))
            b->T = atoi(v), i++;
        else if (!strcmp(a, "--layers"))
            b->L = atoi(v), i++;
        else if (!strcmp(a, "--runs"))
            b->runs = atoi(v), i++;
        else if (!strcmp(a, "--group"))
            b->group = atoi(v), i++;
        else if (!strcmp(a, "--batch"))
            b->n_batches = parse_list(v, b->batches, 16), i++;
        else if (!strcmp(a, "--threads"))
            b->n_threads = parse_list(v, b->threads, 8), i++;
        else if (!strcmp(a, "--only"))
            b->only = v, i++;
        else
            return -1;
    }
    bool ok = b->H >= 1 && b->H <= 8192 && b->D >= 0 && b->D <= 16 && b->T >= 1 && b->T <= 64 &&
              b->L >= 1 && b->L <= 64 && b->runs >= 1 && b->runs <= 63 && b->n_batches > 0 &&
              b->group >= 1 && b->group <= 16 && b->n_threads > 0;
    return ok ? 0 : -1;
}

/* W1 and W2 packed for dense_gemm (W2 (H, I) is w2t transposed) */
static int pack_dense(bench *b, layer_w *w) {
    const size_t ni = (size_t)b->n_mid, nh = (size_t)b->H;
    float *p1 = ufb_alloc_weights(sizeof(float) * ufb_linear_packed_len(b->n_mid, b->H));
    float *p2 = ufb_alloc_weights(sizeof(float) * ufb_linear_packed_len(b->H, b->n_mid));
    float *w2 = malloc(sizeof(float) * ni * nh);
    if (!p1 || !p2 || !w2) {
        free(p1), free(p2), free(w2);
        return -1;
    }
    for (size_t i = 0; i < ni; i++)
        for (size_t c = 0; c < nh; c++)
            w2[c * ni + i] = w->w2t[i * nh + c];
    ufb_linear_pack(p1, w->w1, b->n_mid, b->H);
    ufb_linear_pack(p2, w2, b->H, b->n_mid);
    free(w2);
    w->g1 = (ufb_linear){.packed = p1, .bias = w->b1, .n_in = b->H, .n_out = b->n_mid};
    w->g2 = (ufb_linear){.packed = p2, .bias = NULL, .n_in = b->n_mid, .n_out = b->H};
    return 0;
}

static int alloc_bench(bench *b) {
    const int n_nodes = (1 << (b->D + 1)) - 1, hp = (b->H + 15) & ~15;
    int bmax = 1, tmax = 1;
    for (int i = 0; i < b->n_batches; i++)
        bmax = b->batches[i] > bmax ? b->batches[i] : bmax;
    for (int i = 0; i < b->n_threads; i++)
        tmax = b->threads[i] > tmax ? b->threads[i] : tmax;
    b->n_mid = b->T * n_nodes;
    b->layers = calloc((size_t)b->L, sizeof *b->layers);
    if (!b->layers) return -1;
    const float s_in = 1.0f / sqrtf((float)b->H), s_out = 1.0f / sqrtf((float)b->n_mid);
    for (int l = 0; l < b->L; l++) {
        layer_w *w = &b->layers[l];
        w->w1 = rand_floats((size_t)b->n_mid * b->H, s_in);
        w->b1 = rand_floats((size_t)b->n_mid, 0.1f);
        w->w2t = rand_floats((size_t)b->n_mid * b->H, s_out);
        float *nodes = rand_floats((size_t)b->n_mid * 2 * hp, s_in);
        if (!w->w1 || !w->b1 || !w->w2t || !nodes || pack_dense(b, w)) return -1;
        for (int r = 0; r < b->n_mid; r++) /* zero the padding: the kernels rely on it */
            for (int c = b->H; c < hp; c++)
                nodes[(size_t)r * 2 * hp + c] = nodes[(size_t)r * 2 * hp + hp + c] = 0.0f;
        w->fff = (ufb_fff){.nodes = nodes,
                           .bias = rand_floats((size_t)b->n_mid, 0.1f),
                           .hidden = b->H,
                           .hp = hp,
                           .depth = b->D,
                           .n_trees = b->T,
                           .n_nodes = n_nodes};
        for (int f = 0; f < 3; f++) {
            ufb_fff q = w->fff;
            if (f != UFB_WFMT_F32 &&
                !(w->qbuf[f] = ufb_fff_quantize(&q, (enum ufb_wfmt)f, l ? NULL : b->qerr[f])))
                return -1;
            q.group = b->group;
            w->fq[f][0] = w->fq[f][1] = q;
            w->fq[f][1].prefetch = UFB_PF_CHILDREN | UFB_PF_WOUT;
        }
    }
    b->n_pool = (size_t)(bmax > 1024 ? 8 * bmax : 8192);
    b->x = b->x_pool = rand_floats(b->n_pool * b->H, 1.0f);
    b->y = rand_floats((size_t)bmax * b->H, 1.0f);
    b->mid = rand_floats((size_t)(bmax > tmax ? bmax : tmax) * b->n_mid, 1.0f);
    b->path_act = rand_floats((size_t)bmax * b->T * (b->D + 1), 1.0f);
    b->path_node = calloc((size_t)bmax * b->T * (b->D + 1), sizeof(int32_t));
    b->leaves = calloc((size_t)bmax * b->T, sizeof(int32_t));
    b->pool = tmax > 1 ? ufb_pool_create(tmax, NULL) : NULL;
    b->gemm = ufb_gemm_get(UFB_KERNEL_AUTO);
    return b->x && b->y && b->mid && b->path_act && b->path_node && b->leaves ? 0 : -1;
}

static void free_bench(bench *b) {
    for (int l = 0; b->layers && l < b->L; l++) {
        free(b->layers[l].w1), free(b->layers[l].b1), free(b->layers[l].w2t);
        free((void *)b->layers[l].g1.packed), free((void *)b->layers[l].g2.packed);
        free((void *)b->layers[l].fff.nodes), free((void *)b->layers[l].fff.bias);
        free(b->layers[l].qbuf[UFB_WFMT_BF16]), free(b->layers[l].qbuf[UFB_WFMT_INT8]);
    }
    free(b->layers), free(b->x_pool), free(b->y), free(b->mid), free(b->path_act);
    free(b->path_node), free(b->leaves);
    ufb_pool_free(b->pool);
}

/* ---- Output ---- */

typedef struct table {
    double us[N_V][8][16]; /* variant, threads index, batch index; < 0: not run */
    double err[N_V];       /* vs reference; -1 routing mismatch; -2 not run */
    double qout_err[3];    /* output of the quantized scalar reference vs the F32 one */
    int64_t flips[3], recomputed[3], dots; /* routing check over every layer, all tokens */
} table;

static bool is_dense(enum variant v) {
    return v <= V_L1; /* dense_sgemm, dense_gemm, dense_sgemv, dense_l1 */
}

/* fastest dense / FFF time at (ti, bi); f32_only: FFF variants on F32 weights only;
 * blas_only: dense variants through OpenBLAS only (without our GEMM) */
static double best_of(const table *t, int ti, int bi, bool dense, bool f32_only, bool blas_only) {
    double m = 0;
    for (int v = 0; v < N_V; v++)
        if (is_dense((enum variant)v) == dense && t->us[v][ti][bi] > 0 &&
            (!f32_only || vinfo[v].fmt == UFB_WFMT_F32) && !(blas_only && v == V_GEMM) &&
            (m == 0 || t->us[v][ti][bi] < m))
            m = t->us[v][ti][bi];
    return m;
}

static double best(const table *t, int ti, int bi, bool dense) {
    return best_of(t, ti, bi, dense, false, false);
}

static void print_quant(const bench *b, const table *t, FILE *o) {
    static const char *const fname[3] = {"F32", "BF16", "INT8"};
    for (int f = UFB_WFMT_BF16; f <= UFB_WFMT_INT8; f++)
        fprintf(o,
                "%s rows: RMS element error Win %.2e, Wout %.2e (relative); layer output vs F32 "
                "%.1e; routing vs F32 kernel over %d layers x %d tokens: %lld flips, %.2f%% of "
                "dots recomputed in F32\n",
                fname[f], b->qerr[f][0], b->qerr[f][1], t->qout_err[f], b->L,
                b->batches[b->n_batches - 1], (long long)t->flips[f],
                t->dots ? 100.0 * (double)t->recomputed[f] / (double)t->dots : 0.0);
}

/* --only: whether variant v is timed (a quick A/B of a few kernels; ratios need a dense one) */
static bool selected(const bench *b, enum variant v) {
    if (!b->only) return true;
    const size_t n = strlen(vnames(v));
    for (const char *p = b->only; (p = strstr(p, vnames(v))) != NULL; p += n)
        if ((p == b->only || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return true;
    return false;
}

static void print_text(const bench *b, const table *t) {
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("FF layer H=%d, %d tree(s) of depth %d (%d neurons, %d used per token), %d layers of "
           "distinct weights; OpenBLAS core %s (OPENBLAS_CORETYPE %s)\n",
           b->H, b->T, b->D, b->n_mid, b->T * (b->D + 1), b->L, openblas_get_corename(),
           ct ? ct : "unset");
    printf("check vs scalar reference (layer 0): ");
    for (int v = 0; v < N_V; v++)
        if (t->err[v] > -2) printf("%s %.1e  ", vnames(v), t->err[v]);
    printf("\n");
    print_quant(b, t, stdout);
    printf("median us per token per layer (%d runs):\n", b->runs);
    for (int ti = 0; ti < b->n_threads; ti++) {
        printf("threads=%d %-12s", b->threads[ti], "");
        for (int bi = 0; bi < b->n_batches; bi++)
            printf(" %10s%-4d", "B=", b->batches[bi]);
        printf("\n");
        for (int v = 0; v < N_V; v++) {
            if (t->err[v] <= -2 || !selected(b, (enum variant)v)) continue;
            printf("  %-26s", vnames(v));
            for (int bi = 0; bi < b->n_batches; bi++)
                printf(" %14.3f", t->us[v][ti][bi]);
            printf("\n");
        }
        printf("  %-26s", "FFF speedup vs dense");
        for (int bi = 0; bi < b->n_batches; bi++)
            printf(" %13.1fx", best(t, ti, bi, true) / best(t, ti, bi, false));
        printf("\n  %-26s", "F32 FFF speedup vs dense");
        for (int bi = 0; bi < b->n_batches; bi++)
            printf(" %13.1fx", best(t, ti, bi, true) / best_of(t, ti, bi, false, true, false));
        printf("\n  %-26s", "FFF vs OpenBLAS dense");
        for (int bi = 0; bi < b->n_batches; bi++)
            printf(" %13.1fx", best_of(t, ti, bi, true, false, true) / best(t, ti, bi, false));
        printf("\n");
    }
}

static void print_json(const bench *b, const table *t) {
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("{\"config\":{\"hidden\":%d,\"depth\":%d,\"trees\":%d,\"layers\":%d,\"neurons\":%d,"
           "\"runs\":%d},\"openblas\":{\"core\":\"%s\",\"coretype_env\":%s%s%s},\"check\":{",
           b->H, b->D, b->T, b->L, b->n_mid, b->runs, openblas_get_corename(), ct ? "\"" : "",
           ct ? ct : "null", ct ? "\"" : "");
    for (int v = 0, first = 1; v < N_V; v++)
        if (t->err[v] > -2)
            printf("%s\"%s\":%.3g", first ? "" : ",", vnames(v), t->err[v]), first = 0;
    printf("},\"results\":[");
    for (int ti = 0, first = 1; ti < b->n_threads; ti++)
        for (int bi = 0; bi < b->n_batches; bi++)
            for (int v = 0; v < N_V; v++)
                if (t->us[v][ti][bi] > 0)
                    printf("%s{\"variant\":\"%s\",\"threads\":%d,\"batch\":%d,"
                           "\"us_per_token_layer\":%.4f}",
                           first ? "" : ",", vnames(v), b->threads[ti], b->batches[bi],
                           t->us[v][ti][bi]),
                        first = 0;
    const int tl = b->n_threads - 1; /* the headline ratios: the largest thread count */
    /* best dense of all (with our GEMM) and of OpenBLAS only, by fastest FFF / fastest F32 FFF */
    const char *keys[4] = {"speedup_vs_best_dense", "speedup_f32_vs_best_dense",
                           "speedup_vs_best_openblas_dense", "speedup_f32_vs_best_openblas_dense"};
    printf("]");
    for (int k = 0; k < 4; k++) {
        printf(",\"%s\":{", keys[k]);
        for (int bi = 0; bi < b->n_batches; bi++)
            printf("%s\"%d\":%.2f", bi ? "," : "", b->batches[bi],
                   best_of(t, tl, bi, true, false, k >= 2) /
                       best_of(t, tl, bi, false, k % 2 == 1, false));
        printf("}");
        if (k == 0) printf(",\"threads\":%d", b->threads[tl]);
    }
    printf(",\"quant\":{");
    for (int f = UFB_WFMT_BF16; f <= UFB_WFMT_INT8; f++)
        printf("%s\"%s\":{\"rms_err_win\":%.3g,\"rms_err_wout\":%.3g,\"out_err_vs_f32\":%.3g,"
               "\"flips\":%lld,\"recomputed\":%lld,\"dots\":%lld}",
               f == UFB_WFMT_BF16 ? "" : ",", f == UFB_WFMT_BF16 ? "bf16" : "int8", b->qerr[f][0],
               b->qerr[f][1], t->qout_err[f], (long long)t->flips[f], (long long)t->recomputed[f],
               (long long)t->dots);
    printf("}");
    for (int k = 0; k < 2; k++) { /* by_threads: vs all dense; by_threads_openblas: OpenBLAS */
        printf(",\"%s\":{", k ? "by_threads_openblas" : "by_threads");
        for (int ti = 0; ti < b->n_threads; ti++) {
            printf("%s\"%d\":{", ti ? "," : "", b->threads[ti]);
            for (int bi = 0; bi < b->n_batches; bi++)
                printf("%s\"%d\":%.2f", bi ? "," : "", b->batches[bi],
                       best_of(t, ti, bi, true, false, k == 1) / best(t, ti, bi, false));
            printf("}");
        }
        printf("}");
    }
    printf("}\n");
}

static ufb_cmm_fn cmm_of(enum variant v) {
    enum ufb_kernel k = vinfo[v].kernel;
    return v >= V_CMM_SCALAR ? ufb_cmmq_get(&k, vinfo[v].fmt) : NULL;
}

/* Routing of each quantized format against the F32 kernel of the same instruction set, over
 * every layer and the largest batch: flips and dots recomputed by the margin check. */
static void route_check(bench *b, table *t) {
    const int n = b->batches[b->n_batches - 1];
    enum ufb_kernel k = ufb_kernel_best();
    ufb_cmm_fn f32 = ufb_cmm_get(&k);
    int32_t *ref = malloc(sizeof(int32_t) * (size_t)n * b->T);
    if (!ref) return;
    t->dots = (int64_t)b->L * n * b->T * (b->D + 1);
    for (int l = 0; l < b->L; l++) {
        f32(&b->layers[l].fq[UFB_WFMT_F32][0], b->y, ref, b->path_act, b->path_node, b->x, b->H, n);
        for (int f = UFB_WFMT_BF16; f <= UFB_WFMT_INT8; f++) {
            enum ufb_kernel kq = k;
            ufb_cmm_fn q = ufb_cmmq_get(&kq, (enum ufb_wfmt)f);
            t->recomputed[f] += q(&b->layers[l].fq[f][1], b->y, b->leaves, b->path_act,
                                  b->path_node, b->x, b->H, n);
            for (size_t i = 0; i < (size_t)n * b->T; i++)
                t->flips[f] += b->leaves[i] != ref[i];
        }
    }
    free(ref);
}

static void check_all(bench *b, table *t) {
    const int n = b->batches[0] < 4 ? b->batches[0] : 4;
    double *dref = malloc(sizeof(double) * (size_t)n * b->H);
    double *fref = malloc(sizeof(double) * 3 * (size_t)n * b->H); /* per weight format */
    int32_t *lref = malloc(sizeof(int32_t) * (size_t)n * b->T);
    dense_reference(b, dref, n);
    for (int f = 2; f >= 0; f--) { /* the scalar references; F32 last: its leaves are lref */
        ufb_cmm_fn ref = f == UFB_WFMT_F32 ? ufb_cmm_scalar : ufb_cmmq_scalar;
        ref(&b->layers[0].fq[f][0], b->y, b->leaves, b->path_act, b->path_node, b->x, b->H, n);
        for (size_t i = 0; i < (size_t)n * b->H; i++)
            fref[(size_t)f * n * b->H + i] = b->y[i];
    }
    memcpy(lref, b->leaves, sizeof(int32_t) * (size_t)n * b->T);
    for (int f = UFB_WFMT_BF16; f <= UFB_WFMT_INT8; f++) {
        double e = 0, m = 0;
        for (size_t i = 0; i < (size_t)n * b->H; i++) {
            e = fmax(e, fabs(fref[(size_t)f * n * b->H + i] - fref[i]));
            m = fmax(m, fabs(fref[i]));
        }
        t->qout_err[f] = m > 0 ? e / m : e;
    }
    for (int v = 0; v < N_V; v++) {
        ufb_cmm_fn cmm = cmm_of((enum variant)v);
        t->err[v] = v >= V_CMM_SCALAR && !cmm
                        ? -2
                        : check_variant(b, (enum variant)v, cmm, dref,
                                        fref + (size_t)vinfo[v].fmt * n * b->H, lref, n);
    }
    free(dref), free(fref), free(lref);
    route_check(b, t);
}

int ufb_bench_ffn_main(int argc, char **argv) {
    bench b;
    static table t;
    if (parse_args(&b, argc, argv)) {
        fprintf(stderr,
                "usage: ufb bench ffn [--hidden 768] [--depth 11] [--trees 1] "
                "[--layers 16] [--batch 1,8,32,128,1024] [--threads 1,2] [--runs 5] [--group 16] "
                "[--only VARIANT,...] [--json]\n");
        return 2;
    }
    if (alloc_bench(&b)) {
        fprintf(stderr, "ufb bench: out of memory\n");
        free_bench(&b);
        return 1;
    }
    check_all(&b, &t);
    for (int ti = 0; ti < b.n_threads; ti++)
        for (int bi = 0; bi < b.n_batches; bi++)
            for (int v = 0; v < N_V; v++)
                t.us[v][ti][bi] = t.err[v] <= -2 || !selected(&b, (enum variant)v)
                                      ? -1
                                      : time_variant(&b, (enum variant)v, cmm_of((enum variant)v),
                                                     b.threads[ti], b.batches[bi]);
    if (b.json)
        print_json(&b, &t);
    else
        print_text(&b, &t);
    free_bench(&b);
    for (int v = 0; v < N_V; v++) /* a routing mismatch or a large error fails the run */
        if (t.err[v] > -2 && (t.err[v] < 0 || t.err[v] > 1e-3)) return 3;
    return 0;
}
