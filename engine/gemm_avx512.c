/* gemm_avx512.c — batch-invariant GEMM micro-kernel for AVX-512 (see gemm.c for the contract:
 * one FMA chain per output element over k in order, then + bias). Tile: 8 rows x 32 columns,
 * 16 zmm accumulators; the panel streams, each x element is broadcast from memory. */
#include "engine_impl.h"

#include <immintrin.h>

#define MR 8

static void tile(const ufb_linear *l, const float *panel, int c0, float *restrict y, int ldy,
                 const float *restrict x, int ldx, int mr) {
    __m512 acc[MR][2];
    for (int r = 0; r < MR; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < l->n_in; k++) {
        const __m512 b0 = _mm512_load_ps(panel + (size_t)k * 32);
        const __m512 b1 = _mm512_load_ps(panel + (size_t)k * 32 + 16);
        for (int r = 0; r < mr; r++) {
            const __m512 a = _mm512_set1_ps(x[(size_t)r * ldx + k]);
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    const int nc = l->n_out - c0 < 32 ? l->n_out - c0 : 32;
    const __mmask16 m0 = (__mmask16)(nc >= 16 ? 0xffff : (1u << nc) - 1);
    const __mmask16 m1 = (__mmask16)(nc >= 32 ? 0xffff : nc > 16 ? (1u << (nc - 16)) - 1 : 0);
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
    if (l->bias) {
        bias0 = _mm512_maskz_loadu_ps(m0, l->bias + c0);
        bias1 = _mm512_maskz_loadu_ps(m1, l->bias + c0 + 16);
    }
    for (int r = 0; r < mr; r++) {
        _mm512_mask_storeu_ps(y + (size_t)r * ldy + c0, m0, _mm512_add_ps(acc[r][0], bias0));
        _mm512_mask_storeu_ps(y + (size_t)r * ldy + c0 + 16, m1, _mm512_add_ps(acc[r][1], bias1));
    }
}

void ufb_gemm_avx512(const ufb_linear *l, float *restrict y, int ldy, const float *restrict x,
                     int ldx, int n_rows) {
    ufb_gemm_blocked(l, y, ldy, x, ldx, n_rows, tile, MR, 64);
}
