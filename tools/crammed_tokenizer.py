"""Build a tokenizer.json in the style of UltraFastBERT/crammedBERT's own tokenizer.

The published checkpoint's tokenizer cannot be downloaded here, so tests use one built with the
Hugging Face `tokenizers` library from the same components (model-spec.md, "Tokenizer"):
normalizer Sequence[Replace(``), Replace(''), NFD, Lowercase, StripAccents, Replace(2+ spaces),
Replace(non-ASCII -> "")], pre-tokenizer Whitespace, WordPiece, post-processor templates
single "$A <sep>" and pair "<cls> $A <sep> $B <sep>". The vocabulary is trained on SST-2 train.

    python3 tools/crammed_tokenizer.py --vocab-size 2000 --out tok.json
"""
import argparse
import os

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

SPECIALS = ["<pad>", "<unk>", "<cls>", "<sep>", "<mask>"]


def sst2_sentences(data_dir):
    path = os.path.join(data_dir, "SST-2", "train.tsv")
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            yield line.rsplit("\t", 1)[0]


def build_crammed_tokenizer(vocab_size, data_dir, out_path=None):
    """Train a crammed-style WordPiece tokenizer on SST-2 train; returns the Tokenizer."""
    tok = Tokenizer(models.WordPiece(unk_token="<unk>", max_input_chars_per_word=100))
    tok.normalizer = normalizers.Sequence([
        normalizers.Replace("``", '"'),
        normalizers.Replace("''", '"'),
        normalizers.NFD(),
        normalizers.Lowercase(),
        normalizers.StripAccents(),
        normalizers.Replace(Regex(" {2,}"), " "),
        normalizers.Replace(Regex(r"[^\x00-\x7F]+"), ""),
    ])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                        show_progress=False)
    tok.train_from_iterator(sst2_sentences(data_dir), trainer=trainer)
    cls_id, sep_id = tok.token_to_id("<cls>"), tok.token_to_id("<sep>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A <sep>",
        pair="<cls> $A <sep> $B:1 <sep>:1",
        special_tokens=[("<cls>", cls_id), ("<sep>", sep_id)],
    )
    if out_path:
        tok.save(out_path)
    return tok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab-size", type=int, default=2000)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                   "shared", "data"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    tok = build_crammed_tokenizer(args.vocab_size, args.data, args.out)
    print(f"wrote {args.out}: vocab {tok.get_vocab_size()}")


if __name__ == "__main__":
    main()
