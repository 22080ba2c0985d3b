r"""Test-time training and rotation averaging against the plain model, on the same problems.

  python -m experiments.refinements                               # shipped model
  python -m experiments.refinements --workdir=/tmp/kdeformer_cpu  # any training workdir
  python -m experiments.refinements --config.ttt.steps='(4, 8)' --config.ttt.learning_rate=1e-3

Prints the Markdown tables and writes results.json and results.md to
--output_dir. All logic lives in experiments.harness.refinements.
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from experiments.harness import common
from experiments.harness import refinements

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "refinements.py")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Refinements config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Training workdir (latest checkpoint); default: the pretrained model "
    "shipped in the package (kdeformer.load_pretrained()).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "./outputs/refinements",
                                  "Where results.json and results.md go.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_logger().addFilter(lambda record: "orbax" not in record.pathname)
  logging.info("JAX %s, devices: %s, %d CPU cores", jax.__version__, jax.devices(),
               os.cpu_count())
  config = _CONFIG.value
  # The TTT loss's points: a cost knob of the estimator.
  estimator, info = common.load_model(_WORKDIR.value, ttt_num_points=config.ttt.num_points)
  results = refinements.evaluate(estimator, config)
  results["model"] = info
  markdown = refinements.results_markdown(results)
  common.write_results(results, markdown, _OUTPUT_DIR.value)
  print(markdown)
  logging.info("Wrote results.json and results.md to %s in %.0f s.",
               os.path.abspath(_OUTPUT_DIR.value), results["seconds"])


if __name__ == "__main__":
  app.run(main)
