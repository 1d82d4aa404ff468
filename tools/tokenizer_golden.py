"""Golden files for tests/test_tokenizer.c, produced with Hugging Face `tokenizers`.

    python3 tools/tokenizer_golden.py [--data ../shared/data] [--out tests/fixtures/tokenizer]
                                      [--rebuild-crammed]

Writes, for two tokenizers -- bert (bert-base-uncased/tokenizer.json; the C test also runs its
vocab.txt against the same files, and this script checks HF's BertWordPieceTokenizer(vocab.txt)
agrees) and crammed (tests/fixtures/tokenizer/crammed_tokenizer.json, built by
tools/crammed_tokenizer.py with vocab 2000 when absent or with --rebuild-crammed):
  <tok>_<set>.json  for set in sst2, cola (every dev sentence alone, no truncation) and
                    sst2_pairs, cola_pairs (sentences 2k and 2k+1 as a pair, max_len 16,
                    longest_first). These store ids / type_ids / offsets and the sentence's byte
                    length, NOT the text (data licence): the C test reads ../shared/data itself.
  <tok>_hard.json   hand-picked hard cases WITH their text (and pair, max_len); also for
                    misc_a / misc_b (<name>_tokenizer.json, over the crammed vocabulary), which
                    exercise the components neither BERT nor crammed uses.

Offsets are converted from the binding's character offsets to byte offsets [start, end) into
the UTF-8 text (or the pair, for tokens of the second sequence); special tokens stay (0, 0).
Truncation/padding stored in tokenizer.json is disabled: the C API takes max_len per call.
"""
import argparse
import json
import os
import sys

from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
from tokenizers.implementations import BertWordPieceTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from crammed_tokenizer import build_crammed_tokenizer  # noqa: E402

LONG = ("the quick brown fox jumps over the lazy dog while the unbelievably "
        "antidisestablishmentarian cat watches . ") * 40

# (text, pair, max_len); max_len 0 = no truncation.
HARD = [
    ("café naïve Ångström", None, 0),
    ("中文字", None, 0),
    ("I love 中文 and日本語ok", None, 0),
    ("👍🏽 nice", None, 0),
    ("👨\u200d👩\u200d👧\u200d👦 family", None, 0),
    ("tab\there\r\nnew line", None, 0),
    ("ctl\x01char\x7fdel", None, 0),
    ("zero\u200bwidth\ufeffbom", None, 0),
    ("e\u0301 combining a\u0300\u0323 marks", None, 0),
    ("x\u1ec7\u0323 reorder xe\u0301\u0300\u0323", None, 0),
    ("\u0301 leading combining mark", None, 0),
    ("ΑΒΓ αβγ Σίσυφος ΟΔΥΣΣΕΥΣ", None, 0),
    ("МОСКВА Москва ёЁ", None, 0),
    ("Straße STRASSE ß ẞ", None, 0),
    ("İstanbul İİ ıi \u0130", None, 0),
    ("ǅ titlecase ǲ ǰ", None, 0),
    ("x" * 150, None, 0),
    ("a" * 100 + " " + "b" * 101, None, 0),
    ("unbelievably antidisestablishmentarianism supercalifragilisticexpialidocious", None, 0),
    ("the [MASK] sat on the [CLS] mat[SEP]", None, 0),
    ("[mask] lowercase is not special [MASK][MASK]", None, 0),
    ("Hello <mask> world <cls> <sep><unk>", None, 0),
    ("", None, 0),
    ("     ", None, 0),
    ("\t\n", None, 0),
    ("!!!?...,,;", None, 0),
    ("12345 3.14159 1,000,000", None, 0),
    ("https://example.com/path?q=1&x=y#frag", None, 0),
    ("don't can't won't", None, 0),
    # Replace("``" -> '"') gives the quote the range of the SECOND backtick only.
    ("a ``great'' film", None, 0),
    ("a ''great`` film and `single' ```triple", None, 0),
    ("x  y   z", None, 0),
    ("  leading and trailing  ", None, 0),
    ("\x00", None, 0),
    ("a\x00b \x00 c", None, 0),
    ("\ufffd replacement char", None, 0),
    ("Hello, World! HELLO world.", None, 0),
    ("한국어 텍스트", None, 0),
    ("ℌ𝔢𝔩𝔩𝔬 ﬁ ligature ① ² ½", None, 0),
    ("… “smart quotes” ‘single’ — dash – en", None, 0),
    ("\u00a0nbsp\u3000ideographic\u2028line\u0085nel\x0bvt\x0cff", None, 0),
    ("ﾊﾝｶｸ halfwidth ｱ", None, 0),
    ("a\u0308\u0301 stacked \u0344 \u0958", None, 0),
    ("हिन्दी भाषा", None, 0),
    ("مرحبا بالعالم", None, 0),
    ("สวัสดีครับ", None, 0),
    ("U.S.A. e.g. i.e.", None, 0),
    ("$100 #hashtag @user 50% a+b=c ~tilde ^caret |pipe", None, 0),
    ("a\u200db \u200c", None, 0),
    ("😀 🥰 🫠 newer emoji", None, 0),
    ("\ue000x \u0378x \U000e0001y", None, 0),
    ("snake_case under_score", None, 0),
    (LONG, None, 0),
    (LONG, None, 64),
    (LONG, None, 512),
    ("a short sentence to truncate hard", None, 5),
    ("how are you?", "i am fine.", 0),
    ("", "b", 0),
    ("a", "", 0),
    ("", "", 0),
    (LONG, "a short second sentence .", 32),
    ("a short first sentence .", LONG, 32),
    (LONG, LONG, 33),
    ("one two three four", "five six seven eight nine", 9),
    ("café [MASK]", "中文 [SEP] naïve", 12),
    ("x <mask> y x<mask>y a  <mask>  b \u3000<mask>\u3000 <cls>a a<cls> <cls>", None, 0),
    ("  Mixed   CASE\tÀccents  ", "  second\u00a0pair  ", 0),
]


def sst2(data):
    with open(os.path.join(data, "SST-2", "dev.tsv"), encoding="utf-8") as f:
        next(f)
        return [line.rstrip("\n").rsplit("\t", 1)[0] for line in f]


def cola(data):
    with open(os.path.join(data, "CoLA", "dev.tsv"), encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t")[3] for line in f]


def byte_offsets(text):
    out, b = [0], 0
    for ch in text:
        b += len(ch.encode("utf-8"))
        out.append(b)
    return out


def encode(tok, text, pair, max_len):
    if max_len > 0:
        tok.enable_truncation(max_length=max_len, strategy="longest_first")
    else:
        tok.no_truncation()
    e = tok.encode(text, pair) if pair is not None else tok.encode(text)
    maps = [byte_offsets(text), byte_offsets(pair or "")]
    offs = []
    for (s, t), seq in zip(e.offsets, e.sequence_ids):
        offs += [0, 0] if seq is None else [maps[seq][s], maps[seq][t]]
    return {"ids": e.ids, "type_ids": e.type_ids, "offsets": offs}


def write(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def dev_sets(tok, name, data, out):
    for set_name, sents in (("sst2", sst2(data)), ("cola", cola(data))):
        cases = []
        for s in sents:
            c = encode(tok, s, None, 0)
            cases.append({"n_bytes": len(s.encode()), **c})
        write(os.path.join(out, f"{name}_{set_name}.json"),
              {"source": set_name, "max_len": 0, "pairs": False, "cases": cases})
        cases = []
        for i in range(0, len(sents) - 1, 2):
            c = encode(tok, sents[i], sents[i + 1], 16)
            cases.append({"n_bytes": len(sents[i].encode()),
                          "n_bytes_pair": len(sents[i + 1].encode()), **c})
        write(os.path.join(out, f"{name}_{set_name}_pairs.json"),
              {"source": set_name, "max_len": 16, "pairs": True, "cases": cases})


def hard_set(tok, name, out):
    cases = []
    for text, pair, max_len in HARD:
        cases.append({"text": text, "pair": pair, "max_len": max_len,
                      **encode(tok, text, pair, max_len)})
    write(os.path.join(out, f"{name}_hard.json"), {"cases": cases})


def check_vocab_txt(bert, data):
    """(b): HF built from vocab.txt must agree with tokenizer.json on everything we store."""
    vt = BertWordPieceTokenizer(os.path.join(data, "bert-base-uncased", "vocab.txt"),
                                lowercase=True)
    n = 0
    for s in sst2(data) + cola(data) + [h[0] for h in HARD]:
        a, b = encode(bert, s, None, 0), encode(vt, s, None, 0)
        assert a == b, (s, a, b)
        n += 1
    print(f"vocab.txt (BertWordPieceTokenizer) == tokenizer.json on {n} texts")


def build_misc(crammed_path, out):
    """Two tokenizers over the crammed vocabulary exercising the remaining components:
    Strip, NFD, Lowercase, Replace(\\s+), Sequence pre-tokenizer, WhitespaceSplit,
    BertProcessing, added tokens with lstrip / rstrip / single_word; and a BertNormalizer
    without accent stripping, Whitespace pre-tokenizer and no post-processor."""
    vocab = Tokenizer.from_file(crammed_path).get_vocab()
    a = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", max_input_chars_per_word=30))
    a.normalizer = normalizers.Sequence([
        normalizers.Strip(), normalizers.NFD(), normalizers.Lowercase(),
        normalizers.Replace(Regex(r"\s+"), " "), normalizers.Replace("mask", "MASK")])
    a.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                               pre_tokenizers.BertPreTokenizer()])
    a.post_processor = processors.BertProcessing(("<sep>", vocab["<sep>"]),
                                                 ("<cls>", vocab["<cls>"]))
    a.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=True, normalized=False),
                          AddedToken("<cls>", single_word=True, normalized=False),
                          AddedToken("<sep>", normalized=False), AddedToken("<unk>", normalized=False)])
    b = Tokenizer(models.WordPiece(vocab, unk_token="<unk>"))
    b.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False,
                                              handle_chinese_chars=False)
    b.pre_tokenizer = pre_tokenizers.Whitespace()
    res = []
    for name, tok in (("misc_a", a), ("misc_b", b)):
        path = os.path.join(out, f"{name}_tokenizer.json")
        tok.save(path)
        print(f"wrote {path}")
        res.append((name, Tokenizer.from_file(path)))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(HERE, "..", "tests", "fixtures", "tokenizer"))
    ap.add_argument("--rebuild-crammed", action="store_true",
                    help="retrain crammed_tokenizer.json (its ids change: all goldens follow)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    bert = Tokenizer.from_file(os.path.join(args.data, "bert-base-uncased", "tokenizer.json"))
    bert.no_padding()
    crammed_path = os.path.join(args.out, "crammed_tokenizer.json")
    if args.rebuild_crammed or not os.path.exists(crammed_path):
        # WordPieceTrainer breaks frequency ties in hash order: every build differs slightly,
        # so the committed file is reused unless a rebuild is asked for.
        build_crammed_tokenizer(2000, args.data, crammed_path)
        print(f"wrote {crammed_path}")
    crammed = Tokenizer.from_file(crammed_path)  # exactly what the C side loads
    check_vocab_txt(bert, args.data)
    for name, tok in (("bert", bert), ("crammed", crammed)):
        dev_sets(tok, name, args.data, args.out)
        hard_set(tok, name, args.out)
    for name, tok in build_misc(crammed_path, args.out):
        hard_set(tok, name, args.out)


if __name__ == "__main__":
    main()
