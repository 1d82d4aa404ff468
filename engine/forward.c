/* forward.c — the forward pass of both model families on a batch of sequences.
 *
 * DESIGN: all tokens of a batch are stacked into one (N, H) matrix, so every per-token step
 * (embeddings, LayerNorm, the q/k/v and output projections via OpenBLAS sgemm, the FF or FFF
 * layer) runs once per batch. Attention alone runs per sequence at its own length: no padding,
 * so a sequence's logits do not depend on what else is in the batch. ufb_forward() reads top to
 * bottom like the equations of model-spec.md; the helpers follow it.
 *
 * A ufb_ctx owns every scratch buffer, sized once for max_tokens at creation: nothing is
 * allocated per batch or per token.
 */
#include "engine_impl.h"

#include <smmintrin.h>

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ufb_ctx {
    const ufb_model *m; /* borrowed */
    int max_tokens;     /* N max */
    enum ufb_kernel kernel;
    ufb_cmm_fn cmm;
    ufb_gemm_fn gemm;   /* best variant: all variants give identical bits */
    float *x;           /* (N, H) residual stream */
    float *xn;          /* (N, H) normalised input of a sub-layer */
    float *tmp;         /* (N, H) sub-layer output */
    float *qkv;         /* (N, 3H) */
    float *attn;        /* (N, H) concatenated heads */
    float *mid;         /* (N, I) dense FF hidden (dense models only) */
    ufb_pool *pool;     /* borrowed; NULL = this thread only */
    int n_threads;      /* pool size */
    int *seq_off;       /* (max_tokens + 1) first row of each sequence of the batch */
    float *scores;      /* (threads, P, P) one head of one sequence per thread */
    float *pooled;      /* (H) */
    float *pool_out;    /* (HD) */
    float *path_act;    /* (N, T*(D+1)) FFF scratch */
    int32_t *path_node; /* (N, T*(D+1)) FFF scratch */
    int32_t *leaves;    /* (L, N, T) leaf per layer, token, tree */
    uint32_t *stamp;    /* (T*n) distinct-node counting */
    uint32_t stamp_gen;
    double phase_s[UFB_N_PHASES]; /* ufb_ctx_phase_times */
    double t_mark;                /* end of the last timed phase */
};

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* charge the time since the last mark to phase ph */
static void mark(ufb_ctx *ctx, enum ufb_phase ph) {
    const double t = mono_now();
    ctx->phase_s[ph] += t - ctx->t_mark;
    ctx->t_mark = t;
}

static int check_batch(const ufb_ctx *ctx, const ufb_seq *seqs, int n_seqs, int *n_tokens);
static void embed(ufb_ctx *ctx, const ufb_seq *seqs, int n_seqs);
static void residual_ln(ufb_ctx *ctx, float *x, const float *add, float *out, const float *w,
                        const float *b, int n);
static void attention(ufb_ctx *ctx, float *out, const float *x, const ufb_layer *ly, int n_seqs,
                      int n_tok);
static void feed_forward(ufb_ctx *ctx, float *out, const float *x, const ufb_layer *ly, int layer,
                         int n_tok);
static void head(ufb_ctx *ctx, float *logits, const ufb_seq *seqs, int n_seqs, int n_tok);
static void fill_stats(ufb_ctx *ctx, ufb_seq_stats *stats, const ufb_seq *seqs, int n_seqs,
                       int n_tok);

static void add(float *restrict y, const float *restrict x, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

/* ---- Phases split across the pool: each task owns a block of rows, columns, tokens or a
 * (sequence, head) pair, and computes it exactly as a single thread would. ---- */

#define ROW_CHUNK  32  /* rows per task for row-wise phases */
#define GEMM_ROWS  96  /* rows per GEMM task: the GEMM's row block, a multiple of its tiles */
#define GEMM_COLS  256 /* output columns per GEMM task (8 packed panels) */
#define CMM_TOKENS 16  /* tokens per CMM task */

typedef struct phase {
    ufb_ctx *ctx;
    float *y, *out;
    const float *x, *add, *w, *b;
    const ufb_linear *l;
    const ufb_layer *ly;
    int n, n_col_chunks, layer;
    int per_task; /* rows or tokens per task (row-wise and CMM phases) */
} phase;

/* Rows per task for a row-wise phase of n rows: at most cap, but small enough that every
 * pool thread gets work when n is small (a 16-token request would otherwise run its norms and
 * CMM on one thread). Results do not depend on it: each row is computed alone. */
static int per_task(const ufb_ctx *ctx, int n, int cap) {
    const int even = (n + ctx->n_threads - 1) / ctx->n_threads;
    return even < 1 ? 1 : even < cap ? even : cap;
}

static int chunks(int n, int per) {
    return (n + per - 1) / per;
}

/* ---- Forward ---- */

int ufb_forward(ufb_ctx *ctx, float *logits, ufb_seq_stats *stats, const ufb_seq *seqs,
                int n_seqs) {
    const ufb_model *m = ctx->m;
    int N; /* tokens in the batch */
    int rc = check_batch(ctx, seqs, n_seqs, &N);
    if (rc) return rc;
    float *x = ctx->x, *xn = ctx->xn, *tmp = ctx->tmp; /* (N, H) each */

    ctx->t_mark = mono_now();
    for (int s = 0; s < n_seqs; s++)
        ctx->seq_off[s + 1] = ctx->seq_off[s] + seqs[s].n;
    embed(ctx, seqs, n_seqs); /* x = LN(word + position (+ type)) */
    mark(ctx, UFB_PHASE_EMBED);
    for (int l = 0; l < m->info.n_layers; l++) {
        const ufb_layer *ly = &m->layers[l];
        if (m->pre_ln) { /* A: crammedBERT, pre-LN */
            residual_ln(ctx, x, NULL, xn, ly->ln1_w, ly->ln1_b, N);
            attention(ctx, tmp, xn, ly, n_seqs, N); /* h += Wo·Attn(LN1(h)) */
            residual_ln(ctx, x, tmp, xn, ly->ln2_w, ly->ln2_b, N);
            feed_forward(ctx, tmp, xn, ly, l, N); /* h += FF(LN2(h)) */
            residual_ln(ctx, x, tmp, NULL, NULL, NULL, N);
        } else {                                   /* B: BERT, post-LN */
            attention(ctx, tmp, x, ly, n_seqs, N); /* h = LN1(h + Wo·Attn(h) + bo) */
            residual_ln(ctx, x, tmp, x, ly->ln1_w, ly->ln1_b, N);
            feed_forward(ctx, tmp, x, ly, l, N); /* h = LN2(h + FF(h)) */
            residual_ln(ctx, x, tmp, x, ly->ln2_w, ly->ln2_b, N);
        }
    }
    if (m->final_ln_w) residual_ln(ctx, x, NULL, x, m->final_ln_w, m->final_ln_b, N);
    head(ctx, logits, seqs, n_seqs, N);
    if (stats) fill_stats(ctx, stats, seqs, n_seqs, N);
    mark(ctx, UFB_PHASE_HEAD);
    return 0;
}

/* ---- Helpers of the forward pass ---- */

static int check_batch(const ufb_ctx *ctx, const ufb_seq *seqs, int n_seqs, int *n_tokens) {
    const ufb_model_info *in = &ctx->m->info;
    int64_t n = 0;
    if (n_seqs < 0 || (n_seqs > 0 && !seqs)) return UFB_ERR_INVALID;
    for (int s = 0; s < n_seqs; s++) {
        if (seqs[s].n < 1 || !seqs[s].ids) return UFB_ERR_INVALID;
        if (seqs[s].n > in->max_positions) return UFB_ERR_TOO_LONG;
        for (int t = 0; t < seqs[s].n; t++) {
            if (seqs[s].ids[t] < 0 || seqs[s].ids[t] >= in->vocab_size) return UFB_ERR_INVALID;
            /* type ids matter only to models with token-type embeddings (family B) */
            int32_t ty = seqs[s].type_ids && ctx->m->type_emb ? seqs[s].type_ids[t] : 0;
            if (ty < 0 || (ty > 0 && ty >= in->type_vocab_size)) return UFB_ERR_INVALID;
        }
        n += seqs[s].n;
    }
    if (n > ctx->max_tokens) return UFB_ERR_TOO_LONG;
    *n_tokens = (int)n;
    return 0;
}

/* x (N, H) = LN(word_emb[id] + position term (+ token type)), sequence after sequence. */
static void embed(ufb_ctx *ctx, const ufb_seq *seqs, int n_seqs) {
    const ufb_model *m = ctx->m;
    const int H = m->info.hidden;
    int row = 0;
    for (int s = 0; s < n_seqs; s++) {
        for (int t = 0; t < seqs[s].n; t++, row++) {
            float *x = ctx->x + (size_t)row * H;
            const float *w = m->word_emb + (size_t)seqs[s].ids[t] * H;
            if (m->pos_emb) { /* B: learned positions and token types */
                const float *p = m->pos_emb + (size_t)t * H;
                int ty = seqs[s].type_ids ? seqs[s].type_ids[t] : 0;
                const float *ty_row = m->type_emb ? m->type_emb + (size_t)ty * H : NULL;
                for (int i = 0; i < H; i++)
                    x[i] = w[i] + p[i] + (ty_row ? ty_row[i] : 0.0f);
            } else { /* A: scaled sinusoid */
                const float *p = m->pos_sin + (size_t)t * H;
                for (int i = 0; i < H; i++)
                    x[i] = w[i] + m->pos_scale * p[i];
            }
        }
    }
    if (m->emb_ln_w) residual_ln(ctx, ctx->x, NULL, ctx->x, m->emb_ln_w, m->emb_ln_b, row);
}

/* Sum of h floats (or of their squares) in a fixed order: 16 running partial sums (lane i adds
 * x[i], x[i+16], ...), then the lanes pairwise. One scalar chain of h dependent adds costs ~4
 * cycles an element; this form vectorises even at the base ISA, and its order depends only on
 * h, so results stay independent of the batch. Inlined, so `squares` is a constant. */
#define SUM_LANES 16

static inline __attribute__((always_inline)) float lane_sum(const float *x, int h,
                                                            const int squares) {
    float part[SUM_LANES] = {0};
    int i = 0;
    for (; i + SUM_LANES <= h; i += SUM_LANES)
        for (int j = 0; j < SUM_LANES; j++)
            part[j] += squares ? x[i + j] * x[i + j] : x[i + j];
    for (int j = 0; i + j < h; j++)
        part[j] += squares ? x[i + j] * x[i + j] : x[i + j];
    for (int w = SUM_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++)
            part[j] += part[j + w];
    return part[0];
}

static float sum_f(const float *x, int h) {
    return lane_sum(x, h, 0);
}

/* o (h) = (x - mean) / sqrt(var + eps) * w + b; o may alias x (the deviations go to o first). */
static void layernorm_row(float *o, const float *x, const float *w, const float *b, int h,
                          float eps) {
    const float mean = sum_f(x, h) / (float)h;
    for (int i = 0; i < h; i++)
        o[i] = x[i] - mean;
    const float inv = 1.0f / sqrtf(lane_sum(o, h, 1) / (float)h + eps);
    for (int i = 0; i < h; i++)
        o[i] = o[i] * inv * w[i] + b[i];
}

static void residual_ln_task(void *arg, int task, int thread) {
    const phase *p = arg;
    const int H = p->ctx->m->info.hidden;
    const int r1 = (task + 1) * p->per_task < p->n ? (task + 1) * p->per_task : p->n;
    (void)thread;
    for (int r = task * p->per_task; r < r1; r++) {
        float *x = p->y + (size_t)r * H;
        if (p->add) add(x, p->add + (size_t)r * H, (size_t)H);
        if (p->w) layernorm_row(p->out + (size_t)r * H, x, p->w, p->b, H, p->ctx->m->ln_eps);
    }
}

/* x += add (when non-NULL); then out = LN(x) with (w, b) when w is non-NULL. */
static void residual_ln(ufb_ctx *ctx, float *x, const float *add_, float *out, const float *w,
                        const float *b, int n) {
    phase p = {.ctx = ctx, .y = x, .add = add_, .out = out, .w = w, .b = b, .n = n};
    p.per_task = per_task(ctx, n, ROW_CHUNK);
    ufb_pool_run(ctx->pool, residual_ln_task, &p, chunks(n, p.per_task));
    mark(ctx, UFB_PHASE_NORM);
}

static void linear_task(void *arg, int task, int thread) {
    const phase *p = arg;
    const ufb_linear *l = p->l;
    const int r0 = task / p->n_col_chunks * GEMM_ROWS, c0 = task % p->n_col_chunks * GEMM_COLS;
    const int nr = p->n - r0 < GEMM_ROWS ? p->n - r0 : GEMM_ROWS;
    const int nc = l->n_out - c0 < GEMM_COLS ? l->n_out - c0 : GEMM_COLS;
    /* columns [c0, c0 + nc) are whole panels, so the block is a smaller linear layer */
    ufb_linear part = {l->packed + (size_t)(c0 / UFB_GEMM_NR) * l->n_in * UFB_GEMM_NR,
                       l->bias ? l->bias + c0 : NULL, l->n_in, nc};
    (void)thread;
    p->ctx->gemm(&part, p->y + (size_t)r0 * l->n_out + c0, l->n_out, p->x + (size_t)r0 * l->n_in,
                 l->n_in, nr);
}

/* y (n, n_out) = x (n, n_in) · Wᵀ + b, batch-invariant (gemm.c), in (rows × columns) blocks */
static void linear(ufb_ctx *ctx, float *y, const float *x, const ufb_linear *l, int n) {
    phase p = {
        .ctx = ctx, .y = y, .x = x, .l = l, .n = n, .n_col_chunks = chunks(l->n_out, GEMM_COLS)};
    ufb_pool_run(ctx->pool, linear_task, &p, chunks(n, GEMM_ROWS) * p.n_col_chunks);
}

/* e^v on 4 lanes (SSE4.1, part of the base ISA): range reduction v = k ln2 + r, |r| <= ln2/2,
 * with ln2 split in two so k ln2 is exact; e^r = 1 + r + r^2 P(r), P of degree 5 with Cephes'
 * minimax coefficients; 2^k built in the exponent bits. v is clamped to [-87.3, 88] first
 * (below, ~2^-126 instead of a denormal or 0). */
static __m128 exp4(__m128 v) {
    /* max/min return their second operand when one is NaN: v second, so NaN stays NaN */
    v = _mm_min_ps(_mm_set1_ps(88.0f), _mm_max_ps(_mm_set1_ps(-87.3f), v));
    const __m128 k = _mm_floor_ps(
        _mm_add_ps(_mm_mul_ps(v, _mm_set1_ps(1.44269504088896341f)), _mm_set1_ps(0.5f)));
    const __m128 r = _mm_add_ps(_mm_sub_ps(v, _mm_mul_ps(k, _mm_set1_ps(0.693359375f))),
                                _mm_mul_ps(k, _mm_set1_ps(2.12194440e-4f)));
    static const float c[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                               4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
    __m128 p = _mm_set1_ps(c[0]);
    for (int i = 1; i < 6; i++)
        p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(c[i]));
    p = _mm_add_ps(_mm_add_ps(_mm_mul_ps(_mm_mul_ps(p, r), r), r), _mm_set1_ps(1.0f));
    const __m128i e = _mm_slli_epi32(_mm_add_epi32(_mm_cvtps_epi32(k), _mm_set1_epi32(127)), 23);
    return _mm_mul_ps(p, _mm_castsi128_ps(e));
}

/* x[i] = e^x[i] in place (softmax: libm's expf was a call per element, most of its time).
 * Relative error vs e^x in double <= 4e-7 on [-87.3, 88] (tests/test_kernels.c). */
void ufb_exp_inplace(float *x, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(x + i, exp4(_mm_loadu_ps(x + i)));
    if (i < n) { /* the same arithmetic on a padded copy, so a lane's value never depends on n */
        float t[4] = {0};
        memcpy(t, x + i, sizeof(float) * (size_t)(n - i));
        _mm_storeu_ps(t, exp4(_mm_loadu_ps(t)));
        memcpy(x + i, t, sizeof(float) * (size_t)(n - i));
    }
}

static void softmax_rows(float *s, int n, int ld) {
    for (int r = 0; r < n; r++) {
        float *row = s + (size_t)r * ld, max = row[0];
        for (int i = 1; i < n; i++)
            max = row[i] > max ? row[i] : max;
        for (int i = 0; i < n; i++)
            row[i] -= max;
        ufb_exp_inplace(row, n);
        const float sum = sum_f(row, n);
        for (int i = 0; i < n; i++)
            row[i] /= sum;
    }
}

/* One (sequence, head): ctx (S, d) = softmax(q kᵀ · scale) v, written into attn. */
static void attention_task(void *arg, int task, int thread) {
    const phase *p = arg;
    ufb_ctx *ctx = p->ctx;
    const ufb_model *m = ctx->m;
    const int H = m->info.hidden, d = m->info.head_dim, ld = 3 * H, nh = m->info.n_heads;
    const int s = task / nh, j = task % nh, off = ctx->seq_off[s];
    const int S = ctx->seq_off[s + 1] - off, P = m->info.max_positions;
    const float *base = ctx->qkv + (size_t)off * ld;
    const float *q = base + m->qkv_q + j * m->qkv_head_stride; /* (S, d), row stride ld */
    const float *k = base + m->qkv_k + j * m->qkv_head_stride;
    const float *v = base + m->qkv_v + j * m->qkv_head_stride;
    float *scores = ctx->scores + (size_t)thread * P * P; /* (S, S) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, S, S, d, p->ly->score_scale, q, ld, k, ld,
                0.0f, scores, S);
    softmax_rows(scores, S, S);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, S, d, S, 1.0f, scores, S, v, ld, 0.0f,
                ctx->attn + (size_t)off * H + j * d, H);
}

/* out (N, H) = Wo · concat_j softmax(q_j k_jᵀ · scale) v_j (+ bo), per sequence and head. */
static void attention(ufb_ctx *ctx, float *out, const float *x, const ufb_layer *ly, int n_seqs,
                      int n_tok) {
    linear(ctx, ctx->qkv, x, &ly->qkv, n_tok); /* (N, 3H) */
    mark(ctx, UFB_PHASE_QKV);
    phase p = {.ctx = ctx, .ly = ly};
    ufb_pool_run(ctx->pool, attention_task, &p, n_seqs * ctx->m->info.n_heads);
    mark(ctx, UFB_PHASE_ATTENTION);
    linear(ctx, out, ctx->attn, &ly->out, n_tok);
    mark(ctx, UFB_PHASE_ATTN_OUT);
}

static float act_dense(const char *act, float a) {
    if (act[0] == 'r') return a > 0.0f ? a : 0.0f; /* relu */
    if (strcmp(act, "gelu_new") == 0) {            /* tanh approximation */
        const float c = 0.7978845608028654f;       /* sqrt(2/pi) */
        return 0.5f * a * (1.0f + tanhf(c * (a + 0.044715f * a * a * a)));
    }
    return ufb_gelu(a);
}

static void cmm_task(void *arg, int task, int thread) {
    const phase *p = arg;
    ufb_ctx *ctx = p->ctx;
    const ufb_model_info *in = &ctx->m->info;
    const int H = in->hidden, T = in->fff_trees, path = T * (in->fff_depth + 1);
    const int t0 = task * p->per_task, n = p->n - t0 < p->per_task ? p->n - t0 : p->per_task;
    int32_t *leaves = ctx->leaves + ((size_t)p->layer * ctx->max_tokens + t0) * T;
    (void)thread;
    ctx->cmm(&p->ly->fff, p->y + (size_t)t0 * H, leaves, ctx->path_act + (size_t)t0 * path,
             ctx->path_node + (size_t)t0 * path, p->x + (size_t)t0 * H, H, n);
    if (p->ly->fff_out_bias)
        for (int r = t0; r < t0 + n; r++)
            add(p->y + (size_t)r * H, p->ly->fff_out_bias, (size_t)H);
}

static void act_task(void *arg, int task, int thread) {
    const phase *p = arg;
    const ufb_model_info *in = &p->ctx->m->info;
    const int r1 = (task + 1) * ROW_CHUNK < p->n ? (task + 1) * ROW_CHUNK : p->n;
    (void)thread;
    for (size_t i = (size_t)task * ROW_CHUNK * in->intermediate; i < (size_t)r1 * in->intermediate;
         i++)
        p->y[i] = act_dense(in->act, p->y[i]);
}

/* out (N, H) = FF(x): dense W2·act(W1·x + b1) + b2, or the FFF by CMM. */
static void feed_forward(ufb_ctx *ctx, float *out, const float *x, const ufb_layer *ly, int layer,
                         int n_tok) {
    if (ctx->m->info.ff_kind == UFB_FF_FFF) {
        phase p = {.ctx = ctx,
                   .y = out,
                   .x = x,
                   .ly = ly,
                   .n = n_tok,
                   .layer = layer,
                   .per_task = per_task(ctx, n_tok, CMM_TOKENS)};
        ufb_pool_run(ctx->pool, cmm_task, &p, chunks(n_tok, p.per_task));
        mark(ctx, UFB_PHASE_FF);
        return;
    }
    linear(ctx, ctx->mid, x, &ly->ff1, n_tok); /* (N, I) */
    phase p = {.ctx = ctx, .y = ctx->mid, .n = n_tok};
    ufb_pool_run(ctx->pool, act_task, &p, chunks(n_tok, ROW_CHUNK));
    linear(ctx, out, ctx->mid, &ly->ff2, n_tok);
    mark(ctx, UFB_PHASE_FF);
}

/* pooled (H) = pooling of the sequence's rows x (S, H) */
static void pool(float *pooled, const float *x, int S, int H, enum ufb_pooler p) {
    for (int i = 0; i < H; i++) {
        float acc = x[i], max = x[i];
        for (int t = 1; p != UFB_POOL_CLS && p != UFB_POOL_AVG && t < S; t++)
            max = fmaxf(max, x[(size_t)t * H + i]);
        if (p == UFB_POOL_AVG || p == UFB_POOL_LSE) {
            acc = 0.0f;
            for (int t = 0; t < S; t++) {
                float v = x[(size_t)t * H + i];
                acc += p == UFB_POOL_AVG ? v : expf(v - max);
            }
        }
        switch (p) {
        case UFB_POOL_CLS:
            pooled[i] = x[i];
            break;
        case UFB_POOL_AVG:
            pooled[i] = acc / (float)S;
            break;
        case UFB_POOL_MAX:
            pooled[i] = max;
            break;
        case UFB_POOL_LSE:
            pooled[i] = max + logf(acc);
            break;
        }
    }
}

/* classifier: logits (n_seqs, C) = Wc · tanh(Wp · pool(x) + bp) + bc
 * masked LM:  logits (N, V) = x · decoderᵀ */
static void head(ufb_ctx *ctx, float *logits, const ufb_seq *seqs, int n_seqs, int n_tok) {
    const ufb_model *m = ctx->m;
    const int H = m->info.hidden, C = m->info.n_outputs;
    if (m->info.head_kind == UFB_HEAD_MLM) {
        linear(ctx, logits, ctx->x, &m->decoder, n_tok);
        return;
    }
    int off = 0;
    for (int s = 0; s < n_seqs; off += seqs[s].n, s++) {
        pool(ctx->pooled, ctx->x + (size_t)off * H, seqs[s].n, H, m->info.pooler);
        const float *feat = ctx->pooled;
        if (m->has_pooler_dense) {
            linear(ctx, ctx->pool_out, ctx->pooled, &m->pooler, 1);
            for (int i = 0; i < m->pool_dim; i++)
                ctx->pool_out[i] = tanhf(ctx->pool_out[i]);
            feat = ctx->pool_out;
        }
        linear(ctx, logits + (size_t)s * C, feat, &m->classifier, 1);
    }
}

/* Distinct nodes the leaves' root paths cover: walk up from each leaf until a node already
 * stamped for this (sequence, layer). */
static int32_t count_distinct(ufb_ctx *ctx, const int32_t *leaves, int n_tok) {
    const ufb_model_info *in = &ctx->m->info;
    int32_t count = 0;
    if (++ctx->stamp_gen == 0) { /* wrapped: clear once every 2^32 uses */
        memset(ctx->stamp, 0, sizeof(uint32_t) * (size_t)in->intermediate);
        ctx->stamp_gen = 1;
    }
    for (int i = 0; i < n_tok * in->fff_trees; i++) {
        uint32_t *tree = ctx->stamp + (size_t)(i % in->fff_trees) * in->fff_nodes;
        for (int k = leaves[i];; k = (k - 1) / 2) {
            if (tree[k] == ctx->stamp_gen) break;
            tree[k] = ctx->stamp_gen;
            count++;
            if (k == 0) break;
        }
    }
    return count;
}

static void fill_stats(ufb_ctx *ctx, ufb_seq_stats *stats, const ufb_seq *seqs, int n_seqs,
                       int n_tok) {
    const ufb_model_info *in = &ctx->m->info;
    const bool fff = in->ff_kind == UFB_FF_FFF;
    const int T = in->fff_trees, L = in->n_layers;
    const int64_t per_tok = fff ? (int64_t)T * (in->fff_depth + 1) : in->intermediate;
    int off = 0;
    (void)n_tok;
    for (int s = 0; s < n_seqs; off += seqs[s].n, s++) {
        ufb_seq_stats *st = &stats[s];
        const int S = seqs[s].n;
        st->n_tokens = S;
        st->n_layers = L;
        st->neurons_used = per_tok * S * L;
        st->neurons_total = (int64_t)in->intermediate * S * L;
        st->ff_flops = 4 * (int64_t)in->hidden * st->neurons_used; /* dot + axpy per neuron */
        st->ff_flops_dense = 4 * (int64_t)in->hidden * st->neurons_total;
        for (int l = 0; l < L; l++) {
            const int32_t *lv = ctx->leaves + ((size_t)l * ctx->max_tokens + off) * T;
            st->nodes_per_token[l] = (int32_t)per_tok;
            st->nodes_total[l] = in->intermediate;
            st->nodes_distinct[l] = fff ? count_distinct(ctx, lv, S) : in->intermediate;
            if (fff && st->leaves)
                memcpy(st->leaves + (size_t)l * S * T, lv, sizeof(int32_t) * (size_t)S * T);
        }
    }
}

/* ---- Context ---- */

ufb_ctx_params ufb_ctx_params_default(void) {
    ufb_ctx_params p = {.max_tokens = 0, .kernel = UFB_KERNEL_AUTO, .pool = NULL};
    return p;
}

static void *ctx_alloc(size_t n_elems, size_t elem_bytes, bool *ok) {
    size_t n = n_elems * elem_bytes;
    void *p = aligned_alloc(64, (n + 63) & ~(size_t)63);
    if (!p)
        *ok = false;
    else
        memset(p, 0, n);
    return p;
}

void ufb_ctx_phase_times(const ufb_ctx *ctx, double seconds[UFB_N_PHASES]) {
    memcpy(seconds, ctx->phase_s, sizeof ctx->phase_s);
}

void ufb_ctx_reset_phase_times(ufb_ctx *ctx) {
    memset(ctx->phase_s, 0, sizeof ctx->phase_s);
}

const char *ufb_phase_name(enum ufb_phase p) {
    static const char *const names[UFB_N_PHASES] = {"embed", "qkv",  "attention", "attn_out",
                                                    "ff",    "norm", "head"};
    return p >= 0 && p < UFB_N_PHASES ? names[p] : "unknown";
}

ufb_ctx *ufb_ctx_create(const ufb_model *m, const ufb_ctx_params *params) {
    ufb_ctx_params p = params ? *params : ufb_ctx_params_default();
    const ufb_model_info *in = &m->info;
    ufb_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->m = m;
    ctx->kernel = p.kernel;
    ctx->cmm = ufb_cmmq_get(&ctx->kernel, in->fff_weights);
    ctx->gemm = ufb_gemm_get(UFB_KERNEL_AUTO);
    ctx->pool = p.pool;
    ctx->n_threads = ufb_pool_size(p.pool);
    ctx->max_tokens = p.max_tokens > 0 ? p.max_tokens : 8 * in->max_positions;
    const size_t N = (size_t)ctx->max_tokens, H = (size_t)in->hidden, P = (size_t)in->max_positions;
    const size_t path = N * (size_t)in->fff_trees * (size_t)(in->fff_depth + 1);
    const bool fff = in->ff_kind == UFB_FF_FFF;
    bool ok = ctx->cmm != NULL;
    ctx->x = ctx_alloc(N * H, sizeof(float), &ok);
    ctx->xn = ctx_alloc(N * H, sizeof(float), &ok);
    ctx->tmp = ctx_alloc(N * H, sizeof(float), &ok);
    ctx->qkv = ctx_alloc(N * 3 * H, sizeof(float), &ok);
    ctx->attn = ctx_alloc(N * H, sizeof(float), &ok);
    ctx->mid = ctx_alloc(fff ? 1 : N * (size_t)in->intermediate, sizeof(float), &ok);
    ctx->scores = ctx_alloc((size_t)ctx->n_threads * P * P, sizeof(float), &ok);
    ctx->seq_off = ctx_alloc(N + 1, sizeof(int), &ok);
    ctx->pooled = ctx_alloc(H, sizeof(float), &ok);
    ctx->pool_out = ctx_alloc((size_t)(m->pool_dim > 0 ? m->pool_dim : 1), sizeof(float), &ok);
    ctx->path_act = ctx_alloc(fff ? path : 1, sizeof(float), &ok);
    ctx->path_node = ctx_alloc(fff ? path : 1, sizeof(int32_t), &ok);
    ctx->leaves =
        ctx_alloc(fff ? (size_t)in->n_layers * N * in->fff_trees : 1, sizeof(int32_t), &ok);
    ctx->stamp = ctx_alloc(fff ? (size_t)in->intermediate : 1, sizeof(uint32_t), &ok);
    if (!ok) {
        ufb_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

void ufb_ctx_free(ufb_ctx *ctx) {
    if (!ctx) return;
    free(ctx->x);
    free(ctx->xn);
    free(ctx->tmp);
    free(ctx->qkv);
    free(ctx->attn);
    free(ctx->mid);
    free(ctx->scores);
    free(ctx->seq_off);
    free(ctx->pooled);
    free(ctx->pool_out);
    free(ctx->path_act);
    free(ctx->path_node);
    free(ctx->leaves);
    free(ctx->stamp);
    free(ctx);
}

enum ufb_kernel ufb_ctx_kernel(const ufb_ctx *ctx) {
    return ctx->kernel;
}

size_t ufb_leaves_len(const ufb_model *m, int n_tokens) {
    const ufb_model_info *in = &m->info;
    if (in->ff_kind != UFB_FF_FFF || n_tokens < 0) return 0;
    return (size_t)in->n_layers * (size_t)n_tokens * (size_t)in->fff_trees;
}

void ufb_scores(const ufb_model *m, float *probs, const float *logits) {
    const int C = m->info.n_labels;
    const char *pt = m->info.problem_type;
    if (strcmp(pt, "multi_label_classification") == 0) {
        for (int i = 0; i < C; i++)
            probs[i] = 1.0f / (1.0f + expf(-logits[i]));
    } else if (strcmp(pt, "single_label_classification") == 0) {
        float max = logits[0], sum = 0.0f;
        for (int i = 1; i < C; i++)
            max = fmaxf(max, logits[i]);
        for (int i = 0; i < C; i++)
            sum += (probs[i] = expf(logits[i] - max));
        for (int i = 0; i < C; i++)
            probs[i] /= sum;
    } else {
        memmove(probs, logits, sizeof(float) * (size_t)C);
    }
}
