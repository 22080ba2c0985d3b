r"""Compares two evaluations of the same problems: the shipping rule and the new-model bars.

Command:
  python -m experiments.run --config=experiments/configs/model_comparison.py \
      --config.before=/path/shipped/results.json --config.after=/path/new/results.json \
      [--config.max_cell_ratio=1.05] [--output_dir=./outputs/model_comparison]

Both files come from `python -m experiments.evaluate` with the same config and seed, one with
the shipped model and one with `--workdir` of the candidate (experiments/gpu_run.sh does
both). Writes results.json and results.md (verdict, bars, paired tables) and prints the
markdown; exits 0 whatever the verdict. The logic is in experiments/harness/model_comparison.py.

Expected result: docs/results_v2_vs_shipped_cpu.md is one such comparison.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "model_comparison"  # experiments/harness/model_comparison.py: its harness.
  config.before = config_dict.placeholder(str)  # results.json of the shipped model (required).
  config.after = config_dict.placeholder(str)  # results.json of the candidate model (required).
  config.max_cell_ratio = 1.05  # Largest allowed benchmark-cell ratio after / before.
  return config
