/* tokenizer_impl.h — the WordPiece tokenizer's internal structures (engine/ only).
 *
 * tokenizer_json.c builds a ufb_tokenizer from tokenizer.json or vocab.txt, tokenizer.c runs
 * it, tokenizer_regex.c is the tiny regex engine of the Replace normalizer. Once loaded, a
 * tokenizer is immutable: every per-call buffer lives in the caller's stack frame / heap.
 */
#ifndef UFB_TOKENIZER_IMPL_H
#define UFB_TOKENIZER_IMPL_H

#include "engine.h"

#include <stddef.h>
#include <stdint.h>

/* ---- Regex (Replace normalizer) ---- */

#define UFB_RE_MAX_ATOMS  16
#define UFB_RE_MAX_RANGES 16

/* One atom with a greedy quantifier: a literal, `.`, an escape class or a [...] class. */
typedef struct ufb_re_atom {
    uint32_t lo[UFB_RE_MAX_RANGES], hi[UFB_RE_MAX_RANGES]; /* inclusive code point ranges */
    int n_ranges;
    unsigned uc_any;  /* also matches when ufb_uc_flags(c) & uc_any (\w, \s) */
    unsigned uc_none; /* also matches when !(ufb_uc_flags(c) & uc_none) (\W, \S) */
    int negate;       /* [^...] */
    int min, max;     /* repetitions; max < 0 = unbounded */
} ufb_re_atom;

/* A concatenation of quantified atoms; no alternation, groups or anchors. */
typedef struct ufb_regex {
    ufb_re_atom atoms[UFB_RE_MAX_ATOMS];
    int n_atoms;
} ufb_regex;

/* Compile `pattern` (UTF-8). @return 0, or -1 with the reason in err. Patterns that can match
 * the empty string are rejected (Replace would then insert between every character). */
int ufb_re_compile(ufb_regex *re, const char *pattern, char *err, size_t errlen);

/* Leftmost-first (backtracking, like Oniguruma) match anchored at s[pos].
 * @return 1 and the end index in *end, or 0. */
int ufb_re_match_at(const ufb_regex *re, const uint32_t *s, size_t n, size_t pos, size_t *end);

/* ---- Tokenizer ---- */

enum ufb_norm_kind {
    UFB_NORM_BERT, /* BertNormalizer */
    UFB_NORM_NFD,
    UFB_NORM_LOWERCASE,
    UFB_NORM_STRIP_ACCENTS, /* drops every M* (BertNormalizer's strip_accents drops Mn only) */
    UFB_NORM_REPLACE,
    UFB_NORM_STRIP,
};

typedef struct ufb_norm {
    enum ufb_norm_kind kind;
    int clean_text, handle_cjk, strip_accents, lowercase; /* BERT */
    int strip_left, strip_right;                          /* STRIP */
    uint32_t *pattern;                                    /* REPLACE with a string pattern */
    size_t pattern_len;
    ufb_regex *regex;  /* REPLACE with a Regex pattern */
    uint32_t *content; /* REPLACE replacement */
    size_t content_len;
} ufb_norm;

enum ufb_pre_kind {
    UFB_PRE_BERT,             /* split on whitespace, isolate punctuation */
    UFB_PRE_WHITESPACE,       /* \w+|[^\w\s]+ */
    UFB_PRE_WHITESPACE_SPLIT, /* split on whitespace */
};

/* An added token matched on the raw input (normalized=false). */
typedef struct ufb_added {
    char *content;
    size_t len;
    int32_t id;
    int lstrip, rstrip, single_word;
} ufb_added;

/* One template element: a special token (seq < 0) or sequence A (0) / B (1). */
typedef struct ufb_tmpl_item {
    int seq;
    int type_id;
    int32_t *ids; /* (n_ids) for special tokens */
    int n_ids;
} ufb_tmpl_item;

typedef struct ufb_tmpl {
    ufb_tmpl_item *items;
    int n_items;
    int n_special; /* tokens the template adds */
} ufb_tmpl;

struct ufb_tokenizer {
    char **vocab;         /* (vocab_size) token of each id (model and added tokens); NULL holes */
    int vocab_size;       /* max id + 1 */
    int32_t *slots;       /* (n_slots) open-addressing hash of the model vocabulary: id, -1 empty */
    uint32_t n_slots;     /* power of two, >= 2 * entries */
    size_t max_tok_bytes; /* longest model token, to bound the WordPiece search */
    int32_t unk_id;
    char *prefix; /* continuing_subword_prefix ("##") */
    size_t prefix_len;
    int max_chars;   /* max_input_chars_per_word */
    ufb_norm *norms; /* (n_norms) applied in order (Sequence flattened) */
    int n_norms;
    enum ufb_pre_kind *pres; /* (n_pres) applied in order */
    int n_pres;
    ufb_added *added; /* (n_added) sorted by decreasing length: first match is the longest */
    int n_added;
    uint8_t added_first[256]; /* 1 when some added token starts with this byte */
    ufb_tmpl single, pair;    /* n_items == 0: no post-processor */
};

/* FNV-1a of the concatenation a || b (the WordPiece prefix and a piece). */
uint32_t ufb_tok_hash(const char *a, size_t na, const char *b, size_t nb);

/* @return the model-vocabulary id of a || b, or -1. */
int32_t ufb_tok_vocab_find(const ufb_tokenizer *tok, const char *a, size_t na, const char *b,
                           size_t nb);

/* Decode one UTF-8 sequence strictly (no overlongs, surrogates or > U+10FFFF).
 * @return its length in bytes (1..4) with the code point in *cp, or 0 when invalid. */
int ufb_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* @return bytes written (1..4). */
int ufb_utf8_encode(char *out, uint32_t cp);

#endif /* UFB_TOKENIZER_IMPL_H */
