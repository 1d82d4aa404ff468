#!/usr/bin/env python3
"""Stage 3: export a trained SST-2 model as a ufbd family-B model folder (F16 safetensors).

  dense: the fine-tuned teacher (OUT/teacher/final, a save_pretrained folder) -> a standard
         BertForSequenceClassification folder.
  fff:   the FFF model (OUT/fff/d{D}t{T}/final.pt + config.json from tools/fffify.py finetune)
         -> the FFF variant: config.json adds "ffn_type": "fff", "fff_depth": D,
         "fff_trees": T and intermediate_size = T*(2^(D+1)-1); per layer the tensors
         bert.encoder.layer.{i}.fff.linear_in.weight (T*n, H), .fff.linear_in.bias (T*n),
         .fff.linear_out.weight (H, T*n), .fff.linear_out.bias (H) replace intermediate.dense.*
         and output.dense.* (node k of tree t is row t*n+k); output.LayerNorm stays.

Every tensor is stored as F16; tokenizer.json is copied from /work/shared/data/bert-base-uncased
after checking that its vocabulary equals the MiniLM package's vocab.txt.

    python3 tools/export_model.py dense --out /work/scratch/ufbd-train
    python3 tools/export_model.py fff --out /work/scratch/ufbd-train --depth 7 --trees 8
Writes OUT/export/sst2-minilm-{dense,fff}/ (config.json, model.safetensors, tokenizer.json).
"""
import argparse
import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from safetensors.torch import load_file, save_file

import train_teacher as tt

CONFIG_KEYS = ["architectures", "model_type", "vocab_size", "hidden_size", "num_hidden_layers",
               "num_attention_heads", "intermediate_size", "hidden_act", "hidden_dropout_prob",
               "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
               "initializer_range", "layer_norm_eps", "pad_token_id", "position_embedding_type",
               "id2label", "label2id", "problem_type"]


def check_vocab():
    """The shared tokenizer.json must carry exactly the package's vocab.txt (ids = line numbers)."""
    vocab = open(os.path.join(tt.package_model_dir(), "vocab.txt"), encoding="utf-8").read()
    words = vocab.rstrip("\n").split("\n")
    tj = json.load(open(tt.TOKENIZER, encoding="utf-8"))["model"]["vocab"]
    if tj != {w: i for i, w in enumerate(words)}:
        raise SystemExit("tokenizer.json vocabulary differs from the MiniLM package's vocab.txt")


def base_config(src_config):
    cfg = json.load(open(src_config, encoding="utf-8"))
    out = {k: cfg[k] for k in CONFIG_KEYS if k in cfg}
    out.update(architectures=["BertForSequenceClassification"], model_type="bert",
               id2label={str(k): v for k, v in tt.ID2LABEL.items()}, label2id=tt.LABEL2ID,
               problem_type="single_label_classification", position_embedding_type="absolute")
    return out


def write_folder(dst, cfg, state):
    os.makedirs(dst, exist_ok=True)
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in sorted(state.items())
               if not k.endswith("position_ids")}
    save_file(tensors, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(dst, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    shutil.copyfile(tt.TOKENIZER, os.path.join(dst, "tokenizer.json"))
    print(f"wrote {dst}: {len(tensors)} tensors, "
          f"{os.path.getsize(os.path.join(dst, 'model.safetensors')) / 1e6:.1f} MB")


def export_dense(args):
    src = os.path.join(args.out, "teacher", "final")
    write_folder(os.path.join(args.out, "export", "sst2-minilm-dense"),
                 base_config(os.path.join(src, "config.json")),
                 load_file(os.path.join(src, "model.safetensors")))


def export_fff(args):
    src = os.path.join(args.out, "fff", f"d{args.depth}t{args.trees}")
    cfg = base_config(os.path.join(src, "config.json"))
    n = 2 ** (args.depth + 1) - 1
    cfg.update(ffn_type="fff", fff_depth=args.depth, fff_trees=args.trees,
               intermediate_size=args.trees * n)
    state = torch.load(os.path.join(src, "final.pt"))
    H = cfg["hidden_size"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"bert.encoder.layer.{i}.fff."
        assert state[p + "linear_in.weight"].shape == (args.trees * n, H)
        assert state[p + "linear_out.weight"].shape == (H, args.trees * n)
        assert not any(k.startswith(f"bert.encoder.layer.{i}.intermediate") for k in state)
    write_folder(os.path.join(args.out, "export", "sst2-minilm-fff"), cfg, state)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kind", choices=["dense", "fff"])
    ap.add_argument("--out", default="/work/scratch/ufbd-train")
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--trees", type=int, default=4)
    args = ap.parse_args()
    check_vocab()
    {"dense": export_dense, "fff": export_fff}[args.kind](args)


if __name__ == "__main__":
    main()
