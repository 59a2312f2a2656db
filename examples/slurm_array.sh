#!/usr/bin/env bash
#SBATCH --job-name=fcdd-grid
#SBATCH --array=1-4
#SBATCH --cpus-per-task=4
#SBATCH --gres=gpu:1
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --output=fcdd-grid-%A_%a.out
# `fcdd run` over a SLURM job array: array task K of N trains the class x seed jobs whose index
# mod N is K-1 into one shared --out folder (a requeued task resumes them); afterwards one job
# writes the table.  Submit both, the table waiting for the whole array:
#   bash examples/slurm_array.sh submit
set -euo pipefail
FCDD="${FCDD:-fcdd}"
OPTIONS=(--preset mvtec --data "${DATA:-data/mvtec}" --seeds 3 --out "${OUT:-runs/mvtec-grid}")

case "${1:-shard}" in
  submit)
    array=$(sbatch --parsable "$0")
    sbatch --dependency="afterok:${array%%;*}" --job-name=fcdd-table --output=fcdd-table-%j.out \
      --wrap "bash $0 aggregate" ;;
  aggregate)
    "$FCDD" run "${OPTIONS[@]}" --aggregate ;;
  shard)
    # K counted from 1 whatever the --array range starts with
    "$FCDD" run "${OPTIONS[@]}" --shard "$((SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN + 1))/$SLURM_ARRAY_TASK_COUNT" ;;
esac
