/* gemm_avx2.c — batch-invariant GEMM micro-kernel for AVX2 + FMA (see gemm.c for the contract:
 * one FMA chain per output element over k in order, then + bias). Tile: 3 rows x 32 columns,
 * 12 ymm accumulators + the row broadcasts + panel vectors within the 16 ymm registers. As in
 * gemm_avx512.c the row count is a compile-time constant per instantiation, so the accumulators
 * stay in registers. */
#include "engine_impl.h"

#include <immintrin.h>

#define MR 3

static inline __attribute__((always_inline)) void tile_rows(const ufb_linear *l, const float *panel,
                                                            int c0, float *restrict y, int ldy,
                                                            const float *restrict x, int ldx,
                                                            const int mr) {
    __m256 acc[MR][4];
#pragma GCC unroll 3
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            acc[r][j] = _mm256_setzero_ps();
    for (int k = 0; k < l->n_in; k++) {
        __m256 a[MR];
#pragma GCC unroll 3
        for (int r = 0; r < mr; r++)
            a[r] = _mm256_broadcast_ss(x + (size_t)r * ldx + k);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256 b = _mm256_load_ps(panel + (size_t)k * 32 + 8 * j);
#pragma GCC unroll 3
            for (int r = 0; r < mr; r++)
                acc[r][j] = _mm256_fmadd_ps(a[r], b, acc[r][j]);
        }
    }
    float out[32];
    const int nc = l->n_out - c0 < 32 ? l->n_out - c0 : 32;
#pragma GCC unroll 3
    for (int r = 0; r < mr; r++) {
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            _mm256_storeu_ps(out + 8 * j, acc[r][j]);
        for (int c = 0; c < nc; c++)
            y[(size_t)r * ldy + c0 + c] = out[c] + (l->bias ? l->bias[c0 + c] : 0.0f);
    }
}

static void tile_3(const ufb_linear *l, const float *panel, int c0, float *restrict y, int ldy,
                   const float *restrict x, int ldx) {
    tile_rows(l, panel, c0, y, ldy, x, ldx, 3);
}

static void tile_1(const ufb_linear *l, const float *panel, int c0, float *restrict y, int ldy,
                   const float *restrict x, int ldx) {
    tile_rows(l, panel, c0, y, ldy, x, ldx, 1);
}

static void tile(const ufb_linear *l, const float *panel, int c0, float *restrict y, int ldy,
                 const float *restrict x, int ldx, int mr) {
    if (mr == MR) {
        tile_3(l, panel, c0, y, ldy, x, ldx);
        return;
    }
    for (int r = 0; r < mr; r++)
        tile_1(l, panel, c0, y + (size_t)r * ldy, ldy, x + (size_t)r * ldx, ldx);
}

void ufb_gemm_avx2(const ufb_linear *l, float *restrict y, int ldy, const float *restrict x,
                   int ldx, int n_rows) {
    ufb_gemm_blocked(l, y, ldy, x, ldx, n_rows, tile, MR, 48);
}
