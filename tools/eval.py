#!/usr/bin/env python3
"""Evaluate a classifier THROUGH THE C ENGINE (build/ufb classify), not through PyTorch.

    python3 tools/eval.py --model models/sst2-minilm-fff [--torch-preds FILE.jsonl]
    python3 tools/eval.py --model models/sst2-minilm-fff --write-golden

Runs every sentence of SST-2 dev (../shared/data/SST-2/dev.tsv) through `build/ufb classify`
and prints one JSON object: accuracy, mean FF neurons evaluated per token and layer (of how
many), and — with --torch-preds, a JSONL file of {"logits": [...]} per dev sentence in order,
as written by the PyTorch side — agreement of predicted labels and max |Δlogit|.
--with-reference computes those PyTorch predictions itself with tools/reference.py (float64,
written independently of the C engine) on the model file, and writes them to --torch-preds
when that is given.

--write-golden writes MODEL/golden.json: a few fixed sentences with the logits and labels of
the float64 PyTorch reference (tools/reference.py) on the shipped file, which `make test`
checks the C engine against.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "SST-2", "dev.tsv")
GOLDEN_SENTENCES = [
    "a gorgeous , witty , seductive movie .",
    "unflinchingly bleak and desperate",
    "it 's a charming and often affecting journey .",
    "the plot is nothing but boilerplate clichés from start to finish",
    "an utterly compelling ` who wrote it ' in which the reputation of the most famous author "
    "who ever lived comes into question .",
    "the acting is fine but the script is a mess .",
    "I loved it!",
    "It was the worst film I have seen this year.",
]


def read_dev(path):
    with open(path, encoding="utf-8") as f:
        next(f)
        rows = [line.rstrip("\n").rsplit("\t", 1) for line in f if line.strip()]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def ufb_classify(model, texts, threads=2, ufb=None, fff_weights="f32", leaves=False):
    ufb = ufb or os.path.join(ROOT, "build", "ufb")
    extra = ["--fff-weights", fff_weights] + (["--leaves"] if leaves else [])
    out = subprocess.run([ufb, "classify", "--threads", str(threads), "--model", model] + extra,
                         input="\n".join(texts) + "\n", capture_output=True, text=True,
                         check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def flatten(x):
    return [v for e in x for v in flatten(e)] if isinstance(x, list) else [x]


def evaluate(args):
    texts, labels = read_dev(args.data)
    quant = args.fff_weights != "f32"
    results = ufb_classify(args.model, texts, args.threads, fff_weights=args.fff_weights,
                           leaves=quant)
    assert len(results) == len(texts), "one result per sentence"
    with open(os.path.join(args.model, "config.json")) as f:
        id2label = json.load(f).get("id2label", {})
    label_of = {v: int(k) for k, v in id2label.items()}
    preds = [label_of[r["label"]] for r in results]
    used = [l["used"] for r in results for l in r["stats"]["layers"]]
    total = results[0]["stats"]["layers"][0]["total"]
    report = {
        "model": args.model,
        "sentences": len(texts),
        "accuracy": sum(p == y for p, y in zip(preds, labels)) / len(labels),
        "neurons_per_token_layer": sum(used) / len(used),
        "neurons_per_layer": total,
    }
    if quant:  # the same model with F32 rows, through the same engine: what the format costs
        f32 = ufb_classify(args.model, texts, args.threads, leaves=True)
        la = [flatten(r["stats"]["leaves"]) for r in results]
        lb = [flatten(r["stats"]["leaves"]) for r in f32]
        report["fff_weights"] = args.fff_weights
        report["agreement_with_f32"] = sum(
            a["label"] == b["label"] for a, b in zip(results, f32)) / len(results)
        report["max_abs_dlogit_vs_f32"] = max(
            abs(x - y) for a, b in zip(results, f32) for x, y in zip(a["logits"], b["logits"]))
        report["leaf_flips_vs_f32"] = sum(x != y for a, b in zip(la, lb) for x, y in zip(a, b))
        report["leaves_compared"] = sum(len(a) for a in la)
        # layer 0 sees identical inputs in both runs: the routing check must make it agree
        # exactly; later layers inherit the (small) differences of the layers before them
        report["leaf_flips_layer0"] = sum(
            x != y for a, b in zip(results, f32)
            for x, y in zip(flatten(a["stats"]["leaves"][0]), flatten(b["stats"]["leaves"][0])))
        report["accuracy_f32"] = sum(
            label_of[r["label"]] == y for r, y in zip(f32, labels)) / len(labels)
    if args.with_reference:
        torch_logits = reference_logits(args.model, texts)
        if args.torch_preds:
            with open(args.torch_preds, "w") as f:
                for t in torch_logits:
                    f.write(json.dumps({"logits": t}) + "\n")
    elif args.torch_preds:
        with open(args.torch_preds) as f:
            torch_logits = [json.loads(line)["logits"] for line in f if line.strip()]
    if args.with_reference or args.torch_preds:
        assert len(torch_logits) == len(results), "one PyTorch prediction per sentence"
        agree = sum(max(range(len(t)), key=t.__getitem__) == p
                    for t, p in zip(torch_logits, preds))
        report["agreement_with_torch"] = agree / len(preds)
        report["max_abs_dlogit_vs_torch"] = max(
            abs(a - b) for t, r in zip(torch_logits, results) for a, b in zip(t, r["logits"]))
    print(json.dumps(report, indent=1))


def reference_logits(model_dir, texts):
    """float64 logits of tools/reference.py for every text (the model's own template)."""
    sys.path.insert(0, HERE)
    from reference import encode, load_model, load_tokenizer
    model = load_model(model_dir)
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    tok = load_tokenizer(model_dir, cfg.get("max_position_embeddings", 512))
    out = []
    for text in texts:
        ids, type_ids = encode(tok, text)
        out.append([float(v) for v in model.forward(ids, type_ids)["logits"]])
    return out


def write_golden(args):
    sys.path.insert(0, HERE)
    from reference import encode, load_model, load_tokenizer
    model = load_model(args.model)
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    tok = load_tokenizer(args.model, cfg.get("max_position_embeddings", 512))
    cases = []
    for text in GOLDEN_SENTENCES:
        ids, type_ids = encode(tok, text)
        logits = [float(v) for v in model.forward(ids, type_ids)["logits"]]
        label = cfg["id2label"][str(max(range(len(logits)), key=logits.__getitem__))]
        cases.append({"text": text, "ids": ids, "label": label, "logits": logits})
    golden = {"generator": "tools/eval.py --write-golden (tools/reference.py, float64)",
              "cases": cases}
    path = os.path.join(args.model, "golden.json")
    with open(path, "w") as f:
        json.dump(golden, f, indent=1)
    print(f"wrote {path}: {len(cases)} sentences")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "sst2-minilm-fff"))
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch-preds", help="JSONL of PyTorch logits per dev sentence")
    ap.add_argument("--with-reference", action="store_true",
                    help="compare with tools/reference.py on every sentence")
    ap.add_argument("--write-golden", action="store_true")
    ap.add_argument("--fff-weights", default="f32", choices=["f32", "bf16", "int8"],
                    help="FFF rows in memory; bf16/int8 also report flips and agreement vs f32")
    args = ap.parse_args()
    if args.write_golden:
        write_golden(args)
    else:
        evaluate(args)


if __name__ == "__main__":
    main()
