#!/usr/bin/env python3
"""Write random-weight model folders of the full UltraFastBERT-1x11 shape for `ufb bench model`.

    python3 bench/make_bench_models.py [--out /work/scratch/ufbd-bench] [--force]

Two family-A (crammedBERT) folders, F32, fixed seeds, in the layout of
../shared/docs/model-spec.md and of tools/make_fixtures.py (whose small fixtures the C loader
and tools/reference.py already accept):

    OUT/fff-1x11     16 layers, H=768, 12 heads, one FFF tree of depth 11 (4095 nodes, 12 used
                     per token), vocab 32768, 128 positions: UltraFastBERT-1x11 (~654 MB)
    OUT/dense-3072   the same with a dense GELU FF of width 3072: crammedBERT (~553 MB)

Both carry a classifier head (pooler "zero_index", as the paper's GLUE fine-tunes; Wp 1024 x H;
2 labels), so a forward pass returns 2 logits per sequence rather than 32768 per token, and the
per-layer `norm_factor` scalars the published checkpoint stores. No tokenizer: the benchmarks
feed token ids. Weights are drawn so activations stay O(1) through 16 layers (pre-LN keeps the
sublayer inputs bounded; the residual grows like sqrt(layers)). A folder is rewritten only when
its stamp (bench_model.json) differs from what this script would write, or with --force.
"""
import argparse
import json
import math
import os
import shutil
import time

import torch
from safetensors.torch import save_file

VERSION = 1  # bump when the weights or layout change
SHAPE = dict(L=16, H=768, NH=12, V=32768, P=128, HD=1024, C=2)
MODELS = {
    "fff-1x11": dict(ff="fff", D=11, T=1, seed=1111),
    "dense-3072": dict(ff="ff", I=3072, seed=3072),
}


def config(spec):
    s = SHAPE
    arch = {
        "num_transformer_layers": s["L"], "hidden_size": s["H"],
        "intermed_type": spec["ff"],
        "intermed_size": spec["T"] if spec["ff"] == "fff" else spec["I"],
        "nonlin": "GELU", "norm": "LayerNorm", "norm_eps": 1e-12, "norm_scheme": "pre",
        "final_norm": True, "use_bias": False, "tie_weights": True,
        "embedding": {"vocab_size": s["V"], "max_seq_length": s["P"],
                      "pos_embedding": "scaled-sinusoidal", "normalization": True,
                      "pad_token_id": 0},
        "attention": {"num_attention_heads": s["NH"], "qkv_bias": False},
        "classification_head": {"pooler": "zero_index", "head_dim": s["HD"],
                                "include_ff_layer": True, "nonlin": "Tanh"},
        "num_labels": s["C"],
    }
    if spec["ff"] == "fff":
        arch["intermed_depth"] = spec["D"]
    return {"model_type": "crammedBERT",
            "architectures": ["ScriptableLMForSequenceClassification"],
            "id2label": {"0": "negative", "1": "positive"}, "arch": arch}


def tensors(spec):
    """name -> float32 tensor; same names and scales as tools/make_fixtures.py crammed_tensors."""
    s = SHAPE
    L, H, V, HD, C = s["L"], s["H"], s["V"], s["HD"], s["C"]
    g = torch.Generator().manual_seed(spec["seed"])

    def normal(shape, std, mean=0.0):
        return torch.randn(shape, generator=g, dtype=torch.float32) * std + mean

    def ln():
        return normal((H,), 0.1, 1.0), normal((H,), 0.1)

    if spec["ff"] == "fff":
        width, used = spec["T"] * (2 ** (spec["D"] + 1) - 1), spec["T"] * (spec["D"] + 1)
    else:
        width = used = spec["I"]
    t = {"embedding.word_embedding.weight": normal((V, H), 1.0),
         "embedding.pos_embedding.scale_factor": torch.tensor([1.0 / math.sqrt(H)])}
    t["embedding.norm.weight"], t["embedding.norm.bias"] = ln()
    for i in range(L):
        p = f"layers.{i}."
        t[p + "norm1.weight"], t[p + "norm1.bias"] = ln()
        t[p + "attn.self_attention.query_key_value.weight"] = normal((3 * H, H), 1.4 / math.sqrt(H))
        t[p + "attn.self_attention.norm_factor"] = torch.tensor(1.0 / math.sqrt(H // s["NH"]))
        t[p + "attn.dense.weight"] = normal((H, H), 0.8 / math.sqrt(H))
        t[p + "norm2.weight"], t[p + "norm2.bias"] = ln()
        t[p + "ffn.linear_in.weight"] = normal((width, H), 1.3 / math.sqrt(H))
        t[p + "ffn.linear_in.bias"] = normal((width,), 0.5)
        t[p + "ffn.linear_out.weight"] = normal((H, width), 1.0 / math.sqrt(used))
    t["final_norm.weight"], t["final_norm.bias"] = ln()
    t["pooler.dense.weight"] = normal((HD, H), 1.5 / math.sqrt(H))
    t["pooler.dense.bias"] = normal((HD,), 0.3)
    t["head.weight"] = normal((C, HD), 2.0 / math.sqrt(HD))
    t["head.bias"] = normal((C,), 0.3)
    return {k: v.contiguous() for k, v in t.items()}


def stamp(name, spec):
    return {"generator": "bench/make_bench_models.py", "version": VERSION, "name": name,
            "shape": SHAPE, "spec": spec, "dtype": "F32"}


def write_model(out, name, spec, force):
    folder = os.path.join(out, name)
    stamp_path = os.path.join(folder, "bench_model.json")
    want = stamp(name, spec)
    if not force and os.path.exists(stamp_path):
        with open(stamp_path, encoding="utf-8") as f:
            if json.load(f) == want:
                print(f"{folder}: up to date")
                return folder
    t0 = time.time()
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config(spec), f, indent=2)
        f.write("\n")
    tens = tensors(spec)
    save_file(tens, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    with open(stamp_path, "w", encoding="utf-8") as f:  # written last: marks a complete folder
        json.dump(want, f, indent=2)
        f.write("\n")
    size = os.path.getsize(os.path.join(folder, "model.safetensors"))
    n = sum(v.numel() for v in tens.values())
    print(f"{folder}: {n / 1e6:.1f} M parameters, {size / 1e6:.0f} MB, {time.time() - t0:.1f} s")
    return folder


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/work/scratch/ufbd-bench",
                    help="output folder (not in the repository; ~1.2 GB)")
    ap.add_argument("--only", nargs="*", choices=sorted(MODELS), help="models (default: all)")
    ap.add_argument("--force", action="store_true", help="rewrite even when up to date")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name in args.only or MODELS:
        write_model(args.out, name, MODELS[name], args.force)


if __name__ == "__main__":
    main()
