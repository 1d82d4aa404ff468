#!/usr/bin/env python3
"""End-to-end peers of `ufb bench model`: the same dense crammedBERT folder run by ONNX Runtime
and by PyTorch eager (float32, CPU), timed on the same grid, JSON in the same shape.

    python3 bench/e2e_peers.py --model /work/scratch/ufbd-bench/dense-3072 \\
        [--seq 16,128] [--batch 1,32] [--threads 2] [--runs 5] [--min-time 1] [--json]

The model folder is the one bench/make_bench_models.py writes (family A, dense GELU FF, F32).
PyTorch: a float32 implementation of the family-A forward written from
../shared/docs/model-spec.md (tools/reference.py is the float64 specification and stays as it
is), batched (B, S) without padding, attention through F.scaled_dot_product_attention.
ONNX Runtime: that module exported once to ONNX (legacy TorchScript exporter, dynamic batch and
sequence axes, cached next to the weights as model.onnx) and run with all graph optimisations.
Threads as perf-notes.md advises: OMP_WAIT_POLICY=passive, intra-op threads = N, inter-op 1
(ONNX Runtime: intra_op_num_threads = N, inter_op_num_threads = 1, sequential execution).

Correctness first: for a couple of sequences both peers' logits are compared with the C engine's
(`build/ufb logits`); the run fails when max |dlogit| > 1e-3. Timing as in `ufb bench model`:
per grid point one warm-up call, then calls until --runs calls and --min-time seconds; p50 is the
median latency of one call (the whole batch), sequences/s = batch / p50. Engines are interleaved
per point.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time
import warnings

# Before torch is imported: OpenMP threads must not spin against each other (perf-notes.md).
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
TOLERANCE = 1e-3

# ---- The float32 family-A model -------------------------------------------------------------


def sinusoid(P, H):
    """PE[s, 2i] = sin(s w_i), PE[s, 2i+1] = cos(s w_i), w_i = exp(-2i ln(10000) / H); computed
    in float64, then rounded (as the C engine does)."""
    pos = torch.arange(P, dtype=torch.float64)[:, None]
    w = torch.exp(torch.arange(0, H, 2, dtype=torch.float64) * (-math.log(10000.0) / H))
    pe = torch.zeros(P, H, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * w)
    pe[:, 1::2] = torch.cos(pos * w)
    return pe.float()


def frozen(t):
    return torch.nn.Parameter(t.float().contiguous(), requires_grad=False)


class Layer(torch.nn.Module):
    def __init__(self, get, i, H, nh, score_scale):
        super().__init__()
        p = f"layers.{i}."
        self.H, self.nh, self.dh, self.scale = H, nh, H // nh, score_scale
        self.ln1_w, self.ln1_b = frozen(get(p + "norm1.weight")), frozen(get(p + "norm1.bias"))
        self.qkv = frozen(get(p + "attn.self_attention.query_key_value.weight"))   # (3H, H)
        self.wo = frozen(get(p + "attn.dense.weight"))                              # (H, H)
        self.ln2_w, self.ln2_b = frozen(get(p + "norm2.weight")), frozen(get(p + "norm2.bias"))
        self.w_in = frozen(get(p + "ffn.linear_in.weight"))                         # (I, H)
        self.b_in = frozen(get(p + "ffn.linear_in.bias"))                           # (I,)
        self.w_out = frozen(get(p + "ffn.linear_out.weight"))                       # (H, I)

    def forward(self, h, eps: float):
        B, S, H = h.shape[0], h.shape[1], self.H  # H constant: the ONNX export needs it static
        x = F.layer_norm(h, (H,), self.ln1_w, self.ln1_b, eps)
        # NeoX layout: head j owns columns [j*3d, j*3d+d) q, [+d, +2d) k, [+2d, +3d) v
        qkv = F.linear(x, self.qkv).view(B, S, self.nh, 3, self.dh).permute(3, 0, 2, 1, 4)
        ctx = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=self.scale)
        h = h + F.linear(ctx.transpose(1, 2).reshape(B, S, H), self.wo)
        x = F.layer_norm(h, (H,), self.ln2_w, self.ln2_b, eps)
        return h + F.linear(F.gelu(F.linear(x, self.w_in, self.b_in)), self.w_out)


class CrammedF32(torch.nn.Module):
    """Family A, dense FF, classifier head; forward(ids (B, S) int64) -> logits (B, C)."""

    def __init__(self, folder):
        super().__init__()
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            a = json.load(f)["arch"]
        if a.get("intermed_type") != "ff":
            raise SystemExit(f"{folder}: the peers run the dense model (intermed_type 'ff')")
        tensors = load_file(os.path.join(folder, "model.safetensors"))
        suffix = "embedding.word_embedding.weight"
        prefix = next(k for k in tensors if k.endswith(suffix))[: -len(suffix)]

        def get(name):
            return tensors[prefix + name]

        H, nh = a["hidden_size"], a["attention"]["num_attention_heads"]
        self.H, self.eps = H, float(a.get("norm_eps", 1e-12))
        ch = a["classification_head"]
        self.pooler = ch.get("pooler", "avg")
        if not ch.get("include_ff_layer", True) or prefix + "head.weight" not in tensors:
            raise SystemExit(f"{folder}: needs a classifier head with the pooler dense layer")
        self.word = frozen(get("embedding.word_embedding.weight"))
        self.pos_scale = float(get("embedding.pos_embedding.scale_factor").reshape(()))
        self.register_buffer("pe", sinusoid(a["embedding"]["max_seq_length"], H), persistent=False)
        self.emb_w = frozen(get("embedding.norm.weight"))
        self.emb_b = frozen(get("embedding.norm.bias"))
        layers = []
        for i in range(a["num_transformer_layers"]):
            nf = f"layers.{i}.attn.self_attention.norm_factor"
            scale = (float(get(nf).reshape(())) if prefix + nf in tensors
                     else 1.0 / math.sqrt(H // nh))
            layers.append(Layer(get, i, H, nh, scale))
        self.layers = torch.nn.ModuleList(layers)
        self.fin_w, self.fin_b = frozen(get("final_norm.weight")), frozen(get("final_norm.bias"))
        self.wp, self.bp = frozen(get("pooler.dense.weight")), frozen(get("pooler.dense.bias"))
        self.wc, self.bc = frozen(get("head.weight")), frozen(get("head.bias"))

    def forward(self, ids):
        S = ids.shape[1]
        h = F.embedding(ids, self.word) + self.pos_scale * self.pe[:S]
        h = F.layer_norm(h, (self.H,), self.emb_w, self.emb_b, self.eps)
        for layer in self.layers:
            h = layer(h, self.eps)
        h = F.layer_norm(h, (self.H,), self.fin_w, self.fin_b, self.eps)
        if self.pooler == "zero_index":
            pooled = h[:, 0]
        elif self.pooler == "avg":
            pooled = h.mean(1)
        elif self.pooler == "max":
            pooled = h.max(1).values
        else:
            pooled = torch.logsumexp(h, 1)
        return F.linear(torch.tanh(F.linear(pooled, self.wp, self.bp)), self.wc, self.bc)


# ---- ONNX -----------------------------------------------------------------------------------


def export_onnx(model, folder, path):
    """Export once; reuse while newer than the weights."""
    src = os.path.join(folder, "model.safetensors")
    if os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(src):
        return path
    t0 = time.time()
    tmp = path + ".tmp"
    # The legacy exporter needs only the onnx package (the dynamo one also needs onnxscript).
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.zeros(2, 8, dtype=torch.long),), tmp, dynamo=False,
                          input_names=["ids"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"ids": {0: "batch", 1: "seq"}, "logits": {0: "batch"}})
    os.replace(tmp, path)
    print(f"exported {path} ({os.path.getsize(path) / 1e6:.0f} MB, {time.time() - t0:.1f} s)",
          file=sys.stderr)
    return path


def ort_session(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


# ---- Correctness against the C engine --------------------------------------------------------


def ufb_logits(ufb, folder, ids):
    out = subprocess.run([ufb, "logits", "--model", folder, "--ids", ",".join(map(str, ids))],
                         check=True, capture_output=True, text=True).stdout
    return np.array(json.loads(out)["logits"], dtype=np.float64)


def check(model, sess, ufb, folder, vocab):
    """max |dlogit| of each peer (sess may be None) against the C engine, on one sequence of
    each benchmarked length."""
    rng = np.random.default_rng(7)
    worst = {"torch_eager": 0.0}
    if sess:
        worst["onnxruntime"] = 0.0
    for S in (16, 128):
        ids = rng.integers(0, vocab, S).tolist()
        ref = ufb_logits(ufb, folder, ids)
        x = np.array([ids], dtype=np.int64)
        with torch.inference_mode():
            got = {"torch_eager": model(torch.from_numpy(x))[0].double().numpy()}
        if sess:
            got["onnxruntime"] = sess.run(None, {"ids": x})[0][0].astype(np.float64)
        for name, v in got.items():
            worst[name] = max(worst[name], float(np.max(np.abs(v - ref))))
    return worst


# ---- Timing ---------------------------------------------------------------------------------


def time_calls(fn, runs, min_time):
    fn()  # warm-up
    t, start = [], time.perf_counter()
    while len(t) < 1000 and (len(t) < runs or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    t.sort()
    return {"p50_ms": t[len(t) // 2], "p90_ms": t[len(t) * 9 // 10], "min_ms": t[0], "runs": len(t)}


def point(engine, threads, seq, batch, p):
    return {"engine": engine, "threads": threads, "seq": seq, "batch": batch,
            "seqs_per_s": batch * 1e3 / p["p50_ms"],
            "tokens_per_s": batch * seq * 1e3 / p["p50_ms"], **p}


def run_grid(model, onnx_path, engines, vocab, args):
    """Every (threads, seq, batch) point, the engines interleaved; @return the result rows."""
    results = []
    if not args.json:
        print(f"  {'engine':<12} {'threads':>7} {'seq':>5} {'batch':>5} {'seqs/s':>12} "
              f"{'p50_ms':>10} {'p90_ms':>10} {'runs':>5}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        sess = ort_session(onnx_path, threads) if "onnxruntime" in engines else None
        for seq in args.seq:
            for batch in args.batch:
                rng = np.random.default_rng(seq * 1000 + batch)
                x = rng.integers(0, vocab, (batch, seq)).astype(np.int64)
                xt = torch.from_numpy(x)
                fns = {"onnxruntime": lambda: sess.run(None, {"ids": x}),
                       "torch_eager": lambda: model(xt)}
                for e in engines:
                    with torch.inference_mode():
                        t = time_calls(fns[e], args.runs, args.min_time)
                    p = point(e, threads, seq, batch, t)
                    results.append(p)
                    if not args.json:
                        print(f"  {e:<12} {threads:>7} {seq:>5} {batch:>5} "
                              f"{p['seqs_per_s']:>12.1f} {p['p50_ms']:>10.2f} "
                              f"{p['p90_ms']:>10.2f} {p['runs']:>5}", flush=True)
    return results


def int_list(s):
    v = [int(x) for x in s.split(",") if x.strip()]
    if not v or min(v) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="dense crammed model folder")
    ap.add_argument("--seq", type=int_list, default=[16, 128])
    ap.add_argument("--batch", type=int_list, default=[1, 32])
    ap.add_argument("--threads", type=int_list, default=[os.cpu_count() or 1])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--engines", default="onnxruntime,torch_eager")
    ap.add_argument("--onnx", help="ONNX file (default: MODEL/model.onnx, exported when stale)")
    ap.add_argument("--ufb", default=os.path.join(ROOT, "build", "ufb"), help="for the check")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    if set(engines) - {"onnxruntime", "torch_eager"}:
        ap.error("--engines: onnxruntime and/or torch_eager")

    torch.set_num_interop_threads(1)
    torch.set_num_threads(max(args.threads))
    model = CrammedF32(args.model).eval()
    vocab = model.word.shape[0]
    onnx_path, ort_version = None, None
    if "onnxruntime" in engines:
        import onnxruntime
        ort_version = onnxruntime.__version__
        onnx_path = export_onnx(model, args.model,
                                args.onnx or os.path.join(args.model, "model.onnx"))
    sess = ort_session(onnx_path, max(args.threads)) if onnx_path else None
    worst = check(model, sess, args.ufb, args.model, vocab)
    del sess
    for name, d in worst.items():
        print(f"check vs {args.ufb} logits: {name} max |dlogit| = {d:.2e}", file=sys.stderr)
    if max(worst.values()) > TOLERANCE:
        sys.exit(f"peer logits differ from the C engine by more than {TOLERANCE}")

    if not args.json:
        print(f"torch {torch.__version__} ({torch.get_num_interop_threads()} inter-op thread), "
              f"onnxruntime {ort_version}; OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    results = run_grid(model, onnx_path, engines, vocab, args)
    if args.json:
        desc = {"dir": args.model, "ff": "dense", "layers": len(model.layers), "hidden": model.H,
                "heads": model.layers[0].nh, "intermediate": model.layers[0].w_in.shape[0],
                "params": sum(p.numel() for p in model.parameters())}
        out = {"bench": "model",
               "config": {"seq": args.seq, "batch": args.batch, "threads": args.threads,
                          "runs": args.runs, "min_time_s": args.min_time},
               "versions": {"torch": torch.__version__, "onnxruntime": ort_version,
                            "numpy": np.__version__},
               "env": {"OMP_WAIT_POLICY": os.environ["OMP_WAIT_POLICY"], "inter_op_threads": 1},
               "check": {"reference": "ufb logits", "max_abs_dlogit": worst,
                         "tolerance": TOLERANCE},
               "models": [{"engine": e, **desc} for e in engines],
               "results": results}
        json.dump(out, sys.stdout, separators=(",", ":"))
        print()


if __name__ == "__main__":
    main()
