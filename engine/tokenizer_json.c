/* tokenizer_json.c — load a ufb_tokenizer from tokenizer.json or a plain vocab.txt.
 *
 * tokenizer.json is parsed with jansson. We accept exactly the components tokenizer.c
 * implements (model WordPiece; normalizers BertNormalizer, Sequence, NFD, Lowercase,
 * StripAccents, Replace, Strip; pre-tokenizers BertPreTokenizer, Whitespace, WhitespaceSplit,
 * Sequence; post-processors TemplateProcessing, BertProcessing or none) and reject anything
 * else with a message naming the component, so a file we would tokenize differently from
 * Hugging Face never loads. The file is untrusted: every field is type-checked, ids are
 * range-checked, and a malformed file gives NULL + message, never a crash.
 *
 * A file named *.json, or whose first non-blank byte is '{', is JSON; anything else is read
 * as vocab.txt (one token per line, id = line number) with BERT uncased defaults, like
 * transformers' BertTokenizerFast(vocab.txt).
 * "truncation" and "padding" in tokenizer.json are ignored: the caller passes max_len.
 */
#include "tokenizer_impl.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VOCAB_ID (1 << 22) /* bounds the id -> token array a hostile file can request */
#define MAX_DEPTH    8         /* nesting of Sequence normalizers / pre-tokenizers */

typedef struct loader {
    ufb_tokenizer *tok;
    const char *path;
    char *err;
    size_t errlen;
} loader;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int
lfail(loader *ld, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ld->err && ld->errlen) snprintf(ld->err, ld->errlen, "%s: %s", ld->path, msg);
    return -1;
}

/* ---- Vocabulary ---- */

static int vocab_resize(loader *ld, int size) {
    ufb_tokenizer *tok = ld->tok;
    if (size <= tok->vocab_size) return 0;
    char **v = realloc(tok->vocab, (size_t)size * sizeof *v);
    if (!v) return lfail(ld, "out of memory for %d tokens", size);
    memset(v + tok->vocab_size, 0, (size_t)(size - tok->vocab_size) * sizeof *v);
    tok->vocab = v;
    tok->vocab_size = size;
    return 0;
}

static int vocab_set(loader *ld, int32_t id, const char *s, size_t len) {
    if (id < 0 || id >= MAX_VOCAB_ID) return lfail(ld, "token id %ld out of range", (long)id);
    if (vocab_resize(ld, id + 1) < 0) return -1;
    free(ld->tok->vocab[id]);
    ld->tok->vocab[id] = strndup(s, len);
    return ld->tok->vocab[id] ? 0 : lfail(ld, "out of memory");
}

/* Index every token present now (the model vocabulary) in the WordPiece hash. */
static int hash_build(loader *ld) {
    ufb_tokenizer *tok = ld->tok;
    uint32_t n = 0, cap = 16;
    for (int i = 0; i < tok->vocab_size; i++)
        n += tok->vocab[i] != NULL;
    if (n == 0) return lfail(ld, "empty vocabulary");
    while (cap < 2 * n)
        cap *= 2;
    tok->slots = malloc(cap * sizeof *tok->slots);
    if (!tok->slots) return lfail(ld, "out of memory");
    memset(tok->slots, 0xFF, cap * sizeof *tok->slots); /* -1: empty */
    tok->n_slots = cap;
    for (int32_t id = 0; id < tok->vocab_size; id++) {
        const char *t = tok->vocab[id];
        if (!t) continue;
        size_t len = strlen(t);
        if (len > tok->max_tok_bytes) tok->max_tok_bytes = len;
        uint32_t i = ufb_tok_hash("", 0, t, len) & (cap - 1);
        while (tok->slots[i] >= 0 && strcmp(tok->vocab[tok->slots[i]], t) != 0)
            i = (i + 1) & (cap - 1);
        tok->slots[i] = id; /* a duplicate line maps to its last id, as in HF */
    }
    return 0;
}

static int set_unk(loader *ld, const char *unk) {
    ld->tok->unk_id = ufb_tok_vocab_find(ld->tok, "", 0, unk, strlen(unk));
    if (ld->tok->unk_id < 0)
        return lfail(ld, "model: unk_token '%s' is not in the vocabulary", unk);
    return 0;
}

static int set_prefix(loader *ld, const char *prefix) {
    free(ld->tok->prefix);
    ld->tok->prefix = strdup(prefix);
    ld->tok->prefix_len = strlen(prefix);
    return ld->tok->prefix ? 0 : lfail(ld, "out of memory");
}

/* ---- Added tokens ---- */

static int cmp_added(const void *a, const void *b) {
    const ufb_added *x = a, *y = b;
    return x->len < y->len ? 1 : x->len > y->len ? -1 : 0;
}

static int add_token(loader *ld, const char *content, int32_t id, int lstrip, int rstrip,
                     int single_word) {
    ufb_tokenizer *tok = ld->tok;
    size_t len = strlen(content);
    if (len == 0) return lfail(ld, "added_tokens: empty content");
    ufb_added *a = realloc(tok->added, (size_t)(tok->n_added + 1) * sizeof *a);
    if (!a) return lfail(ld, "out of memory");
    tok->added = a;
    a = &tok->added[tok->n_added];
    *a = (ufb_added){strdup(content), len, id, lstrip, rstrip, single_word};
    if (!a->content) return lfail(ld, "out of memory");
    tok->n_added++;
    tok->added_first[(uint8_t)content[0]] = 1;
    if (id >= tok->vocab_size || !tok->vocab[id]) return vocab_set(ld, id, content, len);
    return 0;
}

static int get_bool(json_t *obj, const char *key, int dflt) {
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int parse_added(loader *ld, json_t *arr) {
    size_t i;
    json_t *t;
    if (json_is_null(arr) || !arr) return 0;
    if (!json_is_array(arr)) return lfail(ld, "added_tokens is not an array");
    json_array_foreach(arr, i, t) {
        json_t *id = json_object_get(t, "id");
        const char *content = json_string_value(json_object_get(t, "content"));
        if (!json_is_integer(id) || !content)
            return lfail(ld, "added_tokens[%zu]: needs an integer id and a string content", i);
        if (get_bool(t, "normalized", 0))
            return lfail(ld, "added_tokens[%zu] '%s': normalized=true is not supported", i,
                         content);
        json_int_t v = json_integer_value(id);
        if (v < 0 || v >= MAX_VOCAB_ID)
            return lfail(ld, "added_tokens[%zu]: id %lld out of range", i, (long long)v);
        if (add_token(ld, content, (int32_t)v, get_bool(t, "lstrip", 0), get_bool(t, "rstrip", 0),
                      get_bool(t, "single_word", 0)) < 0)
            return -1;
    }
    if (ld->tok->n_added > 1)
        qsort(ld->tok->added, (size_t)ld->tok->n_added, sizeof *ld->tok->added, cmp_added);
    return 0;
}

/* ---- Model ---- */

static int parse_model(loader *ld, json_t *m) {
    const char *type = json_string_value(json_object_get(m, "type"));
    json_t *vocab = json_object_get(m, "vocab"), *v;
    const char *key;
    if (!json_is_object(m)) return lfail(ld, "missing model");
    if (!type || strcmp(type, "WordPiece") != 0)
        return lfail(ld, "unsupported model type '%s' (only WordPiece)", type ? type : "(none)");
    if (!json_is_object(vocab)) return lfail(ld, "model: vocab is not an object");
    json_int_t max_id = -1;
    json_object_foreach(vocab, key, v) { /* size the id -> token array once */
        if (json_is_integer(v) && json_integer_value(v) > max_id &&
            json_integer_value(v) < MAX_VOCAB_ID)
            max_id = json_integer_value(v);
    }
    if (vocab_resize(ld, (int)max_id + 1) < 0) return -1;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v)) return lfail(ld, "model: vocab entry '%s' has no integer id", key);
        json_int_t id = json_integer_value(v);
        if (id < 0 || id >= MAX_VOCAB_ID)
            return lfail(ld, "model: vocab entry '%s' has id %lld out of range", key,
                         (long long)id);
        if (vocab_set(ld, (int32_t)id, key, strlen(key)) < 0) return -1;
    }
    if (hash_build(ld) < 0) return -1;
    json_t *mc = json_object_get(m, "max_input_chars_per_word");
    if (mc && !json_is_null(mc)) {
        if (!json_is_integer(mc) || json_integer_value(mc) < 0 || json_integer_value(mc) > 1 << 30)
            return lfail(ld, "model: bad max_input_chars_per_word");
        ld->tok->max_chars = (int)json_integer_value(mc);
    }
    const char *prefix = json_string_value(json_object_get(m, "continuing_subword_prefix"));
    const char *unk = json_string_value(json_object_get(m, "unk_token"));
    if (prefix && set_prefix(ld, prefix) < 0) return -1;
    return set_unk(ld, unk ? unk : "[UNK]");
}

/* ---- Normalizers ---- */

static int to_cps(loader *ld, const char *s, uint32_t **out, size_t *n) {
    size_t len = strlen(s), k = 0;
    *out = malloc((len + 1) * sizeof **out);
    if (!*out) return lfail(ld, "out of memory");
    for (size_t i = 0; i < len;) {
        int m = ufb_utf8_decode((const uint8_t *)s + i, len - i, &(*out)[k]);
        if (m == 0) return lfail(ld, "invalid UTF-8 in a Replace string");
        i += (size_t)m;
        k++;
    }
    *n = k;
    return 0;
}

static ufb_norm *new_norm(loader *ld, enum ufb_norm_kind kind) {
    ufb_tokenizer *tok = ld->tok;
    ufb_norm *n = realloc(tok->norms, (size_t)(tok->n_norms + 1) * sizeof *n);
    if (!n) {
        lfail(ld, "out of memory");
        return NULL;
    }
    tok->norms = n;
    n = &tok->norms[tok->n_norms++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    return n;
}

static int parse_replace(loader *ld, json_t *j, ufb_norm *n) {
    json_t *pat = json_object_get(j, "pattern");
    const char *str = json_string_value(json_object_get(pat, "String"));
    const char *re = json_string_value(json_object_get(pat, "Regex"));
    const char *content = json_string_value(json_object_get(j, "content"));
    if (!content || (!str && !re))
        return lfail(ld, "normalizer Replace: needs pattern.String or pattern.Regex and content");
    if (to_cps(ld, content, &n->content, &n->content_len) < 0) return -1;
    if (str) return to_cps(ld, str, &n->pattern, &n->pattern_len);
    n->regex = malloc(sizeof *n->regex);
    if (!n->regex) return lfail(ld, "out of memory");
    char why[200];
    if (ufb_re_compile(n->regex, re, why, sizeof why) < 0) return lfail(ld, "%s", why);
    return 0;
}

static int parse_normalizer(loader *ld, json_t *j, int depth) {
    const char *type = json_string_value(json_object_get(j, "type"));
    ufb_norm *n;
    if (!json_is_object(j) || !type) return lfail(ld, "normalizer without a type");
    if (strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(j, "normalizers"), *x;
        size_t i;
        if (!json_is_array(arr) || depth >= MAX_DEPTH)
            return lfail(ld, "normalizer Sequence: bad or too deeply nested 'normalizers'");
        json_array_foreach(arr, i, x) {
            if (parse_normalizer(ld, x, depth + 1) < 0) return -1;
        }
        return 0;
    }
    if (strcmp(type, "BertNormalizer") == 0) {
        if (!(n = new_norm(ld, UFB_NORM_BERT))) return -1;
        n->clean_text = get_bool(j, "clean_text", 1);
        n->handle_cjk = get_bool(j, "handle_chinese_chars", 1);
        n->lowercase = get_bool(j, "lowercase", 1);
        n->strip_accents = get_bool(j, "strip_accents", n->lowercase); /* null follows lowercase */
        return 0;
    }
    if (strcmp(type, "NFD") == 0) return new_norm(ld, UFB_NORM_NFD) ? 0 : -1;
    if (strcmp(type, "Lowercase") == 0) return new_norm(ld, UFB_NORM_LOWERCASE) ? 0 : -1;
    if (strcmp(type, "StripAccents") == 0) return new_norm(ld, UFB_NORM_STRIP_ACCENTS) ? 0 : -1;
    if (strcmp(type, "Replace") == 0)
        return (n = new_norm(ld, UFB_NORM_REPLACE)) ? parse_replace(ld, j, n) : -1;
    if (strcmp(type, "Strip") == 0) {
        if (!(n = new_norm(ld, UFB_NORM_STRIP))) return -1;
        n->strip_left = get_bool(j, "strip_left", 1);
        n->strip_right = get_bool(j, "strip_right", 1);
        return 0;
    }
    return lfail(ld, "unsupported normalizer type '%s'", type);
}

/* ---- Pre-tokenizers ---- */

static int add_pre(loader *ld, enum ufb_pre_kind k) {
    ufb_tokenizer *tok = ld->tok;
    enum ufb_pre_kind *p = realloc(tok->pres, (size_t)(tok->n_pres + 1) * sizeof *p);
    if (!p) return lfail(ld, "out of memory");
    tok->pres = p;
    tok->pres[tok->n_pres++] = k;
    return 0;
}

static int parse_pre(loader *ld, json_t *j, int depth) {
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!json_is_object(j) || !type) return lfail(ld, "pre_tokenizer without a type");
    if (strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(j, "pretokenizers"), *x;
        size_t i;
        if (!json_is_array(arr) || depth >= MAX_DEPTH)
            return lfail(ld, "pre_tokenizer Sequence: bad or too deeply nested 'pretokenizers'");
        json_array_foreach(arr, i, x) {
            if (parse_pre(ld, x, depth + 1) < 0) return -1;
        }
        return 0;
    }
    if (strcmp(type, "BertPreTokenizer") == 0) return add_pre(ld, UFB_PRE_BERT);
    if (strcmp(type, "Whitespace") == 0) return add_pre(ld, UFB_PRE_WHITESPACE);
    if (strcmp(type, "WhitespaceSplit") == 0) return add_pre(ld, UFB_PRE_WHITESPACE_SPLIT);
    return lfail(ld, "unsupported pre_tokenizer type '%s'", type);
}

/* ---- Post-processors ---- */

static int tmpl_add(loader *ld, ufb_tmpl *t, int seq, int type_id, const int32_t *ids, int n_ids) {
    ufb_tmpl_item *it = realloc(t->items, (size_t)(t->n_items + 1) * sizeof *it);
    if (!it) return lfail(ld, "out of memory");
    t->items = it;
    it = &t->items[t->n_items++];
    *it = (ufb_tmpl_item){seq, type_id, NULL, 0};
    if (seq >= 0) return 0;
    for (int i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= ld->tok->vocab_size)
            return lfail(ld, "post_processor: special token id %ld out of range", (long)ids[i]);
    it->ids = malloc((size_t)(n_ids ? n_ids : 1) * sizeof *it->ids);
    if (!it->ids) return lfail(ld, "out of memory");
    memcpy(it->ids, ids, (size_t)n_ids * sizeof *ids);
    it->n_ids = n_ids;
    t->n_special += n_ids;
    return 0;
}

/* {"SpecialToken": {"id": "[CLS]", "type_id": 0}} or {"Sequence": {"id": "A", "type_id": 0}} */
static int parse_tmpl_item(loader *ld, ufb_tmpl *t, json_t *item, json_t *specials, int pair) {
    json_t *seq = json_object_get(item, "Sequence"), *sp = json_object_get(item, "SpecialToken");
    json_t *body = seq ? seq : sp;
    const char *id = json_string_value(json_object_get(body, "id"));
    json_t *type_id = json_object_get(body, "type_id");
    if (!id || !json_is_integer(type_id) || json_integer_value(type_id) < 0 ||
        json_integer_value(type_id) > 1 << 20)
        return lfail(ld, "post_processor: bad template item");
    int tid = (int)json_integer_value(type_id);
    if (seq) {
        int s = strcmp(id, "A") == 0 ? 0 : strcmp(id, "B") == 0 ? 1 : -1;
        if (s < 0 || (s == 1 && !pair))
            return lfail(ld, "post_processor: bad sequence '%s' in a template", id);
        return tmpl_add(ld, t, s, tid, NULL, 0);
    }
    json_t *ids = json_object_get(json_object_get(specials, id), "ids"), *x;
    int32_t buf[16];
    size_t i;
    if (!json_is_array(ids) || json_array_size(ids) > 16)
        return lfail(ld, "post_processor: special token '%s' has no ids", id);
    json_array_foreach(ids, i, x) {
        if (!json_is_integer(x))
            return lfail(ld, "post_processor: special token '%s' has a bad id", id);
        buf[i] = (int32_t)json_integer_value(x);
        if (json_integer_value(x) != buf[i])
            return lfail(ld, "post_processor: special token '%s' has a bad id", id);
    }
    return tmpl_add(ld, t, -1, tid, buf, (int)json_array_size(ids));
}

static int parse_template(loader *ld, ufb_tmpl *t, json_t *arr, json_t *specials, int pair) {
    json_t *x;
    size_t i;
    if (!json_is_array(arr))
        return lfail(ld, "post_processor: TemplateProcessing template is not an array");
    json_array_foreach(arr, i, x) {
        if (parse_tmpl_item(ld, t, x, specials, pair) < 0) return -1;
    }
    return 0;
}

/* [CLS] A [SEP] / [CLS] A [SEP] B:1 [SEP]:1 */
static int bert_template(loader *ld, int32_t cls, int32_t sep) {
    ufb_tokenizer *tok = ld->tok;
    if (tmpl_add(ld, &tok->single, -1, 0, &cls, 1) < 0 ||
        tmpl_add(ld, &tok->single, 0, 0, NULL, 0) < 0 ||
        tmpl_add(ld, &tok->single, -1, 0, &sep, 1) < 0)
        return -1;
    if (tmpl_add(ld, &tok->pair, -1, 0, &cls, 1) < 0 ||
        tmpl_add(ld, &tok->pair, 0, 0, NULL, 0) < 0 ||
        tmpl_add(ld, &tok->pair, -1, 0, &sep, 1) < 0 || tmpl_add(ld, &tok->pair, 1, 1, NULL, 0) < 0)
        return -1;
    return tmpl_add(ld, &tok->pair, -1, 1, &sep, 1);
}

static int token_id_of(loader *ld, json_t *pair_arr, int32_t *id) {
    json_t *v = json_array_get(pair_arr, 1);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_VOCAB_ID)
        return lfail(ld, "post_processor BertProcessing: bad cls/sep");
    *id = (int32_t)json_integer_value(v);
    return 0;
}

static int parse_post(loader *ld, json_t *j) {
    ufb_tokenizer *tok = ld->tok;
    if (!j || json_is_null(j)) { /* no special tokens; the pair's tokens get type id 1 */
        if (tmpl_add(ld, &tok->single, 0, 0, NULL, 0) < 0 ||
            tmpl_add(ld, &tok->pair, 0, 0, NULL, 0) < 0)
            return -1;
        return tmpl_add(ld, &tok->pair, 1, 1, NULL, 0);
    }
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return lfail(ld, "post_processor without a type");
    if (strcmp(type, "TemplateProcessing") == 0) {
        json_t *sp = json_object_get(j, "special_tokens");
        if (parse_template(ld, &tok->single, json_object_get(j, "single"), sp, 0) < 0) return -1;
        return parse_template(ld, &tok->pair, json_object_get(j, "pair"), sp, 1);
    }
    if (strcmp(type, "BertProcessing") == 0) {
        int32_t cls = 0, sep = 0;
        if (token_id_of(ld, json_object_get(j, "cls"), &cls) < 0 ||
            token_id_of(ld, json_object_get(j, "sep"), &sep) < 0)
            return -1;
        return bert_template(ld, cls, sep);
    }
    return lfail(ld, "unsupported post_processor type '%s'", type);
}

/* ---- Loading ---- */

static int load_json(loader *ld, FILE *f) {
    json_error_t jerr;
    json_t *root = json_loadf(f, 0, &jerr);
    int rc = -1;
    if (!root)
        return lfail(ld, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                     jerr.text);
    if (!json_is_object(root)) {
        lfail(ld, "top level is not an object");
        goto fail;
    }
    json_t *norm = json_object_get(root, "normalizer"),
           *pre = json_object_get(root, "pre_tokenizer");
    if (parse_model(ld, json_object_get(root, "model")) < 0 ||
        parse_added(ld, json_object_get(root, "added_tokens")) < 0 ||
        (norm && !json_is_null(norm) && parse_normalizer(ld, norm, 0) < 0) ||
        (pre && !json_is_null(pre) && parse_pre(ld, pre, 0) < 0) ||
        parse_post(ld, json_object_get(root, "post_processor")) < 0)
        goto fail;
    rc = 0;
fail:
    json_decref(root);
    return rc;
}

static int add_bert_defaults(loader *ld) {
    static const char *const specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    ufb_tokenizer *tok = ld->tok;
    ufb_norm *n = new_norm(ld, UFB_NORM_BERT);
    if (!n || add_pre(ld, UFB_PRE_BERT) < 0 || set_unk(ld, "[UNK]") < 0) return -1;
    n->clean_text = n->handle_cjk = n->strip_accents = n->lowercase = 1;
    for (int i = 0; i < 5; i++) {
        int32_t id = ufb_tok_vocab_find(tok, "", 0, specials[i], strlen(specials[i]));
        if (id >= 0 && add_token(ld, specials[i], id, 0, 0, 0) < 0) return -1;
    }
    if (tok->n_added > 1) qsort(tok->added, (size_t)tok->n_added, sizeof *tok->added, cmp_added);
    int32_t cls = ufb_tok_vocab_find(tok, "", 0, "[CLS]", 5);
    int32_t sep = ufb_tok_vocab_find(tok, "", 0, "[SEP]", 5);
    if (cls < 0 || sep < 0) return lfail(ld, "vocab.txt has no [CLS] or [SEP]");
    return bert_template(ld, cls, sep);
}

static int load_vocab_txt(loader *ld, FILE *f) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int32_t id = 0;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && strchr(" \t\r\n\v\f", line[len - 1])) /* HF: line.trim_end() */
            len--;
        if ((rc = vocab_set(ld, id++, line, (size_t)len)) < 0) break;
    }
    free(line);
    if (rc < 0 || hash_build(ld) < 0) return -1;
    return add_bert_defaults(ld);
}

ufb_tokenizer *ufb_tokenizer_load(const char *path, char *err, size_t errlen) {
    loader ld = {NULL, path ? path : "(null)", err, errlen};
    FILE *f = path ? fopen(path, "rb") : NULL;
    int c = 0, rc = -1;
    if (!f) {
        lfail(&ld, "cannot open tokenizer file");
        return NULL;
    }
    ld.tok = calloc(1, sizeof *ld.tok);
    if (!ld.tok) {
        lfail(&ld, "out of memory");
        goto fail;
    }
    ld.tok->unk_id = -1;
    ld.tok->max_chars = 100;
    if (set_prefix(&ld, "##") < 0) goto fail;
    size_t n = strlen(path);
    int is_json = n >= 5 && strcmp(path + n - 5, ".json") == 0;
    while (!is_json && ((c = fgetc(f)) == ' ' || c == '\t' || c == '\r' || c == '\n'))
        ;
    rewind(f);
    rc = is_json || c == '{' ? load_json(&ld, f) : load_vocab_txt(&ld, f);
fail:
    fclose(f);
    if (rc < 0) {
        ufb_tokenizer_free(ld.tok);
        return NULL;
    }
    return ld.tok;
}

void ufb_tokenizer_free(ufb_tokenizer *tok) {
    if (!tok) return;
    for (int i = 0; i < tok->vocab_size; i++)
        free(tok->vocab[i]);
    for (int i = 0; i < tok->n_norms; i++)
        free(tok->norms[i].pattern), free(tok->norms[i].regex), free(tok->norms[i].content);
    for (int i = 0; i < tok->n_added; i++)
        free(tok->added[i].content);
    ufb_tmpl *ts[2] = {&tok->single, &tok->pair};
    for (int t = 0; t < 2; t++) {
        for (int i = 0; i < ts[t]->n_items; i++)
            free(ts[t]->items[i].ids);
        free(ts[t]->items);
    }
    free(tok->vocab), free(tok->slots), free(tok->prefix), free(tok->norms);
    free(tok->pres), free(tok->added);
    free(tok);
}
