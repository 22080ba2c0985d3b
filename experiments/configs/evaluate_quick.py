"""The default evaluation: every table and figure of evaluate_full.py, on fewer problems.

Command:
  python -m experiments.evaluate [--workdir=/path/to/training/workdir]
  (same as --config=experiments/configs/evaluate_quick.py)

Expected result: results.json, results.md and four PNG figures in
./outputs/evaluate, in about 3 minutes on an idle 2-core CPU (docs/log/ has the
measured times). The benchmark keeps n = 256 and 1024: the n = 4096 cells were 60% of
the benchmark's time (measured 2026-12-05 on a loaded CPU: 310 s of its 490 s) and
pushed the main job past 5 minutes; evaluate_full.py has them. With 8 mixtures per cell
the cell values are noisy (tens of percent; a single tail query can dominate a pooled
cell), so quote evaluate_full.py; the model / Scott ratios, the figures and the
equivariance table are already telling. docs/log/ holds both shipped models' tables.
"""

from experiments.configs import evaluate_full


def get_config():
  config = evaluate_full.get_config()
  config.benchmark.mixtures_per_cell = 8  # One batch per cell.
  config.benchmark.sample_sizes = (256, 1024)
  # A d > 10 row: the default model hands it to the equivariant network (any d).
  config.benchmark.dims = (1, 2, 5, 10, 16)
  config.out_of_family.repeats = 8  # One batch per row.
  # Every row below and inside the training sizes (n = 512: the bars' n). Adding 2048 would
  # roughly double the out-of-family part (measured: 186 s for (64, 512, 2048) alone on the
  # loaded CPU, the n = 2048 cells 60% of it), past the main job's 4 minutes.
  config.out_of_family.sample_sizes = (64, 512)
  config.equivariance.num_trials = 10  # Per d.
  config.equivariance.num_samples = 512  # n per trial.
  return config
