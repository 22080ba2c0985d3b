r"""Bounded and positive data: the model and Scott's KDE with and without bounds=.

  python -m experiments.bounded [--workdir=DIR] [--output_dir=./outputs/bounded]
      [--config=experiments/configs/bounded.py --config.sample_sizes='(128,)' ...]

Writes results.json, results.md and bounded.png; the logic is in experiments/harness/bounded.py.
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from experiments.harness import bounded
from experiments.harness import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "configs", "bounded.py"),
    "Bounded-support config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (default: the shipped model).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "./outputs/bounded", "Where results go.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_logger().addFilter(lambda record: "orbax" not in record.pathname)
  logging.info("JAX %s, devices: %s", jax.__version__, jax.devices())
  estimator, info = common.load_model(_WORKDIR.value)
  results = bounded.run(estimator, _CONFIG.value, info, figure_dir=_OUTPUT_DIR.value)
  markdown = bounded.results_markdown(results)
  common.write_results(results, markdown, _OUTPUT_DIR.value)
  print(markdown)


if __name__ == "__main__":
  app.run(main)
