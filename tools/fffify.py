#!/usr/bin/env python3
"""Stage 2: turn the fine-tuned dense teacher into a fast-feedforward (FFF) SST-2 classifier.

Each layer's dense feed-forward (intermediate.dense + output.dense) is replaced by T hard-routed
trees of depth D (docs/model-spec.md, family B "FFF variant"): node k of tree t is row t*n+k of
fff.linear_in (T*n, H) / column t*n+k of fff.linear_out (H, T*n), n = 2^(D+1)-1; per tree D+1
nodes are visited, a = x.Win[k] + b[k], y += GELU_exact(a) * Wout[:, k], next k = 2k+1+(a>0).
An output bias fff.linear_out.bias (H) is kept. The routing is hard in training as in inference
(gradients reach a node only through the GELU activations of the nodes a token visits, as in
UltraFastBERT); the trees start from balanced PCA splits of the hidden states reaching each node.

Sub-commands (run in order; each resumes from its own outputs under OUT/fff/):
    cache     run the teacher over SST-2 train sentences; store per layer the FF input (attention
              output) and the dense FF output (before dropout/LayerNorm) as float16
    distill   per layer: PCA-initialise the trees, then fit them (Adam) to the dense layer on the
              cached states: MSE of LN(x + FFF(x)) against LN(x + FF(x)) (the output LayerNorm;
              raw FF outputs have one outlier dimension that would dominate a plain MSE);
              hard routing throughout
    finetune  end-to-end SST-2 fine-tuning of the FFF model, dense teacher as teacher:
              CE(labels) + KL(teacher logits, temperature) + relative MSE of every layer's
              hidden states; word embeddings frozen, AdamW, FFF parameters at a higher lr

    OUT=/work/scratch/ufbd-train; export HF_HUB_OFFLINE=1
    python3 tools/fffify.py cache --out $OUT --sentences 24000
    python3 tools/fffify.py distill --out $OUT --depth 7 --trees 8 --distill-epochs 2
    python3 tools/fffify.py finetune --out $OUT --depth 7 --trees 8 --epochs 2 --max-steps 3200 \
        --eval-every 400 --threads 2

The teacher is OUT/teacher/final (tools/train_teacher.py). Export with tools/export_model.py.
"""
import argparse
import math
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn as nn
import torch.nn.functional as F

import train_teacher as tt


# ---- The FFF layer ------------------------------------------------------------------------


class FFF(nn.Module):
    """T hard-routed trees of depth D over hidden size H (exact spec semantics)."""

    def __init__(self, H, depth, trees):
        super().__init__()
        self.H, self.D, self.T = H, depth, trees
        self.n = 2 ** (depth + 1) - 1
        self.linear_in = nn.Linear(H, trees * self.n)
        self.linear_out = nn.Linear(trees * self.n, H)
        nn.init.zeros_(self.linear_out.weight)

    def forward(self, x, return_leaves=False):
        shape = x.shape
        x = x.reshape(-1, self.H)
        offs = torch.arange(self.T, device=x.device) * self.n
        node = torch.zeros(x.shape[0], self.T, dtype=torch.long, device=x.device)
        w_out = self.linear_out.weight.t()
        y = self.linear_out.bias.expand(x.shape[0], self.H)
        for _ in range(self.D + 1):
            rows = node + offs
            a = torch.einsum("nth,nh->nt", self.linear_in.weight[rows], x)
            a = a + self.linear_in.bias[rows]
            y = y + torch.einsum("nt,nth->nh", F.gelu(a), w_out[rows])
            leaf, node = node, 2 * node + 1 + (a > 0).long()
        y = y.reshape(shape)
        return (y, leaf) if return_leaves else y


def fff_chunk(fff, out):
    """BertLayer.feed_forward_chunk for an FFF layer: LN(x + dropout(FFF(x)))."""
    def chunk(x):
        return out.LayerNorm(out.dropout(fff(x)) + x)
    return chunk


def fffify_model(model, depth, trees):
    """Replace every layer's dense FF by an FFF (in place): names bert.encoder.layer.i.fff.*."""
    H = model.config.hidden_size
    for layer in model.bert.encoder.layer:
        layer.fff = FFF(H, depth, trees)
        del layer.intermediate
        del layer.output.dense
        layer.feed_forward_chunk = fff_chunk(layer.fff, layer.output)
    n = 2 ** (depth + 1) - 1
    model.config.update({"ffn_type": "fff", "fff_depth": depth, "fff_trees": trees,
                         "intermediate_size": trees * n})
    return model


def load_teacher(out):
    from transformers import BertForSequenceClassification
    return BertForSequenceClassification.from_pretrained(os.path.join(out, "teacher", "final"))


# ---- cache ---------------------------------------------------------------------------------


@torch.no_grad()
def cmd_cache(args):
    d = os.path.join(args.out, "fff", "cache")
    if os.path.exists(os.path.join(d, "done")):
        print("cache exists"); return
    os.makedirs(d, exist_ok=True)
    model = load_teacher(args.out).eval()
    rows = tt.read_sst2("train")
    random.Random(args.seed).shuffle(rows)
    ids = tt.encode_all(tt.load_tokenizer(args.max_len), [s for s, _ in rows[:args.sentences]])
    L = len(model.bert.encoder.layer)
    xs, ys = [[] for _ in range(L)], [[] for _ in range(L)]
    cur = {}
    for i, layer in enumerate(model.bert.encoder.layer):
        layer.intermediate.register_forward_hook(
            lambda m, inp, o, i=i: cur.__setitem__(("x", i), inp[0]))
        layer.output.dense.register_forward_hook(
            lambda m, inp, o, i=i: cur.__setitem__(("y", i), o))
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    t0 = time.time()
    for b in range(0, len(order), 64):
        x, m, _ = tt.collate(ids, None, order[b:b + 64])
        model(input_ids=x, attention_mask=m)
        keep = m.reshape(-1).bool()
        for i in range(L):
            H = cur[("x", i)].shape[-1]
            xs[i].append(cur[("x", i)].reshape(-1, H)[keep].half())
            ys[i].append(cur[("y", i)].reshape(-1, H)[keep].half())
    for i in range(L):
        torch.save({"x": torch.cat(xs[i]), "y": torch.cat(ys[i])}, os.path.join(d, f"layer{i}.pt"))
    open(os.path.join(d, "done"), "w").write(f"{len(ids)} sentences, {time.time() - t0:.0f}s\n")
    print(f"cached {sum(len(t) for t in xs[0])} tokens in {time.time() - t0:.0f}s")


# ---- distill -------------------------------------------------------------------------------


@torch.no_grad()
def pca_init(fff, x, y):
    """Per node: split on the top principal direction (tree t: the t-th) of the tokens that reach
    it, at their median, scaled so that a has unit spread; output weights zero, bias = mean(y)."""
    W, b = fff.linear_in.weight, fff.linear_in.bias
    for t in range(fff.T):
        members = {0: torch.arange(x.shape[0])}
        for k in range(fff.n):
            idx = members.pop(k, None)
            r = t * fff.n + k
            if idx is None or len(idx) < 8:
                W[r] = torch.randn(fff.H) * 0.02; b[r] = 0; continue
            xs = x[idx]
            xc = xs - xs.mean(0)
            _, _, V = torch.pca_lowrank(xc, q=min(t + 2, fff.H), center=False, niter=2)
            v = V[:, t]
            p = xs @ v
            med, sd = p.median(), p.std() + 1e-6
            W[r], b[r] = v / sd, -med / sd
            if k < fff.n // 2:
                right = p > med
                members[2 * k + 1], members[2 * k + 2] = idx[~right], idx[right]
    fff.linear_out.weight.zero_()
    fff.linear_out.bias.copy_(y.mean(0))


def layer_norm_of(out, i):
    """The teacher's output LayerNorm of layer i, as a function."""
    from safetensors.torch import load_file
    sd = load_file(os.path.join(out, "teacher", "final", "model.safetensors"))
    p = f"bert.encoder.layer.{i}.output.LayerNorm."
    w, b = sd[p + "weight"], sd[p + "bias"]
    return lambda z: F.layer_norm(z, (z.shape[-1],), w, b, 1e-12)


def rel_err(fff, ln, x, y, bs=8192):
    """Relative squared error of the layer output LN(x + FFF(x)) against LN(x + FF(x))."""
    with torch.no_grad():
        z = ln(x + y)
        num = sum(((ln(x[i:i + bs] + fff(x[i:i + bs])) - z[i:i + bs]) ** 2).sum()
                  for i in range(0, len(x), bs))
        return float(num / ((z - z.mean(0)) ** 2).sum())


def distill_layer(args, i, log):
    c = torch.load(os.path.join(args.out, "fff", "cache", f"layer{i}.pt"))
    ln = layer_norm_of(args.out, i)
    x, y = c["x"].float(), c["y"].float()
    g = torch.Generator().manual_seed(args.seed + i)
    perm = torch.randperm(len(x), generator=g)
    nval = min(20000, len(x) // 10)
    xv, yv, xt, yt = x[perm[:nval]], y[perm[:nval]], x[perm[nval:]], y[perm[nval:]]
    torch.manual_seed(args.seed + i)
    fff = FFF(x.shape[1], args.depth, args.trees)
    pca_init(fff, xt[:args.init_tokens], yt)
    log(layer=i, stage="init", val_rel_err=rel_err(fff, ln, xv, yv))
    opt = torch.optim.Adam(fff.parameters(), lr=args.distill_lr)
    steps = args.distill_epochs * math.ceil(len(xt) / args.distill_bs)
    cosine = lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    for ep in range(args.distill_epochs):
        p = torch.randperm(len(xt), generator=g)
        for b in range(0, len(xt), args.distill_bs):
            idx = p[b:b + args.distill_bs]
            xb = xt[idx]
            loss = F.mse_loss(ln(xb + fff(xb)), ln(xb + yt[idx]))
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        log(layer=i, epoch=ep, train_mse=loss.item(), val_rel_err=rel_err(fff, ln, xv, yv))
    return fff


def cmd_distill(args):
    d = os.path.join(args.out, "fff", f"d{args.depth}t{args.trees}")
    os.makedirs(d, exist_ok=True)
    logf = os.path.join(d, "distill.jsonl")
    log = lambda **kw: tt.log(logf, **kw)
    for i in range(args.layers):
        path = os.path.join(d, f"distill_layer{i}.pt")
        if os.path.exists(path):
            continue
        t0 = time.time()
        fff = distill_layer(args, i, log)
        torch.save(fff.state_dict(), path)
        log(layer=i, done=True, s=round(time.time() - t0, 1))


# ---- finetune ------------------------------------------------------------------------------


def build_student(args):
    model = fffify_model(load_teacher(args.out), args.depth, args.trees)
    d = os.path.join(args.out, "fff", f"d{args.depth}t{args.trees}")
    for i, layer in enumerate(model.bert.encoder.layer):
        layer.fff.load_state_dict(torch.load(os.path.join(d, f"distill_layer{i}.pt")))
    return model


def kd_loss(args, s_out, t_out, y):
    T = args.kd_temp
    ce = F.cross_entropy(s_out.logits, y)
    kl = F.kl_div(F.log_softmax(s_out.logits / T, -1), F.softmax(t_out.logits / T, -1),
                  reduction="batchmean") * T * T
    hs = sum(F.mse_loss(a, b) / b.var()
             for a, b in zip(s_out.hidden_states[1:], t_out.hidden_states[1:]))
    return (1 - args.alpha) * ce + args.alpha * kl + args.beta * hs, (ce, kl, hs)


def cmd_finetune(args):
    tt.seed_all(args.seed)
    d = os.path.join(args.out, "fff", f"d{args.depth}t{args.trees}")
    tok = tt.load_tokenizer(args.max_len)
    tr, dv = tt.read_sst2("train"), tt.read_sst2("dev")
    tr_ids, tr_y = tt.encode_all(tok, [s for s, _ in tr]), [y for _, y in tr]
    dv_ids, dv_y = tt.encode_all(tok, [s for s, _ in dv]), [y for _, y in dv]
    teacher, model = load_teacher(args.out).eval(), build_student(args)
    rng = random.Random(args.seed + 1)
    plan = [b for _ in range(args.epochs) for b in tt.make_batches(tr_ids, tr_y, args.bs, rng)]
    plan = plan[:args.max_steps] if args.max_steps else plan
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)  # frozen: saves time
    fp = [p for n, p in model.named_parameters() if ".fff." in n]
    rp = [p for n, p in model.named_parameters() if ".fff." not in n and p.requires_grad]
    opt = torch.optim.AdamW([{"params": rp, "lr": args.lr}, {"params": fp, "lr": args.fff_lr}],
                            weight_decay=0.01, foreach=True)
    sched = tt.linear_schedule(opt, int(0.06 * len(plan)), len(plan))
    ck, logf, step = os.path.join(d, "ft_ckpt.pt"), os.path.join(d, "finetune.jsonl"), 0
    if os.path.exists(ck):
        st = torch.load(ck)
        model.load_state_dict(st["model"]); opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"]); step = st["step"]
        tt.log(logf, event="resume", step=step)
    else:
        tt.log(logf, step=0, dev_acc=tt.accuracy(tt.predict(model, dv_ids), dv_y))
    t0, run = time.time(), None
    while step < len(plan):
        model.train()
        torch.manual_seed(args.seed + step)
        x, m, y = tt.collate(tr_ids, tr_y, plan[step])
        with torch.no_grad():
            t_out = teacher(input_ids=x, attention_mask=m, output_hidden_states=True)
        s_out = model(input_ids=x, attention_mask=m, output_hidden_states=True)
        loss, parts = kd_loss(args, s_out, t_out, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step(); opt.zero_grad()
        step += 1
        v = [loss.item()] + [p.item() for p in parts]
        run = v if run is None else [0.98 * r + 0.02 * a for r, a in zip(run, v)]
        if step % 50 == 0:
            tt.log(logf, step=step, of=len(plan), loss=[round(r, 4) for r in run],
                   s=round(time.time() - t0, 1))
        if step % args.ckpt_every == 0 or step == len(plan):
            tt.save_ckpt(ck, model, opt, sched, step)
        if step % args.eval_every == 0 or step == len(plan):
            tt.log(logf, step=step, dev_acc=tt.accuracy(tt.predict(model, dv_ids), dv_y))
    torch.save(model.state_dict(), os.path.join(d, "final.pt"))
    model.config.to_json_file(os.path.join(d, "config.json"))
    tt.log(logf, event="final", dev_acc=tt.accuracy(tt.predict(model, dv_ids), dv_y), steps=step)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd", choices=["cache", "distill", "finetune"])
    ap.add_argument("--out", default="/work/scratch/ufbd-train")
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--trees", type=int, default=4)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--sentences", type=int, default=24000, help="cache: train sentences")
    ap.add_argument("--init-tokens", type=int, default=200000, help="distill: tokens for PCA init")
    ap.add_argument("--distill-epochs", type=int, default=2)
    ap.add_argument("--distill-bs", type=int, default=512)
    ap.add_argument("--distill-lr", type=float, default=2e-3)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5, help="finetune: non-FFF parameters")
    ap.add_argument("--fff-lr", type=float, default=3e-4, help="finetune: FFF parameters")
    ap.add_argument("--alpha", type=float, default=0.7, help="weight of the KD loss vs labels")
    ap.add_argument("--beta", type=float, default=1.0, help="weight of the hidden-state MSE")
    ap.add_argument("--kd-temp", type=float, default=2.0)
    ap.add_argument("--ckpt-every", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    {"cache": cmd_cache, "distill": cmd_distill, "finetune": cmd_finetune}[args.cmd](args)


if __name__ == "__main__":
    main()
