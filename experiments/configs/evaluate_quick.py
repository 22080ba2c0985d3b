"""The default evaluation: every table and figure of evaluate_full.py, on fewer problems.

Command:
  python -m experiments.evaluate [--workdir=/path/to/training/workdir]
  (same as --config=experiments/configs/evaluate_quick.py)

Expected result: under 5 minutes on the 2-core CPU; results.json, results.md
and four PNG figures in ./outputs/evaluate. With 8 mixtures per cell the cell
means are noisy (a few tens of percent), so use evaluate_full.py for numbers
to quote; the model / Scott ratios and the equivariance errors are already
telling (see WORKSPACE.md for a measured quick table).
"""

from experiments.configs import evaluate_full


def get_config():
  config = evaluate_full.get_config()
  config.benchmark.mixtures_per_cell = 8  # One batch per cell.
  config.out_of_family.repeats = 8  # One batch per row.
  config.equivariance.num_trials = 10  # Per d.
  config.equivariance.num_samples = 512
  return config
