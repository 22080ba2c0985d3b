r"""Is the model's exp(log-density) a density? Quadrature in d <= 2, importance sampling beyond.

  python -m experiments.normalization [--workdir=DIR] [--output_dir=./outputs/normalization]
      [--config=experiments/configs/normalization.py --config.seeds=2 ...]

Uses --workdir's model, else the shipped one. Writes results.json and results.md; marks
every cell PASS / FAIL against the issue's bars and exits 0 either way. The logic is in
experiments/harness/normalization.py.
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from experiments.harness import common
from experiments.harness import normalization

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "configs", "normalization.py"),
    "Normalization config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (default: the shipped model).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "./outputs/normalization", "Where results go.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_logger().addFilter(lambda record: "orbax" not in record.pathname)
  logging.info("JAX %s, devices: %s, host CPUs: %s", jax.__version__, jax.devices(),
               os.cpu_count())
  estimator, info = common.load_model(_WORKDIR.value)
  results = normalization.run(estimator, _CONFIG.value, info)
  markdown = normalization.results_markdown(results)
  common.write_results(results, markdown, _OUTPUT_DIR.value)
  logging.info("Wrote results.json and results.md to %s", os.path.abspath(_OUTPUT_DIR.value))
  print(markdown)


if __name__ == "__main__":
  app.run(main)
