"""Orbax checkpoints plus the run's config (JSON) in one workdir.

Layout of a workdir:
  config.json           the full ConfigDict of the run (restore needs no flags)
  checkpoints/<step>/   Orbax StandardSave of the train state
  metrics.jsonl         one JSON object per logged step
"""

import json
import os

import jax
import ml_collections
import orbax.checkpoint as ocp

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes config.json into workdir (atomically)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  with open(path + ".tmp", "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  os.replace(path + ".tmp", path)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """Reads the config.json that training wrote beside its checkpoints."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"No {CONFIG_FILE} in {workdir!r}: not a workdir written by experiments/train.py "
        "(or the run never started).")
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except json.JSONDecodeError as error:
    raise ValueError(f"{path} is not valid JSON ({error}); the workdir's config is corrupt.")


def checkpoint_manager(workdir: str, *, save_every_steps: int = 1, keep: int = 3,
                       read_only: bool = False) -> ocp.CheckpointManager:
  """A manager over workdir/checkpoints keeping the latest `keep` steps."""
  directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
  options = ocp.CheckpointManagerOptions(
      save_interval_steps=save_every_steps,
      preservation_policy=ocp.checkpoint_managers.LatestN(keep),
      read_only=read_only, create=not read_only)
  return ocp.CheckpointManager(directory, options=options)


def latest_step(workdir: str) -> int | None:
  """The newest checkpoint step in workdir, or None; the manager is closed again."""
  manager = checkpoint_manager(workdir, read_only=True)
  try:
    return manager.latest_step()
  finally:
    manager.close()


def restore_latest(manager: ocp.CheckpointManager, target, *, step: int | None = None):
  """Restores `step` (default: latest) into the structure of `target`.

  Raises:
    FileNotFoundError: no checkpoint in the manager's directory.
    ValueError: the checkpoint exists but cannot be read or does not fit `target`.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"No checkpoint found in {manager.directory}.")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except Exception as error:  # Orbax raises many types for unreadable files.
    raise ValueError(
        f"Could not restore checkpoint step {step} from {manager.directory}: it is corrupt or "
        f"does not match the config's model ({type(error).__name__}: {error})") from error


def export_workdir(workdir: str, destination: str, step: int | None = None) -> int:
  """Writes one finished step's parameters (default: latest) and the config into a fresh workdir.

  Used to ship a trained run inside the package (kdeformer/pretrained): the optimiser
  state is dropped (a third of the size), and config.json records
  checkpoint_contents = "params" so `Estimator.restore` knows what to read.
  Returns the step.
  """
  import shutil  # pylint: disable=g-import-not-at-top
  from kdeformer import train  # pylint: disable=g-import-not-at-top  (avoids an import cycle)
  config = load_config(workdir)  # Fails loudly if the config is missing or corrupt.
  if config.get("checkpoint_contents", "train_state") == "params":
    raise ValueError(f"{workdir!r} is already a parameters-only export; export its training "
                     "workdir instead.")
  manager = checkpoint_manager(workdir, read_only=True)
  try:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"No checkpoint found in {manager.directory}.")
    abstract = jax.eval_shape(lambda: train.create_train_state(config, jax.random.key(0)))
    state = restore_latest(manager, abstract, step=step)
  finally:
    manager.close()
  target = os.path.join(destination, CHECKPOINT_DIR)
  if os.path.exists(target):
    shutil.rmtree(target)
  with config.unlocked():
    config.checkpoint_contents = "params"
  save_config(config, destination)
  exported = checkpoint_manager(destination)
  exported.save(step, args=ocp.args.StandardSave({"params": state.params}), force=True)
  exported.wait_until_finished()
  exported.close()
  return step
