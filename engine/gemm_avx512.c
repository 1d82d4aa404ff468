/* gemm_avx512.c — batch-invariant GEMM micro-kernel for AVX-512 (see gemm.c for the contract:
 * one FMA chain per output element over k in order, then + bias). Tile: up to 12 rows x 32
 * columns = 24 zmm accumulators + 2 panel vectors + broadcasts, within the 32 zmm registers.
 *
 * The row count of a tile is a compile-time constant in each instantiation (tile_rows() is
 * always inlined into one function per count): with a run-time count GCC cannot keep an
 * accumulator array in registers and spills every FMA result to the stack (measured: 0.7x
 * OpenBLAS; with constant counts the accumulators stay in zmm registers). */
#include "engine_impl.h"

#include <immintrin.h>

#define MR 12

static inline __attribute__((always_inline)) void tile_rows(const ufb_linear *l, const float *panel,
                                                            int c0, float *restrict y, int ldy,
                                                            const float *restrict x, int ldx,
                                                            const int mr) {
    __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++)
        acc0[r] = acc1[r] = _mm512_setzero_ps();
    const float *xr[MR];
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++)
        xr[r] = x + (size_t)r * ldx;
    for (int k = 0; k < l->n_in; k++) {
        const __m512 b0 = _mm512_load_ps(panel + (size_t)k * 32);
        const __m512 b1 = _mm512_load_ps(panel + (size_t)k * 32 + 16);
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            const __m512 a = _mm512_set1_ps(xr[r][k]);
            acc0[r] = _mm512_fmadd_ps(a, b0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(a, b1, acc1[r]);
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
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        _mm512_mask_storeu_ps(y + (size_t)r * ldy + c0, m0, _mm512_add_ps(acc0[r], bias0));
        _mm512_mask_storeu_ps(y + (size_t)r * ldy + c0 + 16, m1, _mm512_add_ps(acc1[r], bias1));
    }
}

#define TILE_N(n)                                                                            \
    static void tile_##n(const ufb_linear *l, const float *panel, int c0, float *restrict y, \
                         int ldy, const float *restrict x, int ldx) {                        \
        tile_rows(l, panel, c0, y, ldy, x, ldx, n);                                          \
    }
TILE_N(12)
TILE_N(8)
TILE_N(4)
TILE_N(2)
TILE_N(1)

/* A tile of mr <= MR rows: the full tile, else the tail in blocks of 8, 4, 2, 1 rows. */
static void tile(const ufb_linear *l, const float *panel, int c0, float *restrict y, int ldy,
                 const float *restrict x, int ldx, int mr) {
    if (mr == MR) {
        tile_12(l, panel, c0, y, ldy, x, ldx);
        return;
    }
    for (int r = 0; r < mr;) {
        const int left = mr - r;
        float *yr = y + (size_t)r * ldy;
        const float *xr = x + (size_t)r * ldx;
        if (left >= 8) {
            tile_8(l, panel, c0, yr, ldy, xr, ldx);
            r += 8;
        } else if (left >= 4) {
            tile_4(l, panel, c0, yr, ldy, xr, ldx);
            r += 4;
        } else if (left >= 2) {
            tile_2(l, panel, c0, yr, ldy, xr, ldx);
            r += 2;
        } else {
            tile_1(l, panel, c0, yr, ldy, xr, ldx);
            r += 1;
        }
    }
}

void ufb_gemm_avx512(const ufb_linear *l, float *restrict y, int ldy, const float *restrict x,
                     int ldx, int n_rows) {
    ufb_gemm_blocked(l, y, ldy, x, ldx, n_rows, tile, MR, 96);
}
