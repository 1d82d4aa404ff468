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
#define VMUL(a, b)            _mm512_mul_ps(a, b)
#define VMAXABS(m, v)         _mm512_max_ps(m, _mm512_abs_ps(v))
#define VHMAX(v)              _mm512_reduce_max_ps(v)
#define SUM_TILE              24 /* accumulators in the summing pass (of 32 registers) */
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
#define IVEC       __m512i
#define IW         32
#define IZERO()    _mm512_setzero_si512()
#define IADD(a, b) _mm512_add_epi32(a, b)
#define IREDUCE(v) _mm512_reduce_add_epi32(v)
#define IDOT(acc, xq, w)                                                            \
    _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_load_si512((const void *)(xq)),  \
                                            _mm512_cvtepi8_epi16(_mm256_load_si256( \
                                                (const __m256i *)(const void *)(w)))))
#define XQSTORE(p, v) \
    _mm256_store_si256((__m256i *)(void *)(p), _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(v)))
#define CMMQ_FN     ufb_cmmq_int8_avx512
#define CMMQ_SUFFIX _int8
#include "cmmq_simd_impl.h"
