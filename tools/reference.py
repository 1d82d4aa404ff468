#!/usr/bin/env python3
"""Float64 PyTorch reference implementation of the two model families ufbd runs.

Written from docs/model-spec.md only (independently of the C engine), so that the engine, the
fixtures' golden values and this file are three separate readings of the same text.

  A. crammedBERT / UltraFastBERT (config.json with "arch"): pre-LN, scaled sinusoidal
     positions, NeoX head-interleaved fused QKV, FFF (hard-routed trees) or dense FF,
     final LayerNorm, pooled classifier head or tied masked-LM head.
  B. Hugging Face BertForSequenceClassification (model_type "bert"): post-LN, learned
     positions + token types, dense FF or the FFF variant ("ffn_type": "fff").

Every stored tensor (F32/F16/BF16) is widened to float64 exactly; all arithmetic is float64.

Library use:
    from reference import load_model
    m = load_model("tests/fixtures/crammed_d3_t1_f32")
    out = m.forward([5, 17, 3])          # dict: logits (np.float64), leaves, min_abs_a
CLI:
    python3 tools/reference.py --model DIR --ids 101,2023,102 [--type-ids 0,0,0] [--routing]
    python3 tools/reference.py --model DIR --text "a sentence" [--pair "second"]
prints one JSON object {"ids", "type_ids", "logits", ...} on stdout.

FFF routing record: leaves[layer] is an int tensor (S, T) with the leaf reached per token per
tree (index within the tree, heap order, 0-based: in [2^D - 1, 2^(D+1) - 1)). min_abs_a is the
smallest |a| over every node visited (all D+1 evaluations of `k = 2k + 1 + (a > 0)` per tree per
token per layer, the leaf's included, as the spec's pseudocode evaluates it there too).
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors import safe_open

DT = torch.float64

# ---- Shared kernels -------------------------------------------------------------------------


def layer_norm(x, w, b, eps):
    """LayerNorm over the last axis: biased variance, eps inside the square root."""
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_erf(x):
    """Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    """tanh approximation (transformers "gelu_new" / "gelu_pytorch_tanh")."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


ACTIVATIONS = {
    "gelu": gelu_erf,
    "gelu_python": gelu_erf,
    "relu": torch.relu,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
}


def softmax_rows(x):
    x = x - x.max(-1, keepdim=True).values
    e = torch.exp(x)
    return e / e.sum(-1, keepdim=True)


def fff_forward(x, w_in, b_in, w_out, depth, trees):
    """Vectorised FFF over a sequence.

    x (S, H); w_in (T*n, H); b_in (T*n); w_out (H, T*n). Node k of tree t is row/column t*n + k.
    Returns (y (S, H), leaves (S, T) int64, min |a| over all visited nodes).
    """
    S, H = x.shape
    n = 2 ** (depth + 1) - 1
    wi = w_in.reshape(trees, n, H)
    bi = b_in.reshape(trees, n)
    wo = w_out.t().reshape(trees, n, H)          # row per node: its output weights
    tix = torch.arange(trees).expand(S, trees)   # (S, T)
    k = torch.zeros(S, trees, dtype=torch.long)  # current node per token per tree
    y = torch.zeros(S, H, dtype=x.dtype)
    min_abs = math.inf
    for level in range(depth + 1):
        a = (wi[tix, k] * x[:, None, :]).sum(-1) + bi[tix, k]          # (S, T)
        y = y + (gelu_erf(a)[..., None] * wo[tix, k]).sum(1)
        min_abs = min(min_abs, float(a.abs().min()))
        if level < depth:                                              # leaf: stop after it
            k = 2 * k + 1 + (a > 0).long()
    return y, k, min_abs


# ---- Loading --------------------------------------------------------------------------------


def read_safetensors(path):
    """All tensors of a safetensors file, widened exactly to float64 (name -> tensor)."""
    out = {}
    with safe_open(path, framework="pt") as f:
        for name in f.keys():
            t = f.get_tensor(name)
            if t.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
                raise ValueError(f"{name}: unsupported dtype {t.dtype}")
            out[name] = t.to(DT)
    return out


class Weights:
    """Name lookup with an optional wrapper prefix and shape checks."""

    def __init__(self, tensors, prefix=""):
        self.t = tensors
        self.prefix = prefix

    def has(self, name):
        return self.prefix + name in self.t

    def get(self, name, shape=None):
        key = self.prefix + name
        if key not in self.t:
            raise KeyError(f"missing tensor {key}")
        v = self.t[key]
        if shape is not None and tuple(v.shape) != tuple(shape):
            raise ValueError(f"{key}: shape {tuple(v.shape)}, expected {tuple(shape)}")
        return v


def load_model(folder):
    """Load a model folder (config.json + model.safetensors); returns CrammedModel or BertModel."""
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    tensors = read_safetensors(os.path.join(folder, "model.safetensors"))
    if "arch" in cfg or cfg.get("model_type") == "crammedBERT":
        model = CrammedModel(cfg, tensors)
    elif cfg.get("model_type") == "bert":
        model = BertModel(cfg, tensors)
    else:
        raise ValueError(f"unknown model_type {cfg.get('model_type')!r}")
    model.folder = folder
    return model


# ---- Family A: crammedBERT / UltraFastBERT ------------------------------------------------


def sinusoid(S, H):
    """PE[s, 2i] = sin(s w_i), PE[s, 2i+1] = cos(s w_i), w_i = exp(-2i ln(10000) / H)."""
    pos = torch.arange(S, dtype=DT)[:, None]
    w = torch.exp(torch.arange(0, H, 2, dtype=DT) * (-math.log(10000.0) / H))
    pe = torch.zeros(S, H, dtype=DT)
    pe[:, 0::2] = torch.sin(pos * w)
    pe[:, 1::2] = torch.cos(pos * w)
    return pe


class CrammedModel:
    family = "crammed"

    def __init__(self, cfg, tensors):
        a = cfg["arch"]
        self.cfg = cfg
        self.L = a["num_transformer_layers"]
        self.H = H = a["hidden_size"]
        emb = a["embedding"]
        self.V = V = emb["vocab_size"]
        self.P = emb["max_seq_length"]
        self.NH = a["attention"]["num_attention_heads"]
        if H % self.NH or H % 2:
            raise ValueError("hidden_size must be even and divisible by the head count")
        self.dh = H // self.NH
        self.eps = a.get("norm_eps", 1e-12)
        self.ff = a.get("intermed_type", "fff")
        for key, want in (("norm_scheme", "pre"), ("norm", "LayerNorm"), ("nonlin", "GELU")):
            if a.get(key, want) != want:
                raise NotImplementedError(f"arch.{key}={a.get(key)!r}")
        if emb.get("pos_embedding", "scaled-sinusoidal") != "scaled-sinusoidal":
            raise NotImplementedError(f"pos_embedding {emb.get('pos_embedding')!r}")
        if a.get("use_bias", False) or a["attention"].get("qkv_bias", False):
            raise NotImplementedError("use_bias / qkv_bias")
        self.emb_norm = emb.get("normalization", True)
        self.final_norm = a.get("final_norm", True)

        # The wrapper prefix is whatever precedes the word-embedding name.
        suffix = "embedding.word_embedding.weight"
        keys = [k for k in tensors if k.endswith(suffix)]
        if len(keys) != 1:
            raise KeyError(f"need exactly one *{suffix}")
        w = Weights(tensors, keys[0][: -len(suffix)])
        self.w = w

        self.word = w.get("embedding.word_embedding.weight", (V, H))
        sf = w.get("embedding.pos_embedding.scale_factor")
        if sf.numel() != 1 or sf.dim() > 1:
            raise ValueError("scale_factor must be shape (1,) or ()")
        self.pos_scale = sf.reshape(())
        if self.emb_norm:
            self.emb_ln = (w.get("embedding.norm.weight", (H,)), w.get("embedding.norm.bias", (H,)))

        if self.ff == "fff":
            self.D = a["intermed_depth"]
            self.T = a["intermed_size"]
            self.n = 2 ** (self.D + 1) - 1
            width = self.T * self.n
        elif self.ff == "ff":
            width = a["intermed_size"]
        else:
            raise NotImplementedError(f"intermed_type {self.ff!r}")

        self.layers = []
        for i in range(self.L):
            p = f"layers.{i}."
            nf_name = p + "attn.self_attention.norm_factor"
            lay = {
                "ln1": (w.get(p + "norm1.weight", (H,)), w.get(p + "norm1.bias", (H,))),
                "qkv": w.get(p + "attn.self_attention.query_key_value.weight", (3 * H, H)),
                "wo": w.get(p + "attn.dense.weight", (H, H)),
                "ln2": (w.get(p + "norm2.weight", (H,)), w.get(p + "norm2.bias", (H,))),
                "w_in": w.get(p + "ffn.linear_in.weight", (width, H)),
                "b_in": w.get(p + "ffn.linear_in.bias", (width,)),
                "w_out": w.get(p + "ffn.linear_out.weight", (H, width)),
                "score_scale": (float(w.get(nf_name).reshape(())) if w.has(nf_name)
                                else 1.0 / math.sqrt(self.dh)),
            }
            self.layers.append(lay)
        if self.final_norm:
            self.fin_ln = (w.get("final_norm.weight", (H,)), w.get("final_norm.bias", (H,)))

        nl = a.get("num_labels")
        has_head = w.has("head.weight")
        if nl is not None and has_head:
            self.head = "classifier"
            ch = a["classification_head"]
            self.pooler = ch.get("pooler", "avg")
            if self.pooler not in ("avg", "zero_index", "max", "lse"):
                raise ValueError(f"unknown pooler {self.pooler!r}")
            self.pool_ff = ch.get("include_ff_layer", True)
            if ch.get("nonlin", "Tanh") != "Tanh":
                raise NotImplementedError(f"pooler nonlin {ch.get('nonlin')!r}")
            hd = ch["head_dim"] if self.pool_ff else H
            self.C = nl
            if self.pool_ff:
                self.wp = w.get("pooler.dense.weight", (hd, H))
                self.bp = w.get("pooler.dense.bias", (hd,))
            self.wc = w.get("head.weight", (nl, hd))
            self.bc = w.get("head.bias", (nl,))
            self.n_outputs = nl
        elif nl is None and not has_head:
            self.head = "mlm"
            self.dec = w.get("decoder.weight", (V, H)) if w.has("decoder.weight") else self.word
            self.n_outputs = V
        else:
            raise ValueError("num_labels and head tensors disagree")

    def attention(self, x, lay):
        S, H = x.shape
        qkv = (x @ lay["qkv"].t()).reshape(S, self.NH, 3 * self.dh)   # head-major, q|k|v per head
        q, k, v = qkv.split(self.dh, dim=-1)                         # each (S, NH, dh)
        scores = torch.einsum("qhd,khd->hqk", q, k) * lay["score_scale"]
        probs = softmax_rows(scores)
        ctx = torch.einsum("hqk,khd->qhd", probs, v).reshape(S, H)
        return ctx @ lay["wo"].t()

    def forward(self, ids, type_ids=None, fff_fn=fff_forward):
        """ids: token ids of ONE sequence (no padding). type_ids are ignored (family A has none)."""
        ids = torch.as_tensor(list(ids), dtype=torch.long)
        S = ids.numel()
        if S < 1 or S > self.P:
            raise ValueError(f"sequence length {S} not in [1, {self.P}]")
        if int(ids.min()) < 0 or int(ids.max()) >= self.V:
            raise ValueError("token id out of range")
        h = self.word[ids] + self.pos_scale * sinusoid(S, self.H)
        if self.emb_norm:
            h = layer_norm(h, *self.emb_ln, self.eps)
        leaves, min_abs = [], math.inf
        for lay in self.layers:
            h = h + self.attention(layer_norm(h, *lay["ln1"], self.eps), lay)
            x = layer_norm(h, *lay["ln2"], self.eps)
            if self.ff == "fff":
                y, lv, m = fff_fn(x, lay["w_in"], lay["b_in"], lay["w_out"], self.D, self.T)
                leaves.append(lv)
                min_abs = min(min_abs, m)
            else:
                y = gelu_erf(x @ lay["w_in"].t() + lay["b_in"]) @ lay["w_out"].t()
            h = h + y
        if self.final_norm:
            h = layer_norm(h, *self.fin_ln, self.eps)
        if self.head == "classifier":
            if self.pooler == "avg":
                pooled = h.mean(0)
            elif self.pooler == "zero_index":
                pooled = h[0]
            elif self.pooler == "max":
                pooled = h.max(0).values
            else:
                pooled = torch.logsumexp(h, 0)
            if self.pool_ff:
                pooled = torch.tanh(self.wp @ pooled + self.bp)
            logits = self.wc @ pooled + self.bc
        else:
            logits = (h @ self.dec.t()).reshape(-1)                  # (S*V), token-major
        out = {"logits": logits.numpy()}
        if self.ff == "fff":
            out["leaves"] = leaves
            out["min_abs_a"] = min_abs
        return out


# ---- Family B: Hugging Face BERT (dense or FFF) ---------------------------------------------


class BertModel:
    family = "bert"
    head = "classifier"

    def __init__(self, cfg, tensors):
        self.cfg = cfg
        self.H = H = cfg["hidden_size"]
        self.L = cfg["num_hidden_layers"]
        self.NH = cfg["num_attention_heads"]
        if H % self.NH:
            raise ValueError("hidden_size not divisible by num_attention_heads")
        self.dh = H // self.NH
        self.V = V = cfg["vocab_size"]
        self.P = cfg["max_position_embeddings"]
        self.TV = cfg.get("type_vocab_size", 2)
        self.eps = cfg.get("layer_norm_eps", 1e-12)
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise NotImplementedError("position_embedding_type")
        self.ff = cfg.get("ffn_type", "dense")
        if self.ff == "fff":
            self.D, self.T = cfg["fff_depth"], cfg["fff_trees"]
            self.n = 2 ** (self.D + 1) - 1
            width = self.T * self.n
        elif self.ff == "dense":
            act = cfg.get("hidden_act", "gelu")
            if act not in ACTIVATIONS:
                raise NotImplementedError(f"hidden_act {act!r}")
            self.act = ACTIVATIONS[act]
            width = cfg["intermediate_size"]
        else:
            raise NotImplementedError(f"ffn_type {self.ff!r}")
        if "id2label" in cfg:
            self.C = len(cfg["id2label"])
        else:
            self.C = cfg.get("num_labels", 2)
        self.n_outputs = self.C

        w = Weights(tensors)
        e = "bert.embeddings."
        self.word = w.get(e + "word_embeddings.weight", (V, H))
        self.pos = w.get(e + "position_embeddings.weight", (self.P, H))
        self.tok = w.get(e + "token_type_embeddings.weight", (self.TV, H))
        self.emb_ln = (w.get(e + "LayerNorm.weight", (H,)), w.get(e + "LayerNorm.bias", (H,)))
        self.layers = []
        for i in range(self.L):
            p = f"bert.encoder.layer.{i}."
            lay = {}
            for n in ("query", "key", "value"):
                lay[n] = (w.get(p + f"attention.self.{n}.weight", (H, H)),
                          w.get(p + f"attention.self.{n}.bias", (H,)))
            lay["ao"] = (w.get(p + "attention.output.dense.weight", (H, H)),
                         w.get(p + "attention.output.dense.bias", (H,)))
            lay["ln1"] = (w.get(p + "attention.output.LayerNorm.weight", (H,)),
                          w.get(p + "attention.output.LayerNorm.bias", (H,)))
            if self.ff == "fff":
                lay["w_in"] = w.get(p + "fff.linear_in.weight", (width, H))
                lay["b_in"] = w.get(p + "fff.linear_in.bias", (width,))
                lay["w_out"] = w.get(p + "fff.linear_out.weight", (H, width))
                ob = p + "fff.linear_out.bias"
                lay["b_out"] = w.get(ob, (H,)) if w.has(ob) else None
            else:
                lay["w1"] = (w.get(p + "intermediate.dense.weight", (width, H)),
                             w.get(p + "intermediate.dense.bias", (width,)))
                lay["w2"] = (w.get(p + "output.dense.weight", (H, width)),
                             w.get(p + "output.dense.bias", (H,)))
            lay["ln2"] = (w.get(p + "output.LayerNorm.weight", (H,)),
                          w.get(p + "output.LayerNorm.bias", (H,)))
            self.layers.append(lay)
        self.wp = w.get("bert.pooler.dense.weight", (H, H))
        self.bp = w.get("bert.pooler.dense.bias", (H,))
        self.wc = w.get("classifier.weight", (self.C, H))
        self.bc = w.get("classifier.bias", (self.C,))

    def attention(self, x, lay):
        S, H = x.shape
        q, k, v = ((x @ lay[n][0].t() + lay[n][1]).reshape(S, self.NH, self.dh)
                   for n in ("query", "key", "value"))
        scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(self.dh)
        ctx = torch.einsum("hqk,khd->qhd", softmax_rows(scores), v).reshape(S, H)
        return ctx @ lay["ao"][0].t() + lay["ao"][1]

    def forward(self, ids, type_ids=None, fff_fn=fff_forward):
        ids = torch.as_tensor(list(ids), dtype=torch.long)
        S = ids.numel()
        if S < 1 or S > self.P:
            raise ValueError(f"sequence length {S} not in [1, {self.P}]")
        if int(ids.min()) < 0 or int(ids.max()) >= self.V:
            raise ValueError("token id out of range")
        tt = (torch.zeros(S, dtype=torch.long) if type_ids is None
              else torch.as_tensor(list(type_ids), dtype=torch.long))
        if tt.numel() != S or int(tt.min()) < 0 or int(tt.max()) >= self.TV:
            raise ValueError("bad type_ids")
        h = self.word[ids] + self.pos[:S] + self.tok[tt]
        h = layer_norm(h, *self.emb_ln, self.eps)
        leaves, min_abs = [], math.inf
        for lay in self.layers:
            h = layer_norm(h + self.attention(h, lay), *lay["ln1"], self.eps)
            if self.ff == "fff":
                y, lv, m = fff_fn(h, lay["w_in"], lay["b_in"], lay["w_out"], self.D, self.T)
                if lay["b_out"] is not None:
                    y = y + lay["b_out"]
                leaves.append(lv)
                min_abs = min(min_abs, m)
            else:
                y = self.act(h @ lay["w1"][0].t() + lay["w1"][1]) @ lay["w2"][0].t() + lay["w2"][1]
            h = layer_norm(h + y, *lay["ln2"], self.eps)
        pooled = torch.tanh(self.wp @ h[0] + self.bp)
        logits = self.wc @ pooled + self.bc
        out = {"logits": logits.numpy()}
        if self.ff == "fff":
            out["leaves"] = leaves
            out["min_abs_a"] = min_abs
        return out


# ---- Tokenizer (via HF tokenizers) ----------------------------------------------------------


def load_tokenizer(folder, max_length):
    """The folder's tokenizer.json (or vocab.txt as BERT uncased), truncating to max_length."""
    from tokenizers import Tokenizer
    tj = os.path.join(folder, "tokenizer.json")
    if os.path.exists(tj):
        tok = Tokenizer.from_file(tj)
    else:
        from tokenizers import BertWordPieceTokenizer
        tok = BertWordPieceTokenizer(os.path.join(folder, "vocab.txt"), lowercase=True)
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def encode(tok, text, pair=None):
    enc = tok.encode(text, pair) if pair is not None else tok.encode(text)
    return list(enc.ids), list(enc.type_ids)


# ---- CLI ------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description="float64 reference forward pass")
    ap.add_argument("--model", required=True, help="model folder")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--ids", help="comma-separated token ids")
    g.add_argument("--text", help="text, tokenized with the folder's tokenizer")
    ap.add_argument("--pair", help="second text of a pair (with --text)")
    ap.add_argument("--type-ids", help="comma-separated token type ids (with --ids)")
    ap.add_argument("--routing", action="store_true", help="also print FFF leaves per layer")
    args = ap.parse_args()
    m = load_model(args.model)
    if args.ids is not None:
        ids = [int(x) for x in args.ids.split(",") if x.strip()]
        tids = [int(x) for x in args.type_ids.split(",")] if args.type_ids else [0] * len(ids)
    else:
        ids, tids = encode(load_tokenizer(args.model, m.P), args.text, args.pair)
    out = m.forward(ids, tids)
    res = {"ids": ids, "type_ids": tids, "logits": out["logits"].tolist()}
    if m.head == "mlm":
        res["shape"] = [len(ids), m.n_outputs]
    if "min_abs_a" in out:
        res["min_abs_a"] = out["min_abs_a"]
        if args.routing:
            res["leaves"] = [lv.tolist() for lv in out["leaves"]]
    json.dump(res, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
