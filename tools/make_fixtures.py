#!/usr/bin/env python3
"""Generate the small random model fixtures under tests/fixtures/ with their golden.json.

    HF_HUB_OFFLINE=1 python3 tools/make_fixtures.py --out tests/fixtures [--only NAME ...]

Each fixture is a real model folder (config.json + model.safetensors [+ tokenizer.json]) plus
golden.json holding float64 logits from tools/reference.py, computed from the tensors AS STORED
(F16/BF16 fixtures are rounded first, then read back, so the golden values belong to the file).
Everything is deterministic: fixed seeds per fixture, torch CPU generators. The folder
tests/fixtures/tokenizer/ belongs to someone else and is never touched; only the folders named
in FIXTURES below are (re)written.

Self-checks run on every generation:
  * every FFF fixture: the longest case is recomputed with a naive per-token / per-tree /
    per-level scalar loop (plain Python floats and math.erf) in place of the vectorised FFF;
    logits must agree to 1e-9 and every leaf must match;
  * bert_dense_f32 is loaded by transformers and its float64 logits compared with ours;
  * hf_bert_transformers: transformers' own float32 logits ("logits") vs the reference's
    float64 logits ("reference_logits") must agree within 1e-5.
Cases whose routing has a near-tie (min |a| < REJECT) are redrawn; for text cases (fixed
sentences) the model seed is bumped instead.

golden.json layout: see the "golden" dicts built below; logits are token-major S*V for MLM.
"""
import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REJECT = 1e-4          # redraw a case whose smallest routing |a| is below this (brief: >= 1e-5)
HARD_REJECT = 1e-5     # never accept below this
GENERATOR = "tools/make_fixtures.py"
DATA_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data"))
BERT_TOKENIZER = os.path.join(DATA_DIR, "bert-base-uncased", "tokenizer.json")
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
NEG_POS = {"0": "negative", "1": "positive"}

# ---- Random parameter helpers ---------------------------------------------------------------


class Rng:
    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def normal(self, shape, std, mean=0.0):
        return torch.randn(shape, generator=self.g, dtype=torch.float64) * std + mean

    def uniform(self, lo, hi):
        return float(torch.rand((), generator=self.g, dtype=torch.float64)) * (hi - lo) + lo

    def ints(self, lo, hi, n):
        return torch.randint(lo, hi, (n,), generator=self.g).tolist()

    def ln(self, H):
        return self.normal((H,), 0.1, 1.0), self.normal((H,), 0.1)


def case_lengths(P):
    return sorted({1, 2, 3, 7, max(1, P // 3), P // 2, P - 1, P})


# ---- Family A builder -----------------------------------------------------------------------


def crammed_config(*, L, H, NH, V, P, ff, D=None, T=None, I=None, pooler="avg", HD=None, C=None,
                   id2label=None):
    arch = {
        "num_transformer_layers": L, "hidden_size": H,
        "intermed_type": ff,
        "intermed_depth": D if ff == "fff" else None,
        "intermed_size": T if ff == "fff" else I,
        "nonlin": "GELU", "norm": "LayerNorm", "norm_eps": 1e-12, "norm_scheme": "pre",
        "final_norm": True, "use_bias": False, "tie_weights": True,
        "embedding": {"vocab_size": V, "max_seq_length": P, "pos_embedding": "scaled-sinusoidal",
                      "normalization": True, "pad_token_id": 0},
        "attention": {"num_attention_heads": NH, "qkv_bias": False},
        "classification_head": {"pooler": pooler or "avg", "head_dim": HD or H, "include_ff_layer": True,
                                "nonlin": "Tanh"},
        "num_labels": C,
    }
    if ff != "fff":
        del arch["intermed_depth"]
    cfg = {"model_type": "crammedBERT",
           "architectures": ["ScriptableLMForSequenceClassification" if C else
                             "ScriptableLMForPreTraining"]}
    if id2label:
        cfg["id2label"] = id2label
    cfg["arch"] = arch
    return cfg


def crammed_tensors(rng, *, L, H, NH, V, ff, D=None, T=None, I=None, HD=None, C=None, mlm=False,
                    decoder=False, norm_factor=False, scale_shape=(1,)):
    t = {}
    t["embedding.word_embedding.weight"] = rng.normal((V, H), 1.0)
    t["embedding.pos_embedding.scale_factor"] = torch.full(scale_shape, rng.uniform(0.4, 0.9),
                                                           dtype=torch.float64)
    t["embedding.norm.weight"], t["embedding.norm.bias"] = rng.ln(H)
    width = T * (2 ** (D + 1) - 1) if ff == "fff" else I
    used = T * (D + 1) if ff == "fff" else I
    for i in range(L):
        p = f"layers.{i}."
        t[p + "norm1.weight"], t[p + "norm1.bias"] = rng.ln(H)
        t[p + "attn.self_attention.query_key_value.weight"] = rng.normal((3 * H, H), 1.4 / math.sqrt(H))
        t[p + "attn.dense.weight"] = rng.normal((H, H), 0.8 / math.sqrt(H))
        t[p + "norm2.weight"], t[p + "norm2.bias"] = rng.ln(H)
        t[p + "ffn.linear_in.weight"] = rng.normal((width, H), 1.3 / math.sqrt(H))
        t[p + "ffn.linear_in.bias"] = rng.normal((width,), 0.5)
        t[p + "ffn.linear_out.weight"] = rng.normal((H, width), 1.0 / math.sqrt(used))
        if norm_factor:
            t[p + "attn.self_attention.norm_factor"] = torch.tensor(1.0 / math.sqrt(H // NH),
                                                                    dtype=torch.float64)
    t["final_norm.weight"], t["final_norm.bias"] = rng.ln(H)
    if mlm:
        if decoder:
            t["decoder.weight"] = rng.normal((V, H), 2.0 / math.sqrt(H))
    else:
        t["pooler.dense.weight"] = rng.normal((HD, H), 1.5 / math.sqrt(H))
        t["pooler.dense.bias"] = rng.normal((HD,), 0.3)
        t["head.weight"] = rng.normal((C, HD), 2.0 / math.sqrt(HD))
        t["head.bias"] = rng.normal((C,), 0.3)
    return t


# ---- Family B builder -----------------------------------------------------------------------


def bert_config(*, L, H, NH, V, P, TV=2, ff="dense", I=None, D=None, T=None, act="gelu",
                id2label=None, problem_type=None, dtype="float32"):
    from transformers import BertConfig
    kw = {}
    if ff == "fff":
        kw = {"ffn_type": "fff", "fff_depth": D, "fff_trees": T}
        I = T * (2 ** (D + 1) - 1)
    if problem_type:
        kw["problem_type"] = problem_type
    id2label = {int(k): v for k, v in id2label.items()}
    return BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=NH,
                      intermediate_size=I, hidden_act=act, max_position_embeddings=P,
                      type_vocab_size=TV, id2label=id2label,
                      label2id={v: k for k, v in id2label.items()},
                      architectures=["BertForSequenceClassification"], dtype=dtype, **kw)


def bert_tensors(rng, *, L, H, NH, V, P, TV=2, ff="dense", I=None, D=None, T=None, out_bias=False,
                 C=2):
    t = {}
    e = "bert.embeddings."
    t[e + "word_embeddings.weight"] = rng.normal((V, H), 1.0)
    t[e + "position_embeddings.weight"] = rng.normal((P, H), 0.5)
    t[e + "token_type_embeddings.weight"] = rng.normal((TV, H), 0.5)
    t[e + "LayerNorm.weight"], t[e + "LayerNorm.bias"] = rng.ln(H)
    for i in range(L):
        p = f"bert.encoder.layer.{i}."
        for n in ("query", "key", "value"):
            t[p + f"attention.self.{n}.weight"] = rng.normal((H, H), 1.3 / math.sqrt(H))
            t[p + f"attention.self.{n}.bias"] = rng.normal((H,), 0.2)
        t[p + "attention.output.dense.weight"] = rng.normal((H, H), 1.0 / math.sqrt(H))
        t[p + "attention.output.dense.bias"] = rng.normal((H,), 0.2)
        t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"] = rng.ln(H)
        if ff == "fff":
            width, used = T * (2 ** (D + 1) - 1), T * (D + 1)
            t[p + "fff.linear_in.weight"] = rng.normal((width, H), 1.3 / math.sqrt(H))
            t[p + "fff.linear_in.bias"] = rng.normal((width,), 0.5)
            t[p + "fff.linear_out.weight"] = rng.normal((H, width), 1.0 / math.sqrt(used))
            if out_bias:
                t[p + "fff.linear_out.bias"] = rng.normal((H,), 0.3)
        else:
            t[p + "intermediate.dense.weight"] = rng.normal((I, H), 1.3 / math.sqrt(H))
            t[p + "intermediate.dense.bias"] = rng.normal((I,), 0.3)
            t[p + "output.dense.weight"] = rng.normal((H, I), 1.0 / math.sqrt(I))
            t[p + "output.dense.bias"] = rng.normal((H,), 0.2)
        t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"] = rng.ln(H)
    t["bert.pooler.dense.weight"] = rng.normal((H, H), 1.5 / math.sqrt(H))
    t["bert.pooler.dense.bias"] = rng.normal((H,), 0.3)
    t["classifier.weight"] = rng.normal((C, H), 2.0 / math.sqrt(H))
    t["classifier.bias"] = rng.normal((C,), 0.3)
    return t


# ---- Writing and golden values --------------------------------------------------------------


def fresh_dir(path):
    if os.path.basename(os.path.normpath(path)) == "tokenizer":
        raise RuntimeError("refusing to touch tests/fixtures/tokenizer")
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)


def save_weights(folder, tensors, dtype, prefix=""):
    st = {prefix + k: v.to(dtype).contiguous() for k, v in tensors.items()}
    save_file(st, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})


def write_json(path, obj, compact=False):
    with open(path, "w", encoding="utf-8") as f:
        if compact:
            json.dump(obj, f, separators=(",", ":"))
        else:
            json.dump(obj, f, indent=2)
        f.write("\n")


def case_record(model, ids, type_ids, with_types):
    out = model.forward(ids, type_ids)
    rec = {"ids": list(ids)}
    if with_types:
        rec["type_ids"] = list(type_ids)
    rec["logits"] = [float(x) for x in out["logits"]]
    if "leaves" in out:
        rec["leaves"] = [lv.tolist() for lv in out["leaves"]]
        rec["min_abs_a"] = out["min_abs_a"]
    return rec


def random_cases(model, rng, with_types, pairs=False):
    """~8 id sequences of lengths 1..P (P included); FFF near-ties are redrawn."""
    cases = []
    for j, S in enumerate(case_lengths(model.P)):
        for attempt in range(100):
            ids = rng.ints(0, model.V, S)
            if with_types and pairs and S >= 4 and j % 2 == 0:
                cut = 1 + (S - 1) // 2
                tids = [0] * cut + [1] * (S - cut)          # "[CLS] A [SEP] | B [SEP]" shape
            else:
                tids = [0] * S
            rec = case_record(model, ids, tids, with_types)
            if rec.get("min_abs_a", 1.0) >= REJECT:
                break
        else:
            raise RuntimeError(f"could not draw a case of length {S} without near-ties")
        if attempt:
            print(f"    length {S}: redrew {attempt}x (near-tie)")
        cases.append(rec)
    return cases


def text_cases(model, tok_path, texts):
    tok = reference.load_tokenizer(os.path.dirname(tok_path), model.P)
    out = []
    for text, pair in texts:
        ids, tids = reference.encode(tok, text, pair)
        rec = {"text": text, "pair": pair}
        rec.update(case_record(model, ids, tids, True))
        if len(ids) == model.P:
            rec["truncated"] = len(reference.encode(reference.load_tokenizer(
                os.path.dirname(tok_path), 100000), text, pair)[0]) > model.P
        out.append(rec)
    return out


# ---- Independent naive FFF (self-check) -----------------------------------------------------


def naive_fff(x, w_in, b_in, w_out, depth, trees):
    """Scalar loops per token, per tree, per level, on Python floats; same contract as
    reference.fff_forward."""
    X, WI, BI, WO = x.tolist(), w_in.tolist(), b_in.tolist(), w_out.tolist()
    S, H = len(X), len(X[0])
    n = 2 ** (depth + 1) - 1
    Y = [[0.0] * H for _ in range(S)]
    leaves = [[0] * trees for _ in range(S)]
    m = math.inf
    for s in range(S):
        for t in range(trees):
            k = 0
            for level in range(depth + 1):
                row = t * n + k
                a = BI[row]
                for h in range(H):
                    a += X[s][h] * WI[row][h]
                g = 0.5 * a * (1.0 + math.erf(a / math.sqrt(2.0)))
                for h in range(H):
                    Y[s][h] += g * WO[h][row]
                m = min(m, abs(a))
                if level == depth:
                    leaves[s][t] = k
                else:
                    k = 2 * k + 1 + (1 if a > 0 else 0)
    return (torch.tensor(Y, dtype=torch.float64), torch.tensor(leaves, dtype=torch.long), m)


def naive_check(model, case):
    ref = model.forward(case["ids"], case.get("type_ids"))
    nv = model.forward(case["ids"], case.get("type_ids"), fff_fn=naive_fff)
    d = float(np.max(np.abs(ref["logits"] - nv["logits"])))
    same = all(bool((a == b).all()) for a, b in zip(ref["leaves"], nv["leaves"]))
    if d > 1e-9 or not same or abs(ref["min_abs_a"] - nv["min_abs_a"]) > 1e-12:
        raise AssertionError(f"naive FFF disagrees: max dlogit {d}, leaves equal {same}")
    return d


# ---- Fixture definitions --------------------------------------------------------------------


def build_crammed(name, out, seed, spec, dtype="f32", prefix="", texts=None, tokenizer=None):
    folder = os.path.join(out, name)
    for attempt in range(20):
        fresh_dir(folder)
        rng = Rng(seed + 1000 * attempt)
        cfg = crammed_config(**{k: spec.get(k) for k in
                                ("L", "H", "NH", "V", "P", "ff", "D", "T", "I", "pooler", "HD",
                                 "C", "id2label")})
        tens = crammed_tensors(rng, **{k: spec.get(k) for k in
                                       ("L", "H", "NH", "V", "ff", "D", "T", "I", "HD", "C")},
                               mlm=spec.get("mlm", False), decoder=spec.get("decoder", False),
                               norm_factor=spec.get("norm_factor", False),
                               scale_shape=spec.get("scale_shape", (1,)))
        write_json(os.path.join(folder, "config.json"), cfg)
        save_weights(folder, tens, DTYPES[dtype], prefix)
        tok_path = None
        if tokenizer:
            tok_path = os.path.join(folder, "tokenizer.json")
            tokenizer(tok_path)
        model = reference.load_model(folder)
        tc = text_cases(model, tok_path, texts) if texts else None
        if tc and min(c.get("min_abs_a", 1.0) for c in tc) < REJECT:
            print(f"    seed {seed + 1000 * attempt}: near-tie in a text case, reseeding")
            continue
        break
    cases = random_cases(model, rng, with_types=False)
    golden = {"generator": GENERATOR, "family": "crammed", "ff": "fff" if spec["ff"] == "fff" else "dense",
              "head": model.head, "n_outputs": model.n_outputs, "dtype": dtype, "seed": seed + 1000 * attempt,
              "cases": cases}
    if tc:
        golden["text_cases"] = tc
    return folder, model, golden


def build_bert(name, out, seed, spec, dtype="f32", texts=None, copy_tokenizer=None):
    folder = os.path.join(out, name)
    for attempt in range(20):
        fresh_dir(folder)
        rng = Rng(seed + 1000 * attempt)
        cfg = bert_config(**{k: spec[k] for k in spec if k in
                             ("L", "H", "NH", "V", "P", "TV", "ff", "I", "D", "T", "act",
                              "id2label", "problem_type")},
                          dtype={"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[dtype])
        cfg.save_pretrained(folder)
        tens = bert_tensors(rng, **{k: spec[k] for k in spec if k in
                                    ("L", "H", "NH", "V", "P", "TV", "ff", "I", "D", "T",
                                     "out_bias")}, C=len(spec["id2label"]))
        save_weights(folder, tens, DTYPES[dtype])
        tok_path = None
        if copy_tokenizer:
            tok_path = os.path.join(folder, "tokenizer.json")
            shutil.copyfile(copy_tokenizer, tok_path)
        model = reference.load_model(folder)
        tc = text_cases(model, tok_path, texts) if texts else None
        if tc and min(c.get("min_abs_a", 1.0) for c in tc) < REJECT:
            print(f"    seed {seed + 1000 * attempt}: near-tie in a text case, reseeding")
            continue
        break
    cases = random_cases(model, rng, with_types=True, pairs=True)
    golden = {"generator": GENERATOR, "family": "bert", "ff": "fff" if spec.get("ff") == "fff" else "dense",
              "head": "classifier", "n_outputs": model.n_outputs, "dtype": dtype,
              "seed": seed + 1000 * attempt, "cases": cases}
    if tc:
        golden["text_cases"] = tc
    return folder, model, golden


BERT_TEXTS = [
    ("This movie was absolutely wonderful!", None),
    ("I hated every minute of it.", None),
    ("Café crème, naïve résumé — déjà vu.", None),
    ("It's not bad... it's TERRIBLE!!!", None),
    ("日本語のテキスト and an emoji 😀 mixed in.", None),
    ("Tabs\tand\nnewlines   and  spaces; supercalifragilisticexpialidocious.", None),
    ("The cat sat on the mat.", "A feline rested on a rug."),
    ("Once upon a time, in a land far, far away, there lived a storyteller who never stopped "
     "talking: every morning she told the baker, the blacksmith, the miller and the mayor a new "
     "tale about dragons, ships, lost crowns, talking foxes and stubborn goats, and every evening "
     "the whole village gathered again to hear how each story ended.", None),
]

CRAMMED_TEXTS = [
    ("a gorgeous , witty , seductive movie .", None),
    ("``The best film of the year,'' says nobody.", None),
    ("Café    crème — naïve résumé", None),
    ("it's not bad... it's TERRIBLE!!!", None),
    ("an unbelievably overwrought, self-indulgent mess", None),
    ("the plot is thin", "the acting is superb"),
    ("a fine , understated film", ""),
    ("Once upon a time, in a land far, far away, there lived a storyteller who never stopped "
     "talking: every morning she told the baker, the blacksmith, the miller and the mayor a new "
     "tale about dragons, ships, lost crowns, talking foxes and stubborn goats, and every evening "
     "the whole village gathered again to hear how each story ended.", None),
]


def crammed_tokenizer_maker(vocab_size):
    """Train the crammed-style tokenizer, then renumber its vocabulary canonically.

    The WordPiece trainer breaks ties between equally frequent merges in hash-map order, so
    the same token SET comes out with different ids from run to run. Special tokens keep their
    ids (the post-processor refers to them); every other token is renumbered in sorted string
    order, which makes the file a function of the token set only. WordPiece matching depends
    only on the strings, so this changes no tokenization, only the id numbering.
    """
    def make(path):
        from crammed_tokenizer import build_crammed_tokenizer
        build_crammed_tokenizer(vocab_size, DATA_DIR, path)
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        vocab = tj["model"]["vocab"]
        special = {t["content"]: t["id"] for t in tj["added_tokens"]}
        free = sorted(set(range(len(vocab))) - set(special.values()))
        rest = sorted(k for k in vocab if k not in special)
        new = dict(special)
        new.update(zip(rest, free))
        tj["model"]["vocab"] = dict(sorted(new.items(), key=lambda kv: kv[1]))
        with open(path, "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False, indent=2)
    return make


def fixture_list():
    """name -> callable(out) returning (folder, model, golden)."""
    F = {}
    F["crammed_d3_t1_f32"] = lambda o: build_crammed("crammed_d3_t1_f32", o, 101, dict(
        L=2, H=32, NH=2, V=128, P=32, ff="fff", D=3, T=1, pooler="avg", HD=48, C=2,
        id2label=NEG_POS), "f32")
    F["crammed_d5_t2_f16"] = lambda o: build_crammed("crammed_d5_t2_f16", o, 102, dict(
        L=3, H=48, NH=3, V=256, P=48, ff="fff", D=5, T=2, pooler="zero_index", HD=32, C=3,
        scale_shape=()), "f16")
    F["crammed_d0_t4_bf16"] = lambda o: build_crammed("crammed_d0_t4_bf16", o, 103, dict(
        L=2, H=32, NH=4, V=100, P=24, ff="fff", D=0, T=4, pooler="max", HD=32, C=2,
        id2label=NEG_POS), "bf16")
    F["crammed_lse_prefix"] = lambda o: build_crammed("crammed_lse_prefix", o, 104, dict(
        L=2, H=24, NH=2, V=80, P=20, ff="fff", D=4, T=1, pooler="lse", HD=24, C=4,
        id2label={"0": "a", "1": "b", "2": "c", "3": "d"}), "f32", prefix="_orig_mod.")
    F["crammed_mlm"] = lambda o: build_crammed("crammed_mlm", o, 105, dict(
        L=2, H=32, NH=2, V=96, P=24, ff="fff", D=2, T=3, mlm=True, decoder=True,
        norm_factor=True), "f32")
    F["crammed_dense"] = lambda o: build_crammed("crammed_dense", o, 106, dict(
        L=2, H=32, NH=4, V=128, P=32, ff="ff", I=64, pooler="zero_index", HD=32, C=2,
        id2label=NEG_POS), "f32")
    F["bert_dense_f32"] = lambda o: build_bert("bert_dense_f32", o, 107, dict(
        L=2, H=32, NH=4, V=256, P=40, TV=2, ff="dense", I=64, act="gelu", id2label=NEG_POS), "f32")
    F["bert_fff_d4_t2_bf16"] = lambda o: build_bert("bert_fff_d4_t2_bf16", o, 108, dict(
        L=2, H=32, NH=2, V=200, P=32, TV=2, ff="fff", D=4, T=2, out_bias=True, act="gelu",
        id2label={"0": "x", "1": "y", "2": "z"}), "bf16")
    F["bert_fff_d6_t1_f16"] = lambda o: build_bert("bert_fff_d6_t1_f16", o, 109, dict(
        L=2, H=48, NH=4, V=300, P=48, TV=2, ff="fff", D=6, T=1, out_bias=False, act="relu",
        id2label=NEG_POS), "f16")
    F["bert_text"] = lambda o: build_bert("bert_text", o, 110, dict(
        L=2, H=16, NH=2, V=30522, P=64, TV=2, ff="fff", D=3, T=2, out_bias=True, act="gelu",
        id2label=NEG_POS, problem_type="single_label_classification"), "f16",
        texts=BERT_TEXTS, copy_tokenizer=BERT_TOKENIZER)
    F["crammed_text"] = lambda o: build_crammed("crammed_text", o, 111, dict(
        L=2, H=32, NH=2, V=2000, P=64, ff="fff", D=4, T=1, pooler="avg", HD=32, C=2,
        id2label=NEG_POS), "f32", texts=CRAMMED_TEXTS, tokenizer=crammed_tokenizer_maker(2000))
    F["hf_bert_transformers"] = build_hf_bert
    return F


def build_hf_bert(out):
    """The real client: transformers builds, saves and evaluates the model."""
    from transformers import BertConfig, BertForSequenceClassification
    folder = os.path.join(out, "hf_bert_transformers")
    fresh_dir(folder)
    labels = {0: "contradiction", 1: "entailment", 2: "neutral"}
    config = BertConfig(vocab_size=512, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=3,
                        id2label=labels, label2id={v: k for k, v in labels.items()},
                        initializer_range=0.2)
    torch.manual_seed(112)
    model = BertForSequenceClassification(config)
    # The library's init leaves LayerNorms at 1/0 and biases at 0; perturb them (seeded) so
    # that every parameter is exercised and logits are O(1).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                p.add_(torch.randn_like(p) * 0.1)
            elif name.endswith(".bias") or name.endswith("LayerNorm.bias"):
                p.copy_(torch.randn_like(p) * 0.2)
    model.eval()
    try:
        model.save_pretrained(folder, safe_serialization=True)
    except TypeError:
        model.save_pretrained(folder)
    ref = reference.load_model(folder)
    rng = Rng(112)
    cases = []
    maxdiff = 0.0
    for j, S in enumerate(case_lengths(ref.P)):
        ids = rng.ints(0, ref.V, S)
        if S >= 4 and j % 2 == 0:
            cut = 1 + (S - 1) // 2
            tids = [0] * cut + [1] * (S - cut)
        else:
            tids = [0] * S
        with torch.no_grad():
            lt = model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([tids]),
                       attention_mask=torch.ones(1, S, dtype=torch.long)).logits[0]
        rl = ref.forward(ids, tids)["logits"]
        d = float(np.max(np.abs(lt.double().numpy() - rl)))
        maxdiff = max(maxdiff, d)
        cases.append({"ids": ids, "type_ids": tids, "logits": [float(x) for x in lt],
                      "reference_logits": [float(x) for x in rl]})
    print(f"    transformers float32 vs reference float64: max |dlogit| = {maxdiff:.3e}")
    assert maxdiff < 1e-5, maxdiff
    # Same check with the library in float64, to separate reading errors from float32 noise.
    m64 = model.double()
    d64 = 0.0
    for c in cases:
        S = len(c["ids"])
        with torch.no_grad():
            lt = m64(input_ids=torch.tensor([c["ids"]]), token_type_ids=torch.tensor([c["type_ids"]]),
                     attention_mask=torch.ones(1, S, dtype=torch.long)).logits[0].numpy()
        d64 = max(d64, float(np.max(np.abs(lt - np.array(c["reference_logits"])))))
    print(f"    transformers float64 vs reference float64: max |dlogit| = {d64:.3e}")
    assert d64 < 1e-10, d64
    golden = {"generator": GENERATOR, "family": "bert", "ff": "dense", "head": "classifier",
              "n_outputs": 3, "dtype": "f32", "seed": 112,
              "note": "logits: transformers float32 forward; reference_logits: tools/reference.py float64",
              "transformers_vs_reference_max_abs_diff": maxdiff, "cases": cases}
    return folder, ref, golden


def check_bert_with_transformers(folder, golden):
    """Load one of our family-B folders with transformers (float64) and compare logits."""
    from transformers import BertForSequenceClassification
    m = BertForSequenceClassification.from_pretrained(folder, dtype=torch.float64).eval()
    d = 0.0
    for c in golden["cases"]:
        with torch.no_grad():
            lt = m(input_ids=torch.tensor([c["ids"]]), token_type_ids=torch.tensor([c["type_ids"]]),
                   attention_mask=torch.ones(1, len(c["ids"]), dtype=torch.long)).logits[0].numpy()
        d = max(d, float(np.max(np.abs(lt - np.array(c["logits"])))))
    assert d < 1e-10, d
    return d


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "tests", "fixtures"))
    ap.add_argument("--only", nargs="*", help="fixture names (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    fixtures = fixture_list()
    names = args.only or list(fixtures)
    for n in names:
        if n not in fixtures:
            sys.exit(f"unknown fixture {n}")
    os.makedirs(args.out, exist_ok=True)
    for name in names:
        print(f"{name}:")
        folder, model, golden = fixtures[name](args.out)
        allc = golden["cases"] + golden.get("text_cases", [])
        if golden["ff"] == "fff":
            longest = max(golden["cases"], key=lambda c: len(c["ids"]))
            d = naive_check(model, longest)
            print(f"    naive FFF loop vs vectorised: max |dlogit| = {d:.1e}, leaves equal")
            mins = min(c["min_abs_a"] for c in allc)
            print(f"    smallest routing |a| over all cases: {mins:.3e}")
        if name == "bert_dense_f32":
            d = check_bert_with_transformers(folder, golden)
            print(f"    transformers float64 on this folder vs golden: max |dlogit| = {d:.1e}")
        write_json(os.path.join(folder, "golden.json"), golden, compact=True)
        mx = max(max(abs(x) for x in c["logits"]) for c in allc)
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
        print(f"    {len(golden['cases'])} cases + {len(golden.get('text_cases', []))} text cases, "
              f"max |logit| {mx:.3f}, {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
