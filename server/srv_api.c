/* srv_api.c — the request and response formats of ufbd, as pure functions (no HTTP, no
 * threads), so they are unit-tested directly (tests/test_server_api.c).
 *
 * /classify: {"inputs": "text" | ["t1", ...] | [["a", "b"], ...], options} — a list of strings
 * is a batch; a 2-element inner list is a text pair. /predict follows TEI exactly: there a
 * list of two strings is ONE pair. Request-level problems (bad JSON, wrong types, too many
 * inputs) fail the request; item-level problems (too long without truncate, empty text) fail
 * only that item, the others are answered (a TEI complaint, its issue #145).
 */
#include "srv_impl.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void srv_error_set(srv_error *e, int status, const char *type, const char *fmt, ...) {
    va_list ap;
    e->status = status;
    e->type = type;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

double srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void srv_job_free(srv_job *job) {
    if (!job) return;
    for (int i = 0; i < job->n_items; i++) {
        ufb_encoding_free(&job->items[i].enc);
        free(job->items[i].stats.leaves);
    }
    free(job->items);
    free(job);
}

char *srv_error_json(const srv_error *e, const char *request_id) {
    json_t *o =
        json_pack("{s:s, s:s, s:s}", "error", e->msg, "error_type", e->type ? e->type : "Internal",
                  "request_id", request_id ? request_id : "");
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* @return byte offset of the first invalid UTF-8 sequence, or -1 when valid. */
static long utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n || (len == 2 && c < 0xC2)) return (long)i;
        unsigned cp = len == 1 ? c : c & (0x7F >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return (long)i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return (long)i;
        i += len;
    }
    return -1;
}

/* Parse the body as a JSON object; 400 for malformed JSON, 422 for invalid UTF-8. */
static json_t *parse_body(const char *body, size_t len, srv_error *err) {
    long bad = utf8_invalid_at((const unsigned char *)body, len);
    if (bad >= 0) {
        srv_error_set(err, 422, "Validation", "request body is not valid UTF-8 at byte %ld", bad);
        return NULL;
    }
    json_error_t jerr;
    json_t *root =
        json_loadb(body, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        srv_error_set(err, 400, "Validation", "malformed JSON at line %d column %d: %s", jerr.line,
                      jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        srv_error_set(err, 422, "Validation", "request body must be a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

/* ---- Options ---- */

typedef struct req_opts {
    bool truncate, raw_scores, return_stats, return_paths, add_special_tokens;
    int top_k;
} req_opts;

static int opt_bool(json_t *v, const char *key, bool *out, srv_error *err) {
    if (!json_is_boolean(v)) {
        srv_error_set(err, 422, "Validation", "'%s' must be true or false", key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

/* Known keys per route; anything else is a 422 so that typos do not pass silently. */
static int parse_opts(json_t *root, const char *const *allowed, req_opts *o, srv_error *err) {
    const char *key;
    json_t *v;
    *o = (req_opts){.return_stats = true, .add_special_tokens = true, .top_k = 0};
    json_object_foreach(root, key, v) {
        bool known = false;
        for (const char *const *a = allowed; *a; a++)
            known |= strcmp(*a, key) == 0;
        int rc = 0;
        if (!known) {
            srv_error_set(err, 422, "Validation", "unknown field '%.64s'", key);
            return -1;
        }
        if (!strcmp(key, "truncate"))
            rc = opt_bool(v, key, &o->truncate, err);
        else if (!strcmp(key, "raw_scores"))
            rc = opt_bool(v, key, &o->raw_scores, err);
        else if (!strcmp(key, "return_stats"))
            rc = opt_bool(v, key, &o->return_stats, err);
        else if (!strcmp(key, "return_paths"))
            rc = opt_bool(v, key, &o->return_paths, err);
        else if (!strcmp(key, "add_special_tokens"))
            rc = opt_bool(v, key, &o->add_special_tokens, err);
        else if (!strcmp(key, "top_k")) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                json_integer_value(v) > UFB_MAX_LABELS)
                srv_error_set(err, 422, "Validation", "'top_k' must be an integer in [1, %d]",
                              UFB_MAX_LABELS),
                    rc = -1;
            else
                o->top_k = (int)json_integer_value(v);
        } else if (!strcmp(key, "truncation_direction")) {
            if (!json_is_string(v) || strcmp(json_string_value(v), "Right"))
                srv_error_set(err, 422, "Validation",
                              "only truncation_direction 'Right' is "
                              "supported"),
                    rc = -1;
        }
        if (rc) return -1;
    }
    return 0;
}

/* ---- Inputs ---- */

typedef struct input_ref {
    const char *text, *pair;
    size_t text_len, pair_len;
} input_ref;

/* Collect the inputs: TEI mode treats ["a", "b"] as one pair, ours as two texts. */
static int collect_inputs(json_t *inputs, bool tei, input_ref *refs, int cap, int *n, bool *single,
                          srv_error *err) {
    *n = 0;
    *single =
        json_is_string(inputs) || (tei && json_is_array(inputs) && json_array_size(inputs) <= 2 &&
                                   json_is_string(json_array_get(inputs, 0)));
    if (*single) {
        json_t *one = json_is_string(inputs) ? inputs : NULL;
        refs[0] = (input_ref){0};
        if (one)
            refs[0].text = json_string_value(one), refs[0].text_len = json_string_length(one);
        else if (json_array_size(inputs) == 2 && json_is_string(json_array_get(inputs, 1))) {
            json_t *a = json_array_get(inputs, 0), *b = json_array_get(inputs, 1);
            refs[0] = (input_ref){json_string_value(a), json_string_value(b), json_string_length(a),
                                  json_string_length(b)};
        } else if (json_array_size(inputs) == 1) {
            json_t *a = json_array_get(inputs, 0);
            refs[0] = (input_ref){json_string_value(a), NULL, json_string_length(a), 0};
        } else {
            srv_error_set(err, 422, "Validation", "'inputs' pair must hold two strings");
            return -1;
        }
        *n = 1;
        return 0;
    }
    if (!json_is_array(inputs)) {
        srv_error_set(err, 422, "Validation",
                      "'inputs' must be a string, a list of strings or a list of [text, pair]");
        return -1;
    }
    if (json_array_size(inputs) == 0) {
        srv_error_set(err, 400, "Validation", "'inputs' is empty");
        return -1;
    }
    if ((int)json_array_size(inputs) > cap) {
        srv_error_set(err, 422, "Validation", "%zu inputs, more than the limit of %d per request",
                      json_array_size(inputs), cap);
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(inputs, i, v) {
        json_t *a = json_is_array(v) ? json_array_get(v, 0) : v;
        json_t *b = json_is_array(v) && json_array_size(v) == 2 ? json_array_get(v, 1) : NULL;
        bool ok = json_is_string(a) && (!json_is_array(v) || json_array_size(v) == 1 ||
                                        (json_array_size(v) == 2 && json_is_string(b)));
        if (!ok) {
            srv_error_set(err, 422, "Validation",
                          "inputs[%zu] must be a string or a list of one or two strings", i);
            return -1;
        }
        refs[i] = (input_ref){json_string_value(a), b ? json_string_value(b) : NULL,
                              json_string_length(a), b ? json_string_length(b) : 0};
    }
    *n = (int)json_array_size(inputs);
    return 0;
}

/* Tokenize one input into an item; failures stay with the item. */
static void tokenize_item(const ufb_model *m, const srv_limits *lim, const input_ref *in,
                          bool truncate, srv_item *it) {
    char why[200];
    const int limit = lim->max_input_tokens;
    if (in->text_len == 0 && (!in->pair || in->pair_len == 0)) {
        srv_error_set(&it->err, 422, "Validation", "input is empty");
        return;
    }
    int rc = ufb_tokenize(ufb_model_tokenizer(m), &it->enc, in->text, in->text_len, in->pair,
                          in->pair_len, truncate ? limit : 0, why, sizeof why);
    if (rc) {
        srv_error_set(&it->err, 422, "Tokenizer", "%s", why);
        return;
    }
    if (it->enc.n > limit) {
        srv_error_set(&it->err, 422, "Validation",
                      "input has %d tokens, more than the limit of %d (send \"truncate\": true "
                      "to cut it)",
                      it->enc.n, limit);
        return;
    }
    it->stats.leaves = calloc(ufb_leaves_len(m, it->enc.n) + 1, sizeof(int32_t));
    if (!it->stats.leaves) srv_error_set(&it->err, 500, "Internal", "out of memory");
}

srv_job *srv_parse_classify(const ufb_model *m, const srv_limits *lim, const char *body, size_t len,
                            bool tei, srv_error *err) {
    static const char *const ours[] = {"inputs",       "truncate",     "raw_scores", "top_k",
                                       "return_stats", "return_paths", NULL};
    static const char *const teis[] = {"inputs", "truncate", "raw_scores", "truncation_direction",
                                       NULL};
    req_opts o;
    input_ref *refs = NULL;
    srv_job *job = NULL;
    int n = 0;
    bool single = false;
    json_t *root = parse_body(body, len, err);
    if (!root || parse_opts(root, tei ? teis : ours, &o, err)) goto fail;
    json_t *inputs = json_object_get(root, "inputs");
    if (!inputs) {
        srv_error_set(err, 422, "Validation", "missing field 'inputs'");
        goto fail;
    }
    refs = calloc((size_t)lim->max_inputs + 1, sizeof *refs);
    job = calloc(1, sizeof *job);
    if (!refs || !job) {
        srv_error_set(err, 500, "Internal", "out of memory");
        goto fail;
    }
    if (collect_inputs(inputs, tei, refs, lim->max_inputs, &n, &single, err)) goto fail;
    job->items = calloc((size_t)n, sizeof *job->items);
    if (!job->items) {
        srv_error_set(err, 500, "Internal", "out of memory");
        goto fail;
    }
    job->n_items = n;
    for (int i = 0; i < n; i++)
        tokenize_item(m, lim, &refs[i], o.truncate, &job->items[i]);
    job->raw_scores = o.raw_scores, job->return_stats = o.return_stats;
    job->return_paths = o.return_paths, job->top_k = o.top_k, job->tei = tei;
    job->single = single;
    free(refs);
    json_decref(root);
    return job;
fail:
    free(refs);
    srv_job_free(job);
    json_decref(root);
    return NULL;
}

/* ---- Responses ---- */

static json_t *item_scores(const ufb_model *m, const srv_job *job, const srv_item *it) {
    const ufb_model_info *in = ufb_model_info_get(m);
    float probs[UFB_MAX_LABELS];
    int order[UFB_MAX_LABELS];
    ufb_scores(m, probs, it->logits);
    const float *shown = job->tei && job->raw_scores ? it->logits : probs;
    for (int i = 0; i < in->n_labels; i++) { /* insertion sort, high -> low, stable */
        int j = i;
        while (j > 0 && shown[order[j - 1]] < shown[i])
            order[j] = order[j - 1], j--;
        order[j] = i;
    }
    int k = job->top_k > 0 && job->top_k < in->n_labels ? job->top_k : in->n_labels;
    json_t *arr = json_array();
    for (int i = 0; i < k; i++)
        json_array_append_new(arr, json_pack("{s:s, s:f}", "label", in->labels[order[i]], "score",
                                             (double)shown[order[i]]));
    return arr;
}

static json_t *layer_leaves(const ufb_model_info *in, const srv_item *it, int l) {
    json_t *toks = json_array();
    const int T = in->fff_trees, S = it->enc.n;
    for (int t = 0; t < S; t++) {
        json_t *trees = json_array();
        for (int k = 0; k < T; k++)
            json_array_append_new(trees,
                                  json_integer(it->stats.leaves[((size_t)l * S + t) * T + k]));
        json_array_append_new(toks, trees);
    }
    return toks;
}

static json_t *item_stats(const ufb_model *m, const srv_job *job, const srv_item *it) {
    const ufb_model_info *in = ufb_model_info_get(m);
    const ufb_seq_stats *st = &it->stats;
    json_t *layers = json_array();
    for (int l = 0; l < st->n_layers; l++) {
        json_t *o = json_pack("{s:i, s:i, s:i}", "used", st->nodes_per_token[l], "total",
                              st->nodes_total[l], "distinct", st->nodes_distinct[l]);
        if (job->return_paths && in->ff_kind == UFB_FF_FFF)
            json_object_set_new(o, "leaves", layer_leaves(in, it, l));
        json_array_append_new(layers, o);
    }
    return json_pack("{s:i, s:i, s:i, s:i, s:f, s:f, s:I, s:I, s:I, s:I, s:o}", "tokens", it->enc.n,
                     "truncated", it->enc.n_truncated, "batch_size", it->batch_size, "batch_tokens",
                     it->batch_tokens, "queue_ms", it->queue_ms, "compute_ms", it->compute_ms,
                     "neurons_used", (json_int_t)st->neurons_used, "neurons_total",
                     (json_int_t)st->neurons_total, "ff_flops", (json_int_t)st->ff_flops,
                     "ff_flops_dense", (json_int_t)st->ff_flops_dense, "layers", layers);
}

static json_t *item_json(const ufb_model *m, const srv_job *job, const srv_item *it) {
    if (it->err.status)
        return json_pack("{s:s, s:s}", "error", it->err.msg, "error_type", it->err.type);
    json_t *scores = item_scores(m, job, it);
    if (job->tei) return scores;
    json_t *best = json_array_get(scores, 0);
    json_t *o = json_pack("{s:O, s:O, s:o}", "label", json_object_get(best, "label"), "score",
                          json_object_get(best, "score"), "scores", scores);
    if (job->raw_scores) {
        json_t *lg = json_array();
        for (int i = 0; i < ufb_model_info_get(m)->n_outputs; i++)
            json_array_append_new(lg, json_real(it->logits[i]));
        json_object_set_new(o, "logits", lg);
    }
    if (job->return_stats) json_object_set_new(o, "stats", item_stats(m, job, it));
    return o;
}

char *srv_format_classify(const ufb_model *m, const srv_job *job, const char *request_id,
                          double total_ms, int *status) {
    const srv_item *first_err = NULL;
    int n_ok = 0, tokens = 0;
    double queue_ms = 0, compute_ms = 0;
    for (int i = 0; i < job->n_items; i++) {
        const srv_item *it = &job->items[i];
        if (it->err.status && !first_err) first_err = it;
        n_ok += !it->err.status;
        tokens += it->err.status ? 0 : it->enc.n;
        queue_ms = fmax(queue_ms, it->queue_ms);
        compute_ms = fmax(compute_ms, it->compute_ms);
    }
    /* all failed, or TEI (which answers all or nothing): the request takes the item's error */
    if (first_err && (n_ok == 0 || job->tei)) {
        *status = first_err->err.status;
        return srv_error_json(&first_err->err, request_id);
    }
    json_t *results = json_array();
    for (int i = 0; i < job->n_items; i++)
        json_array_append_new(results, item_json(m, job, &job->items[i]));
    json_t *root;
    if (job->tei) {
        root = job->single ? json_incref(json_array_get(results, 0)) : json_incref(results);
    } else {
        root =
            json_pack("{s:s, s:O, s:{s:f, s:f, s:f, s:i, s:i}}", "request_id", request_id,
                      "results", results, "metrics", "queue_ms", queue_ms, "compute_ms", compute_ms,
                      "total_ms", total_ms, "tokens", tokens, "inputs", job->n_items);
    }
    json_decref(results);
    char *s =
        root ? json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL; /* float32 exact */
    json_decref(root);
    *status = s ? 200 : 500;
    return s;
}

/* ---- /tokenize (TEI format) ---- */

static json_t *tokens_json(const ufb_model *m, const ufb_encoding *e, bool add_special) {
    json_t *arr = json_array();
    for (int i = 0; i < e->n; i++) {
        /* special tokens are the only ones with the empty span (0, 0) */
        bool special = e->offsets[2 * i] == 0 && e->offsets[2 * i + 1] == 0;
        if (special && !add_special) continue;
        const char *text = ufb_tokenizer_id_to_token(ufb_model_tokenizer(m), e->ids[i]);
        json_array_append_new(arr, json_pack("{s:i, s:s, s:b, s:i, s:i}", "id", e->ids[i], "text",
                                             text ? text : "", "special", special, "start",
                                             e->offsets[2 * i], "stop", e->offsets[2 * i + 1]));
    }
    return arr;
}

char *srv_handle_tokenize(const ufb_model *m, const srv_limits *lim, const char *body, size_t len,
                          int *status, srv_error *err) {
    static const char *const keys[] = {"inputs", "add_special_tokens", "truncate", NULL};
    req_opts o;
    input_ref *refs = calloc((size_t)lim->max_inputs + 1, sizeof *refs);
    int n = 0;
    bool single;
    char *out = NULL;
    json_t *root = parse_body(body, len, err), *all = NULL;
    if (!refs) srv_error_set(err, 500, "Internal", "out of memory");
    if (!refs || !root || parse_opts(root, keys, &o, err)) goto done;
    json_t *inputs = json_object_get(root, "inputs");
    if (!inputs) {
        srv_error_set(err, 422, "Validation", "missing field 'inputs'");
        goto done;
    }
    if (collect_inputs(inputs, false, refs, lim->max_inputs, &n, &single, err)) goto done;
    all = json_array();
    for (int i = 0; i < n; i++) {
        srv_item it = {0};
        tokenize_item(m, lim, &refs[i], o.truncate, &it);
        free(it.stats.leaves);
        if (it.err.status) {
            *err = it.err;
            ufb_encoding_free(&it.enc);
            goto done;
        }
        json_array_append_new(all, tokens_json(m, &it.enc, o.add_special_tokens));
        ufb_encoding_free(&it.enc);
    }
    out = json_dumps(all, JSON_COMPACT);
    *status = 200;
done:
    json_decref(all);
    json_decref(root);
    free(refs);
    return out;
}
