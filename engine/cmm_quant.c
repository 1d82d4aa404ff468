/* cmm_quant.c — FFF node rows in BF16 or INT8: quantization, the scalar reference of the
 * quantized CMM, and its run-time dispatch (SIMD variants: cmmq_simd_impl.h).
 *
 * Storage: the same node layout as F32 (Win row, then Wout row, per node; children of node k
 * at 2k+1 and 2k+2, adjacent), rows padded to 64 elements so every row starts on a cache line.
 * INT8 rows are symmetric with one F32 scale per row (max |w| / 127); BF16 rows are rounded
 * to nearest even. BF16 dots accumulate in F32. INT8 dots run in integers: the token is
 * rounded once to int16 fixed point (ufb_xq_max: 15 bits up to H = 1024) and Σ q_i w_i is
 * exact in int32, then scaled by step · row scale — a widened-to-F32 INT8 dot cost three
 * vector operations per 16 weights, this one two per 32 (a third of the work) and its sum
 * does not depend on the order, so kernels and batches agree exactly. The summing pass
 * (Σ GELU(a) · Wout row) accumulates in F32 for both formats.
 *
 * Routing check: a quantized dot differs from the F32 dot by Σ x_i e_i (e: the row's
 * rounding errors), whose standard deviation for inputs not aligned with e is ||x||_2 · rms(e).
 * qmargin[r] = K · rms(e_r) + 2e-5 · ||w_r||_2 (K = UFB_QMARGIN_SIGMAS; the second term covers
 * F32 rounding in either dot). INT8 adds the token's own rounding, Σ δx_i w_i with δx_i
 * uniform in ±step/2: std step · ||w_r||_2 / sqrt(12), qxmargin[r] = K · ||w_r||_2 / sqrt(12).
 * A dot with |a_q| <= ||x||_2 · qmargin[r] + step · qxmargin[r] (or a NaN) is recomputed from the
 * F32 row in the F32 kernel's own order, so the node chosen is the F32 kernel's unless the
 * error exceeds K standard deviations (the benchmark and tests count such flips: none seen).
 * Cauchy–Schwarz would make it a hard bound at K = sqrt(H) (≈ 28 for H = 768), at the price
 * of recomputing ~3.5x more dots.
 */
#include "engine_impl.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

const char *ufb_wfmt_name(enum ufb_wfmt f) {
    switch (f) {
    case UFB_WFMT_F32:
        return "f32";
    case UFB_WFMT_BF16:
        return "bf16";
    case UFB_WFMT_INT8:
        return "int8";
    }
    return "unknown";
}

int ufb_wfmt_parse(const char *s, enum ufb_wfmt *f) {
    static const enum ufb_wfmt all[] = {UFB_WFMT_F32, UFB_WFMT_BF16, UFB_WFMT_INT8};

    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, ufb_wfmt_name(all[i])) == 0) {
            *f = all[i];
            return 0;
        }
    return -1;
}

void *ufb_alloc_weights(size_t n_bytes) {
    const size_t huge = (size_t)1 << 21;
    if (n_bytes < huge) return aligned_alloc(64, (n_bytes + 63) & ~(size_t)63);
    const size_t sz = (n_bytes + huge - 1) & ~(huge - 1);
    void *p = aligned_alloc(huge, sz);
    if (p) (void)madvise(p, sz, MADV_HUGEPAGE); /* advice only: fine where THP is off */
    return p;
}

static uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even; weights are finite */
    return (uint16_t)(u >> 16);
}

static size_t elem_size(enum ufb_wfmt fmt) {
    return fmt == UFB_WFMT_BF16 ? 2 : 1;
}

/* element i of a stored row, widened (INT8: unscaled) */
static float deq(const ufb_fff *w, const void *row, int i) {
    if (w->qfmt == UFB_WFMT_BF16) return ufb_bf16_to_f32(((const uint16_t *)row)[i]);
    return (float)((const int8_t *)row)[i];
}

static const void *qrow(const ufb_fff *w, int r, int part) {
    return (const char *)w->qnodes +
           ((size_t)r * 2 + (size_t)part) * (size_t)w->qhp * elem_size(w->qfmt);
}

void *ufb_fff_quantize(ufb_fff *w, enum ufb_wfmt fmt, double qerr_rms[2]) {
    if (fmt != UFB_WFMT_BF16 && fmt != UFB_WFMT_INT8) return NULL;
    const int H = w->hidden, qhp = (H + 63) & ~63, rows = w->n_trees * w->n_nodes;
    if (fmt == UFB_WFMT_INT8 && qhp > UFB_XQ_ELEMS) return NULL;
    const size_t node_bytes = (size_t)rows * 2 * (size_t)qhp * elem_size(fmt);
    const size_t total = (node_bytes + sizeof(float) * 4 * (size_t)rows + 63) & ~(size_t)63;
    char *buf = ufb_alloc_weights(total);
    if (!buf) return NULL;
    memset(buf, 0, total);
    float *scale = (float *)(void *)(buf + node_bytes), *margin = scale + 2 * (size_t)rows,
          *xmargin = margin + rows;
    double err_sum[2] = {0, 0}, w_sum[2] = {0, 0};
    for (int r = 0; r < rows; r++)
        for (int part = 0; part < 2; part++) {
            const float *src = w->nodes + ((size_t)r * 2 + (size_t)part) * (size_t)w->hp;
            void *dst = buf + ((size_t)r * 2 + (size_t)part) * (size_t)qhp * elem_size(fmt);
            float maxabs = 0;
            for (int i = 0; i < H; i++)
                maxabs = fmaxf(maxabs, fabsf(src[i]));
            const float s = fmt == UFB_WFMT_INT8 && maxabs > 0 ? maxabs / 127.0f : 1.0f;
            double e2 = 0, w2 = 0;
            for (int i = 0; i < H; i++) {
                float back;
                if (fmt == UFB_WFMT_BF16) {
                    uint16_t h = f32_to_bf16(src[i]);
                    ((uint16_t *)dst)[i] = h;
                    back = ufb_bf16_to_f32(h);
                } else {
                    long q = lrintf(src[i] / s);
                    q = q > 127 ? 127 : q < -127 ? -127 : q;
                    ((int8_t *)dst)[i] = (int8_t)q;
                    back = (float)q * s;
                }
                e2 += ((double)back - src[i]) * ((double)back - src[i]);
                w2 += (double)src[i] * src[i];
            }
            scale[2 * r + part] = s;
            if (part == 0) {
                margin[r] = UFB_QMARGIN_SIGMAS * (float)sqrt(e2 / H) + 2e-5f * (float)sqrt(w2);
                /* x rounded to int16 steps: errors uniform in ±step/2, std step/sqrt(12) */
                xmargin[r] = fmt == UFB_WFMT_INT8 ? UFB_QMARGIN_SIGMAS * (float)sqrt(w2 / 12.0) : 0;
            }
            err_sum[part] += e2, w_sum[part] += w2;
        }
    if (qerr_rms)
        for (int part = 0; part < 2; part++)
            qerr_rms[part] = w_sum[part] > 0 ? sqrt(err_sum[part] / w_sum[part]) : 0;
    w->qfmt = fmt, w->qhp = qhp, w->qnodes = buf, w->qscale = scale, w->qmargin = margin;
    w->qxmargin = xmargin;
    return buf;
}

/* The token in int16 fixed point for the INT8 dots (cmmq_simd_impl.h does the same, bit for
 * bit: max |x| and x · (xmax / max|x|) rounded to nearest even are exact in any order).
 * xq gets qhp elements, zero past H. @return the step (NaN for a non-finite x: q = 0, and
 * every dot is then recomputed in F32) */
float ufb_xq_quantize(int16_t *xq, const float *x, int H, int qhp) {
    const int xmax = ufb_xq_max(qhp);
    float maxabs = 0, n2 = 0;
    for (int i = 0; i < H; i++)
        maxabs = fmaxf(maxabs, fabsf(x[i])), n2 += x[i] * x[i];
    memset(xq, 0, sizeof(int16_t) * (size_t)qhp);
    if (!(n2 <= FLT_MAX)) return NAN; /* an inf or NaN (or |x| past 1e19) */
    const float inv = maxabs > 0 ? (float)xmax / maxabs : 0.0f;
    for (int i = 0; i < H; i++)
        xq[i] = (int16_t)lrintf(x[i] * inv);
    return maxabs / (float)xmax;
}

/* The reference: ufb_cmm_scalar's algorithm on the stored rows, with the routing check. */
int64_t ufb_cmmq_scalar(const ufb_fff *w, float *restrict y, int32_t *restrict leaves,
                        float *restrict path_act, int32_t *restrict path_node,
                        const float *restrict x, int ldx, int n_tok) {
    const int H = w->hidden, T = w->n_trees, i8 = w->qfmt == UFB_WFMT_INT8;
    int64_t n_recomputed = 0;
    _Alignas(64) int16_t xq[UFB_XQ_ELEMS]; /* qhp <= UFB_XQ_ELEMS for INT8 rows */
    (void)path_act, (void)path_node;
    for (int tok = 0; tok < n_tok; tok++) {
        const float *xr = x + (size_t)tok * ldx;
        float *yr = y + (size_t)tok * H, xn = 0, step = 0;
        for (int i = 0; i < H; i++)
            xn += xr[i] * xr[i];
        xn = sqrtf(xn);
        if (i8) step = ufb_xq_quantize(xq, xr, H, w->qhp);
        memset(yr, 0, sizeof(float) * (size_t)H);
        for (int t = 0; t < T; t++) {
            int k = 0, leaf = 0;
            for (int level = 0; level <= w->depth; level++) {
                const int r = t * w->n_nodes + k;
                const void *win = qrow(w, r, 0), *wout = qrow(w, r, 1);
                float a = 0, margin = xn * w->qmargin[r];
                if (i8) {
                    int32_t s = 0;
                    for (int i = 0; i < H; i++)
                        s += (int32_t)xq[i] * ((const int8_t *)win)[i];
                    const float k8 = step * w->qscale[2 * r];
                    a = (float)s * k8 + w->bias[r];
                    margin += step * w->qxmargin[r];
                } else {
                    for (int i = 0; i < H; i++)
                        a += xr[i] * deq(w, win, i);
                    a = a * w->qscale[2 * r] + w->bias[r];
                }
                if (!(fabsf(a) > margin)) { /* as ufb_cmm_scalar computes it */
                    const float *wf = w->nodes + (size_t)r * 2 * w->hp;
                    a = w->bias[r];
                    for (int i = 0; i < H; i++)
                        a += xr[i] * wf[i];
                    n_recomputed++;
                }
                const float g = ufb_gelu(a) * w->qscale[2 * r + 1];
                for (int i = 0; i < H; i++)
                    yr[i] += g * deq(w, wout, i);
                leaf = k;
                k = 2 * k + 1 + (a > 0.0f);
            }
            leaves[tok * T + t] = leaf;
        }
    }
    return n_recomputed;
}

ufb_cmm_fn ufb_cmmq_get(enum ufb_kernel *k, enum ufb_wfmt fmt) {
    if (fmt == UFB_WFMT_F32) return ufb_cmm_get(k);
    if (*k == UFB_KERNEL_AUTO) *k = ufb_kernel_best();
    if (!ufb_kernel_supported(*k)) return NULL;
    const int i8 = fmt == UFB_WFMT_INT8;
    switch (*k) {
    case UFB_KERNEL_SCALAR:
        return ufb_cmmq_scalar;
    case UFB_KERNEL_AVX2:
        return i8 ? ufb_cmmq_int8_avx2 : ufb_cmmq_bf16_avx2;
    case UFB_KERNEL_AVX512:
        return i8 ? ufb_cmmq_int8_avx512 : ufb_cmmq_bf16_avx512;
    case UFB_KERNEL_AUTO:
        break;
    }
    return NULL;
}
