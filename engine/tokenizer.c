/* tokenizer.c — WordPiece tokenization with Hugging Face `tokenizers` semantics.
 *
 * Pipeline (as in HF's TokenizerImpl::encode), per input text:
 *   1. validate UTF-8 (invalid input is a caller error with the byte offset, never a crash);
 *   2. split the raw text on added tokens (leftmost-longest match, e.g. a literal "[MASK]");
 *   3. normalize each remaining segment, keeping an alignment array;
 *   4. pre-tokenize into pieces (character ranges of the normalized text);
 *   5. WordPiece each piece (greedy longest-match-first, ## continuation, [UNK]);
 *   6. truncate (longest-first for pairs) and apply the post-processor template.
 *
 * DESIGN — offsets. A normalized string is an array of code points, each with the byte range
 * [start, end) of the ORIGINAL text it came from (HF keeps that range per normalized byte, but
 * all bytes of a normalized char always share it). Every normalizer step reproduces HF's
 * NormalizedString::transform rule: a char that replaces an input char takes that char's
 * range; a char that is inserted (change > 0) takes the range of the input char just before
 * the insertion point. A token's offsets are (first char's start, last char's end).
 * Consequences HF users find surprising but that we must reproduce: Replace("``" -> '"') maps
 * the quote to the SECOND backtick only (it is "inserted" after the removed match), and NFD's
 * canonical reordering moves ranges by position, not with the marks.
 *
 * Memory: one `work` per call holds growable buffers (amortised doubling), so nothing is
 * allocated per character; the tokenizer itself is read-only and shared between threads.
 */
#include "tokenizer_impl.h"
#include "unicode_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 ---- */

int ufb_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t b = s[0];
    uint32_t v, min;
    int len;
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2, v = b & 0x1F, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
        len = 3, v = b & 0x0F, min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4, v = b & 0x07, min = 0x10000;
    } else {
        return 0; /* continuation byte, C0/C1 overlong lead, F5..FF */
    }
    if (n < (size_t)len) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

int ufb_utf8_encode(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* @return the offset of the first invalid byte, or n when s is valid UTF-8. */
static size_t utf8_invalid_at(const char *s, size_t n) {
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        int k = ufb_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (k == 0) return i;
        i += (size_t)k;
    }
    return n;
}

/* ---- Vocabulary hash ---- */

uint32_t ufb_tok_hash(const char *a, size_t na, const char *b, size_t nb) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < na; i++)
        h = (h ^ (uint8_t)a[i]) * 16777619u;
    for (size_t i = 0; i < nb; i++)
        h = (h ^ (uint8_t)b[i]) * 16777619u;
    return h;
}

int32_t ufb_tok_vocab_find(const ufb_tokenizer *tok, const char *a, size_t na, const char *b,
                           size_t nb) {
    uint32_t mask = tok->n_slots - 1;
    for (uint32_t i = ufb_tok_hash(a, na, b, nb) & mask;; i = (i + 1) & mask) {
        int32_t id = tok->slots[i];
        if (id < 0) return -1;
        const char *t = tok->vocab[id];
        if (strlen(t) == na + nb && memcmp(t, a, na) == 0 && memcmp(t + na, b, nb) == 0) return id;
    }
}

/* ---- Per-call buffers ---- */

typedef struct span {
    int32_t start, end; /* byte range [start, end) of the original text */
} span;

/* A normalized string: code points with their original ranges. */
typedef struct nstr {
    uint32_t *cp; /* (n) */
    span *al;     /* (n) */
    size_t n, cap;
} nstr;

/* A decomposed char waiting for canonical reordering (NFD). */
typedef struct dchar {
    uint32_t c;
    int change; /* 0: replaces the next input char; 1: inserted after it */
    int ccc;
} dchar;

typedef struct toks {
    int32_t *ids; /* (n) */
    span *off;    /* (n) */
    size_t n, cap;
} toks;

typedef struct work {
    nstr cur, tmp; /* normalizer steps read cur, write tmp, then swap */
    span base;     /* range for a char inserted at position 0: (segment start, same) */
    dchar *dc;     /* (dc_cap) NFD scratch */
    size_t dc_cap;
    size_t *pcs, *pcs2; /* (2 * n) piece ranges [start, end) in chars, ping-pong */
    size_t n_pcs, pcs_cap, pcs2_cap;
    char *word;   /* (word_cap) one piece in UTF-8 */
    size_t *wpos; /* (wpos_cap) byte position of each char of the piece */
    size_t word_cap, wpos_cap;
    toks seq[2]; /* tokens of the text and of the pair */
} work;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

static int nstr_push(nstr *s, uint32_t c, span al) {
    if (s->n == s->cap) {
        size_t cap = s->cap;
        if (grow((void **)&s->cp, &cap, s->n + 1, sizeof *s->cp) < 0) return -1;
        cap = s->cap;
        if (grow((void **)&s->al, &cap, s->n + 1, sizeof *s->al) < 0) return -1;
        s->cap = cap;
    }
    s->cp[s->n] = c;
    s->al[s->n++] = al;
    return 0;
}

static int toks_push(toks *t, int32_t id, span off) {
    if (t->n == t->cap) {
        size_t cap = t->cap;
        if (grow((void **)&t->ids, &cap, t->n + 1, sizeof *t->ids) < 0) return -1;
        cap = t->cap;
        if (grow((void **)&t->off, &cap, t->n + 1, sizeof *t->off) < 0) return -1;
        t->cap = cap;
    }
    t->ids[t->n] = id;
    t->off[t->n++] = off;
    return 0;
}

static void work_free(work *w) {
    free(w->cur.cp), free(w->cur.al), free(w->tmp.cp), free(w->tmp.al);
    free(w->dc), free(w->pcs), free(w->pcs2), free(w->word), free(w->wpos);
    for (int i = 0; i < 2; i++)
        free(w->seq[i].ids), free(w->seq[i].off);
}

/* ---- Normalizers ---- */

/* HF NormalizedString::transform: see the file-top comment. */
typedef struct emitter {
    const nstr *src;
    nstr *dst;
    size_t ci; /* next input char */
    span base;
} emitter;

static int emit(emitter *e, uint32_t c, int change) {
    span al;
    if (change > 0) {
        al = e->ci ? e->src->al[e->ci - 1] : e->base;
    } else {
        al = e->src->al[e->ci];
        e->ci += 1 + (size_t)(-change);
    }
    return nstr_push(e->dst, c, al);
}

/* Chars with any of the `drop` flags vanish (HF filter: the others keep their ranges);
 * with `to_space`, White_Space chars become ' ' (HF map). */
static int pass_filter(const nstr *src, nstr *dst, unsigned drop, int to_space) {
    for (size_t i = 0; i < src->n; i++) {
        unsigned f = ufb_uc_flags(src->cp[i]);
        if (f & drop) continue;
        uint32_t c = (to_space && (f & UFB_UC_WS)) ? ' ' : src->cp[i];
        if (nstr_push(dst, c, src->al[i]) < 0) return -1;
    }
    return 0;
}

/* BertNormalizer handle_chinese_chars: " c " with all three chars on c's range. */
static int pass_cjk(const nstr *src, nstr *dst) {
    for (size_t i = 0; i < src->n; i++) {
        int cjk = (ufb_uc_flags(src->cp[i]) & UFB_UC_CJK) != 0;
        if (cjk && nstr_push(dst, ' ', src->al[i]) < 0) return -1;
        if (nstr_push(dst, src->cp[i], src->al[i]) < 0) return -1;
        if (cjk && nstr_push(dst, ' ', src->al[i]) < 0) return -1;
    }
    return 0;
}

static int pass_lower(const nstr *src, nstr *dst) {
    uint32_t out[UFB_UC_MAX_LOWER];
    for (size_t i = 0; i < src->n; i++) {
        int k = ufb_uc_lower(src->cp[i], out);
        for (int j = 0; j < k; j++)
            if (nstr_push(dst, out[j], src->al[i]) < 0) return -1;
    }
    return 0;
}

/* Stable insertion sort of each run of non-starters by combining class. */
static void canonical_order(dchar *d, size_t n) {
    for (size_t i = 1; i < n; i++) {
        dchar x = d[i];
        size_t j = i;
        if (x.ccc == 0) continue;
        while (j > 0 && d[j - 1].ccc > x.ccc) {
            d[j] = d[j - 1];
            j--;
        }
        d[j] = x;
    }
}

/* NFD as the unicode-normalization-alignments crate reports it: first char of a
 * decomposition replaces the input char (change 0), the others are inserted (change 1);
 * canonical reordering moves the change values with the chars. */
static int pass_nfd(work *w, const nstr *src, nstr *dst) {
    uint32_t out[UFB_UC_MAX_NFD];
    size_t n = 0;
    if (grow((void **)&w->dc, &w->dc_cap, src->n * UFB_UC_MAX_NFD, sizeof *w->dc) < 0) return -1;
    for (size_t i = 0; i < src->n; i++) {
        int k = ufb_uc_nfd(src->cp[i], out);
        for (int j = 0; j < k; j++)
            w->dc[n++] = (dchar){out[j], j > 0, ufb_uc_ccc(out[j])};
    }
    canonical_order(w->dc, n);
    emitter e = {src, dst, 0, w->base};
    for (size_t i = 0; i < n; i++)
        if (emit(&e, w->dc[i].c, w->dc[i].change) < 0) return -1;
    return 0;
}

static int match_string(const ufb_norm *nm, const nstr *s, size_t pos, size_t *end) {
    if (nm->pattern_len == 0 || s->n - pos < nm->pattern_len) return 0;
    if (memcmp(s->cp + pos, nm->pattern, nm->pattern_len * sizeof *nm->pattern) != 0) return 0;
    *end = pos + nm->pattern_len;
    return 1;
}

/* HF NormalizedString::replace: the replacement chars are all "inserted" after the removed
 * match, so each takes the range of the match's last char. */
static int pass_replace(const ufb_norm *nm, const nstr *src, nstr *dst) {
    size_t i = 0, end;
    while (i < src->n) {
        int hit = nm->regex ? ufb_re_match_at(nm->regex, src->cp, src->n, i, &end)
                            : match_string(nm, src, i, &end);
        if (!hit) {
            if (nstr_push(dst, src->cp[i], src->al[i]) < 0) return -1;
            i++;
            continue;
        }
        for (size_t j = 0; j < nm->content_len; j++)
            if (nstr_push(dst, nm->content[j], src->al[end - 1]) < 0) return -1;
        i = end; /* end > i: empty matches are rejected at load */
    }
    return 0;
}

static int pass_strip(const ufb_norm *nm, const nstr *src, nstr *dst) {
    size_t lo = 0, hi = src->n;
    while (nm->strip_left && lo < hi && (ufb_uc_flags(src->cp[lo]) & UFB_UC_WS))
        lo++;
    while (nm->strip_right && hi > lo && (ufb_uc_flags(src->cp[hi - 1]) & UFB_UC_WS))
        hi--;
    for (size_t i = lo; i < hi; i++)
        if (nstr_push(dst, src->cp[i], src->al[i]) < 0) return -1;
    return 0;
}

enum pass_kind { PASS_CLEAN, PASS_CJK, PASS_NFD, PASS_DROP_MN, PASS_DROP_MARK, PASS_LOWER };

/* Run one step from w->cur into w->tmp, then swap them. */
static int run_pass(work *w, const ufb_norm *nm, enum pass_kind k) {
    nstr *src = &w->cur, *dst = &w->tmp;
    int rc = 0;
    dst->n = 0;
    if (nm && nm->kind == UFB_NORM_REPLACE)
        rc = pass_replace(nm, src, dst);
    else if (nm && nm->kind == UFB_NORM_STRIP)
        rc = pass_strip(nm, src, dst);
    else if (k == PASS_CLEAN)
        rc = pass_filter(src, dst, UFB_UC_CTL, 1);
    else if (k == PASS_CJK)
        rc = pass_cjk(src, dst);
    else if (k == PASS_NFD)
        rc = pass_nfd(w, src, dst);
    else if (k == PASS_DROP_MN)
        rc = pass_filter(src, dst, UFB_UC_MN, 0);
    else if (k == PASS_DROP_MARK)
        rc = pass_filter(src, dst, UFB_UC_MARK, 0);
    else
        rc = pass_lower(src, dst);
    nstr t = w->cur;
    w->cur = w->tmp;
    w->tmp = t;
    return rc;
}

static int normalize_bert(work *w, const ufb_norm *nm) {
    if (nm->clean_text && run_pass(w, NULL, PASS_CLEAN) < 0) return -1;
    if (nm->handle_cjk && run_pass(w, NULL, PASS_CJK) < 0) return -1;
    if (nm->strip_accents &&
        (run_pass(w, NULL, PASS_NFD) < 0 || run_pass(w, NULL, PASS_DROP_MN) < 0))
        return -1;
    if (nm->lowercase && run_pass(w, NULL, PASS_LOWER) < 0) return -1;
    return 0;
}

static int normalize(const ufb_tokenizer *tok, work *w) {
    for (int i = 0; i < tok->n_norms; i++) {
        const ufb_norm *nm = &tok->norms[i];
        int rc = 0;
        switch (nm->kind) {
        case UFB_NORM_BERT:
            rc = normalize_bert(w, nm);
            break;
        case UFB_NORM_NFD:
            rc = run_pass(w, NULL, PASS_NFD);
            break;
        case UFB_NORM_LOWERCASE:
            rc = run_pass(w, NULL, PASS_LOWER);
            break;
        case UFB_NORM_STRIP_ACCENTS:
            rc = run_pass(w, NULL, PASS_DROP_MARK);
            break;
        case UFB_NORM_REPLACE:
        case UFB_NORM_STRIP:
            rc = run_pass(w, nm, PASS_CLEAN);
            break;
        }
        if (rc < 0) return -1;
    }
    return 0;
}

/* ---- Pre-tokenizers ---- */

enum { CLS_DROP = 0, CLS_ALONE = -1 }; /* other classes: runs of the same class stay together */

static int char_class(enum ufb_pre_kind k, uint32_t c) {
    unsigned f = ufb_uc_flags(c);
    if (f & UFB_UC_WS) return CLS_DROP;
    switch (k) {
    case UFB_PRE_BERT:
        return (f & UFB_UC_PUNCT) ? CLS_ALONE : 1;
    case UFB_PRE_WHITESPACE:
        return (f & UFB_UC_WORD) ? 1 : 2;
    case UFB_PRE_WHITESPACE_SPLIT:
        return 1;
    }
    return 1;
}

static int push_piece(work *w, size_t s, size_t e) {
    if (grow((void **)&w->pcs2, &w->pcs2_cap, 2 * w->n_pcs + 2, sizeof *w->pcs2) < 0) return -1;
    w->pcs2[2 * w->n_pcs] = s;
    w->pcs2[2 * w->n_pcs + 1] = e;
    w->n_pcs++;
    return 0;
}

/* Split every piece of w->pcs into w->pcs2 (then swapped back); empty pieces vanish. */
static int pre_split(work *w, enum ufb_pre_kind k, size_t n_in) {
    const uint32_t *cp = w->cur.cp;
    w->n_pcs = 0;
    for (size_t p = 0; p < n_in; p++) {
        size_t s = w->pcs[2 * p], e = w->pcs[2 * p + 1], run = s;
        int run_cls = CLS_DROP;
        for (size_t i = s; i <= e; i++) {
            int c = i < e ? char_class(k, cp[i]) : CLS_DROP;
            if (c == run_cls && c != CLS_ALONE && c != CLS_DROP) continue;
            if (run_cls != CLS_DROP && i > run && push_piece(w, run, i) < 0) return -1;
            run = i;
            run_cls = c;
        }
    }
    size_t *t = w->pcs, tc = w->pcs_cap;
    w->pcs = w->pcs2, w->pcs_cap = w->pcs2_cap;
    w->pcs2 = t, w->pcs2_cap = tc;
    return 0;
}

static int pre_tokenize(const ufb_tokenizer *tok, work *w) {
    w->n_pcs = 0;
    if (w->cur.n == 0) return 0;
    if (grow((void **)&w->pcs, &w->pcs_cap, 2, sizeof *w->pcs) < 0) return -1;
    w->pcs[0] = 0, w->pcs[1] = w->cur.n, w->n_pcs = 1;
    for (int i = 0; i < tok->n_pres; i++)
        if (pre_split(w, tok->pres[i], w->n_pcs) < 0) return -1;
    return 0;
}

/* ---- WordPiece ---- */

static int wordpiece(const ufb_tokenizer *tok, work *w, size_t ps, size_t pe, toks *out) {
    const nstr *s = &w->cur;
    size_t m = pe - ps, n0 = out->n;
    span whole = {s->al[ps].start, s->al[pe - 1].end};
    if (m > (size_t)tok->max_chars) return toks_push(out, tok->unk_id, whole);
    if (grow((void **)&w->word, &w->word_cap, 4 * m + 4, 1) < 0) return -1;
    if (grow((void **)&w->wpos, &w->wpos_cap, m + 1, sizeof *w->wpos) < 0) return -1;
    w->wpos[0] = 0;
    for (size_t i = 0; i < m; i++)
        w->wpos[i + 1] = w->wpos[i] + (size_t)ufb_utf8_encode(w->word + w->wpos[i], s->cp[ps + i]);
    for (size_t start = 0; start < m;) {
        size_t end = m, pre = start ? tok->prefix_len : 0;
        int32_t id = -1;
        for (; end > start && id < 0; end--) {
            size_t nb = w->wpos[end] - w->wpos[start];
            if (nb + pre <= tok->max_tok_bytes)
                id = ufb_tok_vocab_find(tok, tok->prefix, pre, w->word + w->wpos[start], nb);
        }
        if (id < 0) { /* no prefix of the rest is in the vocabulary: the whole word is [UNK] */
            out->n = n0;
            return toks_push(out, tok->unk_id, whole);
        }
        end++; /* the loop decremented past the match */
        span off = {s->al[ps + start].start, s->al[ps + end - 1].end};
        if (toks_push(out, id, off) < 0) return -1;
        start = end;
    }
    return 0;
}

/* ---- Added tokens ---- */

/* @return byte length of the UTF-8 char ending at s[i - 1] (input already validated). */
static size_t char_before(const char *s, size_t i) {
    size_t k = 1;
    while (k < i && k < 4 && ((uint8_t)s[i - k] & 0xC0) == 0x80)
        k++;
    return k;
}

/* @return byte length of the UTF-8 char at s[i] (input already validated). */
static size_t char_at(const char *s, size_t n, size_t i) {
    uint32_t cp;
    int k = ufb_utf8_decode((const uint8_t *)s + i, n - i, &cp);
    return k ? (size_t)k : 1;
}

static unsigned flags_at(const char *s, size_t n, size_t i) {
    uint32_t cp = 0;
    return ufb_utf8_decode((const uint8_t *)s + i, n - i, &cp) ? ufb_uc_flags(cp) : 0;
}

/* Leftmost-longest added token at or after `from` (HF's aho-corasick LeftmostLongest). */
static const ufb_added *next_added(const ufb_tokenizer *tok, const char *s, size_t n, size_t from,
                                   size_t *at) {
    for (size_t i = from; i < n; i++) {
        if (!tok->added_first[(uint8_t)s[i]]) continue;
        for (int k = 0; k < tok->n_added; k++) { /* sorted longest first */
            const ufb_added *a = &tok->added[k];
            if (a->len <= n - i && memcmp(s + i, a->content, a->len) == 0) {
                *at = i;
                return a;
            }
        }
    }
    return NULL;
}

/* HF single_word: no \w char touches the match on either side. */
static int is_single_word(const char *s, size_t n, size_t ms, size_t me) {
    if (ms > 0 && (flags_at(s, n, ms - char_before(s, ms)) & UFB_UC_WORD)) return 0;
    return !(me < n && (flags_at(s, n, me) & UFB_UC_WORD));
}

static int encode_segment(const ufb_tokenizer *tok, work *w, const char *s, size_t a, size_t b,
                          toks *out) {
    w->cur.n = 0;
    w->base = (span){(int32_t)a, (int32_t)a};
    for (size_t i = a; i < b;) {
        uint32_t cp = 0;
        int k = ufb_utf8_decode((const uint8_t *)s + i, b - i, &cp); /* validated: k > 0 */
        if (nstr_push(&w->cur, cp, (span){(int32_t)i, (int32_t)(i + (size_t)k)}) < 0) return -1;
        i += (size_t)k;
    }
    if (normalize(tok, w) < 0 || pre_tokenize(tok, w) < 0) return -1;
    for (size_t p = 0; p < w->n_pcs; p++)
        if (wordpiece(tok, w, w->pcs[2 * p], w->pcs[2 * p + 1], out) < 0) return -1;
    return 0;
}

/* Tokens of one text: segments between added tokens go through the whole pipeline. */
static int encode_text(const ufb_tokenizer *tok, work *w, const char *s, size_t n, toks *out) {
    size_t done = 0, from = 0, ms;
    const ufb_added *a;
    while ((a = next_added(tok, s, n, from, &ms)) != NULL) {
        size_t start = ms, stop = ms + a->len;
        from = stop;
        if (ms < done || (a->single_word && !is_single_word(s, n, ms, stop))) continue;
        while (a->lstrip && start > done &&
               (flags_at(s, n, start - char_before(s, start)) & UFB_UC_WS))
            start -= char_before(s, start);
        while (a->rstrip && stop < n && (flags_at(s, n, stop) & UFB_UC_WS))
            stop += char_at(s, n, stop);
        if (done < start && encode_segment(tok, w, s, done, start, out) < 0) return -1;
        if (toks_push(out, a->id, (span){(int32_t)start, (int32_t)stop}) < 0) return -1;
        done = stop;
    }
    if (done < n && encode_segment(tok, w, s, done, n, out) < 0) return -1;
    return 0;
}

/* ---- Truncation and post-processing ---- */

/* HF truncate_encodings, LongestFirst, stride 0: n[0], n[1] become the kept lengths. */
static void truncate_lengths(size_t n[2], int has_pair, size_t budget) {
    if (!has_pair) {
        if (n[0] > budget) n[0] = budget;
        return;
    }
    if (n[0] + n[1] <= budget) return;
    int swap = n[0] > n[1];
    size_t n1 = swap ? n[1] : n[0], n2;
    if (n1 > budget / 2) n1 = budget / 2;
    n2 = budget - n1; /* the longer one gets the rest (and the odd token) */
    size_t keep0 = swap ? n2 : n1, keep1 = swap ? n1 : n2;
    if (n[0] > keep0) n[0] = keep0;
    if (n[1] > keep1) n[1] = keep1;
}

static int assemble(ufb_encoding *out, const ufb_tmpl *t, const toks seq[2], const size_t n[2]) {
    size_t total = 0;
    for (int i = 0; i < t->n_items; i++)
        total += t->items[i].seq < 0 ? (size_t)t->items[i].n_ids : n[t->items[i].seq];
    out->ids = malloc((total ? total : 1) * sizeof *out->ids);
    out->type_ids = malloc((total ? total : 1) * sizeof *out->type_ids);
    out->offsets = malloc((total ? total : 1) * 2 * sizeof *out->offsets);
    if (!out->ids || !out->type_ids || !out->offsets) return -1;
    size_t k = 0;
    for (int i = 0; i < t->n_items; i++) {
        const ufb_tmpl_item *it = &t->items[i];
        size_t m = it->seq < 0 ? (size_t)it->n_ids : n[it->seq];
        for (size_t j = 0; j < m; j++, k++) {
            out->ids[k] = it->seq < 0 ? it->ids[j] : seq[it->seq].ids[j];
            out->type_ids[k] = it->type_id;
            out->offsets[2 * k] = it->seq < 0 ? 0 : seq[it->seq].off[j].start;
            out->offsets[2 * k + 1] = it->seq < 0 ? 0 : seq[it->seq].off[j].end;
        }
    }
    out->n = (int)total;
    return 0;
}

/* ---- Public API ---- */

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int
tok_fail(char *err, size_t errlen, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

static int check_input(const char *s, size_t n, const char *what, char *err, size_t errlen) {
    if (!s && n) return tok_fail(err, errlen, UFB_ERR_INVALID, "%s is NULL", what);
    if (n > (size_t)INT32_MAX / 2)
        return tok_fail(err, errlen, UFB_ERR_INVALID, "%s is too long (%zu bytes)", what, n);
    size_t bad = s ? utf8_invalid_at(s, n) : n;
    if (bad < n)
        return tok_fail(err, errlen, UFB_ERR_INVALID, "invalid UTF-8 in %s at byte %zu", what, bad);
    return 0;
}

int ufb_tokenize(const ufb_tokenizer *tok, ufb_encoding *out, const char *text, size_t len,
                 const char *pair, size_t pair_len, int max_len, char *err, size_t errlen) {
    if (!out) return tok_fail(err, errlen, UFB_ERR_INVALID, "tokenize: NULL output");
    memset(out, 0, sizeof *out);
    if (!tok) return tok_fail(err, errlen, UFB_ERR_INVALID, "tokenize: NULL tokenizer");
    int rc = check_input(text, len, "text", err, errlen);
    if (rc == 0 && pair) rc = check_input(pair, pair_len, "pair", err, errlen);
    if (rc < 0) return rc;
    const ufb_tmpl *t = pair ? &tok->pair : &tok->single;
    if (max_len > 0 && max_len < t->n_special)
        return tok_fail(err, errlen, UFB_ERR_INVALID,
                        "max_len %d is smaller than the %d special tokens", max_len, t->n_special);
    work w;
    memset(&w, 0, sizeof w);
    if (encode_text(tok, &w, text ? text : "", len, &w.seq[0]) < 0 ||
        (pair && encode_text(tok, &w, pair, pair_len, &w.seq[1]) < 0))
        goto nomem;
    size_t n[2] = {w.seq[0].n, w.seq[1].n};
    if (max_len > 0) truncate_lengths(n, pair != NULL, (size_t)(max_len - t->n_special));
    if (assemble(out, t, w.seq, n) < 0) goto nomem;
    out->n_truncated = (int)(w.seq[0].n - n[0] + w.seq[1].n - n[1]);
    work_free(&w);
    return 0;
nomem:
    work_free(&w);
    ufb_encoding_free(out);
    return tok_fail(err, errlen, UFB_ERR_NOMEM, "tokenize: out of memory");
}

void ufb_encoding_free(ufb_encoding *enc) {
    if (!enc) return;
    free(enc->ids);
    free(enc->type_ids);
    free(enc->offsets);
    memset(enc, 0, sizeof *enc);
}

int ufb_tokenizer_vocab_size(const ufb_tokenizer *tok) {
    return tok ? tok->vocab_size : 0;
}

const char *ufb_tokenizer_id_to_token(const ufb_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->vocab_size) return NULL;
    return tok->vocab[id];
}

int32_t ufb_tokenizer_token_to_id(const ufb_tokenizer *tok, const char *token) {
    if (!tok || !token) return -1;
    size_t n = strlen(token);
    for (int i = 0; i < tok->n_added; i++) /* HF looks at the added vocabulary first */
        if (tok->added[i].len == n && memcmp(tok->added[i].content, token, n) == 0)
            return tok->added[i].id;
    return ufb_tok_vocab_find(tok, "", 0, token, n);
}
