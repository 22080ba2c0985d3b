r"""Weighted samples: the model and Scott's KDE on importance-weighted proposal draws.

  python -m experiments.weighted [--workdir=DIR] [--output_dir=./outputs/weighted]
      [--config=experiments/configs/weighted.py --config.dims='(2,)' ...]

Writes results.json and results.md; the logic is in experiments/harness/weighted.py.
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from experiments.harness import common
from experiments.harness import weighted

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "configs", "weighted.py"),
    "Weighted-samples config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (default: the shipped model).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "./outputs/weighted", "Where results go.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_logger().addFilter(lambda record: "orbax" not in record.pathname)
  logging.info("JAX %s, devices: %s", jax.__version__, jax.devices())
  estimator, info = common.load_model(_WORKDIR.value)
  results = weighted.run(estimator, _CONFIG.value, info)
  markdown = weighted.results_markdown(results)
  common.write_results(results, markdown, _OUTPUT_DIR.value)
  print(markdown)


if __name__ == "__main__":
  app.run(main)
