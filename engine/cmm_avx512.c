/* cmm_avx512.c — CMM kernel for AVX-512 (F, BW, VL, DQ); compiled with those target flags
 * only here and chosen at run time by ufb_cmm_get(). Algorithms: cmm_simd_impl.h (F32
 * rows) and cmmq_simd_impl.h (BF16 and INT8 rows). */
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

#define WT uint16_t
#define WLOAD(p)                           \
    _mm512_castsi512_ps(_mm512_slli_epi32( \
        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(p))), 16))
#define CMMQ_FN     ufb_cmmq_bf16_avx512
#define CMMQ_SUFFIX _bf16
#include "cmmq_simd_impl.h"
#undef WT
#undef WLOAD
#undef CMMQ_FN
#undef CMMQ_SUFFIX

#define WT int8_t
#define WLOAD(p) \
    _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p))))
#define CMMQ_FN     ufb_cmmq_int8_avx512
#define CMMQ_SUFFIX _int8
#include "cmmq_simd_impl.h"
