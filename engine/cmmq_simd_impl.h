/* cmmq_simd_impl.h — the SIMD CMM kernel on reduced-precision node rows (BF16 or INT8),
 * instantiated per instruction set and weight format by cmm_avx2.c and cmm_avx512.c.
 *
 * Besides the vector macros of cmm_simd_impl.h the includer defines
 *   WT            the stored element type (uint16_t for BF16, int8_t for INT8)
 *   WLOAD(p)      VW elements at p widened to a float vector (INT8: unscaled)
 *   CMMQ_FN       the kernel's name, CMMQ_SUFFIX a suffix for its helpers
 *   VMUL, VMAXABS(m, v) (max(m, |v|)), VHMAX (horizontal max), SUM_TILE (accumulators in
 *                 the summing pass: 24 of 32 vector registers, 12 of 16)
 * and for INT8 rows the integer dot (see cmm_quant.c):
 *   IVEC, IW      an int32 accumulator vector and the int16 elements one IDOT consumes
 *   IZERO(), IADD(a, b), IREDUCE(v) (horizontal int32 sum)
 *   IDOT(acc, xq, w)   acc += pairwise sums of the IW products of int16 xq and int8 w
 *   XQSTORE(p, v)      VW floats v (whole numbers within ±16383) rounded, stored as int16
 * The algorithm is the F32 one (cmm_simd_impl.h) with these changes:
 *   - rows are read from w->qnodes (2–4x fewer bytes per visited node); BF16 dots accumulate
 *     in F32, INT8 dots in exact int32 on the token rounded to int16, scaled once per dot, and
 *     Wout rows accumulate in F32 with the row's scale folded into the coefficient;
 *   - the routing check: when |a_q| <= ||x||_2 · qmargin[r] (+ the int16 step · qxmargin[r]
 *     for INT8; K standard deviations of the dot's quantization error, see ufb_fff_quantize)
 *     the dot is recomputed from the F32 row in exactly the F32 kernel's order, so the path is
 *     the F32 kernel's path;
 *   - prefetching (engine_impl.h, UFB_PF_*): with 1–2 tokens both children's Win rows while a
 *     level's dots run and each visited Wout row into L2; with more, each token's next node
 *     (Win and Wout) into L2 as soon as its decision is made;
 *   - each group's GELU and summing pass follow its traversal at once (its Wout rows are then
 *     still in L2), the summing pass with SUM_TILE accumulators in registers.
 */
#ifndef CMMQ_FN
#    error "define the vector macros, WT, WLOAD, CMMQ_FN and CMMQ_SUFFIX first"
#endif

#include <float.h>
#include <math.h>
#include <string.h>

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

/* xstep: 1 for BF16; for INT8 the token's int16 step, and xq its int16 copy (qhp each) */
static int64_t CMMQ_NAME(traverse_q)(const ufb_fff *w, int tree, const float *restrict x, int ldx,
                                     const int16_t *restrict xq, int gn,
                                     const float *restrict xnorm, const float *restrict xstep,
                                     float *restrict act, int32_t *restrict node, int path_len,
                                     int32_t *restrict leaves) {
    const int H = w->hidden, T = w->n_trees, pf = w->prefetch | UFB_PF_AUTO(gn);
    const size_t win_bytes = (size_t)w->hidden * sizeof(WT), row_elems = 2 * (size_t)w->qhp,
                 row_bytes = (size_t)w->qhp * sizeof(WT);
    int k[CMMQ_GROUP] = {0};
    int64_t n_recomputed = 0;
    for (int level = 0; level <= w->depth; level++) {
        const WT *row[CMMQ_GROUP];
        for (int g = 0; g < gn; g++) {
            row[g] = CMMQ_ROW(w, tree * w->n_nodes + k[g]);
            if ((pf & UFB_PF_CHILDREN) && level < w->depth) { /* 2k+1, 2k+2 adjacent */
                const WT *child = CMMQ_ROW(w, tree * w->n_nodes + 2 * k[g] + 1);
                prefetch_bytes(child, win_bytes, 0);
                prefetch_bytes(child + row_elems, win_bytes, 0);
            }
        }
        float dot[CMMQ_GROUP];
#ifdef IDOT
        const int qhp = w->qhp;
        (void)H, (void)ldx;
        if (gn >= 4) { /* one accumulator per token: gn chains in flight */
            IVEC acc[CMMQ_GROUP];
            for (int g = 0; g < gn; g++)
                acc[g] = IZERO();
            for (int c = 0; c < qhp; c += IW)
                for (int g = 0; g < gn; g++)
                    acc[g] = IDOT(acc[g], xq + (size_t)g * qhp + c, row[g] + c);
            for (int g = 0; g < gn; g++)
                dot[g] = (float)IREDUCE(acc[g]);
        } else /* a lone token: four chains (integer sums: the same result in any order) */
            for (int g = 0; g < gn; g++) {
                const int16_t *xg = xq + (size_t)g * qhp;
                IVEC a0 = IZERO(), a1 = IZERO(), a2 = IZERO(), a3 = IZERO();
                int c = 0;
                for (; c + 4 * IW <= qhp; c += 4 * IW) {
                    a0 = IDOT(a0, xg + c, row[g] + c);
                    a1 = IDOT(a1, xg + c + IW, row[g] + c + IW);
                    a2 = IDOT(a2, xg + c + 2 * IW, row[g] + c + 2 * IW);
                    a3 = IDOT(a3, xg + c + 3 * IW, row[g] + c + 3 * IW);
                }
                for (; c < qhp; c += IW)
                    a0 = IDOT(a0, xg + c, row[g] + c);
                dot[g] = (float)IREDUCE(IADD(IADD(a0, a1), IADD(a2, a3)));
            }
#else
        VEC acc[CMMQ_GROUP];
        for (int g = 0; g < gn; g++)
            acc[g] = VZERO();
        int c = 0;
        for (; c + VW <= H; c += VW)
            for (int g = 0; g < gn; g++)
                acc[g] = VFMA(VLOADU(x + (size_t)g * ldx + c), WLOAD(row[g] + c), acc[g]);
        if (c < H) /* the stored rows are zero-padded to qhp */
            for (int g = 0; g < gn; g++)
                acc[g] =
                    VFMA(VLOADU_TAIL(x + (size_t)g * ldx + c, H - c), WLOAD(row[g] + c), acc[g]);
        for (int g = 0; g < gn; g++)
            dot[g] = VREDUCE(acc[g]);
        (void)xq;
#endif
        for (int g = 0; g < gn; g++) {
            const int r = tree * w->n_nodes + k[g];
            const float kr = xstep[g] * w->qscale[2 * r];
            float a = dot[g] * kr + w->bias[r];
            if (!(fabsf(a) > xnorm[g] * w->qmargin[r] + xstep[g] * w->qxmargin[r])) {
                a = dot_f32(w, r, x + (size_t)g * ldx);
                n_recomputed++;
            }
            if (pf & UFB_PF_WOUT) /* for the summing pass, into L2 */
                prefetch_bytes(row[g] + w->qhp, win_bytes, 1);
            act[g * path_len + level] = a;
            node[g * path_len + level] = r;
            if (level == w->depth) leaves[g * T] = k[g];
            k[g] = 2 * k[g] + 1 + (a > 0.0f);
            if ((pf & UFB_PF_NEXT) && level < w->depth) /* the chosen child's Win and Wout */
                prefetch_bytes(CMMQ_ROW(w, tree * w->n_nodes + k[g]), 2 * row_bytes, 1);
        }
    }
    return n_recomputed;
}

/* y[c0, c0 + nch·VW) = Σ_p coef[p] · Wout row of node[p], nch (a constant per call site)
 * accumulators in registers: each row is read once, in order, and no FMA waits on another
 * (one accumulator summed over the path would be a chain of n_path dependent FMAs per
 * vector). Each y element still sums p = 0, 1, ... in order: the same bits as that chain. */
static inline __attribute__((always_inline)) void
CMMQ_NAME(sum_tile)(const ufb_fff *w, float *restrict y, const float *restrict coef,
                    const int32_t *restrict node, int n_path, int c0, const int nch) {
    const int H = w->hidden;
    VEC acc[SUM_TILE];
#pragma GCC unroll 24
    for (int j = 0; j < nch; j++)
        acc[j] = VZERO();
    for (int p = 0; p < n_path; p++) {
        const VEC cp = VSET1(coef[p]);
        const WT *wr = CMMQ_ROW(w, node[p]) + w->qhp + c0;
#pragma GCC unroll 24
        for (int j = 0; j < nch; j++)
            acc[j] = VFMA(cp, WLOAD(wr + j * VW), acc[j]);
    }
#pragma GCC unroll 24
    for (int j = 0; j < nch; j++) {
        const int c = c0 + j * VW;
        if (c + VW <= H)
            VSTOREU(y + c, acc[j]);
        else if (c < H)
            VSTOREU_TAIL(y + c, acc[j], H - c);
    }
}

/* y (H) = Σ_p coef[p] · Wout row of node[p]; coef = GELU(a) · the row's scale */
static void CMMQ_NAME(sum_rows_q)(const ufb_fff *w, float *restrict y, const float *restrict coef,
                                  const int32_t *restrict node, int n_path) {
    const int n_ch = (w->hidden + VW - 1) / VW; /* the rows are zero-padded past H */
    int c = 0;
    for (; c + SUM_TILE <= n_ch; c += SUM_TILE)
        CMMQ_NAME(sum_tile)(w, y, coef, node, n_path, c * VW, SUM_TILE);
    for (; c + 8 <= n_ch; c += 8)
        CMMQ_NAME(sum_tile)(w, y, coef, node, n_path, c * VW, 8);
    if (c + 4 <= n_ch) CMMQ_NAME(sum_tile)(w, y, coef, node, n_path, c * VW, 4), c += 4;
    if (c + 2 <= n_ch) CMMQ_NAME(sum_tile)(w, y, coef, node, n_path, c * VW, 2), c += 2;
    if (c + 1 <= n_ch) CMMQ_NAME(sum_tile)(w, y, coef, node, n_path, c * VW, 1);
}

/* Per token: ||x||_2 for the routing margin; for INT8 also x in int16 (xq, qhp elements, zero
 * past H) exactly as ufb_xq_quantize rounds it. @return the int16 step (INT8) or 1 (BF16) */
static float CMMQ_NAME(prepare_token)(const ufb_fff *w, const float *restrict xr, float *xnorm,
                                      int16_t *restrict xq) {
    const int H = w->hidden;
    VEC s = VZERO(), m = VZERO();
    int c = 0;
    for (; c + VW <= H; c += VW) { /* vector partial sums: a scalar sum of squares is one
                                    * dependent chain of H adds (~0.9 us a token) */
        const VEC v = VLOADU(xr + c);
        s = VFMA(v, v, s);
        m = VMAXABS(m, v);
    }
    if (c < H) {
        const VEC v = VLOADU_TAIL(xr + c, H - c);
        s = VFMA(v, v, s);
        m = VMAXABS(m, v);
    }
    const float n2 = VREDUCE(s);
    *xnorm = sqrtf(n2);
#ifdef IDOT
    const int qhp = w->qhp, xmax = ufb_xq_max(qhp);
    if (!(n2 <= FLT_MAX)) { /* an inf or NaN: every dot is recomputed in F32 */
        memset(xq, 0, sizeof(int16_t) * (size_t)qhp);
        return NAN;
    }
    const float maxabs = VHMAX(m);
    const VEC inv = VSET1(maxabs > 0 ? (float)xmax / maxabs : 0.0f);
    for (c = 0; c + VW <= H; c += VW)
        XQSTORE(xq + c, VMUL(VLOADU(xr + c), inv));
    if (c < H) { /* the masked load gives zeros past H */
        XQSTORE(xq + c, VMUL(VLOADU_TAIL(xr + c, H - c), inv));
        c += VW;
    }
    memset(xq + c, 0, sizeof(int16_t) * (size_t)(qhp - c));
    return maxabs / (float)xmax;
#else
    (void)m, (void)xq;
    return 1.0f;
#endif
}

int64_t CMMQ_FN(const ufb_fff *w, float *restrict y, int32_t *restrict leaves,
                float *restrict path_act, int32_t *restrict path_node, const float *restrict x,
                int ldx, int n_tok) {
    const int T = w->n_trees, V = w->depth + 1, P = T * V, H = w->hidden;
    int64_t n_recomputed = 0;
    int group = w->group > 0 && w->group <= CMMQ_GROUP ? w->group : 16;
#ifdef IDOT
    _Alignas(64) int16_t xq_buf[UFB_XQ_ELEMS]; /* the group's tokens in int16 */
    int16_t *const xq = xq_buf;
    if (group * w->qhp > UFB_XQ_ELEMS) group = UFB_XQ_ELEMS / w->qhp; /* >= 1: ufb_fff_quantize */
#else
    int16_t *const xq = NULL;
#endif
    for (int t0 = 0; t0 < n_tok; t0 += group) {
        const int gn = n_tok - t0 < group ? n_tok - t0 : group;
        float xnorm[CMMQ_GROUP], xstep[CMMQ_GROUP];
        for (int g = 0; g < gn; g++)
            xstep[g] = CMMQ_NAME(prepare_token)(w, x + (size_t)(t0 + g) * ldx, &xnorm[g],
                                                xq ? xq + (size_t)g * w->qhp : NULL);
        for (int t = 0; t < T; t++)
            n_recomputed += CMMQ_NAME(traverse_q)(w, t, x + (size_t)t0 * ldx, ldx, xq, gn, xnorm,
                                                  xstep, path_act + (size_t)t0 * P + t * V,
                                                  path_node + (size_t)t0 * P + t * V, P,
                                                  leaves + (size_t)t0 * T + t);
        /* the group's sums right away, while its Wout rows are still in L2 */
        for (size_t i = (size_t)t0 * P; i < (size_t)(t0 + gn) * P; i++)
            path_act[i] = ufb_gelu(path_act[i]) * w->qscale[2 * path_node[i] + 1];
        for (int tok = t0; tok < t0 + gn; tok++)
            CMMQ_NAME(sum_rows_q)
        (w, y + (size_t)tok * H, path_act + (size_t)tok * P, path_node + (size_t)tok * P, P);
    }
    return n_recomputed;
}

#undef CMMQ_GROUP
#undef CMMQ_CAT2
#undef CMMQ_CAT
#undef CMMQ_NAME
#undef CMMQ_ROW
