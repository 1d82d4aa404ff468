/* cmm_avx2.c — CMM kernel for AVX2 + FMA; compiled with those target flags only here and
 * chosen at run time by ufb_cmm_get(). Algorithms: cmm_simd_impl.h (F32
 * rows) and cmmq_simd_impl.h (BF16 and INT8 rows). */
#include "engine_impl.h"

#include <immintrin.h>

/* lanes [0, n) set, for masked loads and stores of the leftovers */
static inline __m256i tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline float reduce8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float max8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline int32_t hsum8_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

/* 8 floats rounded to int32 (whole numbers within ±16383: no saturation), stored as int16 */
static inline void xq_store8(int16_t *p, __m256 v) {
    const __m256i q = _mm256_cvtps_epi32(v);
    _mm_store_si128((__m128i *)(void *)p,
                    _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)));
}

#define VEC                   __m256
#define VW                    8
#define VZERO()               _mm256_setzero_ps()
#define VLOADU(p)             _mm256_loadu_ps(p)
#define VLOAD(p)              _mm256_load_ps(p)
#define VFMA(a, b, c)         _mm256_fmadd_ps(a, b, c)
#define VSET1(f)              _mm256_set1_ps(f)
#define VREDUCE(v)            reduce8(v)
#define VLOADU_TAIL(p, n)     _mm256_maskload_ps(p, tail_mask(n))
#define VSTOREU(p, v)         _mm256_storeu_ps(p, v)
#define VSTOREU_TAIL(p, v, n) _mm256_maskstore_ps(p, tail_mask(n), v)
#define VMUL(a, b)            _mm256_mul_ps(a, b)
#define VMAXABS(m, v)         _mm256_max_ps(m, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v))
#define VHMAX(v)              max8(v)
#define SUM_TILE              12 /* accumulators in the summing pass (of 16 registers) */
#define CMM_FN                ufb_cmm_avx2

#include "cmm_simd_impl.h"

#define WT uint16_t
#define WLOAD(p)                           \
    _mm256_castsi256_ps(_mm256_slli_epi32( \
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p))), 16))
#define CMMQ_FN     ufb_cmmq_bf16_avx2
#define CMMQ_SUFFIX _bf16
#include "cmmq_simd_impl.h"
#undef WT
#undef WLOAD
#undef CMMQ_FN
#undef CMMQ_SUFFIX

#define WT int8_t
#define WLOAD(p) \
    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(p))))
#define IVEC       __m256i
#define IW         16
#define IZERO()    _mm256_setzero_si256()
#define IADD(a, b) _mm256_add_epi32(a, b)
#define IREDUCE(v) hsum8_epi32(v)
#define IDOT(acc, xq, w)                                                 \
    _mm256_add_epi32(                                                    \
        acc, _mm256_madd_epi16(                                          \
                 _mm256_load_si256((const __m256i *)(const void *)(xq)), \
                 _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(const void *)(w)))))
#define XQSTORE(p, v) xq_store8(p, v)
#define CMMQ_FN       ufb_cmmq_int8_avx2
#define CMMQ_SUFFIX   _int8
#include "cmmq_simd_impl.h"
