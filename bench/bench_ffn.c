/* bench_ffn.c — first rough timing of one feed-forward layer shape, dense vs CMM.
 *
 * UltraFastBERT-1x11 shape: H=768, one tree of depth 11 (4095 neurons, 12 used per token);
 * the dense baseline has the same 4095 neurons: OpenBLAS sgemm -> GELU -> sgemm. 16 layers of
 * distinct random weights (403 MB per variant) are run in turn, so no layer's weights stay in
 * cache. Single thread for both (the engine's worker pool comes later). Medians of 7 runs.
 * The full benchmark suite (all batch sizes, BLAS level 1/2 baselines, JSON) is `ufb bench`.
 *
 *   build/bench_ffn [batch]
 */
#include "engine_impl.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define H      768
#define DEPTH  11
#define LAYERS 16
#define RUNS   7

extern void openblas_set_num_threads(int n);
extern char *openblas_get_corename(void);

static uint64_t rng = 88172645463325252ull;

static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (2.0 / (1 << 24)) - 1.0) * 0.05f;
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *rand_array(size_t n) {
    float *p = aligned_alloc(64, sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        p[i] = frand();
    return p;
}

int main(int argc, char **argv) {
    const int B = argc > 1 ? atoi(argv[1]) : 128, N = (1 << (DEPTH + 1)) - 1;
    openblas_set_num_threads(1);
    float *w1[LAYERS], *w2[LAYERS], *nodes[LAYERS], *bias[LAYERS];
    for (int l = 0; l < LAYERS; l++) {
        w1[l] = rand_array((size_t)N * H), w2[l] = rand_array((size_t)H * N);
        nodes[l] = rand_array((size_t)N * 2 * H), bias[l] = rand_array((size_t)N);
    }
    float *x = rand_array((size_t)B * H), *mid = rand_array((size_t)B * N);
    float *y = rand_array((size_t)B * H), *act = rand_array((size_t)B * (DEPTH + 1));
    int32_t *node = calloc((size_t)B * (DEPTH + 1), sizeof(int32_t));
    int32_t *leaves = calloc((size_t)B, sizeof(int32_t));
    const char *names[] = {"dense sgemm", "cmm scalar", "cmm avx2", "cmm avx512"};

    enum ufb_kernel kernels[] = {UFB_KERNEL_AUTO, UFB_KERNEL_SCALAR, UFB_KERNEL_AVX2,
                                 UFB_KERNEL_AVX512};

    double med[4] = {0};
    printf("H=%d depth=%d (%d neurons) batch=%d layers=%d, 1 thread, OpenBLAS core %s\n", H, DEPTH,
           N, B, LAYERS, openblas_get_corename());
    for (int v = 0; v < 4; v++) {
        ufb_cmm_fn fn = v ? ufb_cmm_get(&kernels[v]) : NULL;
        if (v && !fn) continue;
        double t[RUNS + 1];
        for (int r = 0; r <= RUNS; r++) { /* run 0 is the warm-up */
            double t0 = now_us();
            for (int l = 0; l < LAYERS; l++) {
                if (!v) {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, N, H, 1.0f, x, H, w1[l],
                                H, 0.0f, mid, N);
                    for (size_t i = 0; i < (size_t)B * N; i++)
                        mid[i] = ufb_gelu(mid[i]);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, H, N, 1.0f, mid, N,
                                w2[l], N, 0.0f, y, H);
                } else {
                    ufb_fff w = {nodes[l], bias[l], H, H, DEPTH, 1, N};
                    fn(&w, y, leaves, act, node, x, H, B);
                }
            }
            t[r] = (now_us() - t0) / ((double)B * LAYERS);
        }
        qsort(t + 1, RUNS, sizeof(double), cmp_double);
        med[v] = t[1 + RUNS / 2];
        printf("  %-12s %10.3f us per token-layer", names[v], med[v]);
        if (v) printf("   %6.1fx vs dense", med[0] / med[v]);
        printf("\n");
    }
    return 0;
}
