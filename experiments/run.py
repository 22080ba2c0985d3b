r"""Runs one experiment, named by its config: the single entry point of the experiment harnesses.

  python -m experiments.run --config=experiments/configs/<name>.py \
      [--workdir=DIR] [--output_dir=./outputs/<experiment>] [--config.<field>=... ...]

Each experiment config sets `config.experiment`, the name of its harness module
experiments/harness/<experiment>.py (one of `EXPERIMENTS`); the config's own
docstring gives its exact command. The module has

  run(config, output_dir, workdir) -> dict     runs it, writes results.json (and results.md,
                                               figures) into output_dir, returns the results;
  failures(results, config) -> list[str]       optional: the checks that failed; any makes
                                               this command exit non-zero, listing them.

--workdir is the model (a training workdir or a shipped model's name; default: the
shipped model) where the experiment uses one; --output_dir defaults to
./outputs/<experiment>. A harness raises `common.ConfigError` for a config or
flag it cannot run with (reported as a usage error).

Training and evaluation have their own entry points (experiments/train.py,
experiments/evaluate.py); experiments/kde_equivalence.py is this runner with
experiments/configs/kde_equivalence.py as the default config.
"""

import importlib
import os
import sys
import types

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
from ml_collections import config_flags

from experiments.harness import common

# The experiments this runner dispatches to: config.experiment == harness module name.
EXPERIMENTS = (
  "bounded",
  "density_queries",
  "functionals",
  "kde_equivalence",
  "log_normalizer",
  "model_comparison",
  "next_network",
  "real_data",
  "refinements",
  "runtime_benchmark",
  "train_benchmark",
  "weighted",
)

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Experiment config file (experiments/configs/<name>.py); it names its "
  "experiment in config.experiment.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "Training workdir or shipped model name of the model; default: the shipped "
  "model (experiments that use none reject it).",
)
_OUTPUT_DIR = flags.DEFINE_string(
  "output_dir", None, "Where results go; default: ./outputs/<experiment>."
)


def experiment_module(
  config: ml_collections.ConfigDict, config_name: str = "the config"
) -> types.ModuleType:
  """The harness module that config.experiment names.

  Raises:
    app.UsageError: the config names no experiment, or one not in `EXPERIMENTS`.
  """
  name = config.get("experiment") if isinstance(config, ml_collections.ConfigDict) else None
  known = ", ".join(EXPERIMENTS)
  if not name:
    raise app.UsageError(
      f"{config_name} names no experiment (config.experiment is missing): this runner runs "
      f"the configs of experiments/configs/ that set one ({known}). Training configs go to "
      "`python -m experiments.train`, evaluation configs to `python -m experiments.evaluate`."
    )
  if name not in EXPERIMENTS:
    raise app.UsageError(f"{config_name} names an unknown experiment {name!r}; known: {known}.")
  return importlib.import_module(f"experiments.harness.{name}")


def run_experiment(
  config: ml_collections.ConfigDict,
  output_dir: str | None = None,
  workdir: str | None = None,
  config_name: str = "the config",
) -> tuple[dict, list[str]]:
  """Runs config.experiment; returns (its results, its failed checks: empty if none or no check).

  output_dir None: ./outputs/<experiment>.

  Raises:
    app.UsageError: an unknown experiment, or a config or flag it rejects (`common.ConfigError`).
  """
  module = experiment_module(config, config_name)
  output_dir = output_dir or os.path.join(".", "outputs", config.experiment)
  try:
    results = module.run(config, output_dir, workdir)
  except common.ConfigError as error:
    raise app.UsageError(f"{config.experiment}: {error}") from error
  failures = module.failures(results, config) if hasattr(module, "failures") else []
  logging.info("%s: results in %s", config.experiment, os.path.abspath(output_dir))
  return results, list(failures)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _CONFIG.value is None:
    raise app.UsageError("--config is required: experiments/configs/<name>.py.")
  # Orbax logs every file operation at INFO; keep the progress lines readable.
  logging.get_absl_logger().addFilter(lambda record: "orbax" not in record.pathname)
  config_name = os.path.relpath(config_flags.get_config_filename(flags.FLAGS["config"]))
  experiment_module(_CONFIG.value, config_name)  # A bad name fails before anything runs.
  logging.info(
    "JAX %s, devices: %s, host CPUs: %s, load average: %s",
    jax.__version__,
    jax.devices(),
    os.cpu_count(),
    os.getloadavg(),
  )
  _, failures = run_experiment(_CONFIG.value, _OUTPUT_DIR.value, _WORKDIR.value, config_name)
  if failures:
    raise SystemExit(
      f"{_CONFIG.value.experiment}: {len(failures)} check(s) failed:\n  " + "\n  ".join(failures)
    )


def run_main(default_config: str | None = None) -> None:
  """`app.run(main)`, with --config defaulting to default_config (for an alias entry point)."""
  if default_config and not any(
    arg == "--config" or arg.startswith("--config=") for arg in sys.argv[1:]
  ):
    sys.argv.insert(1, f"--config={default_config}")
  app.run(main)


if __name__ == "__main__":
  run_main()
