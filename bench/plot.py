#!/usr/bin/env python3
"""Plots and a Markdown summary from the JSON of the benchmarks.

    python3 bench/plot.py [--out bench/results] FILE.json ...

Each FILE is recognised by its content:
  * `ufb bench ffn --json`     -> ffn_speedup.png (fastest FFF over fastest dense, per batch size
                                  and thread count, the paper's 78x beside it) and
                                  ffn_us_per_token_layer.png (every variant, µs per token-layer)
  * `ufb bench model --json` and `bench/e2e_peers.py --json` (any number; merged by
    engine/threads/seq/batch, a later file wins) -> e2e_seqs_per_s.png (sequences/s per engine
                                  at each seq x batch point) and e2e_phase_breakdown.png (where
                                  our engine's time goes per layer: projections, attention, FF...)
  * `ufb bench triad --json`   -> the memory ceiling: the summary gives the weight bytes/s each
                                  CMM variant streams as a share of the measured read bandwidth
                                  (cmm_bandwidth.png)
summary.md (the tables behind the plots) is written next to the PNGs and printed. Without
matplotlib only the summary is written.
"""
import argparse
import json
import os
import sys

PAPER_FFN_SPEEDUP = 78.0  # Belcak & Wattenhofer 2023, CPU (MKL) FFF vs optimized dense FF
ENGINE_ORDER = ["ufb_fff", "ufb_dense", "onnxruntime", "torch_eager"]
HERE = os.path.dirname(os.path.abspath(__file__))


def load(paths):
    data = {"ffn": None, "triad": None, "model": {}, "model_meta": []}
    for p in paths:
        with open(p, encoding="utf-8") as f:
            j = json.load(f)
        if "speedup_vs_best_dense" in j:
            data["ffn"] = j
        elif j.get("bench") == "triad":
            data["triad"] = j
        elif j.get("bench") == "model":
            for r in j["results"]:
                data["model"][(r["engine"], r["threads"], r["seq"], r["batch"])] = r
            data["model_meta"].append(j)
        else:
            sys.exit(f"{p}: not the JSON of ufb bench ffn/model/triad or e2e_peers.py")
    return data


# ---- Summary tables -------------------------------------------------------------------------


def row_bytes(cfg, variant):
    """Weight bytes one token reads per layer: T*(D+1) nodes, Win and Wout rows of hp elements
    (4 bytes each, 2 for bf16, 1 for int8 variants, known by name; per-row scales ignored)."""
    hp = (cfg["hidden"] + 15) // 16 * 16
    width = 1 if "int8" in variant else 2 if ("bf16" in variant or "f16" in variant) else 4
    return cfg["trees"] * (cfg["depth"] + 1) * 2 * hp * width


def ffn_tables(ffn, triad):
    cfg, out = ffn["config"], []
    res = ffn["results"]
    threads = sorted({r["threads"] for r in res})
    batches = sorted({r["batch"] for r in res})
    variants = list(dict.fromkeys(r["variant"] for r in res))
    us = {(r["variant"], r["threads"], r["batch"]): r["us_per_token_layer"] for r in res}
    out.append(f"### FF layer: H={cfg['hidden']}, {cfg['trees']} tree(s) of depth {cfg['depth']}, "
               f"{cfg['layers']} layers; OpenBLAS core {ffn['openblas']['core']}\n")
    for t in threads:
        out.append(f"µs per token and layer, {t} thread(s):\n")
        out.append("| variant | " + " | ".join(f"B={b}" for b in batches) + " |")
        out.append("|---|" + "---|" * len(batches))
        for v in variants:
            cells = [f"{us[(v, t, b)]:.3f}" if (v, t, b) in us else "" for b in batches]
            out.append(f"| {v} | " + " | ".join(cells) + " |")
        sp = ffn.get("by_threads", {}).get(str(t), {})
        sp_blas = ffn.get("by_threads_openblas", {}).get(str(t), {})
        out.append("| **FFF speedup** (vs best dense) | " + " | ".join(
            f"**{sp[str(b)]:.1f}x**" if str(b) in sp else "" for b in batches) + " |")
        if sp_blas:
            out.append("| FFF speedup vs best OpenBLAS dense | " + " | ".join(
                f"{sp_blas[str(b)]:.1f}x" if str(b) in sp_blas else "" for b in batches) + " |")
        out.append("")
    out.append(f"(paper, CPU: {PAPER_FFN_SPEEDUP:.0f}x)\n")
    if triad:
        read = max(r["best_gbs"] for r in triad["results"] if r["kernel"] == "read_sum")
        tmax = max(threads)
        out.append(f"Weight bytes streamed by the FFF variants, {tmax} thread(s), against the "
                   f"best read bandwidth measured ({read:.1f} GB/s; shared top-of-tree rows are "
                   "served from cache at larger batches, so the share can exceed 100%):\n")
        out.append("| variant | " + " | ".join(f"B={b}" for b in batches) + " |")
        out.append("|---|" + "---|" * len(batches))
        for v in variants:
            if v.startswith("dense"):
                continue
            cells = []
            for b in batches:
                if (v, tmax, b) not in us:
                    cells.append("")
                    continue
                gbs = row_bytes(cfg, v) / us[(v, tmax, b)] * 1e-3
                cells.append(f"{gbs:.1f} GB/s ({100 * gbs / read:.0f}%)")
            out.append(f"| {v} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def triad_table(triad):
    out = [f"### Memory bandwidth (3 x {triad['config']['array_mib']} MiB, best / median GB/s "
           f"of {triad['config']['runs']})\n", "| kernel | threads | best | median |",
           "|---|---|---|---|"]
    for r in triad["results"]:
        out.append(f"| {r['kernel']} | {r['threads']} | {r['best_gbs']:.1f} | "
                   f"{r['median_gbs']:.1f} |")
    peak = triad.get("fma_peak_gflops_1core")
    if peak:
        out += ["", f"FMA peak of one core (fp32): AVX-512 {peak['avx512']:.1f} GFLOP/s, "
                    f"AVX2 {peak['avx2']:.1f} GFLOP/s."]
    return out + [""]


def engines_of(model):
    present = {k[0] for k in model}
    return [e for e in ENGINE_ORDER if e in present] + sorted(present - set(ENGINE_ORDER))


def model_table(model):
    out = ["### End to end (sequences/s, p50 ms per batch)\n"]
    engines = engines_of(model)
    grid = sorted({k[1:] for k in model})
    out.append("| threads | seq | batch | " + " | ".join(engines) + " | ufb_fff vs best other |")
    out.append("|---|---|---|" + "---|" * (len(engines) + 1))
    for t, s, b in grid:
        cells = []
        for e in engines:
            r = model.get((e, t, s, b))
            cells.append(f"{r['seqs_per_s']:.1f} ({r['p50_ms']:.1f} ms)" if r else "")
        fff = model.get(("ufb_fff", t, s, b))
        others = [model[(e, t, s, b)]["seqs_per_s"] for e in engines
                  if e != "ufb_fff" and (e, t, s, b) in model]
        ratio = f"{fff['seqs_per_s'] / max(others):.2f}x" if fff and others else ""
        out.append(f"| {t} | {s} | {b} | " + " | ".join(cells) + f" | {ratio} |")
    return out + [""]


PHASES = ["embed", "qkv", "attention", "attn_out", "ff", "norm", "head"]


def phase_points(model):
    """(label, phases) of our engine's points that carry a per-phase breakdown."""
    return [(f"{k[0]} t{k[1]} s{k[2]} b{k[3]}", r["phase_us_per_token_layer"])
            for k, r in sorted(model.items()) if "phase_us_per_token_layer" in r]


def phase_table(model):
    pts = phase_points(model)
    if not pts:
        return []
    out = ["### Where our engine's time goes (µs per token and layer, mean over the timed runs)\n",
           "| engine, threads, seq, batch | " + " | ".join(PHASES) + " | total |",
           "|---|" + "---|" * (len(PHASES) + 1)]
    for label, ph in pts:
        out.append(f"| {label} | " + " | ".join(f"{ph.get(p, 0):.2f}" for p in PHASES)
                   + f" | {sum(ph.values()):.2f} |")
    return out + [""]


# ---- Plots ----------------------------------------------------------------------------------


def plot_phases(plt, model, outdir):
    pts = phase_points(model)
    if not pts:
        return
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(pts) + 1.5))
    left = [0.0] * len(pts)
    for p in PHASES:
        vals = [ph.get(p, 0) for _, ph in pts]
        ax.barh(range(len(pts)), vals, left=left, label=p)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_yticks(range(len(pts)), [label for label, _ in pts], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="µs per token and layer", title="per-layer time breakdown of our engine")
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "e2e_phase_breakdown.png"), dpi=120)
    plt.close(fig)


def plot_ffn(plt, ffn, outdir):
    res = ffn["results"]
    threads = sorted({r["threads"] for r in res})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for t in threads:
        sp = ffn["by_threads"][str(t)]
        bs = sorted(int(b) for b in sp)
        ax.plot(bs, [sp[str(b)] for b in bs], "o-", label=f"fastest FFF / fastest dense, {t} thr")
        blas = ffn.get("by_threads_openblas", {}).get(str(t))
        if blas:
            ax.plot(bs, [blas[str(b)] for b in bs], "^:", alpha=0.6,
                    label=f"fastest FFF / fastest OpenBLAS dense, {t} thr")
    f32 = ffn.get("speedup_f32_vs_best_dense")
    if f32 and f32 != ffn["speedup_vs_best_dense"]:
        bs = sorted(int(b) for b in f32)
        ax.plot(bs, [f32[str(b)] for b in bs], "s--", label=f"F32 weights, {ffn['threads']} thr")
    ax.axhline(PAPER_FFN_SPEEDUP, color="gray", ls=":", label="paper (CPU, MKL): 78x")
    ax.set(xscale="log", yscale="log", xlabel="batch (tokens)", ylabel="speedup",
           title=f"FF layer, {ffn['config']['layers']} layers, FFF vs best dense")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "ffn_speedup.png"), dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(threads), figsize=(5 * len(threads) + 2.5, 4.5), squeeze=False)
    variants = list(dict.fromkeys(r["variant"] for r in res))
    for ax, t in zip(axes[0], threads):
        for i, v in enumerate(variants):
            pts = sorted((r["batch"], r["us_per_token_layer"]) for r in res
                         if r["variant"] == v and r["threads"] == t)
            if pts:
                ax.plot(*zip(*pts), "o-" if v.startswith("dense") else "s--", label=v,
                        color=plt.get_cmap("tab20")(i % 20))
        ax.set(xscale="log", yscale="log", xlabel="batch (tokens)",
               ylabel="µs per token and layer", title=f"{t} thread(s)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "ffn_us_per_token_layer.png"), dpi=120)
    plt.close(fig)


def plot_bandwidth(plt, ffn, triad, outdir):
    cfg, res = ffn["config"], ffn["results"]
    tmax = max(r["threads"] for r in res)
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    for i, v in enumerate(dict.fromkeys(r["variant"] for r in res)):
        pts = sorted((r["batch"], row_bytes(cfg, v) / r["us_per_token_layer"] * 1e-3) for r in res
                     if r["variant"] == v and r["threads"] == tmax)
        if not v.startswith("dense") and pts:
            ax.plot(*zip(*pts), "s--", label=v, color=plt.get_cmap("tab20")(i % 20))
    for r in triad["results"]:
        if r["threads"] == tmax:
            ax.axhline(r["best_gbs"], ls=":", color="gray" if r["kernel"] == "triad" else "k",
                       label=f"{r['kernel']} {r['threads']} thr: {r['best_gbs']:.0f} GB/s")
    ax.set(xscale="log", xlabel="batch (tokens)", ylabel="weight GB/s",
           title=f"FFF weight bytes streamed vs memory bandwidth, {tmax} thread(s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "cmm_bandwidth.png"), dpi=120)
    plt.close(fig)


def plot_model(plt, model, outdir):
    engines = engines_of(model)
    threads = sorted({k[1] for k in model})
    fig, axes = plt.subplots(1, len(threads), figsize=(7 * len(threads), 4.5), squeeze=False)
    for ax, t in zip(axes[0], threads):
        grid = sorted({(k[2], k[3]) for k in model if k[1] == t})
        width = 0.8 / len(engines)
        for i, e in enumerate(engines):
            xs = [g + (i - (len(engines) - 1) / 2) * width for g in range(len(grid))]
            ys = [model[(e, t, s, b)]["seqs_per_s"] if (e, t, s, b) in model else 0
                  for s, b in grid]
            bars = ax.bar(xs, ys, width, label=e)
            ax.bar_label(bars, fmt="%.3g", fontsize=6)
        ax.set_xticks(range(len(grid)), [f"seq {s}\nbatch {b}" for s, b in grid])
        ax.set(yscale="log", ylabel="sequences / s", title=f"end to end, {t} thread(s)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "e2e_seqs_per_s.png"), dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="JSON of ufb bench ffn/model/triad, e2e_peers.py")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="folder for the PNGs")
    args = ap.parse_args()
    data = load(args.files)
    os.makedirs(args.out, exist_ok=True)
    lines = []
    if data["triad"]:
        lines += triad_table(data["triad"])
    if data["ffn"]:
        lines += ffn_tables(data["ffn"], data["triad"])
    if data["model"]:
        lines += model_table(data["model"]) + phase_table(data["model"])
    summary = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(summary)
    print(summary)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot.py: matplotlib is not installed (pip install -r bench/requirements.txt); "
              "summary only", file=sys.stderr)
        return
    if data["ffn"]:
        plot_ffn(plt, data["ffn"], args.out)
        if data["triad"]:
            plot_bandwidth(plt, data["ffn"], data["triad"], args.out)
    if data["model"]:
        plot_model(plt, data["model"], args.out)
        plot_phases(plt, data["model"], args.out)
    print(f"plots in {args.out}:", " ".join(sorted(f for f in os.listdir(args.out)
                                                   if f.endswith(".png"))))


if __name__ == "__main__":
    main()
