/* model.c — load a model folder: config.json (jansson) + model.safetensors (mmap).
 *
 * Two families (../shared/docs/model-spec.md): (A) crammedBERT / UltraFastBERT with FFF or
 * dense FF, pre-LN, and (B) Hugging Face BERT classifiers, post-LN, dense or FFF.
 *
 * DESIGN: the config is parsed into ufb_model_info first; then every parameter is bound by
 * name with its expected shape. Binding errors are sticky in a `loader` (the first one wins),
 * so the per-family binding code reads as a plain list of tensors. F32 tensors that are
 * 4-byte aligned inside the mapping are used in place; F16/BF16 are widened to F32 once, at
 * load; FFF weights are re-laid out so each node's Win row and Wout column are adjacent.
 * Tensors the model does not use are accepted (checkpoints carry extras such as
 * position_ids or a second copy of the decoder).
 */
#include "engine_impl.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct loader {
    ufb_model *m;
    int rc;    /* first error, sticky */
    char *err; /* caller's buffer */
    size_t errlen;
    json_t *cfg;              /* config.json root */
    const char *layer_prefix; /* "layers." (A) or "bert.encoder.layer." (B) */
} loader;

static _Thread_local int last_load_status;

const char *ufb_status_str(int status) {
    switch (status) {
    case UFB_OK:
        return "ok";
    case UFB_ERR_IO:
        return "i/o error";
    case UFB_ERR_FORMAT:
        return "corrupt or truncated file";
    case UFB_ERR_CONFIG:
        return "invalid model config";
    case UFB_ERR_NOMEM:
        return "out of memory";
    case UFB_ERR_INVALID:
        return "invalid input";
    case UFB_ERR_UNSUPPORTED:
        return "unsupported";
    case UFB_ERR_TOO_LONG:
        return "input too long";
    default:
        return "unknown error";
    }
}

int ufb_last_load_status(void) {
    return last_load_status;
}

ufb_load_params ufb_load_params_default(void) {
    ufb_load_params p = {0};
    return p;
}

#define LOAD_FAIL(ld, status, ...)                          \
    do {                                                    \
        if (!(ld)->rc) {                                    \
            (ld)->rc = (status);                            \
            snprintf((ld)->err, (ld)->errlen, __VA_ARGS__); \
        }                                                   \
    } while (0)

/* ---- Memory owned by the model ---- */

static void *model_alloc(loader *ld, size_t n_bytes) {
    ufb_model *m = ld->m;
    if (ld->rc) return NULL;
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **p = realloc(m->owned, sizeof *p * (size_t)cap);
        if (!p) goto oom;
        m->owned = p;
        m->cap_owned = cap;
    }
    void *p = ufb_alloc_weights(n_bytes);
    if (!p) goto oom;
    memset(p, 0, n_bytes);
    m->owned[m->n_owned++] = p;
    return p;
oom:
    LOAD_FAIL(ld, UFB_ERR_NOMEM, "out of memory (%zu bytes)", n_bytes);
    return NULL;
}

/* ---- Config helpers: every message names the key ---- */

static json_t *cfg_path(json_t *root, const char *path) {
    char key[128];
    json_t *v = root;
    while (v && *path) {
        size_t n = strcspn(path, ".");
        snprintf(key, sizeof key, "%.*s", (int)n, path);
        v = json_is_object(v) ? json_object_get(v, key) : NULL;
        path += n + (path[n] == '.');
    }
    return json_is_null(v) ? NULL : v;
}

static int cfg_int(loader *ld, const char *path, int lo, int hi, int dflt) {
    json_t *v = cfg_path(ld->cfg, path);
    if (!v) {
        if (dflt >= lo) return dflt;
        LOAD_FAIL(ld, UFB_ERR_CONFIG, "config.json: missing '%s'", path);
        return lo;
    }
    json_int_t x = json_is_integer(v) ? json_integer_value(v) : (json_int_t)lo - 1;
    if (x < lo || x > hi) {
        LOAD_FAIL(ld, UFB_ERR_CONFIG, "config.json: '%s' must be an integer in [%d, %d]", path, lo,
                  hi);
        return lo;
    }
    return (int)x;
}

static double cfg_num(loader *ld, const char *path, double dflt) {
    json_t *v = cfg_path(ld->cfg, path);
    if (!v) return dflt;
    if (!json_is_number(v) || !(json_number_value(v) > 0) || json_number_value(v) > 1) {
        LOAD_FAIL(ld, UFB_ERR_CONFIG, "config.json: '%s' must be a number in (0, 1]", path);
        return dflt;
    }
    return json_number_value(v);
}

static const char *cfg_str(loader *ld, const char *path, const char *dflt) {
    json_t *v = cfg_path(ld->cfg, path);
    if (!v) return dflt;
    if (!json_is_string(v)) {
        LOAD_FAIL(ld, UFB_ERR_CONFIG, "config.json: '%s' must be a string", path);
        return dflt;
    }
    return json_string_value(v);
}

static bool cfg_bool(loader *ld, const char *path, bool dflt) {
    json_t *v = cfg_path(ld->cfg, path);
    if (!v) return dflt;
    if (!json_is_boolean(v)) {
        LOAD_FAIL(ld, UFB_ERR_CONFIG, "config.json: '%s' must be true or false", path);
        return dflt;
    }
    return json_is_true(v);
}

/* id2label: {"0": "negative", "1": "positive"}; missing ids become "LABEL_i". */
static void cfg_labels(loader *ld, int n_labels) {
    ufb_model_info *in = &ld->m->info;
    json_t *map = cfg_path(ld->cfg, "id2label");
    for (int i = 0; i < n_labels && i < UFB_MAX_LABELS; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        const char *s = json_string_value(json_object_get(map, key));
        snprintf(in->labels[i], UFB_LABEL_LEN, "%s", s ? s : "");
        if (!s) snprintf(in->labels[i], UFB_LABEL_LEN, "LABEL_%d", i);
    }
    if (map && (!json_is_object(map) || (int)json_object_size(map) != n_labels))
        LOAD_FAIL(ld, UFB_ERR_CONFIG, "config.json: 'id2label' has %zu entries, the head %d",
                  json_is_object(map) ? json_object_size(map) : 0, n_labels);
}

/* ---- Tensor binding ---- */

static ufb_st_tensor *find_tensor(loader *ld, const char *name, bool required) {
    bool ambiguous;
    ufb_st_tensor *t = ufb_st_find(&ld->m->st, name, &ambiguous);
    if (ambiguous)
        LOAD_FAIL(ld, UFB_ERR_FORMAT, "tensor '%s': several tensors match", name);
    else if (!t && required)
        LOAD_FAIL(ld, UFB_ERR_CONFIG, "tensor '%s' is missing", name);
    return t;
}

/* Check a tensor's shape: (d0, d1), or (d0) when d1 < 0; a scalar accepts () or (1). */
static bool check_shape(loader *ld, const ufb_st_tensor *t, int64_t d0, int64_t d1) {
    bool ok = d1 >= 0 ? t->n_dims == 2 && t->shape[0] == d0 && t->shape[1] == d1
                      : (t->n_dims == 1 && t->shape[0] == d0) || (d0 == 1 && t->n_dims == 0);
    if (t->dtype == UFB_ST_OTHER) {
        LOAD_FAIL(ld, UFB_ERR_UNSUPPORTED, "tensor '%s': dtype %s is not a float type", t->name,
                  t->dtype_name);
        return false;
    }
    if (!ok) {
        char got[96] = "";
        for (int i = 0; i < t->n_dims; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "",
                     (long long)t->shape[i]);
        if (d1 >= 0)
            LOAD_FAIL(ld, UFB_ERR_CONFIG, "tensor '%s': shape (%s), config says (%lld, %lld)",
                      t->name, got, (long long)d0, (long long)d1);
        else
            LOAD_FAIL(ld, UFB_ERR_CONFIG, "tensor '%s': shape (%s), config says (%lld)", t->name,
                      got, (long long)d0);
    }
    return ok;
}

/* @return the tensor as float32, in place when possible; NULL when absent or on error. */
static const float *bind(loader *ld, const char *name, int64_t d0, int64_t d1, bool required) {
    ufb_st_tensor *t = find_tensor(ld, name, required);
    if (!t || ld->rc || !check_shape(ld, t, d0, d1)) return NULL;
    t->used = true;
    ld->m->info.n_params += t->numel;
    if (t->dtype == UFB_ST_F32 && ((uintptr_t)t->data & 3) == 0)
        return (const float *)(const void *)t->data; /* alignment checked */
    float *p = model_alloc(ld, sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    if (p) ufb_st_to_f32(p, t, t->numel);
    return p;
}

/* name of a per-layer tensor: "<family prefix><i>.<suffix>" */
static const char *layer_name(const loader *ld, char *buf, size_t n, int i, const char *suffix) {
    snprintf(buf, n, "%s%d.%s", ld->layer_prefix, i, suffix);
    return buf;
}

static const float *bind_layer(loader *ld, bool required, int64_t d0, int64_t d1, int i,
                               const char *suffix) {
    char name[200];
    return bind(ld, layer_name(ld, name, sizeof name, i, suffix), d0, d1, required);
}

static float bind_scalar(loader *ld, const char *name, float dflt) {
    const float *p = bind(ld, name, 1, -1, false);
    if (p && !(isfinite(*p) && *p > 0))
        LOAD_FAIL(ld, UFB_ERR_CONFIG, "tensor '%s': %g is not a positive finite scale", name,
                  (double)*p);
    return p ? *p : dflt;
}

/* W (n_out, n_in) and optional bias b (n_out) -> packed linear layer */
static void bind_linear(loader *ld, ufb_linear *l, const char *w_name, const char *b_name,
                        int n_out, int n_in, bool bias_required) {
    const float *w = bind(ld, w_name, n_out, n_in, true);
    l->bias = b_name ? bind(ld, b_name, n_out, -1, bias_required) : NULL;
    l->n_out = n_out, l->n_in = n_in;
    float *packed = model_alloc(ld, sizeof(float) * ufb_linear_packed_len(n_out, n_in));
    if (packed) ufb_linear_pack(packed, w, n_out, n_in);
    l->packed = packed;
}

static void bind_layer_linear(loader *ld, ufb_linear *l, int i, const char *w_suffix,
                              const char *b_suffix, int n_out, int n_in, bool bias_required) {
    char wn[200], bn[200];
    bind_linear(ld, l, layer_name(ld, wn, sizeof wn, i, w_suffix),
                b_suffix ? layer_name(ld, bn, sizeof bn, i, b_suffix) : NULL, n_out, n_in,
                bias_required);
}

/* ---- FFF weights: interleave each node's Win row and Wout column ---- */

static void bind_fff(loader *ld, ufb_layer *ly, const char *in_w, const char *in_b,
                     const char *out_w) {
    const ufb_model_info *in = &ld->m->info;
    int64_t H = in->hidden, R = (int64_t)in->fff_trees * in->fff_nodes;
    int hp = (in->hidden + 15) & ~15;
    const float *win = bind(ld, in_w, R, H, true);
    const float *wout = bind(ld, out_w, H, R, true);
    ly->fff.bias = bind(ld, in_b, R, -1, true);
    float *nodes = model_alloc(ld, sizeof(float) * (size_t)(R * 2 * hp));
    if (!nodes) return;
    for (int64_t r = 0; r < R; r++) {
        memcpy(nodes + r * 2 * hp, win + r * H, sizeof(float) * (size_t)H);
        for (int64_t c = 0; c < H; c++)
            nodes[r * 2 * hp + hp + c] = wout[c * R + r];
    }
    ly->fff = (ufb_fff){.nodes = nodes,
                        .bias = ly->fff.bias,
                        .hidden = in->hidden,
                        .hp = hp,
                        .depth = in->fff_depth,
                        .n_trees = in->fff_trees,
                        .n_nodes = in->fff_nodes};
}

static void set_fff_shape(loader *ld, int depth, int trees) {
    ufb_model_info *in = &ld->m->info;
    in->ff_kind = UFB_FF_FFF;
    in->fff_depth = depth;
    in->fff_trees = trees;
    in->fff_nodes = (1 << (depth + 1)) - 1;
    if ((int64_t)trees * in->fff_nodes > (1 << 24))
        LOAD_FAIL(ld, UFB_ERR_CONFIG, "config.json: %d trees of depth %d are too many neurons",
                  trees, depth);
    in->intermediate = trees * in->fff_nodes;
}

/* Sinusoid of family A: PE[s, 2i] = sin(s·w_i), PE[s, 2i+1] = cos(s·w_i),
 * w_i = exp(-2i·ln(10000)/H). Computed in double, stored unscaled. */
static void make_sinusoid(loader *ld) {
    ufb_model *m = ld->m;
    int H = m->info.hidden, P = m->info.max_positions;
    m->pos_sin = model_alloc(ld, sizeof(float) * (size_t)P * (size_t)H);
    if (!m->pos_sin) return;
    for (int s = 0; s < P; s++)
        for (int i = 0; 2 * i < H; i++) {
            double w = exp(-2.0 * i * log(10000.0) / H);
            m->pos_sin[(size_t)s * H + 2 * i] = (float)sin(s * w);
            if (2 * i + 1 < H) m->pos_sin[(size_t)s * H + 2 * i + 1] = (float)cos(s * w);
        }
}

/* ---- Family A: crammedBERT / UltraFastBERT ---- */

static void parse_crammed_config(loader *ld) {
    ufb_model_info *in = &ld->m->info;
    in->family = UFB_FAMILY_CRAMMED;
    in->n_layers = cfg_int(ld, "arch.num_transformer_layers", 1, UFB_MAX_LAYERS, -1);
    in->hidden = cfg_int(ld, "arch.hidden_size", 2, 1 << 16, -1);
    in->n_heads = cfg_int(ld, "arch.attention.num_attention_heads", 1, 1024, -1);
    in->vocab_size = cfg_int(ld, "arch.embedding.vocab_size", 1, 1 << 24, 0);
    in->max_positions = cfg_int(ld, "arch.embedding.max_seq_length", 1, 1 << 16, 128);
    ld->m->ln_eps = (float)cfg_num(ld, "arch.norm_eps", 1e-12);
    const char *pos = cfg_str(ld, "arch.embedding.pos_embedding", "scaled-sinusoidal");
    const char *scheme = cfg_str(ld, "arch.norm_scheme", "pre");
    const char *norm = cfg_str(ld, "arch.norm", "LayerNorm");
    const char *ff = cfg_str(ld, "arch.intermed_type", "fff");
    const char *nonlin = cfg_str(ld, "arch.nonlin", "GELU");
    if (ld->rc) return;
    if (strcmp(pos, "scaled-sinusoidal") != 0)
        LOAD_FAIL(ld, UFB_ERR_UNSUPPORTED, "config.json: arch.embedding.pos_embedding '%s'", pos);
    if (strcmp(scheme, "pre") != 0 || strcmp(norm, "LayerNorm") != 0)
        LOAD_FAIL(ld, UFB_ERR_UNSUPPORTED, "config.json: arch.norm_scheme '%s' / norm '%s'", scheme,
                  norm);
    if (cfg_bool(ld, "arch.use_bias", false))
        LOAD_FAIL(ld, UFB_ERR_UNSUPPORTED, "config.json: arch.use_bias true");
    if (in->hidden % in->n_heads != 0 || in->hidden % 2 != 0)
        LOAD_FAIL(ld, UFB_ERR_CONFIG,
                  "config.json: arch.hidden_size %d is not even and a "
                  "multiple of %d heads",
                  in->hidden, in->n_heads);
    if (strcmp(ff, "fff") == 0) {
        set_fff_shape(ld, cfg_int(ld, "arch.intermed_depth", 0, 20, -1),
                      cfg_int(ld, "arch.intermed_size", 1, 1 << 16, 1));
    } else if (strcmp(ff, "ff") == 0 && strcmp(nonlin, "GELU") == 0) {
        in->ff_kind = UFB_FF_DENSE;
        in->intermediate = cfg_int(ld, "arch.intermed_size", 1, 1 << 20, -1);
    } else {
        LOAD_FAIL(ld, UFB_ERR_UNSUPPORTED,
                  "config.json: arch.intermed_type '%s' with nonlin "
                  "'%s' (supported: fff, or ff with GELU)",
                  ff, nonlin);
    }
    snprintf(in->act, sizeof in->act, "gelu");
}

static void bind_crammed_layer(loader *ld, int i) {
    ufb_model *m = ld->m;
    ufb_layer *ly = &m->layers[i];
    int H = m->info.hidden, I = m->info.intermediate;
    ly->ln1_w = bind_layer(ld, true, H, -1, i, "norm1.weight");
    ly->ln1_b = bind_layer(ld, true, H, -1, i, "norm1.bias");
    bind_layer_linear(ld, &ly->qkv, i, "attn.self_attention.query_key_value.weight",
                      "attn.self_attention.query_key_value.bias", 3 * H, H, false);
    bind_layer_linear(ld, &ly->out, i, "attn.dense.weight", NULL, H, H, false);
    ly->ln2_w = bind_layer(ld, true, H, -1, i, "norm2.weight");
    ly->ln2_b = bind_layer(ld, true, H, -1, i, "norm2.bias");
    char name[200], in_w[200], in_b[200], out_w[200];
    layer_name(ld, name, sizeof name, i, "attn.self_attention.norm_factor");
    ly->score_scale = bind_scalar(ld, name, 1.0f / sqrtf((float)m->info.head_dim));
    if (m->info.ff_kind == UFB_FF_DENSE) {
        bind_layer_linear(ld, &ly->ff1, i, "ffn.linear_in.weight", "ffn.linear_in.bias", I, H,
                          false);
        bind_layer_linear(ld, &ly->ff2, i, "ffn.linear_out.weight", NULL, H, I, false);
        return;
    }
    bind_fff(ld, ly, layer_name(ld, in_w, sizeof in_w, i, "ffn.linear_in.weight"),
             layer_name(ld, in_b, sizeof in_b, i, "ffn.linear_in.bias"),
             layer_name(ld, out_w, sizeof out_w, i, "ffn.linear_out.weight"));
}

static void bind_crammed_head(loader *ld) {
    ufb_model *m = ld->m;
    ufb_model_info *in = &m->info;
    int64_t H = in->hidden;
    if (!find_tensor(ld, "head.weight", false)) { /* pretraining checkpoint: tied MLM head */
        in->head_kind = UFB_HEAD_MLM;
        const char *dec = find_tensor(ld, "decoder.weight", false)
                              ? "decoder.weight"
                              : "embedding.word_embedding.weight";
        bind_linear(ld, &m->decoder, dec, NULL, in->vocab_size, (int)H, false);
        in->n_labels = in->n_outputs = in->vocab_size;
        return;
    }
    const char *pool = cfg_str(ld, "arch.classification_head.pooler", "avg");

    static const struct {
        const char *name;
        enum ufb_pooler p;
    } pools[] = {{"avg", UFB_POOL_AVG},
                 {"zero_index", UFB_POOL_CLS},
                 {"max", UFB_POOL_MAX},
                 {"lse", UFB_POOL_LSE}};

    int k = 0;
    while (k < 4 && strcmp(pools[k].name, pool) != 0)
        k++;
    if (k == 4)
        LOAD_FAIL(ld, UFB_ERR_UNSUPPORTED, "config.json: pooler '%s'", pool);
    else
        in->pooler = pools[k].p;
    in->n_labels = cfg_int(ld, "arch.num_labels", 1, UFB_MAX_LABELS,
                           cfg_int(ld, "num_labels", 1, UFB_MAX_LABELS, 2));
    m->pool_dim = (int)H;
    if (cfg_bool(ld, "arch.classification_head.include_ff_layer", true)) {
        m->pool_dim = cfg_int(ld, "arch.classification_head.head_dim", 1, 1 << 16, (int)H);
        m->has_pooler_dense = true;
        bind_linear(ld, &m->pooler, "pooler.dense.weight", "pooler.dense.bias", m->pool_dim, (int)H,
                    true);
    }
    bind_linear(ld, &m->classifier, "head.weight", "head.bias", in->n_labels, m->pool_dim, true);
    in->n_outputs = in->n_labels;
}

static void bind_crammed(loader *ld) {
    ufb_model *m = ld->m;
    ufb_model_info *in = &m->info;
    if (!in->vocab_size) { /* some configs leave it null: take it from the embedding */
        ufb_st_tensor *t = find_tensor(ld, "embedding.word_embedding.weight", true);
        in->vocab_size = t && t->n_dims == 2 ? (int)t->shape[0] : 1;
    }
    int64_t H = in->hidden;
    m->pre_ln = true;
    ld->layer_prefix = "layers.";
    /* NeoX layout: head j owns columns [j·3d, j·3d+d) q, [+d, +2d) k, [+2d, +3d) v */
    m->qkv_q = 0, m->qkv_k = in->head_dim, m->qkv_v = 2 * in->head_dim;
    m->qkv_head_stride = 3 * in->head_dim;
    m->word_emb = bind(ld, "embedding.word_embedding.weight", in->vocab_size, H, true);
    m->pos_scale = bind_scalar(ld, "embedding.pos_embedding.scale_factor", NAN);
    if (!ld->rc && isnan(m->pos_scale))
        LOAD_FAIL(ld, UFB_ERR_CONFIG, "tensor 'embedding.pos_embedding.scale_factor' is missing");
    if (cfg_bool(ld, "arch.embedding.normalization", true)) {
        m->emb_ln_w = bind(ld, "embedding.norm.weight", H, -1, true);
        m->emb_ln_b = bind(ld, "embedding.norm.bias", H, -1, true);
    }
    for (int i = 0; i < in->n_layers; i++)
        bind_crammed_layer(ld, i);
    if (cfg_bool(ld, "arch.final_norm", true)) {
        m->final_ln_w = bind(ld, "final_norm.weight", H, -1, true);
        m->final_ln_b = bind(ld, "final_norm.bias", H, -1, true);
    }
    bind_crammed_head(ld);
    make_sinusoid(ld);
}

/* ---- Family B: Hugging Face BERT ---- */

static void parse_bert_config(loader *ld) {
    ufb_model_info *in = &ld->m->info;
    in->family = UFB_FAMILY_BERT;
    in->n_layers = cfg_int(ld, "num_hidden_layers", 1, UFB_MAX_LAYERS, -1);
    in->hidden = cfg_int(ld, "hidden_size", 1, 1 << 16, -1);
    in->n_heads = cfg_int(ld, "num_attention_heads", 1, 1024, -1);
    in->vocab_size = cfg_int(ld, "vocab_size", 1, 1 << 24, -1);
    in->max_positions = cfg_int(ld, "max_position_embeddings", 1, 1 << 16, 512);
    in->type_vocab_size = cfg_int(ld, "type_vocab_size", 0, 1 << 16, 2);
    ld->m->ln_eps = (float)cfg_num(ld, "layer_norm_eps", 1e-12);
    const char *act = cfg_str(ld, "hidden_act", "gelu");
    const char *pos = cfg_str(ld, "position_embedding_type", "absolute");
    if (ld->rc) return;
    if (strcmp(act, "gelu") && strcmp(act, "relu") && strcmp(act, "gelu_new") &&
        strcmp(act, "gelu_pytorch_tanh"))
        LOAD_FAIL(ld, UFB_ERR_UNSUPPORTED, "config.json: hidden_act '%s'", act);
    if (strcmp(pos, "absolute") != 0)
        LOAD_FAIL(ld, UFB_ERR_UNSUPPORTED, "config.json: position_embedding_type '%s'", pos);
    snprintf(in->act, sizeof in->act, "%s", strcmp(act, "gelu_pytorch_tanh") ? act : "gelu_new");
    if (in->hidden % in->n_heads != 0)
        LOAD_FAIL(ld, UFB_ERR_CONFIG,
                  "config.json: hidden_size %d is not a multiple of %d "
                  "heads",
                  in->hidden, in->n_heads);
    const char *ff = cfg_str(ld, "ffn_type", "dense");
    if (strcmp(ff, "fff") == 0) {
        set_fff_shape(ld, cfg_int(ld, "fff_depth", 0, 20, -1),
                      cfg_int(ld, "fff_trees", 1, 1 << 16, 1));
    } else if (strcmp(ff, "dense") == 0) {
        in->ff_kind = UFB_FF_DENSE;
        in->intermediate = cfg_int(ld, "intermediate_size", 1, 1 << 20, -1);
    } else {
        LOAD_FAIL(ld, UFB_ERR_UNSUPPORTED, "config.json: ffn_type '%s' (dense or fff)", ff);
    }
}

/* q, k, v (H, H) each -> one (3H, H) block [q; k; v] so the projection is one sgemm. */
static void bind_bert_qkv(loader *ld, ufb_layer *ly, int i) {
    static const char *const parts[3] = {"query", "key", "value"};
    int64_t H = ld->m->info.hidden;
    float *w = malloc(sizeof(float) * (size_t)(3 * H * H)); /* unpacked, freed below */
    float *b = model_alloc(ld, sizeof(float) * (size_t)(3 * H));
    if (!w) LOAD_FAIL(ld, UFB_ERR_NOMEM, "out of memory");
    for (int p = 0; p < 3 && !ld->rc; p++) {
        char wn[200], bn[200];
        snprintf(wn, sizeof wn, "%s%d.attention.self.%s.weight", ld->layer_prefix, i, parts[p]);
        snprintf(bn, sizeof bn, "%s%d.attention.self.%s.bias", ld->layer_prefix, i, parts[p]);
        const float *pw = bind(ld, wn, H, H, true), *pb = bind(ld, bn, H, -1, true);
        if (ld->rc) break;
        memcpy(w + p * H * H, pw, sizeof(float) * (size_t)(H * H));
        memcpy(b + p * H, pb, sizeof(float) * (size_t)H);
    }
    float *packed = model_alloc(ld, sizeof(float) * ufb_linear_packed_len(3 * (int)H, (int)H));
    if (packed) ufb_linear_pack(packed, w, 3 * (int)H, (int)H);
    ly->qkv = (ufb_linear){packed, b, (int)H, 3 * (int)H};
    free(w);
}

static void bind_bert_layer(loader *ld, int i) {
    ufb_model *m = ld->m;
    ufb_layer *ly = &m->layers[i];
    int H = m->info.hidden, I = m->info.intermediate;
    bind_bert_qkv(ld, ly, i);
    bind_layer_linear(ld, &ly->out, i, "attention.output.dense.weight",
                      "attention.output.dense.bias", H, H, true);
    ly->ln1_w = bind_layer(ld, true, H, -1, i, "attention.output.LayerNorm.weight");
    ly->ln1_b = bind_layer(ld, true, H, -1, i, "attention.output.LayerNorm.bias");
    ly->ln2_w = bind_layer(ld, true, H, -1, i, "output.LayerNorm.weight");
    ly->ln2_b = bind_layer(ld, true, H, -1, i, "output.LayerNorm.bias");
    ly->score_scale = 1.0f / sqrtf((float)m->info.head_dim);
    if (m->info.ff_kind == UFB_FF_DENSE) {
        bind_layer_linear(ld, &ly->ff1, i, "intermediate.dense.weight", "intermediate.dense.bias",
                          I, H, true);
        bind_layer_linear(ld, &ly->ff2, i, "output.dense.weight", "output.dense.bias", H, I, true);
    } else {
        char in_w[200], in_b[200], out_w[200];
        bind_fff(ld, ly, layer_name(ld, in_w, sizeof in_w, i, "fff.linear_in.weight"),
                 layer_name(ld, in_b, sizeof in_b, i, "fff.linear_in.bias"),
                 layer_name(ld, out_w, sizeof out_w, i, "fff.linear_out.weight"));
        ly->fff_out_bias = bind_layer(ld, false, H, -1, i, "fff.linear_out.bias");
    }
}

static void bind_bert(loader *ld) {
    ufb_model *m = ld->m;
    ufb_model_info *in = &m->info;
    int64_t H = in->hidden;
    m->pre_ln = false;
    ld->layer_prefix = "bert.encoder.layer.";
    /* BERT layout: q, k, v are separate blocks of H columns; head j at j·d inside each */
    m->qkv_q = 0, m->qkv_k = in->hidden, m->qkv_v = 2 * in->hidden;
    m->qkv_head_stride = in->head_dim;
    m->word_emb = bind(ld, "bert.embeddings.word_embeddings.weight", in->vocab_size, H, true);
    m->pos_emb = bind(ld, "bert.embeddings.position_embeddings.weight", in->max_positions, H, true);
    if (in->type_vocab_size > 0)
        m->type_emb =
            bind(ld, "bert.embeddings.token_type_embeddings.weight", in->type_vocab_size, H, true);
    m->emb_ln_w = bind(ld, "bert.embeddings.LayerNorm.weight", H, -1, true);
    m->emb_ln_b = bind(ld, "bert.embeddings.LayerNorm.bias", H, -1, true);
    for (int i = 0; i < in->n_layers; i++)
        bind_bert_layer(ld, i);
    ufb_st_tensor *cls = find_tensor(ld, "classifier.weight", true);
    if (!cls || ld->rc) return;
    in->n_labels = cls->n_dims == 2 ? (int)cls->shape[0] : 0;
    if (in->n_labels < 1 || in->n_labels > UFB_MAX_LABELS)
        LOAD_FAIL(ld, UFB_ERR_CONFIG, "tensor 'classifier.weight': %d labels (1..%d)", in->n_labels,
                  UFB_MAX_LABELS);
    in->head_kind = UFB_HEAD_CLASSIFIER;
    in->pooler = UFB_POOL_CLS;
    in->n_outputs = in->n_labels;
    m->pool_dim = (int)H;
    m->has_pooler_dense = true;
    bind_linear(ld, &m->pooler, "bert.pooler.dense.weight", "bert.pooler.dense.bias", (int)H,
                (int)H, true);
    bind_linear(ld, &m->classifier, "classifier.weight", "classifier.bias", in->n_labels, (int)H,
                true);
}

/* ---- Load ---- */

static void finish_info(loader *ld) {
    ufb_model_info *in = &ld->m->info;
    const char *pt = cfg_str(ld, "problem_type", NULL);
    if (in->head_kind == UFB_HEAD_MLM)
        pt = "masked_lm";
    else if (!pt)
        pt = in->n_labels == 1 ? "regression" : "single_label_classification";
    else if (strcmp(pt, "regression") && strcmp(pt, "single_label_classification") &&
             strcmp(pt, "multi_label_classification"))
        LOAD_FAIL(ld, UFB_ERR_UNSUPPORTED, "config.json: problem_type '%s'", pt);
    snprintf(in->problem_type, sizeof in->problem_type, "%s", pt);
    if (in->head_kind == UFB_HEAD_CLASSIFIER) cfg_labels(ld, in->n_labels);
    size_t big = 0;
    for (int i = 0; i < ld->m->st.n_tensors; i++) {
        const ufb_st_tensor *t = &ld->m->st.tensors[i];
        if (!t->used || t->n_bytes <= big) continue;
        big = t->n_bytes;
        in->dtype = t->dtype == UFB_ST_F16    ? UFB_DTYPE_F16
                    : t->dtype == UFB_ST_BF16 ? UFB_DTYPE_BF16
                                              : UFB_DTYPE_F32;
    }
}

static void load_tokenizer(loader *ld, const char *dir) {
    char path[4096], why[300];
    struct stat sb;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (stat(path, &sb) != 0) snprintf(path, sizeof path, "%s/vocab.txt", dir);
    if (ld->rc || stat(path, &sb) != 0) return; /* a model without tokenizer runs on ids */
    ld->m->tok = ufb_tokenizer_load(path, why, sizeof why);
    if (!ld->m->tok)
        LOAD_FAIL(ld, UFB_ERR_CONFIG, "%s", why);
    else if (ufb_tokenizer_vocab_size(ld->m->tok) > ld->m->info.vocab_size)
        LOAD_FAIL(ld, UFB_ERR_CONFIG, "%.300s: %d tokens but the model embeds %d", path,
                  ufb_tokenizer_vocab_size(ld->m->tok), ld->m->info.vocab_size);
}

static void load_config(loader *ld, const char *dir) {
    char path[4096];
    json_error_t jerr;
    snprintf(path, sizeof path, "%s/config.json", dir);
    ld->cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(ld->cfg)) {
        bool io = !ld->cfg && json_error_code(&jerr) == json_error_cannot_open_file;
        LOAD_FAIL(ld, io ? UFB_ERR_IO : UFB_ERR_CONFIG, "%.300s: %s", path,
                  ld->cfg ? "not a JSON object" : jerr.text);
        return;
    }
    if (json_is_object(json_object_get(ld->cfg, "arch")))
        parse_crammed_config(ld);
    else
        parse_bert_config(ld);
    if (!ld->rc) ld->m->info.head_dim = ld->m->info.hidden / ld->m->info.n_heads;
}

/* The FFF rows in a reduced format, next to the F32 ones (which the routing check reads). */
static void quantize_fff(loader *ld, enum ufb_wfmt fmt) {
    ufb_model *m = ld->m;
    if (ld->rc || fmt == UFB_WFMT_F32 || m->info.ff_kind != UFB_FF_FFF) return;
    if (fmt == UFB_WFMT_INT8 && ((m->info.hidden + 63) & ~63) > UFB_XQ_ELEMS) {
        LOAD_FAIL(ld, UFB_ERR_UNSUPPORTED, "int8 FFF rows: hidden size %d is over %d",
                  m->info.hidden, UFB_XQ_ELEMS);
        return;
    }
    for (int l = 0; l < m->info.n_layers && !ld->rc; l++) {
        void *keep = model_alloc(ld, 1); /* a slot in the owned list, then the real buffer */
        if (!keep) return;
        void *q = ufb_fff_quantize(&m->layers[l].fff, fmt, NULL);
        if (!q) {
            LOAD_FAIL(ld, UFB_ERR_NOMEM, "out of memory (%s FFF rows of layer %d)",
                      ufb_wfmt_name(fmt), l);
            return;
        }
        free(keep);
        m->owned[m->n_owned - 1] = q;
    }
    m->info.fff_weights = fmt;
}

ufb_model *ufb_model_load(const char *dir, const ufb_load_params *params, char *err,
                          size_t errlen) {
    char path[4096], why[512] = "";
    const ufb_load_params p = params ? *params : ufb_load_params_default();
    loader ld = {.err = why, .errlen = sizeof why};
    ld.m = calloc(1, sizeof *ld.m);
    if (!ld.m) {
        snprintf(err, errlen, "out of memory");
        last_load_status = UFB_ERR_NOMEM;
        return NULL;
    }
    load_config(&ld, dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!ld.rc) ld.rc = ufb_st_open(&ld.m->st, path, why, sizeof why);
    if (!ld.rc && ld.m->info.family == UFB_FAMILY_CRAMMED)
        bind_crammed(&ld);
    else if (!ld.rc)
        bind_bert(&ld);
    finish_info(&ld);
    if (p.fff_weights != UFB_WFMT_F32 && p.fff_weights != UFB_WFMT_BF16 &&
        p.fff_weights != UFB_WFMT_INT8)
        LOAD_FAIL(&ld, UFB_ERR_INVALID, "unknown FFF weight format %d", (int)p.fff_weights);
    quantize_fff(&ld, p.fff_weights);
    load_tokenizer(&ld, dir);
    json_decref(ld.cfg);
    last_load_status = ld.rc;
    if (ld.rc) {
        snprintf(err, errlen, "%s", why);
        ufb_model_free(ld.m);
        return NULL;
    }
    return ld.m;
}

void ufb_model_free(ufb_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    ufb_tokenizer_free(m->tok);
    ufb_st_close(&m->st);
    free(m);
}

const ufb_model_info *ufb_model_info_get(const ufb_model *m) {
    return &m->info;
}

const ufb_tokenizer *ufb_model_tokenizer(const ufb_model *m) {
    return m->tok;
}
