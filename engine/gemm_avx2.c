/* gemm_avx2.c — batch-invariant GEMM micro-kernel for AVX2 + FMA (see gemm.c for the contract:
 * one FMA chain per output element over k in order, then + bias). Tile: 3 rows x 32 columns,
 * 12 ymm accumulators + 4 panel vectors = the 16 ymm registers. */
#include "engine_impl.h"

#include <immintrin.h>

#define MR 3

static void tile(const ufb_linear *l, const float *panel, int c0, float *restrict y, int ldy,
                 const float *restrict x, int ldx, int mr) {
    __m256 acc[MR][4];
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < 4; j++)
            acc[r][j] = _mm256_setzero_ps();
    for (int k = 0; k < l->n_in; k++) {
        __m256 b[4];
        for (int j = 0; j < 4; j++)
            b[j] = _mm256_load_ps(panel + (size_t)k * 32 + 8 * j);
        for (int r = 0; r < mr; r++) {
            const __m256 a = _mm256_broadcast_ss(x + (size_t)r * ldx + k);
            for (int j = 0; j < 4; j++)
                acc[r][j] = _mm256_fmadd_ps(a, b[j], acc[r][j]);
        }
    }
    float out[32];
    const int nc = l->n_out - c0 < 32 ? l->n_out - c0 : 32;
    for (int r = 0; r < mr; r++) {
        for (int j = 0; j < 4; j++)
            _mm256_storeu_ps(out + 8 * j, acc[r][j]);
        for (int c = 0; c < nc; c++)
            y[(size_t)r * ldy + c0 + c] = out[c] + (l->bias ? l->bias[c0 + c] : 0.0f);
    }
}

void ufb_gemm_avx2(const ufb_linear *l, float *restrict y, int ldy, const float *restrict x,
                   int ldx, int n_rows) {
    ufb_gemm_blocked(l, y, ldy, x, ldx, n_rows, tile, MR, 48);
}
