/* gemm.c — batch-invariant dense projections: y (n, N) = x (n, K) · Wᵀ + b.
 *
 * WHY not OpenBLAS sgemm here: sgemm's result for one row depends on the number of rows in
 * the call (it switches kernels and edge paths with the shape), so a sequence's logits would
 * change with the batch it lands in (measured: last-bit differences in every fixture). ufbd
 * promises identical results whatever the batch, so every per-token projection uses this
 * GEMM, whose order of operations for one output element is fixed: one fused multiply-add
 * chain over k = 0..K-1, then + bias. The scalar reference uses fmaf() and the SIMD variants
 * vector FMA in the same order, so all variants agree bit for bit, whatever the row tiling.
 * OpenBLAS still computes attention, which runs per sequence and is invariant by shape.
 *
 * Weights are packed once at load into panels of UFB_GEMM_NR output columns:
 * packed[(p·K + k)·NR + j] = W[p·NR + j][k] (zero past N), so a micro-kernel streams one
 * contiguous panel while a few rows of x stay in registers.
 */
#include "engine_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t ufb_linear_packed_len(int n_out, int n_in) {
    size_t panels = ((size_t)n_out + UFB_GEMM_NR - 1) / UFB_GEMM_NR;
    return panels * (size_t)n_in * UFB_GEMM_NR;
}

void ufb_linear_pack(float *packed, const float *w, int n_out, int n_in) {
    size_t panels = ((size_t)n_out + UFB_GEMM_NR - 1) / UFB_GEMM_NR;
    memset(packed, 0, sizeof(float) * ufb_linear_packed_len(n_out, n_in));
    for (size_t p = 0; p < panels; p++)
        for (int j = 0; j < UFB_GEMM_NR && p * UFB_GEMM_NR + (size_t)j < (size_t)n_out; j++) {
            const float *row = w + (p * UFB_GEMM_NR + (size_t)j) * (size_t)n_in;
            for (int k = 0; k < n_in; k++)
                packed[(p * (size_t)n_in + (size_t)k) * UFB_GEMM_NR + (size_t)j] = row[k];
        }
}

void ufb_gemm_scalar(const ufb_linear *l, float *restrict y, int ldy, const float *restrict x,
                     int ldx, int n_rows) {
    const int K = l->n_in;
    for (int r = 0; r < n_rows; r++)
        for (int c = 0; c < l->n_out; c++) {
            const float *panel = l->packed + (size_t)(c / UFB_GEMM_NR) * K * UFB_GEMM_NR;
            float acc = 0.0f;
            for (int k = 0; k < K; k++)
                acc = fmaf(x[(size_t)r * ldx + k], panel[(size_t)k * UFB_GEMM_NR + c % UFB_GEMM_NR],
                           acc);
            y[(size_t)r * ldy + c] = acc + (l->bias ? l->bias[c] : 0.0f);
        }
}

void ufb_gemm_blocked(const ufb_linear *l, float *restrict y, int ldy, const float *restrict x,
                      int ldx, int n_rows, ufb_gemm_tile_fn tile, int mr, int row_block) {
    for (int r0 = 0; r0 < n_rows; r0 += row_block) {
        const int rb = n_rows - r0 < row_block ? n_rows - r0 : row_block;
        for (int c0 = 0; c0 < l->n_out; c0 += UFB_GEMM_NR) {
            const float *panel = l->packed + (size_t)(c0 / UFB_GEMM_NR) * l->n_in * UFB_GEMM_NR;
            for (int r = r0; r < r0 + rb; r += mr)
                tile(l, panel, c0, y + (size_t)r * ldy, ldy, x + (size_t)r * ldx, ldx,
                     r0 + rb - r < mr ? r0 + rb - r : mr);
        }
    }
}

ufb_gemm_fn ufb_gemm_get(enum ufb_kernel k) {
    if (k == UFB_KERNEL_AUTO) k = ufb_kernel_best();
    if (!ufb_kernel_supported(k)) return NULL;
    return k == UFB_KERNEL_AVX512 ? ufb_gemm_avx512
           : k == UFB_KERNEL_AVX2 ? ufb_gemm_avx2
                                  : ufb_gemm_scalar;
}
