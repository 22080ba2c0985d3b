r"""Step time and achieved GFLOP/s of the training step, per n bucket, for any config.

  python -m experiments.benchmark_train --config=experiments/configs/cpu.py [--steps=5]

FLOPs come from XLA's cost analysis of the compiled step; GFLOP/s = FLOPs / step time.
Prints a Markdown table (one row per n bucket) and the mean over the bucket cycle.
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from experiments.harness import train_benchmark

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per bucket (after one warm-up step).")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.info("JAX %s, devices: %s, host CPUs: %s", jax.__version__, jax.devices(),
               os.cpu_count())
  rows = train_benchmark.benchmark_training_step(_CONFIG.value, _STEPS.value)
  print(train_benchmark.report_markdown(rows))


if __name__ == "__main__":
  app.run(main)
