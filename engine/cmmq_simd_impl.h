/* cmmq_simd_impl.h — the SIMD CMM kernel on reduced-precision node rows (BF16 or INT8),
 * instantiated per instruction set and weight format by cmm_avx2.c and cmm_avx512.c.
 *
 * Besides the vector macros of cmm_simd_impl.h the includer defines
 *   WT            the stored element type (uint16_t for BF16, int8_t for INT8)
 *   WLOAD(p)      VW elements at p widened to a float vector (INT8: unscaled)
 *   CMMQ_FN       the kernel's name, CMMQ_SUFFIX a suffix for its helpers
 * The algorithm is the F32 one (cmm_simd_impl.h) with three changes:
 *   - rows are read from w->qnodes (2–4x fewer bytes per visited node), accumulated in F32 and
 *     scaled once per dot (INT8) or per Wout row (INT8);
 *   - the routing check: when |a_q| <= ||x||_2 · qmargin[r] (qmargin holds K standard deviations
 *     of the row's quantization error, see ufb_fff_quantize) the dot is recomputed from the F32
 *     row in exactly the F32 kernel's order, so the path is the F32 kernel's path;
 *   - while a level's dot products run, both children's Win rows are prefetched (w->prefetch),
 *     and each visited node's Wout row is prefetched into L2 for the summing pass.
 */
#ifndef CMMQ_FN
#    error "define the vector macros, WT, WLOAD, CMMQ_FN and CMMQ_SUFFIX first"
#endif

#include <math.h>

#define CMMQ_GROUP      16 /* most tokens interleaved; w->group picks (default 16) */
#define CMMQ_CAT2(a, b) a##b
#define CMMQ_CAT(a, b)  CMMQ_CAT2(a, b)
#define CMMQ_NAME(name) CMMQ_CAT(name, CMMQ_SUFFIX)
#define CMMQ_ROW(w, r)  ((const WT *)(w)->qnodes + (size_t)(r)*2 * (w)->qhp)

#ifndef CMMQ_PREFETCH_DEFINED
#    define CMMQ_PREFETCH_DEFINED

static inline void prefetch_bytes(const void *p, size_t n, int hint_l2) {
    const char *c = p;
    for (size_t o = 0; o < n; o += 64) {
        if (hint_l2)
            _mm_prefetch(c + o, _MM_HINT_T1);
        else
            _mm_prefetch(c + o, _MM_HINT_T0);
    }
}

/* the F32 kernel's dot product for one token, in its order (cmm_simd_impl.h) */
static float dot_f32(const ufb_fff *w, int r, const float *restrict x) {
    const int H = w->hidden;
    const float *row = w->nodes + (size_t)r * 2 * w->hp;
    VEC acc = VZERO();
    int c = 0;
    for (; c + VW <= H; c += VW)
        acc = VFMA(VLOADU(x + c), VLOAD(row + c), acc);
    if (c < H) acc = VFMA(VLOADU_TAIL(x + c, H - c), VLOAD(row + c), acc);
    return VREDUCE(acc) + w->bias[r];
}
#endif

static int64_t CMMQ_NAME(traverse_q)(const ufb_fff *w, int tree, const float *restrict x, int ldx,
                                     int gn, const float *restrict xnorm, float *restrict act,
                                     int32_t *restrict node, int path_len,
                                     int32_t *restrict leaves) {
    const int H = w->hidden, T = w->n_trees, pf = w->prefetch | UFB_PF_AUTO(gn);
    const size_t win_bytes = (size_t)w->hidden * sizeof(WT), row_elems = 2 * (size_t)w->qhp;
    int k[CMMQ_GROUP] = {0};
    int64_t n_recomputed = 0;
    for (int level = 0; level <= w->depth; level++) {
        const WT *row[CMMQ_GROUP];
        VEC acc[CMMQ_GROUP];
        for (int g = 0; g < gn; g++) {
            row[g] = CMMQ_ROW(w, tree * w->n_nodes + k[g]);
            acc[g] = VZERO();
            if ((pf & UFB_PF_CHILDREN) && level < w->depth) { /* 2k+1, 2k+2 adjacent */
                const WT *child = CMMQ_ROW(w, tree * w->n_nodes + 2 * k[g] + 1);
                prefetch_bytes(child, win_bytes, 0);
                prefetch_bytes(child + row_elems, win_bytes, 0);
            }
        }
        int c = 0;
        for (; c + VW <= H; c += VW)
            for (int g = 0; g < gn; g++)
                acc[g] = VFMA(VLOADU(x + (size_t)g * ldx + c), WLOAD(row[g] + c), acc[g]);
        if (c < H) /* the stored rows are zero-padded to qhp */
            for (int g = 0; g < gn; g++)
                acc[g] =
                    VFMA(VLOADU_TAIL(x + (size_t)g * ldx + c, H - c), WLOAD(row[g] + c), acc[g]);
        for (int g = 0; g < gn; g++) {
            const int r = tree * w->n_nodes + k[g];
            float a = VREDUCE(acc[g]) * w->qscale[2 * r] + w->bias[r];
            if (fabsf(a) <= xnorm[g] * w->qmargin[r]) {
                a = dot_f32(w, r, x + (size_t)g * ldx);
                n_recomputed++;
            }
            if (pf & UFB_PF_WOUT) /* for the summing pass, into L2 */
                prefetch_bytes(row[g] + w->qhp, win_bytes, 1);
            act[g * path_len + level] = a;
            node[g * path_len + level] = r;
            if (level == w->depth) leaves[g * T] = k[g];
            k[g] = 2 * k[g] + 1 + (a > 0.0f);
        }
    }
    return n_recomputed;
}

/* y (H) = Σ_p coef[p] · Wout row of node[p]; coef = GELU(a) · the row's scale */
static void CMMQ_NAME(sum_rows_q)(const ufb_fff *w, float *restrict y, const float *restrict coef,
                                  const int32_t *restrict node, int n_path) {
    const int H = w->hidden;
    for (int c = 0; c < H; c += VW) {
        VEC acc = VZERO();
        for (int p = 0; p < n_path; p++)
            acc = VFMA(VSET1(coef[p]), WLOAD(CMMQ_ROW(w, node[p]) + w->qhp + c), acc);
        if (c + VW <= H)
            VSTOREU(y + c, acc);
        else
            VSTOREU_TAIL(y + c, acc, H - c);
    }
}

int64_t CMMQ_FN(const ufb_fff *w, float *restrict y, int32_t *restrict leaves,
                float *restrict path_act, int32_t *restrict path_node, const float *restrict x,
                int ldx, int n_tok) {
    const int T = w->n_trees, V = w->depth + 1, P = T * V, H = w->hidden;
    int64_t n_recomputed = 0;
    const int group = w->group > 0 && w->group <= CMMQ_GROUP ? w->group : 16;
    for (int t0 = 0; t0 < n_tok; t0 += group) {
        const int gn = n_tok - t0 < group ? n_tok - t0 : group;
        float xnorm[CMMQ_GROUP];
        for (int g = 0; g < gn; g++) { /* vector partial sums: a scalar sum of squares is one
                                        * dependent chain of H adds (~0.9 us a token) */
            const float *xr = x + (size_t)(t0 + g) * ldx;
            VEC s = VZERO();
            int c = 0;
            for (; c + VW <= H; c += VW)
                s = VFMA(VLOADU(xr + c), VLOADU(xr + c), s);
            if (c < H) {
                const VEC v = VLOADU_TAIL(xr + c, H - c);
                s = VFMA(v, v, s);
            }
            xnorm[g] = sqrtf(VREDUCE(s));
        }
        for (int t = 0; t < T; t++)
            n_recomputed += CMMQ_NAME(traverse_q)(
                w, t, x + (size_t)t0 * ldx, ldx, gn, xnorm, path_act + (size_t)t0 * P + t * V,
                path_node + (size_t)t0 * P + t * V, P, leaves + (size_t)t0 * T + t);
    }
    for (size_t i = 0; i < (size_t)n_tok * P; i++)
        path_act[i] = ufb_gelu(path_act[i]) * w->qscale[2 * path_node[i] + 1];
    for (int tok = 0; tok < n_tok; tok++)
        CMMQ_NAME(sum_rows_q)
    (w, y + (size_t)tok * H, path_act + (size_t)tok * P, path_node + (size_t)tok * P, P);
    return n_recomputed;
}

#undef CMMQ_GROUP
#undef CMMQ_CAT2
#undef CMMQ_CAT
#undef CMMQ_NAME
#undef CMMQ_ROW
