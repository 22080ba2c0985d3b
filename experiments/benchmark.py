r"""Wall time, peak memory and time-to-accuracy versus n: the model, our JAX KDE, scipy's KDE.

  python -m experiments.benchmark [--config=experiments/configs/benchmark_quick.py] \
      [--workdir=/tmp/kdeformer_cpu] [--output_dir=./outputs/benchmark]

The model comes from --workdir, else the shipped one; if neither exists, a
random initialisation of config.fallback_model_config is timed and the output
says loudly that its errors are meaningless. Every (method, d, n) runs in a fresh
process (experiments/benchmark_one.py). See experiments/harness/runtime_benchmark.py.
"""

import importlib
import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from experiments.harness import runtime_benchmark

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "configs", "benchmark_quick.py"),
    "Benchmark config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Training workdir of the model; default: the shipped model.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "./outputs/benchmark",
                                  "Where results.json, results.md and benchmark.png go.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_logger().addFilter(lambda record: "orbax" not in record.pathname)
  logging.info("JAX %s, devices: %s, host CPUs: %s, load average: %s", jax.__version__,
               jax.devices(), os.cpu_count(), os.getloadavg())
  config = _CONFIG.value
  fallback = importlib.import_module(f"experiments.configs.{config.fallback_model_config}")
  source = runtime_benchmark.resolve_model_source(_WORKDIR.value, fallback.get_config(),
                                                  config.fallback_model_config)
  logging.info("Model: %s", source["description"])
  runtime_benchmark.run(config, _OUTPUT_DIR.value, source)
  logging.info("Wrote results.json, results.md and benchmark.png to %s",
               os.path.abspath(_OUTPUT_DIR.value))


if __name__ == "__main__":
  app.run(main)
