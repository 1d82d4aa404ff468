/* engine.h — the only public face of the ufbd engine.
 *
 * The engine loads a Hugging Face style model folder (config.json + model.safetensors +
 * tokenizer.json or vocab.txt), tokenizes text and computes logits. Fast-feedforward (FFF)
 * layers are evaluated by conditional matrix multiplication (CMM): each token walks one
 * root-to-leaf path per tree. See docs in README.md ("Design") and ../shared/docs/model-spec.md.
 *
 * Usage:
 *
 *     char err[256];
 *     ufb_model *m = ufb_model_load("models/sst2-minilm-fff", NULL, err, sizeof err);
 *     if (!m) { fprintf(stderr, "%s\n", err); return 1; }
 *     ufb_encoding enc = {0};
 *     if (ufb_tokenize(ufb_model_tokenizer(m), &enc, text, strlen(text), NULL, 0,
 *                      ufb_model_info_get(m)->max_positions, err, sizeof err) < 0) ...
 *     ufb_ctx *ctx = ufb_ctx_create(m, NULL);      // scratch for up to max_tokens tokens
 *     ufb_seq seq = {enc.ids, enc.type_ids, enc.n};
 *     float logits[16];
 *     ufb_seq_stats st;
 *     ufb_forward(ctx, logits, &st, &seq, 1);
 *     ufb_encoding_free(&enc);
 *     ufb_ctx_free(ctx);
 *     ufb_model_free(m);
 *
 * Thread-safety: a loaded ufb_model is immutable and may be shared by any number of threads.
 * A ufb_ctx holds scratch buffers and is used by one thread at a time.
 */
#ifndef UFB_ENGINE_H
#define UFB_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UFB_MAX_LAYERS 64
#define UFB_MAX_LABELS 64
#define UFB_LABEL_LEN  64

/* ---- Status codes ---- */

enum ufb_status {
    UFB_OK = 0,
    UFB_ERR_IO = -1,     /* file missing or unreadable */
    UFB_ERR_FORMAT = -2, /* corrupt or truncated file, bad safetensors header */
    UFB_ERR_CONFIG = -3, /* config.json invalid or inconsistent with the tensors */
    UFB_ERR_NOMEM = -4,
    UFB_ERR_INVALID = -5,     /* bad caller input: invalid UTF-8, token id out of range */
    UFB_ERR_UNSUPPORTED = -6, /* valid but not supported (dtype, normalizer, activation) */
    UFB_ERR_TOO_LONG = -7,    /* more tokens than the context or the model accepts */
};

/* @return a static, human-readable name for a status code. */
const char *ufb_status_str(int status);

/* ---- Model ---- */

typedef struct ufb_model ufb_model;
typedef struct ufb_tokenizer ufb_tokenizer;

enum ufb_family {
    UFB_FAMILY_CRAMMED = 0, /* A: UltraFastBERT / crammedBERT, pre-LN */
    UFB_FAMILY_BERT = 1,    /* B: Hugging Face BertForSequenceClassification, post-LN */
};

enum ufb_ff_kind {
    UFB_FF_DENSE = 0,
    UFB_FF_FFF = 1,
};

enum ufb_head_kind {
    UFB_HEAD_CLASSIFIER = 0, /* pooled sequence -> n_labels logits */
    UFB_HEAD_MLM = 1,        /* per token -> vocab logits (tied decoder) */
};

enum ufb_pooler {
    UFB_POOL_CLS = 0, /* first token ("zero_index", BERT's [CLS]) */
    UFB_POOL_AVG,
    UFB_POOL_MAX,
    UFB_POOL_LSE,
};

enum ufb_dtype {
    UFB_DTYPE_F32 = 0,
    UFB_DTYPE_F16 = 1,
    UFB_DTYPE_BF16 = 2,
};

/* Storage of FFF node rows in memory (whatever the file holds). Reduced formats keep the F32
 * rows too, for the routing check (engine/cmm_quant.c): paths match the F32 engine's. */
enum ufb_wfmt {
    UFB_WFMT_F32 = 0,
    UFB_WFMT_BF16 = 1, /* bfloat16, round to nearest even */
    UFB_WFMT_INT8 = 2, /* symmetric, one F32 scale per Win row and per Wout row */
};

/* @return static name ("f32", "bf16", "int8"). */
const char *ufb_wfmt_name(enum ufb_wfmt f);

/* @return 0 and *f for "f32", "bf16" or "int8"; -1 otherwise. */
int ufb_wfmt_parse(const char *s, enum ufb_wfmt *f);

typedef struct ufb_model_info {
    enum ufb_family family;
    enum ufb_ff_kind ff_kind;
    enum ufb_head_kind head_kind;
    enum ufb_pooler pooler;
    enum ufb_dtype dtype; /* dtype of the largest weight tensors in the file */
    int n_layers;
    int hidden; /* H */
    int n_heads;
    int head_dim;     /* H / n_heads */
    int intermediate; /* dense FF width; for FFF: n_trees * n_nodes */
    int fff_depth;    /* D (FFF only) */
    int fff_trees;    /* T (FFF only) */
    int fff_nodes;    /* n = 2^(D+1) - 1 nodes per tree (FFF only) */
    int vocab_size;
    int max_positions;
    int type_vocab_size; /* 0 for family A */
    int n_labels;        /* classifier outputs; vocab_size for the MLM head */
    int n_outputs;       /* logits per sequence (classifier) or per token (MLM) */
    int64_t n_params;
    char labels[UFB_MAX_LABELS][UFB_LABEL_LEN]; /* id2label, "LABEL_i" when absent */
    char problem_type[32]; /* "single_label_classification" (softmax), "multi_label_..." (sigmoid),
                              "regression" */
    char act[24];          /* dense FF activation: "gelu", "gelu_new", "relu" */
    enum ufb_wfmt fff_weights; /* FFF rows as the CMM kernels read them (ufb_load_params) */
} ufb_model_info;

typedef struct ufb_load_params {
    int keep_f16;              /* reserved: 0 widens F16/BF16 weights to F32 at load time */
    enum ufb_wfmt fff_weights; /* FFF rows as read by the CMM kernels (F32 by default) */
} ufb_load_params;

ufb_load_params ufb_load_params_default(void);

/* Load a model folder. `params` may be NULL for defaults.
 * @return caller owns; free with ufb_model_free(). NULL on failure with a one-line reason
 *         (naming the file or tensor) in err. */
ufb_model *ufb_model_load(const char *dir, const ufb_load_params *params, char *err, size_t errlen);

/* Last load status, for mapping to an exit code when ufb_model_load() returned NULL. */
int ufb_last_load_status(void);

void ufb_model_free(ufb_model *m);

/* @return borrowed; valid while m lives. */
const ufb_model_info *ufb_model_info_get(const ufb_model *m);

/* @return borrowed tokenizer of the model; NULL when the folder has none. */
const ufb_tokenizer *ufb_model_tokenizer(const ufb_model *m);

/* ---- Tokenizer ---- */

typedef struct ufb_encoding {
    int32_t *ids;      /* (n,) token ids */
    int32_t *type_ids; /* (n,) 0 for the first text, 1 for the pair */
    int32_t *offsets;  /* (n, 2) byte offsets [start, end) into the original text (or the
                          pair for type 1 tokens); special tokens have (0, 0) */
    int n;
    int n_truncated; /* tokens dropped by truncation */
} ufb_encoding;

/* Load a tokenizer from tokenizer.json or a plain vocab.txt (BERT uncased defaults).
 * @return caller owns; free with ufb_tokenizer_free(). NULL with a reason in err, also for a
 *         tokenizer.json that declares a normalizer/pre-tokenizer/model we do not support. */
ufb_tokenizer *ufb_tokenizer_load(const char *path, char *err, size_t errlen);

void ufb_tokenizer_free(ufb_tokenizer *tok);

/* Tokenize `text` (and `pair` when non-NULL) and apply the post-processor template
 * (e.g. [CLS] A [SEP] B [SEP]). Truncates (longest-first for pairs) so that the result has at
 * most max_len tokens including special tokens; max_len <= 0 means no limit.
 * Input need not be NUL-terminated. Thread-safe (the tokenizer is immutable).
 * @return 0, or UFB_ERR_INVALID for invalid UTF-8 (message in err), UFB_ERR_NOMEM.
 *         `out` is reset first; caller owns its arrays; free with ufb_encoding_free(). */
int ufb_tokenize(const ufb_tokenizer *tok, ufb_encoding *out, const char *text, size_t len,
                 const char *pair, size_t pair_len, int max_len, char *err, size_t errlen);

void ufb_encoding_free(ufb_encoding *enc);

/* @return vocabulary size, and the token string of an id (borrowed) or NULL. */
int ufb_tokenizer_vocab_size(const ufb_tokenizer *tok);
const char *ufb_tokenizer_id_to_token(const ufb_tokenizer *tok, int32_t id);

/* @return id of a token string, or -1. */
int32_t ufb_tokenizer_token_to_id(const ufb_tokenizer *tok, const char *token);

/* ---- Kernels ---- */

/* CMM kernel variants; UFB_KERNEL_AUTO picks the best the CPU supports at run time. */
enum ufb_kernel {
    UFB_KERNEL_AUTO = 0,
    UFB_KERNEL_SCALAR = 1, /* the reference: the specification of the others */
    UFB_KERNEL_AVX2 = 2,
    UFB_KERNEL_AVX512 = 3,
};

/* @return 1 if the variant can run on this CPU. */
int ufb_kernel_supported(enum ufb_kernel k);

/* @return the fastest variant this CPU runs (what UFB_KERNEL_AUTO resolves to). */
enum ufb_kernel ufb_kernel_best(void);

/* @return static name ("scalar", "avx2", "avx512"). */
const char *ufb_kernel_name(enum ufb_kernel k);

/* @return 0 and *k for "auto", "scalar", "avx2" or "avx512"; -1 otherwise. */
int ufb_kernel_parse(const char *s, enum ufb_kernel *k);

/* ---- Thread pool ---- */

/* Persistent, pinned threads that split one forward pass between them (the calling thread
 * works too). Results are bit-identical for every pool size.
 * n_threads <= 1: no threads, everything inline. cpus: n_threads CPU ids to pin to, or NULL.
 * @return caller owns; free with ufb_pool_free(). One forward at a time per pool. */
typedef struct ufb_pool ufb_pool;

ufb_pool *ufb_pool_create(int n_threads, const int *cpus);
void ufb_pool_free(ufb_pool *p);
int ufb_pool_size(const ufb_pool *p);

/* ---- Forward pass ---- */

typedef struct ufb_ctx ufb_ctx;

typedef struct ufb_ctx_params {
    int max_tokens;         /* total tokens of one batch; 0 = 8 * max_positions */
    enum ufb_kernel kernel; /* CMM variant */
    ufb_pool *pool;         /* borrowed, must outlive the ctx; NULL = this thread only */
} ufb_ctx_params;

ufb_ctx_params ufb_ctx_params_default(void);

/* @return caller owns; free with ufb_ctx_free(). `m` is borrowed and must outlive the ctx.
 *         NULL when out of memory or the kernel is unsupported on this CPU. */
ufb_ctx *ufb_ctx_create(const ufb_model *m, const ufb_ctx_params *params);

void ufb_ctx_free(ufb_ctx *ctx);

/* @return the kernel the ctx runs (never AUTO). */
enum ufb_kernel ufb_ctx_kernel(const ufb_ctx *ctx);

/* Where a ctx's forward passes spend their time: wall seconds per phase, summed over every
 * ufb_forward since the ctx was created or ufb_ctx_reset_phase_times() (clock reads around
 * each phase of each layer: ~100 ns per layer). */
enum ufb_phase {
    UFB_PHASE_EMBED = 0, /* embeddings + their LayerNorm */
    UFB_PHASE_QKV,       /* fused Q/K/V projection */
    UFB_PHASE_ATTENTION, /* scores, softmax, weighted values, per (sequence, head) */
    UFB_PHASE_ATTN_OUT,  /* attention output projection */
    UFB_PHASE_FF,        /* feed-forward: CMM, or dense FF1 -> activation -> FF2 */
    UFB_PHASE_NORM,      /* residual additions and LayerNorms */
    UFB_PHASE_HEAD,      /* pooling, classifier / decoder, statistics */
    UFB_N_PHASES
};

void ufb_ctx_phase_times(const ufb_ctx *ctx, double seconds[UFB_N_PHASES]);
void ufb_ctx_reset_phase_times(ufb_ctx *ctx);

/* @return static name ("embed", "qkv", "attention", "attn_out", "ff", "norm", "head"). */
const char *ufb_phase_name(enum ufb_phase p);

/* One input sequence: token ids as given (special tokens already added). */
typedef struct ufb_seq {
    const int32_t *ids;      /* (n,) */
    const int32_t *type_ids; /* (n,) or NULL for all zero */
    int n;
} ufb_seq;

/* Neuron-usage statistics of one sequence. */
typedef struct ufb_seq_stats {
    int n_tokens;
    int n_layers;
    int64_t neurons_used;   /* sum over tokens and layers of FF neurons evaluated */
    int64_t neurons_total;  /* sum over tokens and layers of FF neurons available */
    int64_t ff_flops;       /* FLOPs done in FF layers */
    int64_t ff_flops_dense; /* FLOPs a dense FF of the same width would do */
    int32_t nodes_per_token[UFB_MAX_LAYERS]; /* FF neurons one token evaluates, per layer */
    int32_t nodes_total[UFB_MAX_LAYERS];     /* FF neurons in each layer */
    int32_t nodes_distinct[UFB_MAX_LAYERS];  /* distinct neurons the sequence touched */
    /* (n_layers, n_tokens, fff_trees) leaf reached (node index within its tree, heap order:
       children of k are 2k+1 (a <= 0) and 2k+2 (a > 0)). Caller-provided buffer of
       ufb_leaves_len() entries, or NULL to skip. Unused for dense models. */
    int32_t *leaves;
} ufb_seq_stats;

/* @return number of int32 entries `leaves` needs for a sequence of n_tokens tokens. */
size_t ufb_leaves_len(const ufb_model *m, int n_tokens);

/* Run a batch of sequences. All tokens are stacked into one (N, H) matrix for the per-token
 * parts; attention runs per sequence at its own length, so results do not depend on the
 * batch composition.
 * logits: classifier: (n_seqs, n_outputs); MLM: (total tokens, n_outputs) in sequence order.
 * stats: (n_seqs) or NULL; set stats[i].leaves before the call to receive leaves.
 * @return 0; UFB_ERR_INVALID for an id out of range or an empty sequence;
 *         UFB_ERR_TOO_LONG when a sequence exceeds max_positions or the batch max_tokens. */
int ufb_forward(ufb_ctx *ctx, float *logits, ufb_seq_stats *stats, const ufb_seq *seqs, int n_seqs);

/* Convert logits to probabilities as the model's problem_type says (softmax or sigmoid;
 * identity for regression). probs and logits may alias. */
void ufb_scores(const ufb_model *m, float *probs, const float *logits);

#ifdef __cplusplus
}
#endif

#endif /* UFB_ENGINE_H */
