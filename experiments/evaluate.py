r"""Evaluates a trained estimator: benchmark tables, out-of-family rows, equivariance, figures.

  python -m experiments.evaluate                                  # general model, quick config
  python -m experiments.evaluate --workdir=gmm                    # the other shipped model
  python -m experiments.evaluate --workdir=/tmp/kdeformer_cpu     # any training workdir
  python -m experiments.evaluate --config=experiments/configs/evaluate_full.py \
      [--config.benchmark.mixtures_per_cell=20 ...] [--output_dir=./outputs/evaluate_full]

Prints the Markdown tables and writes results.json, results.md and the PNG
figures to --output_dir. All logic lives in experiments.harness.evaluation (suite.evaluate).
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from experiments.harness import common
from experiments.harness.evaluation import reports
from experiments.harness.evaluation import suite

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "evaluate_quick.py")
_CONFIG = config_flags.DEFINE_config_file(
  "config", _DEFAULT_CONFIG, "Evaluation config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "Training workdir or shipped model name to evaluate; default: the config's "
  "config.model (kdeformer.list_pretrained()).",
)
_OUTPUT_DIR = flags.DEFINE_string(
  "output_dir", "./outputs/evaluate", "Where results.json, results.md and the figures go."
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_logger().addFilter(lambda record: "orbax" not in record.pathname)
  logging.info("JAX %s, devices: %s", jax.__version__, jax.devices())
  try:
    estimator, info = common.load_model(_WORKDIR.value or _CONFIG.value.model)
  except (FileNotFoundError, ValueError) as error:
    raise SystemExit(
      f"Cannot load the model to evaluate: {error}\nPass --workdir=<a training "
      "workdir of experiments/train.py> to evaluate a trained run."
    ) from error
  config_name = os.path.relpath(config_flags.get_config_filename(flags.FLAGS["config"]))
  results = suite.evaluate(
    estimator, _CONFIG.value, _OUTPUT_DIR.value, info=info, config_name=config_name
  )
  print(reports.results_markdown(results))
  logging.info(
    "Wrote results.json, results.md and %d figures to %s in %.0f s.",
    len(results["figures"]),
    os.path.abspath(_OUTPUT_DIR.value),
    results["seconds"]["total"],
  )


if __name__ == "__main__":
  app.run(main)
