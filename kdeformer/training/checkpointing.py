"""Writing and resuming a training run's checkpoints (the layout is in `kdeformer.checkpoints`).

Parameters and the rest of the train state are separate Orbax items, so inference restores
the parameters alone.
"""

import os
import shutil

import jax
import ml_collections
import orbax.checkpoint as ocp

from kdeformer import checkpoints
from kdeformer import model as model_lib

load_config = checkpoints.load_config
latest_step = checkpoints.latest_step


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes config.json (the run) and model.json (what inference reads) into workdir,
  atomically."""
  os.makedirs(workdir, exist_ok=True)
  checkpoints.write_atomically(os.path.join(workdir, checkpoints.CONFIG_FILE),
                               config.to_json_best_effort(indent=2, sort_keys=True))
  checkpoints.write_model_config(workdir, model_lib.model_config(config))


def checkpoint_manager(workdir: str, *, save_every_steps: int = 1,
                       keep: int = 3) -> ocp.CheckpointManager:
  """A manager over workdir/checkpoints keeping the latest `keep` steps."""
  options = ocp.CheckpointManagerOptions(
      save_interval_steps=save_every_steps,
      preservation_policy=ocp.checkpoint_managers.LatestN(keep), create=True)
  return ocp.CheckpointManager(checkpoints.checkpoint_directory(workdir), options=options)


def _training_part(state) -> dict:
  return {"step": state.step, "opt_state": state.opt_state, "num_skipped": state.num_skipped}


def save(manager: ocp.CheckpointManager, step: int, state, *, force: bool = False) -> bool:
  """Saves a train state (step, params, opt_state, num_skipped) as two items; see the module doc."""
  return manager.save(step, args=ocp.args.Composite(**{
      checkpoints.PARAMS_ITEM: ocp.args.StandardSave(state.params),
      checkpoints.TRAINING_ITEM: ocp.args.StandardSave(_training_part(state))}), force=force)


def restore(manager: ocp.CheckpointManager, target, *, step: int | None = None):
  """The train state of `step` (default: latest) in the structure of `target` (a TrainState).

  Reads both the two-item layout and the older one-item train state.

  Raises:
    FileNotFoundError: no checkpoint in the manager's directory.
    ValueError: the checkpoint exists but cannot be read or does not fit `target`.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"No checkpoint found in {manager.directory}.")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  step_dir = os.path.join(str(manager.directory), str(step))
  items = (checkpoints.PARAMS_ITEM, checkpoints.LEGACY_ITEM)
  if not any(os.path.isdir(os.path.join(step_dir, item)) for item in items):
    raise FileNotFoundError(f"No checkpoint of step {step} in {manager.directory}.")
  try:
    if os.path.isdir(os.path.join(step_dir, checkpoints.PARAMS_ITEM)):
      restored = manager.restore(step, args=ocp.args.Composite(**{
          checkpoints.PARAMS_ITEM: ocp.args.StandardRestore(abstract.params),
          checkpoints.TRAINING_ITEM: ocp.args.StandardRestore(_training_part(abstract))}))
      rest = restored[checkpoints.TRAINING_ITEM]
      return target._replace(step=rest["step"], params=restored[checkpoints.PARAMS_ITEM],
                             opt_state=rest["opt_state"], num_skipped=rest["num_skipped"])
    with ocp.StandardCheckpointer() as checkpointer:  # The older one-item layout.
      return checkpointer.restore(os.path.join(step_dir, checkpoints.LEGACY_ITEM), abstract)
  except Exception as error:  # Orbax raises many types for unreadable files.
    raise ValueError(
        f"Could not restore checkpoint step {step} from {manager.directory}: it is corrupt or "
        f"does not match the config's model ({type(error).__name__}: {error})") from error


def export_params(workdir: str, destination: str, abstract_params, step: int | None = None) -> int:
  """Writes one step's parameters (default: latest) and the config into a fresh workdir.

  Used to ship a trained run inside the package (kdeformer/pretrained): the
  optimiser state is dropped. Returns the step.
  """
  config = load_config(workdir)  # Fails loudly if the config is missing or corrupt.
  step = latest_step(workdir) if step is None else step
  if step is None:
    raise FileNotFoundError(f"No checkpoint found in {checkpoints.checkpoint_directory(workdir)}.")
  params = checkpoints.restore_params(workdir, abstract_params, step=step)
  target = checkpoints.checkpoint_directory(destination)
  if os.path.exists(target):
    shutil.rmtree(target)
  save_config(config, destination)
  exported = ocp.CheckpointManager(target, options=ocp.CheckpointManagerOptions(create=True))
  try:
    exported.save(step, args=ocp.args.Composite(**{
        checkpoints.PARAMS_ITEM: ocp.args.StandardSave(params)}), force=True)
    exported.wait_until_finished()
  finally:
    exported.close()
  return step
