/* cmm_avx512.c — CMM kernel for AVX-512 (F, BW, VL, DQ); compiled with those target flags
 * only here and chosen at run time by ufb_cmm_get(). Algorithm: cmm_simd_impl.h. */
#include "engine_impl.h"

#include <immintrin.h>

#define VEC                   __m512
#define VW                    16
#define VZERO()               _mm512_setzero_ps()
#define VLOADU(p)             _mm512_loadu_ps(p)
#define VLOAD(p)              _mm512_load_ps(p)
#define VFMA(a, b, c)         _mm512_fmadd_ps(a, b, c)
#define VSET1(f)              _mm512_set1_ps(f)
#define VREDUCE(v)            _mm512_reduce_add_ps(v)
#define VLOADU_TAIL(p, n)     _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1), p)
#define VSTOREU(p, v)         _mm512_storeu_ps(p, v)
#define VSTOREU_TAIL(p, v, n) _mm512_mask_storeu_ps(p, (__mmask16)((1u << (n)) - 1), v)
#define CMM_FN                ufb_cmm_avx512

#include "cmm_simd_impl.h"
