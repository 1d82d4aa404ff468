/* cmm_simd_impl.h — the SIMD CMM kernel body, instantiated once per instruction set.
 *
 * Included only by cmm_avx2.c and cmm_avx512.c, which first define the vector macros
 * (VEC, VW, VZERO, VLOADU, VLOAD, VFMA, VSET1, VREDUCE, VLOADU_TAIL, VSTOREU, VSTOREU_TAIL)
 * and CMM_FN, so both variants share one algorithm:
 *   1. traversal: for a group of w->group tokens (default 16) at once, the D+1 dependent dot
 * products of each tree (several independent chains in flight hide the latency of fetching rows);
 *      the pre-activation a and the node of every visit go to path_act / path_node;
 *   2. GELU over all recorded activations;
 *   3. one fused pass per token summing its visited nodes' Wout rows, chunk by chunk in
 *      registers, so y is written once.
 * Per token the arithmetic does not depend on its group, so results are batch-independent.
 */
#ifndef CMM_FN
#    error "define the vector macros and CMM_FN before including cmm_simd_impl.h"
#endif

#include <math.h>

#define CMM_GROUP 16 /* most tokens interleaved; w->group picks (default 16) */

static void traverse_group(const ufb_fff *w, int tree, const float *restrict x, int ldx, int gn,
                           float *restrict act, int32_t *restrict node, int path_len,
                           int32_t *restrict leaves) {
    const int H = w->hidden, T = w->n_trees, pf = w->prefetch | UFB_PF_AUTO(gn);
    int k[CMM_GROUP] = {0};
    for (int level = 0; level <= w->depth; level++) {
        const float *row[CMM_GROUP];
        VEC acc[CMM_GROUP];
        for (int g = 0; g < gn; g++) {
            row[g] = w->nodes + (size_t)(tree * w->n_nodes + k[g]) * 2 * w->hp;
            acc[g] = VZERO();
            if ((pf & UFB_PF_CHILDREN) && level < w->depth) { /* 2k+1, 2k+2 adjacent */
                const float *child =
                    w->nodes + (size_t)(tree * w->n_nodes + 2 * k[g] + 1) * 2 * w->hp;
                for (int o = 0; o < H; o += 16) {
                    _mm_prefetch((const char *)(child + o), _MM_HINT_T0);
                    _mm_prefetch((const char *)(child + 2 * w->hp + o), _MM_HINT_T0);
                }
            }
        }
        int c = 0;
        for (; c + VW <= H; c += VW)
            for (int g = 0; g < gn; g++)
                acc[g] = VFMA(VLOADU(x + (size_t)g * ldx + c), VLOAD(row[g] + c), acc[g]);
        if (c < H) /* leftovers of x; the weight rows are zero-padded to hp */
            for (int g = 0; g < gn; g++)
                acc[g] =
                    VFMA(VLOADU_TAIL(x + (size_t)g * ldx + c, H - c), VLOAD(row[g] + c), acc[g]);
        for (int g = 0; g < gn; g++) {
            const int r = tree * w->n_nodes + k[g];
            const float a = VREDUCE(acc[g]) + w->bias[r];
            if (pf & UFB_PF_WOUT) /* for the summing pass, into L2 */
                for (int o = 0; o < H; o += 16)
                    _mm_prefetch((const char *)(row[g] + w->hp + o), _MM_HINT_T1);
            act[g * path_len + level] = a;
            node[g * path_len + level] = r;
            if (level == w->depth) leaves[g * T] = k[g];
            k[g] = 2 * k[g] + 1 + (a > 0.0f);
        }
    }
}

/* y (H) = Σ_p act[p] · Wout row of node[p] */
static void sum_rows(const ufb_fff *w, float *restrict y, const float *restrict act,
                     const int32_t *restrict node, int n_path) {
    const int H = w->hidden;
    for (int c = 0; c < H; c += VW) {
        VEC acc = VZERO();
        for (int p = 0; p < n_path; p++)
            acc =
                VFMA(VSET1(act[p]), VLOAD(w->nodes + (size_t)node[p] * 2 * w->hp + w->hp + c), acc);
        if (c + VW <= H)
            VSTOREU(y + c, acc);
        else
            VSTOREU_TAIL(y + c, acc, H - c);
    }
}

int64_t CMM_FN(const ufb_fff *w, float *restrict y, int32_t *restrict leaves,
               float *restrict path_act, int32_t *restrict path_node, const float *restrict x,
               int ldx, int n_tok) {
    const int T = w->n_trees, V = w->depth + 1, P = T * V; /* P: nodes visited per token */
    const int group = w->group > 0 && w->group <= CMM_GROUP ? w->group : 16;
    for (int t0 = 0; t0 < n_tok; t0 += group) {
        const int gn = n_tok - t0 < group ? n_tok - t0 : group;
        for (int t = 0; t < T; t++)
            traverse_group(w, t, x + (size_t)t0 * ldx, ldx, gn, path_act + (size_t)t0 * P + t * V,
                           path_node + (size_t)t0 * P + t * V, P, leaves + (size_t)t0 * T + t);
    }
    for (size_t i = 0; i < (size_t)n_tok * P; i++)
        path_act[i] = ufb_gelu(path_act[i]);
    for (int tok = 0; tok < n_tok; tok++)
        sum_rows(w, y + (size_t)tok * w->hidden, path_act + (size_t)tok * P,
                 path_node + (size_t)tok * P, P);
    return 0;
}
