"""The default evaluation: every table and figure of evaluate_full.py, on fewer problems.

Command:
  python -m experiments.evaluate [--workdir=/path/to/training/workdir]
  (same as --config=experiments/configs/evaluate_quick.py)

Expected result: results.json, results.md and four PNG figures in
./outputs/evaluate. Measured on the idle 2-core CPU with the gmm model
(2026-12-02, fresh clone, three runs): 184-199 s inside the program, 3 min 8 s to
3 min 23 s wall for the command; most of it is the model at n = 4096. The seven
out-of-family rows at n = 64 and 512 (2026-12-03) replaced two rows at 512 and
2048: 15 s more CPU time for that part (86.6 s against 71.9 s, one run after
the other); the whole command took 346 s of CPU time (24 min 47 s wall on a CPU
shared with a training run), so expect about 3.5 minutes on the idle machine.
With 8 mixtures per cell the cell values are noisy (tens of percent; a single
tail query can dominate a pooled cell), so quote evaluate_full.py; the model /
Scott ratios, the figures and the equivariance table are already telling.
WORKSPACE.md holds both shipped models' tables.
"""

from experiments.configs import evaluate_full


def get_config():
  config = evaluate_full.get_config()
  config.benchmark.mixtures_per_cell = 8  # One batch per cell.
  config.out_of_family.repeats = 8  # One batch per row.
  # Every row below and inside the training sizes (n = 512: the bars' n). Adding 2048 would
  # roughly double the out-of-family part (measured: 186 s for (64, 512, 2048) alone on the
  # loaded CPU, the n = 2048 cells 60% of it), past the main job's 4 minutes.
  config.out_of_family.sample_sizes = (64, 512)
  config.equivariance.num_trials = 10  # Per d.
  config.equivariance.num_samples = 512  # n per trial.
  return config
