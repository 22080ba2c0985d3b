#!/usr/bin/env bash
# One GPU run of estimator v2, end to end: install, warm-started training to a wall-clock
# budget, the quick evaluation, and an export ready to ship.
#
#   bash experiments/gpu_run.sh [OUTPUT_DIR] [BUDGET_SECONDS] [INIT_FROM]
#
# OUTPUT_DIR (default ./outputs/gpu_run) receives the workdir, the evaluation and the export;
# BUDGET_SECONDS (default 480) bounds the training, compilation included; INIT_FROM (default
# "pretrained") is the model to continue from. Wheels in ./.whl (for machines without a
# package index) are installed without dependencies first; JAX with CUDA must be installed.
# Replacing the shipped model is a separate, deliberate step (WORKSPACE.md, "Estimator v2":
# only when no GMM cell is more than 5% worse and out-of-family is better):
#   python -m experiments.export_pretrained --workdir=OUTPUT_DIR/workdir
set -euo pipefail
out="${1:-./outputs/gpu_run}"
budget="${2:-480}"
init_from="${3:-pretrained}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install --quiet --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  python3 -m pip install --quiet -e .
fi
python3 -c "import jax; print('devices:', jax.devices())"
start=$(date +%s)
python3 -m experiments.train --config=experiments/configs/v2_gpu.py --workdir="$out/workdir" \
    --config.time_budget_s="$budget" --config.init_from="$init_from" 2>&1 | tee "$out/train.log"
echo "training wall time: $(( $(date +%s) - start )) s" | tee -a "$out/train.log"
python3 -m experiments.evaluate --workdir="$out/workdir" --output_dir="$out/evaluate" 2>&1 \
    | tee "$out/evaluate.log"
echo "done: $out (workdir, evaluate/results.md, train.log)"
