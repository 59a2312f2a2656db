#!/usr/bin/env bash
# What a GPU machine runs to check training there: the FCDD paper's MVTec-AD recipe
# (--preset mvtec) for 2 epochs on the bottle category in one process, then the same run data
# parallel over all visible GPUs (torchrun, one process per GPU; with a single GPU that is a world
# of one, which trains without DDP), printing each run's wall time, training time, throughput,
# epoch losses and metrics.
#
# Without CUDA, or with --cpu, it runs the CPU fallback instead: 1 epoch at 32 px (decoded at
# 36), one pass over the training set, in one process and in 2 gloo processes. That checks that
# the commands parse and run; its numbers mean nothing.
#
#   benchmarks/gpu_check.sh [--cpu]
#   DATA=<category folder> OUT=<folder for the runs> PYTHON=<interpreter> override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
[[ -x $PYTHON ]] || PYTHON=python3
DATA=${DATA:-../shared/data/mvtec_bottle_256}
OUT=${OUT:-$(mktemp -d -t fcdd-gpu-check-XXXXXX)}
mkdir -p "$OUT"
[[ -d $DATA ]] || { echo "gpu_check: no data folder $DATA (set DATA=...)" >&2; exit 2; }

if [[ ${1:-} == --cpu ]] || ! "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    mode=cpu
    processes=2
    settings=(--device cpu --epochs 1 --image-size 32 --load-size 36 --epoch-repeats 1)
else
    mode=gpu
    processes=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')
    settings=(--device cuda --epochs 2)
fi
common=(train --preset mvtec --data "$DATA" --no-report --no-progress "${settings[@]}")
echo "gpu_check: $mode mode, runs in $OUT"
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "| CUDA GPUs:", torch.cuda.device_count(),
    *(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))'

# run NAME COMMAND...: runs a training command into $OUT/NAME and prints what it measured
run() {
    local name=$1
    shift
    local started ended
    started=$(date +%s.%N)
    "$@" --out "$OUT/$name" >"$OUT/$name.stdout"
    ended=$(date +%s.%N)
    "$PYTHON" - "$OUT/$name" "$started" "$ended" <<'EOF'
import json, sys
from pathlib import Path

out, started, ended = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
metrics = json.loads((out / "metrics.json").read_text())
losses = json.loads((out / "history.json").read_text())["loss"]
shown = {key: metrics.get(key) for key in ("image_auroc", "pixel_auroc", "pixel_aupro", "train_seconds",
                                           "train_images_per_second", "total_seconds")}
print(f"{out.name}: wall {ended - started:.1f} s, epoch losses {', '.join(f'{v:.5f}' for v in losses)}")
print("  " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()))
EOF
}

run one "$PYTHON" -m fcdd "${common[@]}"
run "ddp$processes" "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node "$processes" -m fcdd "${common[@]}"
echo "gpu_check: done ($mode mode; one process against $processes; the losses match up to float order" \
     "and, on GPUs, mixed precision)"
