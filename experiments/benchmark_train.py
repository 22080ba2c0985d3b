r"""Step time and achieved GFLOP/s of the training step, per n bucket, for any config.

  python -m experiments.benchmark_train --config=experiments/configs/cpu.py [--steps=5]

FLOPs come from XLA's cost analysis of the compiled step; GFLOP/s = FLOPs / step time.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments.harness import train_benchmark

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per bucket (after one warm-up step).")
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  train_benchmark.print_report(train_benchmark.benchmark_training_step(_CONFIG.value,
                                                                        _STEPS.value))


if __name__ == "__main__":
  app.run(main)
