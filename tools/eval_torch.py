#!/usr/bin/env python3
"""Stage 4: evaluate an exported SST-2 model folder in PyTorch (float32, hard FFF routing).

Loads DIR/config.json + DIR/model.safetensors (F16 widened to F32: the exported file, not the
training copy) into BertForSequenceClassification, replacing the dense FF by the FFF module of
tools/fffify.py when config.json says "ffn_type": "fff". Tokenizes SST-2 dev with DIR's
tokenizer.json (no truncation below max_position_embeddings, as the C engine does), runs each
sentence at its own length, and writes
    DIR/dev_predictions.jsonl   one {"idx", "sentence", "label", "pred", "logits"} per dev row
    DIR/eval.json               accuracy, neurons used per layer, and the max |delta logit|
                                against tools/reference.py (float64) on --ref-sentences rows
                                (FFF: also the smallest |a| met on a routing decision there)

    python3 tools/eval_torch.py /work/scratch/ufbd-train/export/sst2-minilm-fff
"""
import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

import fffify
import train_teacher as tt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def load_exported(folder):
    from transformers import BertConfig, BertForSequenceClassification
    cfg_d = json.load(open(os.path.join(folder, "config.json"), encoding="utf-8"))
    cfg = BertConfig(**{k: v for k, v in cfg_d.items() if k not in ("ffn_type",)})
    model = BertForSequenceClassification(cfg)
    if cfg_d.get("ffn_type") == "fff":
        fffify.fffify_model(model, cfg_d["fff_depth"], cfg_d["fff_trees"])
    state = {k: v.float() for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise SystemExit(f"state mismatch: missing {missing}, unexpected {unexpected}")
    return model.eval(), cfg_d


@torch.no_grad()
def run_dev(model, folder, max_len):
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_len)
    rows = tt.read_sst2("dev")
    ids = [e.ids for e in tok.encode_batch([s for s, _ in rows])]
    logits = torch.stack([model(input_ids=torch.tensor([i])).logits[0] for i in ids])
    return rows, ids, logits


def reference_check(folder, ids, logits, n):
    """max |delta logit| between this float32 eval and tools/reference.py's float64 forward."""
    import reference
    ref = reference.load_model(folder)
    worst, min_a = 0.0, float("inf")
    for i in range(0, len(ids), max(1, len(ids) // n))[:n]:
        out = ref.forward(ids[i], [0] * len(ids[i]))
        worst = max(worst, float((torch.tensor(out["logits"]) - logits[i].double()).abs().max()))
        min_a = min(min_a, out.get("min_abs_a", float("inf")))
    return worst, min_a


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--ref-sentences", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, cfg = load_exported(args.folder)
    rows, ids, logits = run_dev(model, args.folder, cfg["max_position_embeddings"])
    preds = logits.argmax(-1)
    with open(os.path.join(args.folder, "dev_predictions.jsonl"), "w", encoding="utf-8") as f:
        for i, ((s, y), p, lg) in enumerate(zip(rows, preds.tolist(), logits.tolist())):
            f.write(json.dumps({"idx": i, "sentence": s, "label": y, "pred": p,
                                "logits": lg}) + "\n")
    res = {"dev_acc": float((preds == torch.tensor([y for _, y in rows])).float().mean()),
           "n": len(rows)}
    if cfg.get("ffn_type") == "fff":
        D, T = cfg["fff_depth"], cfg["fff_trees"]
        res.update(neurons_used_per_layer=T * (D + 1), neurons_per_layer=T * (2 ** (D + 1) - 1))
    else:
        res.update(neurons_used_per_layer=cfg["intermediate_size"],
                   neurons_per_layer=cfg["intermediate_size"])
    res["ref_max_abs_dlogit"], min_a = reference_check(args.folder, ids, logits,
                                                       args.ref_sentences)
    if cfg.get("ffn_type") == "fff":
        res["ref_min_abs_a"] = min_a
    res["ref_sentences"] = args.ref_sentences
    with open(os.path.join(args.folder, "eval.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
