/* engine_impl.h — internal structures shared by the engine's files. Not part of the API.
 *
 * Layout conventions (all row-major, float32 after load):
 *   activations  x (N, H): N = all tokens of a batch stacked, sequence after sequence
 *   weights      W (out, in) as in PyTorch's nn.Linear, so y = x · Wᵀ is sgemm(N, T)
 *   FFF nodes    one record per node: [Win row | Wout column] of H floats each, every half
 *                padded to hp (a multiple of 16 floats, zero-filled) and 64-byte aligned, so a
 *                visit touches two adjacent rows and SIMD loops need no tail on the weights.
 */
#ifndef UFB_ENGINE_IMPL_H
#define UFB_ENGINE_IMPL_H

#include "engine.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- Safetensors ---- */

enum ufb_st_dtype {
    UFB_ST_F32,
    UFB_ST_F16,
    UFB_ST_BF16,
    UFB_ST_F64,
    UFB_ST_OTHER, /* a known non-float dtype (I64, U8, BOOL, F8...): loadable only as an extra */
};

typedef struct ufb_st_tensor {
    char *name;
    enum ufb_st_dtype dtype;
    char dtype_name[12];
    int n_dims;
    int64_t shape[8];
    int64_t numel;
    const uint8_t *data; /* borrowed from the file mapping */
    size_t n_bytes;
    bool used; /* bound to a model parameter */
} ufb_st_tensor;

typedef struct ufb_st_file {
    uint8_t *map; /* read-only mapping of the whole file, or NULL for a parsed buffer */
    size_t map_bytes;
    ufb_st_tensor *tensors;
    int n_tensors;
} ufb_st_file;

/* Parse a safetensors image in memory (buf is borrowed and must outlive f).
 * @return 0 or UFB_ERR_FORMAT / UFB_ERR_NOMEM with the reason in err. */
int ufb_st_parse(ufb_st_file *f, const uint8_t *buf, size_t n_bytes, char *err, size_t errlen);

/* mmap and parse a file. @return 0 or an error status with the reason in err. */
int ufb_st_open(ufb_st_file *f, const char *path, char *err, size_t errlen);

/* Release the tensor table and the mapping. Safe on a zeroed struct. */
void ufb_st_close(ufb_st_file *f);

/* @return the tensor whose name is `name` or ends with "." + name, or NULL. Fails (NULL,
 *         *ambiguous = true) when several tensors match. */
ufb_st_tensor *ufb_st_find(const ufb_st_file *f, const char *name, bool *ambiguous);

/* Widen n elements of a float tensor's data to float32 (F32, F16, BF16, F64). */
void ufb_st_to_f32(float *dst, const ufb_st_tensor *t, int64_t n);

float ufb_f16_to_f32(uint16_t h);
float ufb_bf16_to_f32(uint16_t h);

/* ---- Model ---- */

/* Software prefetch in the CMM kernels (ufb_fff.prefetch bits) */
#define UFB_PF_CHILDREN     1 /* both children's Win rows while the current dot runs */
#define UFB_PF_WOUT         4 /* a visited node's Wout row into L2 for the summing pass */
#define UFB_PF_NEXT         8 /* after each decision, the chosen child's Win and Wout into L2 */
/* CHILDREN | WOUT when at most 2 tokens walk a tree together (B = 1, 2 or a batch's last
 * tokens): with nothing else in flight, fetching both children during the current dot hides
 * part of the next level's latency (measured -10 % F32, -11..18 % INT8 at B=1); with more
 * tokens in lockstep it only doubles the bytes (19-40 % slower at B >= 8). NEXT otherwise:
 * each token's next node is requested as soon as it is known instead of when the next level's
 * dot first touches it, so the group's 16 rows stream in parallel (INT8, 2 threads: B=128
 * 0.96 -> 0.66 us per token-layer, B=32 1.03 -> 0.71; BF16 -4..9 %). The F32 kernel ignores
 * NEXT: its rows are 2-4x longer and it measured 13-20 % slower with it. */
#define UFB_PF_AUTO(tokens) ((tokens) <= 2 ? UFB_PF_CHILDREN | UFB_PF_WOUT : UFB_PF_NEXT)

typedef struct ufb_fff {
    const float *nodes; /* (n_trees * n_nodes, 2, hp): Win row, then Wout column of each node */
    const float *bias;  /* (n_trees * n_nodes) input bias */
    int hidden;         /* H */
    int hp;             /* H padded to 16 floats */
    int depth;          /* D: a token visits D + 1 nodes per tree */
    int n_trees;        /* T */
    int n_nodes;        /* 2^(D+1) - 1 per tree */
    int prefetch;       /* UFB_PF_* bits: software prefetching in the CMM kernels */
    int group;          /* tokens walked in lockstep by the SIMD kernels, 1..16; 0 = 16 */
    /* Reduced-precision copy (ufb_fff_quantize), read by the ufb_cmmq_* kernels; nodes stays
       for the routing check: a dot whose quantized value is within the row's margin of 0 is
       recomputed from the F32 row, so routing matches the F32 kernel. */
    enum ufb_wfmt qfmt;
    int qhp;              /* row length of qnodes in elements: H padded to 64 */
    const void *qnodes;   /* (rows, 2, qhp) uint16 (BF16) or int8 elements, 64-byte aligned */
    const float *qscale;  /* (rows, 2): scale of the Win row and of the Wout row (1 for BF16) */
    const float *qmargin; /* (rows): |a_q| <= ||x||_2 * qmargin[r] -> recompute in F32 */
    /* (rows): INT8 only, the margin's term for the token's own rounding to int16 (see
       ufb_xq_max): |a_q| <= ||x||_2 * qmargin[r] + x_step * qxmargin[r] -> recompute */
    const float *qxmargin;
} ufb_fff;

/* INT8 dots run in integers: each token's x is rounded to int16 fixed point, x_i ≈ q_i · step
 * with step = max|x| / ufb_xq_max(qhp), and Σ q_i · w_i is summed exactly in int32 (the
 * largest |sum|, 127 · qhp · ufb_xq_max, stays below 2^31). Exact integer sums do not depend
 * on their order, so any kernel and any batch gives the same dot. 15 bits for H <= 1024. */
static inline int ufb_xq_max(int qhp) {
    const int64_t m = INT32_MAX / (127 * (int64_t)qhp);
    return m < 16383 ? (int)m : 16383;
}

/* Largest INT8 hidden size: one group of int16 tokens lives on the kernel's stack. */
#define UFB_XQ_ELEMS 16384
/* x (H floats) to xq (qhp int16, zero past H) as the INT8 kernels round it; @return the step
 * (NaN for a non-finite x, whose dots are then all recomputed in F32). */
float ufb_xq_quantize(int16_t *xq, const float *x, int H, int qhp);

/* Memory for weights: 64-byte aligned; from 2 MB on, 2 MB aligned and advised for transparent
 * huge pages (FFF rows are read at random: with 4 KB pages nearly every row fetch also missed
 * the TLB; measured 18-20% faster F32 CMM). Free with free(). */
void *ufb_alloc_weights(size_t n_bytes);

/* Quantize w->nodes into one allocation (returned; the caller frees it with free()) and set
 * w->qfmt, qnodes, qscale, qmargin. qerr_rms (may be NULL) receives the RMS element error of
 * the Win and Wout rows over the layer, relative to the RMS weight. @return NULL if OOM. */
void *ufb_fff_quantize(ufb_fff *w, enum ufb_wfmt fmt, double qerr_rms[2]);

/* K in the routing margin: K standard deviations of the quantization error of a dot. */
#define UFB_QMARGIN_SIGMAS 8.0f

/* A linear layer y = x · Wᵀ + b with W (n_out, n_in) packed for the batch-invariant GEMM. */
#define UFB_GEMM_NR 32 /* output columns per packed panel */

typedef struct ufb_linear {
    const float *packed; /* (ceil(n_out / NR), n_in, NR), see gemm.c */
    const float *bias;   /* (n_out) or NULL */
    int n_in, n_out;
} ufb_linear;

typedef struct ufb_layer {
    const float *ln1_w, *ln1_b; /* (H) A: before attention; B: after attention + residual */
    ufb_linear qkv;             /* (3H, H) q/k/v rows; column layout given by model qkv_* */
    ufb_linear out;             /* (H, H) attention output projection */
    const float *ln2_w, *ln2_b; /* (H) A: before FF; B: after FF + residual */
    float score_scale;          /* 1/sqrt(head_dim) or the stored norm_factor */
    ufb_linear ff1;             /* dense FF: (I, H) */
    ufb_linear ff2;             /* dense FF: (H, I) */
    ufb_fff fff;                /* FFF FF (ff_kind == UFB_FF_FFF) */
    const float *fff_out_bias;  /* (H) or NULL (family B FFF variant) */
} ufb_layer;

struct ufb_model {
    ufb_model_info info;
    ufb_st_file st;
    ufb_tokenizer *tok;
    void **owned; /* allocations freed with the model (widened or re-laid-out weights) */
    int n_owned, cap_owned;
    /* embeddings */
    const float *word_emb; /* (V, H) */
    const float *pos_emb;  /* (P, H) learned (B) or NULL */
    float pos_scale;       /* A: scale of the sinusoid */
    float *pos_sin;        /* A: (P, H) precomputed sinusoid, unscaled */
    const float *type_emb; /* (type_vocab, H) or NULL */
    const float *emb_ln_w, *emb_ln_b;
    const float *final_ln_w, *final_ln_b; /* A only (NULL when final_norm is off) */
    float ln_eps;
    bool pre_ln;             /* A: pre-LN; B: post-LN */
    int qkv_q, qkv_k, qkv_v; /* column offset of head 0's q, k, v in the qkv row */
    int qkv_head_stride;     /* column step from head j to j+1 */
    ufb_layer layers[UFB_MAX_LAYERS];
    /* head */
    bool has_pooler_dense;
    ufb_linear pooler;     /* (HD, H) */
    int pool_dim;          /* HD */
    ufb_linear classifier; /* (C, HD) */
    ufb_linear decoder;    /* MLM: (V, H) */
};

/* ---- Kernels ---- */

/* y (n_tok, H) = FFF(x (n_tok, ldx)); leaves (n_tok, T) receives the leaf of each tree.
 * path_act (n_tok, T*(D+1)) and path_node (n_tok, T*(D+1)) are scratch. */
typedef int64_t (*ufb_cmm_fn)(const ufb_fff *w, float *restrict y, int32_t *restrict leaves,
                              float *restrict path_act, int32_t *restrict path_node,
                              const float *restrict x, int ldx, int n_tok);
/* The F32 kernels return 0; the quantized ones (ufb_cmmq_*) the number of dots recomputed in
 * F32 by the routing check. */
#define UFB_CMM_DECL(name)                                                                       \
    int64_t name(const ufb_fff *w, float *restrict y, int32_t *restrict leaves,                  \
                 float *restrict path_act, int32_t *restrict path_node, const float *restrict x, \
                 int ldx, int n_tok)
UFB_CMM_DECL(ufb_cmm_scalar);
UFB_CMM_DECL(ufb_cmm_avx2);
UFB_CMM_DECL(ufb_cmm_avx512);
UFB_CMM_DECL(ufb_cmmq_scalar);
UFB_CMM_DECL(ufb_cmmq_bf16_avx2);
UFB_CMM_DECL(ufb_cmmq_int8_avx2);
UFB_CMM_DECL(ufb_cmmq_bf16_avx512);
UFB_CMM_DECL(ufb_cmmq_int8_avx512);

/* @return the quantized kernel of a variant and format (AUTO -> best supported), or NULL. */
ufb_cmm_fn ufb_cmmq_get(enum ufb_kernel *k, enum ufb_wfmt fmt);

/* @return the kernel function of a variant, resolved (AUTO -> best supported), or NULL. */
ufb_cmm_fn ufb_cmm_get(enum ufb_kernel *k);

/* y (n_rows, ldy) = x (n_rows, ldx) · Wᵀ + b; bit-identical across variants and row tilings */
typedef void (*ufb_gemm_fn)(const ufb_linear *l, float *restrict y, int ldy,
                            const float *restrict x, int ldx, int n_rows);

void ufb_gemm_scalar(const ufb_linear *l, float *restrict y, int ldy, const float *restrict x,
                     int ldx, int n_rows);
void ufb_gemm_avx2(const ufb_linear *l, float *restrict y, int ldy, const float *restrict x,
                   int ldx, int n_rows);
void ufb_gemm_avx512(const ufb_linear *l, float *restrict y, int ldy, const float *restrict x,
                     int ldx, int n_rows);

/* One micro-kernel call: rows [0, mr) of x against one packed panel (output columns c0..+NR). */
typedef void (*ufb_gemm_tile_fn)(const ufb_linear *l, const float *panel, int c0, float *restrict y,
                                 int ldy, const float *restrict x, int ldx, int mr);

/* The loop nest shared by the SIMD variants: blocks of row_block rows of x stay hot in L2
 * while every panel streams past, in tiles of at most mr rows. */
void ufb_gemm_blocked(const ufb_linear *l, float *restrict y, int ldy, const float *restrict x,
                      int ldx, int n_rows, ufb_gemm_tile_fn tile, int mr, int row_block);

/* @return a GEMM variant (AUTO: the best this CPU runs), or NULL if unsupported. */
ufb_gemm_fn ufb_gemm_get(enum ufb_kernel k);

/* Packed size in floats, and packing of W (n_out, n_in) into `packed` (64-byte aligned). */
size_t ufb_linear_packed_len(int n_out, int n_in);
void ufb_linear_pack(float *packed, const float *w, int n_out, int n_in);

/* ---- Pool ---- */

/* One task of a phase: `thread` in [0, pool size) indexes per-thread scratch. */
typedef void (*ufb_pool_task_fn)(void *arg, int task, int thread);

/* Run tasks [0, n_tasks) on the pool (inline when p is NULL); returns when all are done. */
void ufb_pool_run(ufb_pool *p, ufb_pool_task_fn fn, void *arg, int n_tasks);

/* exact GELU, a·Φ(a) */
float ufb_gelu(float a);

/* x[i] = e^x[i] in place, vectorisable; relative error <= 4e-7 for x in [-87.3, 88]. */
void ufb_exp_inplace(float *x, int n);

#endif /* UFB_ENGINE_IMPL_H */
