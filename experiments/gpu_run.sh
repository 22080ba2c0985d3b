#!/usr/bin/env bash
# One GPU window of the next network (the equivariant one; set
# KDEFORMER_GPU_CONFIG=experiments/configs/v2_gpu.py for estimator v2), end to end and chainable: install, warm-started training to
# a wall-clock budget, a parameters-only export of the candidate, the paired quick evaluation
# (candidate and shipped model on the same problems) and their comparison.
#
#   bash experiments/gpu_run.sh [--smoke] [OUTPUT_DIR] [BUDGET_SECONDS] [INIT_FROM]
#
# OUTPUT_DIR (default ./outputs/gpu_run) receives only what is worth copying back, a few
# small files: candidate/ (parameters-only export: config.json and one params checkpoint),
# metrics.jsonl, config.json, train.log, evaluate_{candidate,shipped}/results.{json,md},
# compare/results.md (the shipping verdict). The full workdir (optimiser state included)
# stays beside it in OUTPUT_DIR.workdir. BUDGET_SECONDS (default 480) bounds the training,
# compilation included. INIT_FROM is the model this window continues from:
# "pretrained:equivariant" (the default: the shipped equivariant model), "pretrained" (the
# general model, with v2_gpu.py), "pretrained:gmm" (the specialist) or the candidate/
# folder of an earlier window (parameters only; the optimiser starts fresh).
# --smoke: the whole script on a CPU in under a minute (tiny config; an evaluation of one
# benchmark cell and one out-of-family row; no install).
# Compiled programs are cached in $KDEFORMER_COMPILATION_CACHE (default
# ~/.cache/kdeformer/xla), so a second window on the same machine skips most compilation.
# Replacing the shipped model is a separate, deliberate step (docs/log/, "Estimator v2"):
#   python -m experiments.export_pretrained --workdir=OUTPUT_DIR.workdir
set -euo pipefail
smoke=0
if [[ "${1:-}" == "--smoke" ]]; then smoke=1; shift; fi
out="${1:-./outputs/gpu_run}"
budget="${2:-480}"
cache="${KDEFORMER_COMPILATION_CACHE:-$HOME/.cache/kdeformer/xla}"
if (( smoke )); then
  init_from="${3:-}"  # The tiny network has no shipped model to continue from.
  train_config=experiments/configs/tiny.py
  eval_config=experiments/configs/evaluate_tiny.py
  extra=(--config.num_train_steps=4 --config.steps_per_dispatch=2 "--config.buckets=(16,)"
         "--config.batch_sizes=(4,)"
         --config.checkpoint_every_seconds=60 --config.data.fast_sampling=True)
  eval_extra=("--config.benchmark.dims=(2,)" "--config.benchmark.sample_sizes=(64,)"
              "--config.out_of_family.rows=('laplace_d2',)" --config.equivariance.num_trials=0)
else
  train_config="${KDEFORMER_GPU_CONFIG:-experiments/configs/equivariant_gpu.py}"
  if [[ "$train_config" == *equivariant* ]]; then shipped=equivariant; else shipped=general; fi
  init_from="${3:-pretrained:$shipped}"
  eval_config=experiments/configs/evaluate_quick.py
  extra=(--config.time_budget_s="$budget")
  eval_extra=()
fi
# No figures: they would not be copied back (seconds of the window each).
eval_extra+=(--config.figures.enabled=False)
workdir="$out.workdir"
mkdir -p "$out"
if (( ! smoke )); then
  if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install --quiet --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  else
    python3 -m pip install --quiet -e .
  fi
fi
python3 -c "import jax; print('JAX', jax.__version__, 'devices:', jax.devices())" \
    | tee "$out/train.log"
start=$(date +%s)
python3 -m experiments.train --config="$train_config" --workdir="$workdir" \
    --config.init_from="$init_from" --config.compilation_cache_dir="$cache" "${extra[@]}" \
    2>&1 | tee -a "$out/train.log"
echo "training wall time: $(( $(date +%s) - start )) s" | tee -a "$out/train.log"
cp "$workdir/metrics.jsonl" "$workdir/config.json" "$out/"
# Parameters only (no optimiser state): what the next window starts from and what ships.
python3 - "$workdir" "$out/candidate" <<'EOF'
import sys
import jax
from kdeformer import checkpoints
from kdeformer import networks
workdir, destination = sys.argv[1:]
config = checkpoints.load_config(workdir)
abstract = jax.eval_shape(lambda: networks.init_params(config, jax.random.key(0)))
step = checkpoints.export_params(workdir, destination, abstract)
print(f"exported step {step} of {workdir} to {destination}")
EOF
# The paired evaluation: the same config and seed, so the same problems for both models.
python3 -m experiments.evaluate --config="$eval_config" --workdir="$out/candidate" \
    --output_dir="$out/evaluate_candidate" "${eval_extra[@]}" > "$out/evaluate_candidate.log" 2>&1
python3 -m experiments.evaluate --config="$eval_config" --workdir="${shipped:-general}" \
    --output_dir="$out/evaluate_shipped" "${eval_extra[@]}" > "$out/evaluate_shipped.log" 2>&1
python3 -m experiments.run --config=experiments/configs/model_comparison.py \
    --config.before="$out/evaluate_shipped/results.json" \
    --config.after="$out/evaluate_candidate/results.json" --output_dir="$out/compare" \
    > "$out/compare.log" 2>&1
echo "done: $out (candidate/, metrics.jsonl, evaluate_*/results.md, compare/results.md)"
echo "next window: bash experiments/gpu_run.sh NEW_OUTPUT_DIR $budget $out/candidate"
