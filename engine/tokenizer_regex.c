/* tokenizer_regex.c — a purpose-built regex matcher for the Replace normalizer.
 *
 * Hugging Face runs Replace(Regex) patterns through Oniguruma. Tokenizer files in the wild use
 * tiny patterns (crammedBERT: ` {2,}` and `[^\x00-\x7F]+`), so instead of a regex library we
 * accept a concatenation of atoms with greedy quantifiers:
 *   atoms       literal, escaped literal (\t \n \r \f \v \xHH \x{H..} \\ \. ...), `.`,
 *               \s \S \w \W, [class] and [^class] of literals, escapes and ranges
 *   quantifiers ? * + {n} {n,} {n,m}
 * and reject everything else (alternation, groups, anchors, lazy quantifiers, \d, \b ...) at
 * load time with the offending pattern in the message. Matching backtracks like Oniguruma
 * (leftmost-first, greedy), on code points.
 */
#include "tokenizer_impl.h"
#include "unicode_impl.h"

#include <stdio.h>
#include <string.h>

typedef struct parser {
    const char *p;
    const char *pattern;
    char *err;
    size_t errlen;
} parser;

static int fail_at(parser *ps, const char *why) {
    snprintf(ps->err, ps->errlen, "unsupported regex /%s/ in Replace normalizer: %s at offset %d",
             ps->pattern, why, (int)(ps->p - ps->pattern));
    return -1;
}

static int hex_value(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* \xHH or \x{H...}; ps->p points after the 'x'. */
static int parse_hex(parser *ps, uint32_t *cp) {
    int braced = *ps->p == '{', n = 0;
    uint32_t v = 0;
    if (braced) ps->p++;
    while (hex_value(*ps->p) >= 0 && (braced ? n < 6 : n < 2)) {
        v = v * 16 + (uint32_t)hex_value(*ps->p++);
        n++;
    }
    if (n == 0 || (!braced && n != 2) || (braced && *ps->p++ != '}') || v > 0x10FFFF)
        return fail_at(ps, "bad \\x escape");
    *cp = v;
    return 0;
}

static int add_range(parser *ps, ufb_re_atom *a, uint32_t lo, uint32_t hi) {
    if (a->n_ranges == UFB_RE_MAX_RANGES) return fail_at(ps, "too many ranges in a class");
    if (lo > hi) return fail_at(ps, "reversed range");
    a->lo[a->n_ranges] = lo;
    a->hi[a->n_ranges++] = hi;
    return 0;
}

/* An escape after '\'. Class escapes set *is_class and fill `a`; literals go to *cp. */
static int parse_escape(parser *ps, ufb_re_atom *a, uint32_t *cp, int *is_class) {
    char c = *ps->p++;
    *is_class = 1;
    switch (c) {
    case 's':
        a->uc_any |= UFB_UC_WS;
        return 0;
    case 'w':
        a->uc_any |= UFB_UC_WORD;
        return 0;
    case 'S':
        a->uc_none |= UFB_UC_WS;
        return 0;
    case 'W':
        a->uc_none |= UFB_UC_WORD;
        return 0;
    default:
        break;
    }
    *is_class = 0;
    switch (c) {
    case 't':
        *cp = '\t';
        return 0;
    case 'n':
        *cp = '\n';
        return 0;
    case 'r':
        *cp = '\r';
        return 0;
    case 'f':
        *cp = '\f';
        return 0;
    case 'v':
        *cp = '\v';
        return 0;
    case 'x':
        return parse_hex(ps, cp);
    default:
        break;
    }
    if (c && strchr("\\.^$|()[]{}*+?-/ ", c)) {
        *cp = (uint32_t)(unsigned char)c;
        return 0;
    }
    ps->p--;
    return fail_at(ps, "unsupported escape");
}

/* One literal code point (UTF-8) or escape inside or outside a class. */
static int parse_char(parser *ps, ufb_re_atom *a, uint32_t *cp, int *is_class) {
    *is_class = 0;
    if (*ps->p == '\\') {
        ps->p++;
        return parse_escape(ps, a, cp, is_class);
    }
    int n = ufb_utf8_decode((const uint8_t *)ps->p, strlen(ps->p), cp);
    if (n == 0) return fail_at(ps, "invalid UTF-8");
    ps->p += n;
    return 0;
}

static int parse_class(parser *ps, ufb_re_atom *a) {
    ps->p++; /* '[' */
    if (*ps->p == '^') {
        a->negate = 1;
        ps->p++;
    }
    while (*ps->p != ']') {
        uint32_t lo, hi;
        int is_class;
        if (!*ps->p || *ps->p == '[') return fail_at(ps, "unterminated or nested class");
        if (parse_char(ps, a, &lo, &is_class) < 0) return -1;
        if (is_class) continue;
        hi = lo;
        if (ps->p[0] == '-' && ps->p[1] && ps->p[1] != ']') {
            ps->p++;
            if (parse_char(ps, a, &hi, &is_class) < 0) return -1;
            if (is_class) return fail_at(ps, "class escape in a range");
        }
        if (add_range(ps, a, lo, hi) < 0) return -1;
    }
    ps->p++;
    return 0;
}

static int parse_int(parser *ps, int *v) {
    int n = 0;
    *v = 0;
    while (*ps->p >= '0' && *ps->p <= '9' && n < 5) {
        *v = *v * 10 + (*ps->p++ - '0');
        n++;
    }
    return n > 0 ? 0 : fail_at(ps, "bad {n,m} quantifier");
}

static int parse_quantifier(parser *ps, ufb_re_atom *a) {
    a->min = a->max = 1;
    char c = *ps->p;
    if (c == '?' || c == '*' || c == '+') {
        ps->p++;
        a->min = c == '+';
        a->max = c == '?' ? 1 : -1;
    } else if (c == '{') {
        ps->p++;
        if (parse_int(ps, &a->min) < 0) return -1;
        a->max = a->min;
        if (*ps->p == ',') {
            ps->p++;
            a->max = -1;
            if (*ps->p != '}' && parse_int(ps, &a->max) < 0) return -1;
        }
        if (*ps->p++ != '}' || (a->max >= 0 && a->max < a->min))
            return fail_at(ps, "bad {n,m} quantifier");
    }
    if (*ps->p == '?' || *ps->p == '+' || *ps->p == '*' || *ps->p == '{')
        return fail_at(ps, "lazy, possessive or stacked quantifier");
    return 0;
}

static int parse_atom(parser *ps, ufb_re_atom *a) {
    memset(a, 0, sizeof *a);
    if (*ps->p == '[') return parse_class(ps, a);
    if (*ps->p == '.') {
        ps->p++;
        a->negate = 1; /* any code point but \n, as in Oniguruma's default mode */
        return add_range(ps, a, '\n', '\n');
    }
    if (strchr("^$|()*+?{}]", *ps->p)) return fail_at(ps, "unsupported syntax");
    uint32_t cp;
    int is_class;
    if (parse_char(ps, a, &cp, &is_class) < 0) return -1;
    return is_class ? 0 : add_range(ps, a, cp, cp);
}

int ufb_re_compile(ufb_regex *re, const char *pattern, char *err, size_t errlen) {
    parser ps = {pattern, pattern, err, errlen};
    int min_len = 0;
    re->n_atoms = 0;
    while (*ps.p) {
        if (re->n_atoms == UFB_RE_MAX_ATOMS) return fail_at(&ps, "too many atoms");
        ufb_re_atom *a = &re->atoms[re->n_atoms++];
        if (parse_atom(&ps, a) < 0 || parse_quantifier(&ps, a) < 0) return -1;
        min_len += a->min;
    }
    if (min_len == 0) return fail_at(&ps, "pattern can match the empty string");
    return 0;
}

static int atom_matches(const ufb_re_atom *a, uint32_t c) {
    int in = 0;
    for (int i = 0; i < a->n_ranges && !in; i++)
        in = c >= a->lo[i] && c <= a->hi[i];
    if (!in && (a->uc_any || a->uc_none)) {
        unsigned f = ufb_uc_flags(c);
        in = (f & a->uc_any) || (a->uc_none && !(f & a->uc_none));
    }
    return in != a->negate;
}

static int match_from(const ufb_regex *re, int ai, const uint32_t *s, size_t n, size_t pos,
                      size_t *end) {
    if (ai == re->n_atoms) {
        *end = pos;
        return 1;
    }
    const ufb_re_atom *a = &re->atoms[ai];
    size_t k = 0;
    while ((a->max < 0 || k < (size_t)a->max) && pos + k < n && atom_matches(a, s[pos + k]))
        k++;
    for (;; k--) { /* greedy: longest run first, then give back */
        if (k < (size_t)a->min) return 0;
        if (match_from(re, ai + 1, s, n, pos + k, end)) return 1;
        if (k == 0) return 0;
    }
}

int ufb_re_match_at(const ufb_regex *re, const uint32_t *s, size_t n, size_t pos, size_t *end) {
    return match_from(re, 0, s, n, pos, end);
}
