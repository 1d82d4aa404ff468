#!/usr/bin/env bash
# The whole recipe of models/sst2-minilm-fff, one command, each stage resuming from its own
# checkpoints under OUT (default /work/scratch/ufbd-train; outside the repository):
#   1. fine-tune the dense teacher (all-MiniLM-L6-v2) on SST-2, 3 epochs   ~60 min on 1 core
#   2. cache the teacher's FF inputs/outputs on 24,000 SST-2 sentences      ~2 min
#   3. distil each layer's FF into 8 trees of depth 7 (hard routing)       ~40 min
#   4. fine-tune the FFF model end to end with the teacher                 ~45 min on 2 threads
#   5. export both models as F16 folders, evaluate through the C engine
#   tools/train_default_model.sh [OUT]      (pip install -r tools/requirements.txt first)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/work/scratch/ufbd-train}
export HF_HUB_OFFLINE=1
mkdir -p "$OUT"
python3 tools/train_teacher.py --out "$OUT" --epochs 3 --lr 8e-5
python3 tools/fffify.py cache --out "$OUT" --sentences 24000
python3 tools/fffify.py distill --out "$OUT" --depth 7 --trees 8 --distill-epochs 2
python3 tools/fffify.py finetune --out "$OUT" --depth 7 --trees 8 --epochs 2 --max-steps 3200 \
    --eval-every 400 --threads 2
python3 tools/export_model.py dense --out "$OUT"
python3 tools/export_model.py fff --out "$OUT" --depth 7 --trees 8
make build/ufb
python3 tools/eval.py --model "$OUT/export/sst2-minilm-dense" --with-reference
python3 tools/eval.py --model "$OUT/export/sst2-minilm-fff" --with-reference
echo "to ship: cp -r $OUT/export/sst2-minilm-fff models/ && python3 tools/eval.py --write-golden"
