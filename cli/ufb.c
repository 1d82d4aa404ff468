/* ufb.c — command-line front end of the engine: inspect a model, compute logits for raw token
 * ids, classify texts. Output is JSON (one object per line) so scripts and tests can read it.
 *
 *   ufb inspect  --model DIR
 *   ufb logits   --model DIR --ids 101,2023,102 [--type-ids 0,0,0] [--kernel K]
 *   ufb classify --model DIR [--pair TEXT] [--kernel K] [--leaves] [TEXT ...]   (stdin lines
 *                when no TEXT is given)
 *   --fff-weights f32|bf16|int8 (logits, classify, inspect): FFF rows in memory
 *
 * Exit codes: 0 ok, 1 model failed to load, 2 usage, 3 bad input.
 */
#include "engine.h"

#include "../bench/bench.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_SEQS   32   /* classify: sequences per forward call */
#define BATCH_TOKENS 4096 /* classify: tokens per forward call (when sequences are short) */

typedef struct cli_opts {
    const char *cmd;
    const char *model;
    const char *ids;
    const char *type_ids;
    const char *pair;
    enum ufb_kernel kernel;
    enum ufb_wfmt fff_weights;
    int threads; /* engine threads for one forward pass (a ufb_pool) */
    ufb_pool *pool;
    int leaves;
    char **texts;
    int n_texts;
} cli_opts;

static void usage(FILE *f) {
    fputs("usage: ufb inspect  --model DIR\n"
          "       ufb logits   --model DIR --ids 101,2023,102 [--type-ids 0,0,0] [--kernel K]\n"
          "       ufb classify --model DIR [--pair TEXT] [--kernel K] [--leaves] [TEXT ...]\n"
          "       ufb bench ffn [--hidden 768] [--depth 11] [--batch 1,8,...] [--json] ...\n"
          "       ufb bench model --model DIR [--model DIR2] [--seq 16,128] [--batch 1,32]\n"
          "                       [--threads N] [--json] ...\n"
          "       ufb bench triad [--mib 256] [--threads 1,2] [--json]\n"
          "         (classify reads one text per line from stdin when no TEXT is given)\n"
          "  --kernel K   CMM variant: auto (default), scalar, avx2, avx512\n"
          "  --fff-weights F  FFF rows in memory: f32 (default), bf16, int8\n"
          "  --threads N  engine threads for each forward pass (default 1)\n"
          "  --leaves     include the FFF leaf reached per layer, token and tree\n",
          f);
}

static int parse_args(cli_opts *o, int argc, char **argv) {
    if (argc < 2) return -1;
    o->cmd = argv[1];
    o->texts = calloc((size_t)argc, sizeof *o->texts);
    if (!o->texts) return -1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--model") && has_val)
            o->model = argv[++i];
        else if (!strcmp(a, "--ids") && has_val)
            o->ids = argv[++i];
        else if (!strcmp(a, "--type-ids") && has_val)
            o->type_ids = argv[++i];
        else if (!strcmp(a, "--pair") && has_val)
            o->pair = argv[++i];
        else if (!strcmp(a, "--kernel") && has_val) {
            if (ufb_kernel_parse(argv[++i], &o->kernel)) return -1;
        } else if (!strcmp(a, "--fff-weights") && has_val) {
            if (ufb_wfmt_parse(argv[++i], &o->fff_weights)) return -1;
        } else if (!strcmp(a, "--threads") && has_val) {
            o->threads = atoi(argv[++i]);
            if (o->threads < 1 || o->threads > 1024) return -1;
        } else if (!strcmp(a, "--leaves"))
            o->leaves = 1;
        else if (!strcmp(a, "--")) {
            while (++i < argc)
                o->texts[o->n_texts++] = argv[i];
        } else if (a[0] == '-' && a[1] == '-')
            return -1;
        else
            o->texts[o->n_texts++] = argv[i];
    }
    return o->model ? 0 : -1;
}

/* "1,2,3" -> ids; @return count, or -1 on a malformed list. Caller owns *out. */
static int parse_int_list(const char *s, int32_t **out) {
    int cap = 16, n = 0;
    int32_t *v = malloc(sizeof *v * (size_t)cap);
    while (v && *s) {
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < INT32_MIN || x > INT32_MAX || (*end && *end != ',')) break;
        if (n == cap && !(v = realloc(v, sizeof *v * (size_t)(cap *= 2)))) break;
        v[n++] = (int32_t)x;
        s = *end ? end + 1 : end;
        if (!*s && *end == ',') break; /* trailing comma */
    }
    if (!v || *s || n == 0) {
        free(v);
        return -1;
    }
    *out = v;
    return n;
}

/* ---- JSON output ---- */

static json_t *float_array(const float *x, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_real(x[i]));
    return a;
}

static json_t *leaves_json(const ufb_model_info *in, const ufb_seq_stats *st) {
    json_t *layers = json_array();
    for (int l = 0; l < in->n_layers; l++) {
        json_t *toks = json_array();
        for (int t = 0; t < st->n_tokens; t++) {
            json_t *trees = json_array();
            for (int k = 0; k < in->fff_trees; k++)
                json_array_append_new(
                    trees,
                    json_integer(st->leaves[((size_t)l * st->n_tokens + t) * in->fff_trees + k]));
            json_array_append_new(toks, trees);
        }
        json_array_append_new(layers, toks);
    }
    return layers;
}

static json_t *stats_json(const ufb_model_info *in, const ufb_seq_stats *st) {
    json_t *layers = json_array();
    for (int l = 0; l < st->n_layers; l++)
        json_array_append_new(layers,
                              json_pack("{s:i, s:i, s:i}", "used", st->nodes_per_token[l], "total",
                                        st->nodes_total[l], "distinct", st->nodes_distinct[l]));
    json_t *o = json_pack("{s:i, s:I, s:I, s:I, s:I, s:o}", "tokens", st->n_tokens, "neurons_used",
                          (json_int_t)st->neurons_used, "neurons_total",
                          (json_int_t)st->neurons_total, "ff_flops", (json_int_t)st->ff_flops,
                          "ff_flops_dense", (json_int_t)st->ff_flops_dense, "layers", layers);
    if (st->leaves && in->ff_kind == UFB_FF_FFF)
        json_object_set_new(o, "leaves", leaves_json(in, st));
    return o;
}

static void print_json(json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    if (s) puts(s);
    free(s);
    json_decref(o);
}

/* ---- Commands ---- */

static const char *family_name(const ufb_model_info *in) {
    return in->family == UFB_FAMILY_CRAMMED ? "crammed" : "bert";
}

static int cmd_inspect(const ufb_model *m) {
    const ufb_model_info *in = ufb_model_info_get(m);
    static const char *dtypes[] = {"F32", "F16", "BF16"};
    static const char *pools[] = {"zero_index", "avg", "max", "lse"};
    json_t *labels = json_array();
    for (int i = 0; in->head_kind == UFB_HEAD_CLASSIFIER && i < in->n_labels; i++)
        json_array_append_new(labels, json_string(in->labels[i]));
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:I, "
        "s:o, s:s, s:b, s:s}",
        "family", family_name(in), "ff", in->ff_kind == UFB_FF_FFF ? "fff" : "dense", "head",
        in->head_kind == UFB_HEAD_MLM ? "mlm" : "classifier", "pooler", pools[in->pooler], "dtype",
        dtypes[in->dtype], "layers", in->n_layers, "hidden", in->hidden, "heads", in->n_heads,
        "head_dim", in->head_dim, "intermediate", in->intermediate, "fff_depth", in->fff_depth,
        "fff_trees", in->fff_trees, "vocab_size", in->vocab_size, "max_positions",
        in->max_positions, "type_vocab_size", in->type_vocab_size, "n_outputs", in->n_outputs,
        "n_params", (json_int_t)in->n_params, "labels", labels, "problem_type", in->problem_type,
        "tokenizer", ufb_model_tokenizer(m) != NULL, "kernel", ufb_kernel_name(ufb_kernel_best()));
    if (in->ff_kind == UFB_FF_FFF)
        json_object_set_new(o, "fff_weights", json_string(ufb_wfmt_name(in->fff_weights)));
    if (in->ff_kind == UFB_FF_FFF)
        json_object_set_new(o, "neurons_per_token_layer",
                            json_pack("{s:i, s:i}", "used", in->fff_trees * (in->fff_depth + 1),
                                      "total", in->intermediate));
    print_json(o);
    return 0;
}

static int cmd_logits(const ufb_model *m, const cli_opts *o) {
    const ufb_model_info *in = ufb_model_info_get(m);
    int32_t *ids = NULL, *types = NULL;
    int n = o->ids ? parse_int_list(o->ids, &ids) : -1, rc = 3;
    if (n < 0) {
        fprintf(stderr, "ufb: --ids must be a comma-separated list of token ids\n");
        return 2;
    }
    if (o->type_ids && parse_int_list(o->type_ids, &types) != n) {
        fprintf(stderr, "ufb: --type-ids must have as many entries as --ids\n");
        free(ids);
        return 2;
    }
    ufb_ctx_params cp = {.max_tokens = n, .kernel = o->kernel, .pool = o->pool};
    ufb_ctx *ctx = ufb_ctx_create(m, &cp);
    size_t n_out = (size_t)in->n_outputs * (in->head_kind == UFB_HEAD_MLM ? (size_t)n : 1);
    float *logits = malloc(sizeof(float) * n_out);
    ufb_seq_stats st = {.leaves = calloc(ufb_leaves_len(m, n) + 1, sizeof(int32_t))};
    ufb_seq seq = {ids, types, n};
    int err = !ctx ? UFB_ERR_UNSUPPORTED : !logits ? UFB_ERR_NOMEM : 0;
    if (!err) err = ufb_forward(ctx, logits, &st, &seq, 1);
    if (err) {
        fprintf(stderr, "ufb: %s\n", ufb_status_str(err));
    } else {
        json_t *out = stats_json(in, &st);
        json_object_set_new(out, "logits", float_array(logits, (int)n_out));
        json_object_set_new(out, "kernel", json_string(ufb_kernel_name(ufb_ctx_kernel(ctx))));
        print_json(out);
        rc = 0;
    }
    free(st.leaves);
    free(logits);
    ufb_ctx_free(ctx);
    free(ids);
    free(types);
    return rc;
}

/* ---- classify: batches of texts through one ctx ---- */

typedef struct classify_batch {
    ufb_encoding enc[BATCH_SEQS];
    ufb_seq seqs[BATCH_SEQS];
    ufb_seq_stats stats[BATCH_SEQS];
    float *logits; /* (BATCH_SEQS, n_outputs) */
    int n;
    int n_tokens;
    int max_tokens;
} classify_batch;

static json_t *classify_json(const ufb_model *m, const float *logits, const ufb_seq_stats *st) {
    const ufb_model_info *in = ufb_model_info_get(m);
    float probs[UFB_MAX_LABELS];
    ufb_scores(m, probs, logits);
    int best = 0;
    for (int i = 1; i < in->n_labels; i++)
        best = probs[i] > probs[best] ? i : best;
    json_t *scores = json_object();
    for (int i = 0; i < in->n_labels; i++)
        json_object_set_new(scores, in->labels[i], json_real(probs[i]));
    return json_pack("{s:s, s:f, s:o, s:o, s:o}", "label", in->labels[best], "score",
                     (double)probs[best], "scores", scores, "logits",
                     float_array(logits, in->n_outputs), "stats", stats_json(in, st));
}

static int run_batch(ufb_ctx *ctx, const ufb_model *m, classify_batch *b) {
    int rc = b->n ? ufb_forward(ctx, b->logits, b->stats, b->seqs, b->n) : 0;
    for (int i = 0; i < b->n; i++) {
        if (!rc)
            print_json(classify_json(m, b->logits + (size_t)i * ufb_model_info_get(m)->n_outputs,
                                     &b->stats[i]));
        free(b->stats[i].leaves);
        ufb_encoding_free(&b->enc[i]);
    }
    if (rc) fprintf(stderr, "ufb: %s\n", ufb_status_str(rc));
    b->n = b->n_tokens = 0;
    return rc;
}

/* Tokenize one text into the batch; runs the batch first when the text would not fit. */
static int add_text(ufb_ctx *ctx, const ufb_model *m, classify_batch *b, const cli_opts *o,
                    const char *text, size_t len) {
    const ufb_model_info *in = ufb_model_info_get(m);
    char err[256];
    ufb_encoding *e = &b->enc[b->n];
    int rc = ufb_tokenize(ufb_model_tokenizer(m), e, text, len, o->pair,
                          o->pair ? strlen(o->pair) : 0, in->max_positions, err, sizeof err);
    if (rc) {
        fprintf(stderr, "ufb: %s\n", err);
        return rc;
    }
    if (b->n_tokens + e->n > b->max_tokens) {
        ufb_encoding pending = *e;
        if ((rc = run_batch(ctx, m, b))) {
            ufb_encoding_free(&pending);
            return rc;
        }
        e = &b->enc[0];
        *e = pending;
    }
    b->n_tokens += e->n;
    b->seqs[b->n] = (ufb_seq){e->ids, e->type_ids, e->n};
    b->stats[b->n] = (ufb_seq_stats){
        .leaves = o->leaves ? calloc(ufb_leaves_len(m, e->n) + 1, sizeof(int32_t)) : NULL};
    b->n++;
    return b->n == BATCH_SEQS ? run_batch(ctx, m, b) : 0;
}

static int cmd_classify(const ufb_model *m, const cli_opts *o) {
    const ufb_model_info *in = ufb_model_info_get(m);
    if (in->head_kind != UFB_HEAD_CLASSIFIER || !ufb_model_tokenizer(m)) {
        fprintf(stderr, "ufb: classify needs a classifier head and a tokenizer in the model\n");
        return 2;
    }
    int max_tokens = in->max_positions > BATCH_TOKENS ? in->max_positions : BATCH_TOKENS;
    ufb_ctx_params cp = {.max_tokens = max_tokens, .kernel = o->kernel, .pool = o->pool};
    ufb_ctx *ctx = ufb_ctx_create(m, &cp);
    classify_batch *b = calloc(1, sizeof *b);
    if (!ctx || !b || !(b->logits = malloc(sizeof(float) * BATCH_SEQS * (size_t)in->n_outputs))) {
        fprintf(stderr, "ufb: out of memory or kernel unsupported\n");
        return 1;
    }
    b->max_tokens = max_tokens;
    int rc = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    for (int i = 0; !rc && i < o->n_texts; i++) {
        rc = add_text(ctx, m, b, o, o->texts[i], strlen(o->texts[i]));
    }
    while (!rc && o->n_texts == 0 && (len = getline(&line, &cap, stdin)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        rc = add_text(ctx, m, b, o, line, (size_t)len);
    }
    if (!rc)
        rc = run_batch(ctx, m, b);
    else
        for (int i = 0; i < b->n; i++)
            free(b->stats[i].leaves), ufb_encoding_free(&b->enc[i]);
    free(line);
    free(b->logits);
    free(b);
    ufb_ctx_free(ctx);
    return rc ? 3 : 0;
}

int main(int argc, char **argv) {
    cli_opts o = {0};
    if (argc >= 3 && !strcmp(argv[1], "bench") && !strcmp(argv[2], "ffn"))
        return ufb_bench_ffn_main(argc - 3, argv + 3);
    if (argc >= 3 && !strcmp(argv[1], "bench") && !strcmp(argv[2], "model"))
        return ufb_bench_model_main(argc - 3, argv + 3);
    if (argc >= 3 && !strcmp(argv[1], "bench") && !strcmp(argv[2], "triad"))
        return ufb_bench_triad_main(argc - 3, argv + 3);
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (parse_args(&o, argc, argv)) {
        usage(stderr);
        free(o.texts);
        return 2;
    }
    char err[512];
    o.pool = o.threads > 1 ? ufb_pool_create(o.threads, NULL) : NULL;
    ufb_load_params lp = ufb_load_params_default();
    lp.fff_weights = o.fff_weights;
    ufb_model *m = ufb_model_load(o.model, &lp, err, sizeof err);
    int rc = 2;
    if (!m) {
        fprintf(stderr, "ufb: cannot load model '%s': %s\n", o.model, err);
        rc = 1;
    } else if (!strcmp(o.cmd, "inspect")) {
        rc = cmd_inspect(m);
    } else if (!strcmp(o.cmd, "logits")) {
        rc = cmd_logits(m, &o);
    } else if (!strcmp(o.cmd, "classify")) {
        rc = cmd_classify(m, &o);
    } else {
        usage(stderr);
    }
    ufb_model_free(m);
    ufb_pool_free(o.pool);
    free(o.texts);
    return rc;
}
