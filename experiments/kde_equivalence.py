r"""Attention is a Gaussian KDE: (a) the construction checked, (b) trained heads fitted.

  python -m experiments.kde_equivalence [--config=experiments/configs/kde_equivalence.py] \
      [--workdir=/tmp/kdeformer_cpu] [--output_dir=./outputs/kde_equivalence]

Exits non-zero if any error of (a) exceeds config.construction.tolerance. Part
(b) uses --workdir, else the shipped model config.model ("gmm"), and is skipped (with a log line)
if neither exists. See experiments/harness/kde_equivalence.py.
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from experiments.harness import kde_equivalence

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "configs", "kde_equivalence.py"),
    "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Training workdir for part (b); default: the shipped model "
                               "config.model.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "./outputs/kde_equivalence",
                                  "Where results.json, results.md and the figure go.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_logger().addFilter(lambda record: "orbax" not in record.pathname)
  logging.info("JAX %s, devices: %s, host CPUs: %s", jax.__version__, jax.devices(),
               os.cpu_count())
  results = kde_equivalence.run(_CONFIG.value, _OUTPUT_DIR.value, _WORKDIR.value)
  logging.info("Wrote results.json and results.md to %s", os.path.abspath(_OUTPUT_DIR.value))
  failures = results["construction"]["failures"]
  if failures:
    raise SystemExit("Attention-as-KDE construction above tolerance:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
  app.run(main)
