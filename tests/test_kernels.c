/* test_kernels.c — every SIMD variant against its scalar reference.
 *
 * CMM: random FFF layers (UltraFastBERT's H=768, D=11 and odd shapes that exercise the tails),
 * same leaves as the scalar kernel and outputs within float rounding; the scalar kernel itself
 * against a float64 evaluation of the spec's pseudocode.
 * GEMM: every variant bit-identical to the scalar one, and each row's result independent of
 * how many rows are in the call (the batch-invariance contract of gemm.c).
 */
#include "test_util.h"

#include "engine_impl.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (2.0 / (1 << 24)) - 1.0);
}

typedef struct fff_case {
    ufb_fff w;
    float *nodes, *bias, *x;
    int n_tok;
} fff_case;

static void fff_make(fff_case *c, int H, int D, int T, int n_tok) {
    int hp = (H + 15) & ~15, n = (1 << (D + 1)) - 1;
    size_t n_floats = (size_t)T * n * 2 * hp;
    c->nodes = aligned_alloc(64, sizeof(float) * n_floats);
    c->bias = malloc(sizeof(float) * (size_t)T * n);
    c->x = malloc(sizeof(float) * (size_t)n_tok * H);
    memset(c->nodes, 0, sizeof(float) * n_floats);
    for (int r = 0; r < T * n; r++) {
        for (int i = 0; i < H; i++)
            c->nodes[(size_t)r * 2 * hp + i] = frand() / sqrtf((float)H);
        for (int i = 0; i < H; i++)
            c->nodes[(size_t)r * 2 * hp + hp + i] = frand();
        c->bias[r] = 0.1f * frand();
    }
    for (int i = 0; i < n_tok * H; i++)
        c->x[i] = frand();
    c->w = (ufb_fff){.nodes = c->nodes,
                     .bias = c->bias,
                     .hidden = H,
                     .hp = hp,
                     .depth = D,
                     .n_trees = T,
                     .n_nodes = n};
    c->n_tok = n_tok;
}

static void fff_free(fff_case *c) {
    free(c->nodes);
    free(c->bias);
    free(c->x);
}

/* Run one kernel; caller frees *y and *leaves. */
static void fff_run(const fff_case *c, ufb_cmm_fn fn, float **y, int32_t **leaves) {
    const ufb_fff *w = &c->w;
    size_t path = (size_t)c->n_tok * w->n_trees * (w->depth + 1);
    float *act = malloc(sizeof(float) * path);
    int32_t *node = malloc(sizeof(int32_t) * path);
    *y = malloc(sizeof(float) * (size_t)c->n_tok * w->hidden);
    *leaves = malloc(sizeof(int32_t) * (size_t)c->n_tok * w->n_trees);
    fn(w, *y, *leaves, act, node, c->x, w->hidden, c->n_tok);
    free(act);
    free(node);
}

/* The spec's pseudocode in double precision; @return max |y - y_ref| / max |y_ref|. */
static double fff_vs_double(const fff_case *c, const float *y, const int32_t *leaves) {
    const ufb_fff *w = &c->w;
    double *ref = calloc((size_t)w->hidden, sizeof(double)), err = 0, scale = 0;
    for (int tok = 0; tok < c->n_tok; tok++) {
        const float *x = c->x + (size_t)tok * w->hidden;
        memset(ref, 0, sizeof(double) * (size_t)w->hidden);
        for (int t = 0; t < w->n_trees; t++) {
            int k = 0, leaf = 0;
            for (int level = 0; level <= w->depth; level++) {
                const float *row = w->nodes + (size_t)(t * w->n_nodes + k) * 2 * w->hp;
                double a = w->bias[t * w->n_nodes + k];
                for (int i = 0; i < w->hidden; i++)
                    a += (double)x[i] * row[i];
                double g = 0.5 * a * (1.0 + erf(a / sqrt(2.0)));
                for (int i = 0; i < w->hidden; i++)
                    ref[i] += g * row[w->hp + i];
                leaf = k;
                k = 2 * k + 1 + (a > 0);
            }
            assert_int_equal(leaves[tok * w->n_trees + t], leaf);
        }
        for (int i = 0; i < w->hidden; i++) {
            err = fmax(err, fabs(y[(size_t)tok * w->hidden + i] - ref[i]));
            scale = fmax(scale, fabs(ref[i]));
        }
    }
    free(ref);
    return err / scale;
}

static void test_cmm_variants(void **state) {
    (void)state;
    static const int shapes[][4] = {
        {768, 11, 1, 37}, {100, 3, 3, 9}, {33, 0, 4, 5}, {17, 6, 2, 1}, {64, 5, 1, 130}};

    static const enum ufb_kernel kernels[] = {UFB_KERNEL_AVX2, UFB_KERNEL_AVX512};

    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        fff_case c;
        fff_make(&c, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3]);
        float *y_ref;
        int32_t *l_ref;
        fff_run(&c, ufb_cmm_scalar, &y_ref, &l_ref);
        double rel = fff_vs_double(&c, y_ref, l_ref);
        printf("  H=%-4d D=%-2d T=%d N=%-3d scalar vs float64: rel err %.1e\n", shapes[s][0],
               shapes[s][1], shapes[s][2], shapes[s][3], rel);
        assert_true(rel < 1e-5);
        for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
            enum ufb_kernel kv = kernels[k];
            ufb_cmm_fn fn = ufb_cmm_get(&kv);
            if (!fn) continue; /* not on this CPU */
            float *y;
            int32_t *leaves;
            fff_run(&c, fn, &y, &leaves);
            assert_memory_equal(leaves, l_ref, sizeof(int32_t) * (size_t)c.n_tok * c.w.n_trees);
            double e = fff_vs_double(&c, y, leaves);
            printf("  %28s %-6s vs float64: rel err %.1e\n", "", ufb_kernel_name(kv), e);
            assert_true(e < 1e-5);
            free(y);
            free(leaves);
        }
        free(y_ref);
        free(l_ref);
        fff_free(&c);
    }
}

/* BF16 and INT8 rows: each kernel (scalar reference, AVX2, AVX-512) takes exactly the F32
 * kernel's path of its instruction set, and its output is within the format's rounding of
 * the F32 output; the SIMD kernels agree with the quantized scalar reference. */
static void test_cmm_quantized(void **state) {
    (void)state;
    static const int shapes[][4] = {{768, 11, 1, 64}, {100, 3, 3, 9}, {17, 6, 2, 5}};

    static const enum ufb_kernel kernels[] = {UFB_KERNEL_SCALAR, UFB_KERNEL_AVX2,
                                              UFB_KERNEL_AVX512};

    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        fff_case c;
        fff_make(&c, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3]);
        const size_t ny = (size_t)c.n_tok * c.w.hidden, nl = (size_t)c.n_tok * c.w.n_trees;
        for (int f = UFB_WFMT_BF16; f <= UFB_WFMT_INT8; f++) {
            fff_case q = c;
            double qerr[2];
            void *buf = ufb_fff_quantize(&q.w, (enum ufb_wfmt)f, qerr);
            assert_non_null(buf);
            const double tol = f == UFB_WFMT_BF16 ? 1e-2 : 3e-2;
            float *y_qref;
            int32_t *l_qref;
            fff_run(&q, ufb_cmmq_scalar, &y_qref, &l_qref);
            for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
                enum ufb_kernel kv = kernels[k], kq = kernels[k];
                ufb_cmm_fn f32 = ufb_cmm_get(&kv), fq = ufb_cmmq_get(&kq, (enum ufb_wfmt)f);
                if (!f32) continue; /* not on this CPU */
                assert_non_null(fq);
                float *y32, *y;
                int32_t *l32, *leaves;
                fff_run(&c, f32, &y32, &l32);
                fff_run(&q, fq, &y, &leaves);
                assert_memory_equal(leaves, l32, sizeof(int32_t) * nl);
                double e = 0, m = 0, eq = 0;
                for (size_t i = 0; i < ny; i++) {
                    e = fmax(e, fabs(y[i] - y32[i]));
                    eq = fmax(eq, fabs(y[i] - y_qref[i]));
                    m = fmax(m, fabs(y32[i]));
                }
                printf("  H=%-4d D=%-2d %s %-6s: rows rms err %.1e/%.1e, vs F32 %.1e, vs "
                       "quantized scalar %.1e\n",
                       c.w.hidden, c.w.depth, f == UFB_WFMT_BF16 ? "bf16" : "int8",
                       ufb_kernel_name(kv), qerr[0], qerr[1], e / m, eq / m);
                assert_true(e / m < tol);
                assert_true(eq / m < 1e-4);
                free(y32), free(l32), free(y), free(leaves);
            }
            free(y_qref), free(l_qref), free(buf);
        }
        fff_free(&c);
    }
}

/* The routing check at work: biases set so that token 0's dot at every node is 0 up to F32
 * rounding. The quantized dot is then off by about the quantization error, so without the
 * check the path would go astray at about half the levels; with it every such dot is
 * recomputed from the F32 row and the path is the F32 kernel's. */
static void test_cmm_quantized_margin(void **state) {
    (void)state;

    static const enum ufb_kernel kernels[] = {UFB_KERNEL_SCALAR, UFB_KERNEL_AVX2,
                                              UFB_KERNEL_AVX512};

    fff_case c;
    fff_make(&c, 768, 7, 1, 4);
    for (int r = 0; r < c.w.n_nodes; r++) {
        double d = 0;
        for (int i = 0; i < c.w.hidden; i++)
            d += (double)c.x[i] * c.nodes[(size_t)r * 2 * c.w.hp + i];
        c.bias[r] = (float)-d;
    }
    for (int f = UFB_WFMT_BF16; f <= UFB_WFMT_INT8; f++) {
        fff_case q = c;
        void *buf = ufb_fff_quantize(&q.w, (enum ufb_wfmt)f, NULL);
        assert_non_null(buf);
        for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
            enum ufb_kernel kv = kernels[k], kq = kernels[k];
            ufb_cmm_fn f32 = ufb_cmm_get(&kv), fq = ufb_cmmq_get(&kq, (enum ufb_wfmt)f);
            if (!f32) continue;
            float *y32;
            int32_t *l32;
            fff_run(&c, f32, &y32, &l32);
            const size_t path = (size_t)c.n_tok * (c.w.depth + 1);
            float *y = malloc(sizeof(float) * (size_t)c.n_tok * c.w.hidden),
                  *act = malloc(sizeof(float) * path);
            int32_t *leaves = malloc(sizeof(int32_t) * (size_t)c.n_tok),
                    *node = malloc(sizeof(int32_t) * path);
            int64_t n_re = fq(&q.w, y, leaves, act, node, q.x, q.w.hidden, q.n_tok);
            assert_true(n_re >= c.w.depth + 1); /* token 0 at every level */
            assert_memory_equal(leaves, l32, sizeof(int32_t) * (size_t)c.n_tok);
            free(y32), free(l32), free(y), free(act), free(leaves), free(node);
        }
        free(buf);
    }
    fff_free(&c);
}

/* Quantized kernels: a token's output does not depend on its batch (one token alone takes
 * the 4-accumulator path, 16 in a group one accumulator each; INT8 sums are exact integers),
 * so the whole batch at once, one token at a time and groups of 3 give the same bits. */
static void test_cmm_quantized_batch_invariance(void **state) {
    (void)state;

    static const enum ufb_kernel kernels[] = {UFB_KERNEL_SCALAR, UFB_KERNEL_AVX2,
                                              UFB_KERNEL_AVX512};

    fff_case c;
    fff_make(&c, 100, 5, 2, 37);
    const int H = c.w.hidden, P = c.w.n_trees * (c.w.depth + 1);
    float *y = malloc(sizeof(float) * (size_t)c.n_tok * H),
          *y1 = malloc(sizeof(float) * (size_t)c.n_tok * H),
          *act = malloc(sizeof(float) * (size_t)c.n_tok * P);
    int32_t *leaves = malloc(sizeof(int32_t) * (size_t)c.n_tok * c.w.n_trees),
            *node = malloc(sizeof(int32_t) * (size_t)c.n_tok * P);
    for (int f = UFB_WFMT_BF16; f <= UFB_WFMT_INT8; f++) {
        fff_case q = c;
        void *buf = ufb_fff_quantize(&q.w, (enum ufb_wfmt)f, NULL);
        assert_non_null(buf);
        for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
            enum ufb_kernel kq = kernels[k];
            ufb_cmm_fn fq = ufb_cmmq_get(&kq, (enum ufb_wfmt)f);
            if (!fq) continue; /* not on this CPU */
            fq(&q.w, y, leaves, act, node, q.x, H, q.n_tok);
            for (int step = 1; step <= 3; step += 2) {
                for (int t0 = 0; t0 < q.n_tok; t0 += step) {
                    const int n = q.n_tok - t0 < step ? q.n_tok - t0 : step;
                    fq(&q.w, y1 + (size_t)t0 * H, leaves, act, node, q.x + (size_t)t0 * H, H, n);
                }
                assert_memory_equal(y, y1, sizeof(float) * (size_t)q.n_tok * H);
            }
        }
        free(buf);
    }
    free(y), free(y1), free(act), free(leaves), free(node);
    fff_free(&c);
}

/* A token with a NaN: its INT8 dots cannot be trusted, so every one is recomputed from the F32
 * rows (n_recomputed counts them all) and its path is the F32 kernel's (a NaN dot goes left). */
static void test_cmm_int8_nonfinite_token(void **state) {
    (void)state;

    static const enum ufb_kernel kernels[] = {UFB_KERNEL_SCALAR, UFB_KERNEL_AVX2,
                                              UFB_KERNEL_AVX512};

    fff_case c;
    fff_make(&c, 64, 4, 1, 1);
    c.x[7] = NAN;
    fff_case q = c;
    void *buf = ufb_fff_quantize(&q.w, UFB_WFMT_INT8, NULL);
    assert_non_null(buf);
    for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
        enum ufb_kernel kv = kernels[k], kq = kernels[k];
        ufb_cmm_fn f32 = ufb_cmm_get(&kv), fq = ufb_cmmq_get(&kq, UFB_WFMT_INT8);
        if (!f32) continue;
        float *y32, y[64], act[5];
        int32_t *l32, leaf, node[5];
        fff_run(&c, f32, &y32, &l32);
        assert_int_equal(fq(&q.w, y, &leaf, act, node, q.x, 64, 1), 5); /* D + 1 dots */
        assert_int_equal(leaf, l32[0]);
        assert_int_equal(leaf, (1 << 4) - 1); /* the leftmost leaf */
        free(y32), free(l32);
    }
    free(buf);
    fff_free(&c);
}

/* INT8 keeps a group of int16 tokens on the kernel's stack: past UFB_XQ_ELEMS elements per
 * token quantizing refuses (the loader then reports it); BF16 has no such limit. */
static void test_cmm_int8_hidden_limit(void **state) {
    (void)state;
    fff_case c;
    fff_make(&c, UFB_XQ_ELEMS + 1, 0, 1, 1);
    fff_case q = c;
    assert_null(ufb_fff_quantize(&q.w, UFB_WFMT_INT8, NULL));
    void *buf = ufb_fff_quantize(&q.w, UFB_WFMT_BF16, NULL);
    assert_non_null(buf);
    free(buf);
    fff_free(&c);
    fff_make(&c, UFB_XQ_ELEMS, 0, 1, 1); /* the largest INT8 size works */
    q = c;
    assert_non_null(buf = ufb_fff_quantize(&q.w, UFB_WFMT_INT8, NULL));
    free(buf);
    fff_free(&c);
}

static void test_gemm_variants_and_invariance(void **state) {
    (void)state;
    /* rows cover every tail tile (12, 8, 4, 2, 1 rows) and more than one row block */
    static const int shapes[][3] = {{70, 45, 21}, {32, 16, 9},   {2304, 768, 19},
                                    {3, 5, 2},    {40, 24, 110}, {33, 7, 15}};

    static const enum ufb_kernel kernels[] = {UFB_KERNEL_SCALAR, UFB_KERNEL_AVX2,
                                              UFB_KERNEL_AVX512};

    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int n_out = shapes[s][0], n_in = shapes[s][1], rows = shapes[s][2];
        float *w = malloc(sizeof(float) * (size_t)n_out * n_in);
        float *b = malloc(sizeof(float) * (size_t)n_out);
        float *x = malloc(sizeof(float) * (size_t)rows * n_in);
        float *packed = aligned_alloc(64, sizeof(float) * ufb_linear_packed_len(n_out, n_in));
        for (int i = 0; i < n_out * n_in; i++)
            w[i] = frand();
        for (int i = 0; i < n_out; i++)
            b[i] = frand();
        for (int i = 0; i < rows * n_in; i++)
            x[i] = frand();
        ufb_linear_pack(packed, w, n_out, n_in);
        ufb_linear l = {packed, b, n_in, n_out};
        float *ref = malloc(sizeof(float) * (size_t)rows * n_out);
        float *y = malloc(sizeof(float) * (size_t)rows * n_out);
        ufb_gemm_scalar(&l, ref, n_out, x, n_in, rows);
        double max_err = 0; /* the scalar kernel against a float64 dot product */
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < n_out; c++) {
                double d = b[c];
                for (int k = 0; k < n_in; k++)
                    d += (double)x[r * n_in + k] * w[c * n_in + k];
                max_err = fmax(max_err, fabs(d - ref[r * n_out + c]));
            }
        assert_true(max_err < 1e-4);
        for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
            ufb_gemm_fn fn = ufb_gemm_get(kernels[k]);
            if (!fn) continue;
            fn(&l, y, n_out, x, n_in, rows); /* all rows at once */
            assert_memory_equal(y, ref, sizeof(float) * (size_t)rows * n_out);
            for (int r = 0; r < rows; r++) { /* one row per call: the same bits */
                fn(&l, y + (size_t)r * n_out, n_out, x + (size_t)r * n_in, n_in, 1);
                assert_memory_equal(y + (size_t)r * n_out, ref + (size_t)r * n_out,
                                    sizeof(float) * (size_t)n_out);
            }
        }
        free(w), free(b), free(x), free(packed), free(ref), free(y);
    }
}

/* Many short phases of varying size: every task of every phase runs exactly once, on a thread
 * index inside the pool, and never after its phase returned (the bug TSan once caught). */
typedef struct pool_probe {
    atomic_int hits[8];
    atomic_int bad_thread;
} pool_probe;

static void probe_task(void *arg, int task, int thread) {
    pool_probe *p = arg;
    atomic_fetch_add(&p->hits[task], 1);
    if (thread < 0 || thread >= 3) atomic_store(&p->bad_thread, 1);
}

/* softmax's exp against double-precision exp: relative error <= 4e-7 over the whole clamped
 * range (dense grid, every length 1..7 so the padded tail path runs), clamping below -87.3, NaN
 * kept, and a lane's value independent of where it sits in the array. */
static void test_exp_inplace(void **state) {
    (void)state;

    enum { N = 200003 };

    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    assert_non_null(x), assert_non_null(y);
    double max_rel = 0;
    for (int i = 0; i < N; i++)
        x[i] = y[i] = -87.3f + (88.0f + 87.3f) * (float)i / (float)(N - 1);
    ufb_exp_inplace(y, N);
    for (int i = 0; i < N; i++)
        max_rel = fmax(max_rel, fabs(y[i] - exp((double)x[i])) / exp((double)x[i]));
    printf("exp: max relative error %.3g over [-87.3, 88]\n", max_rel);
    assert_true(max_rel <= 4e-7);
    for (int n = 1; n <= 7; n++) { /* the tail: the same values as in the long array */
        float t[7];
        memcpy(t, x + 1000, sizeof(float) * (size_t)n);
        ufb_exp_inplace(t, n);
        assert_memory_equal(t, y + 1000, sizeof(float) * (size_t)n);
        memcpy(t, x + 1001, sizeof(float) * (size_t)n);
        ufb_exp_inplace(t, n);
        assert_memory_equal(t, y + 1001, sizeof(float) * (size_t)n);
    }
    float low[3] = {-1000.0f, -87.3f, NAN};
    ufb_exp_inplace(low, 3);
    assert_true(low[0] == low[1] && low[0] > 0.0f && low[0] < 1e-37f);
    assert_true(isnan(low[2])); /* a NaN score is not hidden */
    free(x), free(y);
}

static void test_pool_tasks_exactly_once(void **state) {
    (void)state;
    ufb_pool *pool = ufb_pool_create(3, NULL);
    assert_non_null(pool);
    for (int i = 0; i < 20000; i++) {
        pool_probe probe = {0}; /* on the stack, like the forward pass's phase arguments */
        int n = 1 + i % 8;
        ufb_pool_run(pool, probe_task, &probe, n);
        for (int t = 0; t < n; t++)
            assert_int_equal(atomic_load(&probe.hits[t]), 1);
        assert_int_equal(atomic_load(&probe.bad_thread), 0);
    }
    ufb_pool_free(pool);
}

static void test_kernel_names_and_dispatch(void **state) {
    (void)state;
    enum ufb_kernel k = UFB_KERNEL_AUTO;
    assert_non_null(ufb_cmm_get(&k));
    assert_true(k != UFB_KERNEL_AUTO);
    assert_int_equal(k, ufb_kernel_best()); /* AUTO resolves to the best variant */
    assert_true(ufb_kernel_supported(k));
    assert_string_equal(ufb_kernel_name(UFB_KERNEL_SCALAR), "scalar");
    printf("  best kernel on this CPU: %s\n", ufb_kernel_name(k));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_names_and_dispatch),
        cmocka_unit_test(test_pool_tasks_exactly_once),
        cmocka_unit_test(test_cmm_variants),
        cmocka_unit_test(test_cmm_quantized),
        cmocka_unit_test(test_cmm_quantized_margin),
        cmocka_unit_test(test_cmm_quantized_batch_invariance),
        cmocka_unit_test(test_cmm_int8_nonfinite_token),
        cmocka_unit_test(test_cmm_int8_hidden_limit),
        cmocka_unit_test(test_gemm_variants_and_invariance),
        cmocka_unit_test(test_exp_inplace),
    };
    return cmocka_run_group_tests_name("kernels", tests, NULL, NULL);
}
