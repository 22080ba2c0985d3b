r"""Trains the density-and-score transformer.

  python -m experiments.train --config=experiments/configs/cpu.py --workdir=/tmp/run \
      [--config.num_train_steps=1000 ...]

The workdir is the single source of truth: rerunning the same command resumes
from its latest checkpoint.

Several processes train one model together (data parallel over all their devices):
run the same command in each, on a workdir that all of them see (a shared
filesystem), adding

  --config.multihost=True --config.distributed.coordinator_address=HOST0:PORT \
  --config.distributed.num_processes=N --config.distributed.process_id=I

with I = 0 on HOST0 (the chief, which writes config.json and metrics.jsonl) and
1..N-1 elsewhere. Under Slurm, Open MPI, Cloud TPU or Kubernetes
--config.multihost=True alone is enough: JAX finds the rest.
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from experiments.harness import plotting
from kdeformer.training import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, config and metrics.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # Orbax logs every file operation at INFO; keep the progress lines readable.
  logging.get_absl_logger().addFilter(lambda record: "orbax" not in record.pathname)
  # Before anything below touches a device: jax.distributed refuses to start after that.
  train.initialize_distributed(_CONFIG.value)
  logging.info(
    "JAX %s, process %d/%d, local devices: %s",
    jax.__version__,
    jax.process_index(),
    jax.process_count(),
    jax.local_devices(),
  )
  train.train(_CONFIG.value, _WORKDIR.value)
  if jax.process_index() == 0:
    plotting.plot_training_curves(
      os.path.join(_WORKDIR.value, "metrics.jsonl"),
      os.path.join(_WORKDIR.value, "training_curves.png"),
    )


if __name__ == "__main__":
  app.run(main)
