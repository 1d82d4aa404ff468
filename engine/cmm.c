/* cmm.c — conditional matrix multiplication (CMM): the FFF layer, scalar reference and the
 * run-time dispatch among the SIMD variants (cmm_avx2.c, cmm_avx512.c).
 *
 * The scalar kernel is the specification (model-spec.md, "FFF layer"): per token and tree,
 * start at the root, take a = x·Win[k] + b[k], add GELU(a)·Wout[:, k] to y, and go to the
 * left child 2k+1 when a <= 0, else the right child 2k+2; D+1 nodes, the last one a leaf.
 * The SIMD variants must choose exactly the same nodes; tests compare them with this one.
 */
#include "engine_impl.h"

#include <math.h>
#include <string.h>

float ufb_gelu(float a) {
    return 0.5f * a * (1.0f + erff(a * 0.70710678118654752f));
}

int64_t ufb_cmm_scalar(const ufb_fff *w, float *restrict y, int32_t *restrict leaves,
                       float *restrict path_act, int32_t *restrict path_node,
                       const float *restrict x, int ldx, int n_tok) {
    const int H = w->hidden, T = w->n_trees;
    (void)path_act, (void)path_node; /* the reference needs no scratch */
    for (int tok = 0; tok < n_tok; tok++) {
        const float *xr = x + (size_t)tok * ldx;
        float *yr = y + (size_t)tok * H;
        memset(yr, 0, sizeof(float) * (size_t)H);
        for (int t = 0; t < T; t++) {
            int k = 0, leaf = 0;
            for (int level = 0; level <= w->depth; level++) {
                const int r = t * w->n_nodes + k; /* row of node k of tree t */
                const float *win = w->nodes + (size_t)r * 2 * w->hp, *wout = win + w->hp;
                float a = w->bias[r];
                for (int i = 0; i < H; i++)
                    a += xr[i] * win[i];
                const float g = ufb_gelu(a);
                for (int i = 0; i < H; i++)
                    yr[i] += g * wout[i];
                leaf = k;
                k = 2 * k + 1 + (a > 0.0f);
            }
            leaves[tok * T + t] = leaf;
        }
    }
    return 0;
}

/* ---- Dispatch ---- */

int ufb_kernel_supported(enum ufb_kernel k) {
    __builtin_cpu_init();
    switch (k) {
    case UFB_KERNEL_AUTO:
    case UFB_KERNEL_SCALAR:
        return 1;
    case UFB_KERNEL_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case UFB_KERNEL_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("fma");
    }
    return 0;
}

const char *ufb_kernel_name(enum ufb_kernel k) {
    switch (k) {
    case UFB_KERNEL_AUTO:
        return "auto";
    case UFB_KERNEL_SCALAR:
        return "scalar";
    case UFB_KERNEL_AVX2:
        return "avx2";
    case UFB_KERNEL_AVX512:
        return "avx512";
    }
    return "unknown";
}

int ufb_kernel_parse(const char *s, enum ufb_kernel *k) {
    static const enum ufb_kernel all[] = {UFB_KERNEL_AUTO, UFB_KERNEL_SCALAR, UFB_KERNEL_AVX2,
                                          UFB_KERNEL_AVX512};

    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, ufb_kernel_name(all[i])) == 0) {
            *k = all[i];
            return 0;
        }
    return -1;
}

enum ufb_kernel ufb_kernel_best(void) {
    return ufb_kernel_supported(UFB_KERNEL_AVX512) ? UFB_KERNEL_AVX512
           : ufb_kernel_supported(UFB_KERNEL_AVX2) ? UFB_KERNEL_AVX2
                                                   : UFB_KERNEL_SCALAR;
}

ufb_cmm_fn ufb_cmm_get(enum ufb_kernel *k) {
    if (*k == UFB_KERNEL_AUTO) *k = ufb_kernel_best();
    if (!ufb_kernel_supported(*k)) return NULL;
    switch (*k) {
    case UFB_KERNEL_SCALAR:
        return ufb_cmm_scalar;
    case UFB_KERNEL_AVX2:
        return ufb_cmm_avx2;
    case UFB_KERNEL_AVX512:
        return ufb_cmm_avx512;
    case UFB_KERNEL_AUTO:
        break;
    }
    return NULL;
}
