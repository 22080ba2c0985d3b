"""experiments/configs/tiny.py as the training tests run it, so that their runs share programs.

Nearly all of a tiny run's time is the XLA compilation of its train step; the suite's
persistent compilation cache (tests/conftest.py) loads a program compiled once anywhere in
the run (this process, an xdist worker, a subprocess) only if its HLO is the same. Two
fields of the tiny config would otherwise split the runs into several programs:

- optim.warmup_steps = 3 (tiny: 2). A time-budgeted run times its calibration inside the
  warm-up (one call per bucket, then `calibration_steps` >= 1 timed steps), so those runs
  need at least 3; the warm-up length is a constant of the compiled step, so every run
  uses 3.
- model.max_embedded_samples = 32, tiny's largest bucket and the value the tiny config
  resolves to; written out, a run with `--config.buckets=(16,)` keeps it (unset, it would
  resolve to 16: another constant, another program) and computes the same numbers (its
  n <= 16 are below either cap).

Use it as --config=tests/training/tiny_shared.py (the entry point takes any config file) or
`tiny_shared.get_config()` in the test process.
"""

from experiments.configs import tiny

# The one-bucket runs: one compiled step instead of two.
ONE_BUCKET = ["--config.buckets=(16,)", "--config.batch_sizes=(4,)"]
CONFIG_FILE = "tests/training/tiny_shared.py"


def get_config():
  config = tiny.get_config()
  config.optim.warmup_steps = 3
  config.model.max_embedded_samples = 32
  return config


def one_bucket_config():
  """get_config() with ONE_BUCKET applied, for runs in the test process."""
  config = get_config()
  config.buckets, config.batch_sizes = (16,), (4,)
  return config
