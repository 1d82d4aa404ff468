"""Generate engine/unicode_tables.c: the Unicode data the WordPiece tokenizer needs.

    python3 tools/gen_unicode_tables.py [--out engine/unicode_tables.c] [--no-hf]

Tables (compact sorted ranges / sorted maps, looked up by binary search in C):
  * one flags table over all code points: CTL (removed by BertNormalizer clean_text: Rust
    `is_other` minus \\t \\n \\r, plus U+0000 and U+FFFD), WS (Rust `char::is_whitespace`),
    PUNCT (BertPreTokenizer: ASCII punctuation or Unicode P*), MN (BertNormalizer strip_accents:
    Mn), MARK (StripAccents normalizer: any M*), WORD (regex `\\w` as used by the Whitespace
    pre-tokenizer), CJK (BertNormalizer `_is_chinese_char` ranges);
  * lowercase mapping with Rust `char::to_lowercase` semantics (may give up to 3 chars);
  * full canonical decomposition (NFD) per code point; Hangul syllables are decomposed
    algorithmically in C and are not in the table;
  * canonical combining class (for the canonical reordering step of NFD).

DESIGN: the base data is Python's `unicodedata`. Hugging Face `tokenizers` (the reference we must
match) is built from several Rust crates pinned to *different* Unicode versions: e.g.
`unicode_categories` (punctuation, Mn, "other") is older than Python's tables, Rust std and the
`regex` crate are newer, and `is_other` does not count unassigned code points. So unless
--no-hf is given, every per-code-point property is also probed on the installed `tokenizers`
(the version pinned in tools/requirements.txt) and the probed answer wins; the number of
overrides is printed. The combining class always comes from `unicodedata`.
"""
import argparse
import os
import sys
import unicodedata as ud

CTL, WS, PUNCT, MN, MARK, WORD, CJK = 1, 2, 4, 8, 16, 32, 64
FLAG_NAMES = ["CTL", "WS", "PUNCT", "MN", "MARK", "WORD", "CJK"]

# Rust char::is_whitespace == Unicode White_Space (PropList.txt), stable since Unicode 6.
WHITE_SPACE = set([0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029,
                   0x202F, 0x205F, 0x3000] + list(range(0x2000, 0x200B)))
CJK_RANGES = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]
ASCII_PUNCT = set(map(ord, "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"))
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xAC00 + 11172 - 1


def all_code_points():
    return [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def base_flags(c):
    cat = ud.category(chr(c))
    f = 0
    if c == 0 or c == 0xFFFD or (cat in ("Cc", "Cf", "Co") and c not in (9, 10, 13)):
        f |= CTL
    if c in WHITE_SPACE:
        f |= WS
    if c in ASCII_PUNCT or cat[0] == "P":
        f |= PUNCT
    if cat == "Mn":
        f |= MN
    if cat[0] == "M":
        f |= MARK
    if cat[0] == "L" or cat[0] == "M" or cat in ("Nd", "Nl", "Pc") or c in (0x200C, 0x200D):
        f |= WORD
    if any(lo <= c <= hi for lo, hi in CJK_RANGES):
        f |= CJK
    return f


def probe_flags(c, f, hf):
    """Replace the probe-able bits of f by what `tokenizers` actually does with c."""
    ch = chr(c)
    r = hf["clean"].normalize_str("a" + ch + "a")[1:-1]
    f &= ~CTL
    if r == "":
        f |= CTL
    elif r == " " and c != 0x20 and not f & WS:
        raise SystemExit(f"U+{c:04X}: HF maps it to a space but it is not White_Space")
    toks = [t for t, _ in hf["bert_pre"].pre_tokenize_str("a" + ch + "a")]
    f &= ~PUNCT
    if toks == ["a", ch, "a"]:
        f |= PUNCT
    toks = [t for t, _ in hf["ws_pre"].pre_tokenize_str("a" + ch + "a")]
    f &= ~WORD
    if toks == ["a" + ch + "a"]:
        f |= WORD
    if ud.normalize("NFD", ch) == ch and hf["nfd"].normalize_str(ch) == ch:
        f &= ~(MN | MARK)
        if hf["strip_mn"].normalize_str("a" + ch) == "a":
            f |= MN
        if hf["strip_marks"].normalize_str("a" + ch) == "a":
            f |= MARK
    return f


def make_probes():
    from tokenizers import normalizers as N, pre_tokenizers as P
    return {
        "clean": N.BertNormalizer(clean_text=True, handle_chinese_chars=False,
                                  strip_accents=False, lowercase=False),
        "strip_mn": N.BertNormalizer(clean_text=False, handle_chinese_chars=False,
                                     strip_accents=True, lowercase=False),
        "strip_marks": N.StripAccents(),
        "nfd": N.NFD(),
        "lower": N.Lowercase(),
        "bert_pre": P.BertPreTokenizer(),
        "ws_pre": P.Whitespace(),
    }


def compute(hf):
    flags, lower, nfd, ccc = {}, {}, {}, {}
    n_over = {"flags": 0, "lower": 0, "nfd": 0}
    for c in all_code_points():
        ch = chr(c)
        f = base_flags(c)
        lo = ch.lower()  # one char alone: no final-sigma context, like Rust to_lowercase
        d = ud.normalize("NFD", ch)
        if hf:
            g = probe_flags(c, f, hf)
            n_over["flags"] += g != f
            f = g
            hl = hf["lower"].normalize_str(ch)
            n_over["lower"] += hl != lo
            lo = hl
            hd = hf["nfd"].normalize_str(ch)
            n_over["nfd"] += hd != d
            d = hd
        flags[c] = f
        if lo != ch:
            lower[c] = [ord(x) for x in lo]
        if d != ch and not HANGUL_FIRST <= c <= HANGUL_LAST:
            nfd[c] = [ord(x) for x in d]
        if ud.combining(ch):
            ccc[c] = ud.combining(ch)
    return flags, lower, nfd, ccc, n_over


def flag_ranges(flags):
    starts, vals, prev = [], [], None
    for c in range(0x110000):
        f = flags.get(c, 0)
        if f != prev:
            starts.append(c)
            vals.append(f)
            prev = f
    return starts, vals


def ccc_ranges(ccc):
    out, prev = [], None
    for c in range(0x110000):
        v = ccc.get(c, 0)
        if v != prev:
            out.append((c, v))
            prev = v
    return out


def emit_list(fmt, items, per_line):
    lines = []
    for i in range(0, len(items), per_line):
        lines.append("    " + " ".join(fmt(x) for x in items[i:i + per_line]))
    return "\n".join(lines)


def emit_map(name, m):
    pool, entries = [], []
    for c in sorted(m):
        entries.append((c, len(pool), len(m[c])))
        pool.extend(m[c])
    out = [f"static const uint32_t {name}_pool[{len(pool)}] = {{"]
    out.append(emit_list(lambda x: f"0x{x:X},", pool, 10))
    out.append("};\n")
    out.append(f"static const ufb_uc_map_entry {name}_map[{len(entries)}] = {{")
    out.append(emit_list(lambda e: f"{{0x{e[0]:X}, {e[1]}, {e[2]}}},", entries, 4))
    out.append("};\n")
    return "\n".join(out)


C_FUNCS = r"""
static size_t find_range(const uint32_t *starts, size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n; /* invariant: starts[lo] <= cp < starts[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (starts[mid] <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static const ufb_uc_map_entry *find_map(const ufb_uc_map_entry *m, size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m[mid].cp == cp)
            return &m[mid];
        if (m[mid].cp < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

unsigned ufb_uc_flags(uint32_t cp)
{
    if (cp < 128)
        return ascii_flags[cp];
    if (cp > 0x10FFFF)
        return 0;
    return flag_vals[find_range(flag_starts, sizeof flag_starts / sizeof flag_starts[0], cp)];
}

int ufb_uc_ccc(uint32_t cp)
{
    if (cp < 0x300 || cp > 0x10FFFF)
        return 0;
    return ccc_vals[find_range(ccc_starts, sizeof ccc_starts / sizeof ccc_starts[0], cp)];
}

static int map_lookup(const ufb_uc_map_entry *m, size_t n, const uint32_t *pool, uint32_t cp,
                      uint32_t *out)
{
    const ufb_uc_map_entry *e = find_map(m, n, cp);
    if (!e) {
        out[0] = cp;
        return 1;
    }
    for (int i = 0; i < e->len; i++)
        out[i] = pool[e->off + i];
    return e->len;
}

int ufb_uc_lower(uint32_t cp, uint32_t out[UFB_UC_MAX_LOWER])
{
    if (cp < 128) {
        out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        return 1;
    }
    return map_lookup(lower_map, sizeof lower_map / sizeof lower_map[0], lower_pool, cp, out);
}

int ufb_uc_nfd(uint32_t cp, uint32_t out[UFB_UC_MAX_NFD])
{
    /* Hangul syllables: algorithmic decomposition (Unicode 3.12) into L V [T] jamo. */
    const uint32_t s_base = 0xAC00, l_base = 0x1100, v_base = 0x1161, t_base = 0x11A7;
    const uint32_t t_count = 28, n_count = 21 * 28, s_count = 19 * 21 * 28;
    if (cp < 0xC0)
        goto self;
    if (cp >= s_base && cp < s_base + s_count) {
        uint32_t s = cp - s_base;
        out[0] = l_base + s / n_count;
        out[1] = v_base + (s % n_count) / t_count;
        if (s % t_count == 0)
            return 2;
        out[2] = t_base + s % t_count;
        return 3;
    }
    return map_lookup(nfd_map, sizeof nfd_map / sizeof nfd_map[0], nfd_pool, cp, out);
self:
    out[0] = cp;
    return 1;
}
"""


def generate(hf):
    flags, lower, nfd, ccc, n_over = compute(hf)
    starts, vals = flag_ranges(flags)
    cr = ccc_ranges(ccc)
    max_lower = max(len(v) for v in lower.values())
    max_nfd = max(max(len(v) for v in nfd.values()), 3)
    src = "hf tokenizers " + __import__("tokenizers").__version__ + " probes" if hf else "no probes"
    out = [f"""/* unicode_tables.c -- GENERATED by tools/gen_unicode_tables.py; do not edit.
 *
 * Unicode data for the WordPiece tokenizer (see unicode_impl.h): a flags table over all code
 * points, lowercase and NFD maps, canonical combining classes.
 * Source: Python unicodedata {ud.unidata_version}, {src}.
 */
#include "unicode_impl.h"

#include <stddef.h>

#if UFB_UC_MAX_LOWER < {max_lower} || UFB_UC_MAX_NFD < {max_nfd}
#    error "unicode_impl.h limits are smaller than the generated maps need"
#endif
"""]
    out.append(f"static const uint8_t ascii_flags[128] = {{")
    out.append(emit_list(lambda c: f"{flags[c]},", list(range(128)), 16))
    out.append("};\n")
    out.append(f"static const uint32_t flag_starts[{len(starts)}] = {{")
    out.append(emit_list(lambda x: f"0x{x:X},", starts, 10))
    out.append("};\n")
    out.append(f"static const uint8_t flag_vals[{len(vals)}] = {{")
    out.append(emit_list(lambda x: f"{x},", vals, 20))
    out.append("};\n")
    out.append(f"static const uint32_t ccc_starts[{len(cr)}] = {{")
    out.append(emit_list(lambda x: f"0x{x[0]:X},", cr, 10))
    out.append("};\n")
    out.append(f"static const uint8_t ccc_vals[{len(cr)}] = {{")
    out.append(emit_list(lambda x: f"{x[1]},", cr, 20))
    out.append("};\n")
    out.append(emit_map("lower", lower))
    out.append(emit_map("nfd", nfd))
    out.append(C_FUNCS)
    stats = (f"flags ranges {len(starts)}, lower {len(lower)}, nfd {len(nfd)}, ccc ranges "
             f"{len(cr)}, max lower {max_lower}, max nfd {max_nfd}; overrides from HF probes: "
             f"{n_over}")
    return "\n".join(out), stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "engine",
                                                   "unicode_tables.c"))
    ap.add_argument("--no-hf", action="store_true",
                    help="do not probe `tokenizers` (tables then follow unicodedata only)")
    args = ap.parse_args()
    hf = None
    if not args.no_hf:
        try:
            hf = make_probes()
        except ImportError:
            print("warning: `tokenizers` not installed; using unicodedata only", file=sys.stderr)
    text, stats = generate(hf)
    with open(args.out, "w", encoding="ascii") as f:
        f.write(text)
    print(f"wrote {args.out}: {os.path.getsize(args.out)} bytes; {stats}")


if __name__ == "__main__":
    main()
