"""Small n: 16, 32, 64 (the gmm model was trained on 128..4096, the general model from 16).

Command:
  python -m experiments.evaluate --config=experiments/configs/evaluate_small_n.py \
      --output_dir=./outputs/evaluate_small_n

Expected result: the benchmark table (100 training-prior mixtures per cell, d = 1, 2, 5, 10)
and the out-of-family rows (evaluate_full.py's) at these n, for the model and every KDE.
Measured with the gmm model on the 2-core CPU (2026-12-02; the general model 2026-12-04): see
docs/log/, "Small n"; the README states what the estimator does there.
"""

from experiments.configs import evaluate_full


def get_config():
  config = evaluate_full.get_config()
  config.benchmark.sample_sizes = (16, 32, 64)
  config.out_of_family.sample_sizes = (16, 32, 64)
  config.equivariance.num_trials = 0  # Not about sample size.
  config.figures.enabled = False  # The figures show n = 256 and 1024 cells.
  return config
