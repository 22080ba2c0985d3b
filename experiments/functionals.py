r"""Normalising constant (log Z) and plug-in entropy / Fisher information of the model.

  python -m experiments.functionals [--config=experiments/configs/functionals.py] \
      [--workdir=/path/to/training/workdir] [--output_dir=./outputs/functionals]

Uses --workdir's model, else the shipped one. Exits non-zero if an
importance-sampling log Z misses the grid quadrature by more than
config.log_normalizer.tolerance. See experiments/harness/functional_benchmark.py.
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from experiments.harness import functional_benchmark

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "configs", "functionals.py"),
    "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir; default: the shipped model.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "./outputs/functionals",
                                  "Where results.json and results.md go.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_logger().addFilter(lambda record: "orbax" not in record.pathname)
  logging.info("JAX %s, devices: %s, host CPUs: %s", jax.__version__, jax.devices(),
               os.cpu_count())
  results = functional_benchmark.run(_CONFIG.value, _OUTPUT_DIR.value, _WORKDIR.value)
  logging.info("Wrote results.json and results.md to %s", os.path.abspath(_OUTPUT_DIR.value))
  failures = [row for row in results["log_normalizer"] if not row["within_tolerance"]]
  if failures:
    raise SystemExit(f"{len(failures)} log Z estimate(s) off the grid quadrature by more than "
                     f"{_CONFIG.value.log_normalizer.tolerance}.")


if __name__ == "__main__":
  app.run(main)
