"""A run's workdir: its config and checkpoints, read (inference) and written (training).

A workdir holds config.json, model.json, checkpoints/<step>/{params,training}/ (Orbax items:
parameters and the rest of the train state apart, so inference restores the parameters alone)
and metrics.jsonl (WORKSPACE.md has the layout).
"""

import dataclasses
import json
import os
import shutil

import jax
import ml_collections
import orbax.checkpoint as ocp

from kdeformer import model as model_lib

CONFIG_FILE = "config.json"
# The network's hyperparameters and trained sizes (`model.ModelConfig`): what inference reads.
MODEL_FILE = "model.json"
CHECKPOINT_DIR = "checkpoints"
PARAMS_ITEM = "params"
TRAINING_ITEM = "training"
# The models shipped inside the package (workdirs of the parameters-only layout), by name.
PRETRAINED_ROOT = os.path.join(os.path.dirname(__file__), "pretrained")
PRETRAINED_MODELS = {
  "general": (
    "the default at 2 <= d <= 8 and n <= 16,384: Gaussian mixtures plus heavy tails, skew, "
    "scales 100x apart and rotations; trained from n = 16, answers from n = 10 (estimator v2)"
  ),
  "gmm": (
    "the Gaussian-mixture specialist that reproduces the paper's benchmark; best on "
    "mixtures of the training prior at n >= 128, fails on heavy tails and small n "
    "(answers from n = 48)"
  ),
  "equivariant": (
    "any d (1 to 100 and beyond): exactly rotation-equivariant, a density by "
    "construction; the default hands it d = 1, d >= 9 and n > 16,384"
  ),
}
DEFAULT_PRETRAINED = "general"


@dataclasses.dataclass(frozen=True)
class Handoff:
  """The problems a shipped model hands to another shipped model (`Estimator.answering`).

  Attributes:
    to: the shipped model that answers them.
    dims: (lowest, highest) d the model answers itself; any other d is handed on.
    max_samples: the most samples (rows) it answers itself; 0: any n.
  """

  to: str
  dims: tuple[int, int]
  max_samples: int = 0

  def hands_off(self, dim: int, num_samples: int) -> bool:
    low, high = self.dims
    return not low <= dim <= high or bool(self.max_samples and num_samples > self.max_samples)


# A shipped model loaded by name hands on only the d above its max_dim.
HANDOFFS = {
  "general": Handoff("equivariant", (1, 10)),
  "gmm": Handoff("equivariant", (1, 10)),
}
# The default, `load_pretrained()`: the general network answers where it was measured to win,
# 2 <= d <= 8 within its training sizes; the equivariant one answers 1-D (smooth curves), d >= 9
# (where the general network loses to one fitted Gaussian on the paper's mixture) and n beyond
# 16,384 (where the general network's errors stop falling). Measured: MODEL_CARD.md of
# "general", docs/results_default_routing_cpu.md.
DEFAULT_HANDOFF = Handoff("equivariant", (2, 8), max_samples=16384)


def pretrained_dir(name: str = DEFAULT_PRETRAINED) -> str:
  """The package folder of the shipped model `name` (see PRETRAINED_MODELS)."""
  if not isinstance(name, str) or name not in PRETRAINED_MODELS:
    known = ", ".join(f"{key!r}" for key in PRETRAINED_MODELS)
    raise ValueError(
      f"Unknown pretrained model {name!r}; the shipped models are {known} "
      "(kdeformer.list_pretrained() says what each is for)."
    )
  return os.path.join(PRETRAINED_ROOT, name)


def looks_like_workdir(path: str) -> bool:
  """Whether `path` is a directory holding a run's config, model config or checkpoints."""
  return any(
    os.path.exists(os.path.join(path, name)) for name in (CONFIG_FILE, MODEL_FILE, CHECKPOINT_DIR)
  )


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """Reads the config.json that training wrote beside its checkpoints."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"No {CONFIG_FILE} in {workdir!r}: not a workdir written by experiments/train.py "
      "(or the run never started)."
    )
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except json.JSONDecodeError as error:
    raise ValueError(
      f"{path} is not valid JSON ({error}); the workdir's config is corrupt."
    ) from error


def load_model_config(workdir: str) -> model_lib.ModelConfig:
  """The workdir's model.json, or (workdirs written before it) what its config.json implies."""
  path = os.path.join(workdir, MODEL_FILE)
  if not os.path.isfile(path):
    return model_lib.model_config(load_config(workdir))
  try:
    with open(path) as f:
      return model_lib.ModelConfig.from_dict(json.load(f))
  except (json.JSONDecodeError, TypeError, ValueError) as error:
    raise ValueError(
      f"{path} is not a valid model config ({error}); the workdir's model.json is corrupt."
    ) from error


def write_atomically(path: str, text: str) -> None:
  """Writes text to path through a temporary file, so a reader never sees half of it."""
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)


def write_model_config(workdir: str, config: model_lib.ModelConfig) -> None:
  """Writes model.json into workdir (atomically)."""
  write_atomically(
    os.path.join(workdir, MODEL_FILE), json.dumps(config.to_dict(), indent=2, sort_keys=True)
  )


def checkpoint_directory(workdir: str) -> str:
  return os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))


def latest_step(workdir: str) -> int | None:
  """The newest finished checkpoint step in workdir, or None."""
  directory = checkpoint_directory(workdir)
  if not os.path.isdir(directory):
    return None
  steps = ocp.utils.checkpoint_steps(directory)
  return max(steps) if steps else None


def check_params_item(step_dir: str, step: int) -> None:
  """Raises FileNotFoundError unless step_dir holds the `params` item of a checkpoint."""
  if not os.path.isdir(step_dir):
    steps = ocp.utils.checkpoint_steps(os.path.dirname(step_dir))
    raise FileNotFoundError(
      f"No checkpoint of step {step} in {os.path.dirname(step_dir)}; the "
      f"latest is {max(steps) if steps else None}."
    )
  if not os.path.isdir(os.path.join(step_dir, PARAMS_ITEM)):
    raise FileNotFoundError(
      f"Checkpoint step {step} in {os.path.dirname(step_dir)} holds no {PARAMS_ITEM!r} item "
      f"(it holds {sorted(os.listdir(step_dir))}): not a layout kdeformer.checkpoints writes."
    )


def restore_params(workdir: str, abstract_params, *, step: int | None = None):
  """The network parameters of `step` (default: the latest) in the structure of abstract_params.

  Raises:
    FileNotFoundError: no checkpoint in workdir.
    ValueError: the checkpoint exists but cannot be read or does not fit abstract_params.
  """
  step = latest_step(workdir) if step is None else step
  if step is None:
    raise FileNotFoundError(f"No checkpoint found in {checkpoint_directory(workdir)}.")
  step_dir = os.path.join(checkpoint_directory(workdir), str(step))
  # On this process's first device: the saved sharding names the training mesh's devices and
  # fails here ("Topology mismatch").
  local_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(
    lambda leaf: jax.ShapeDtypeStruct(
      leaf.shape, leaf.dtype, sharding=getattr(leaf, "sharding", None) or local_device
    ),
    abstract_params,
  )
  check_params_item(step_dir, step)
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      return checkpointer.restore(os.path.join(step_dir, PARAMS_ITEM), abstract)
  except Exception as error:  # Orbax raises many types for unreadable files.
    raise ValueError(
      f"Could not restore the parameters of checkpoint step {step} from {step_dir}: it is "
      f"corrupt or does not match the config's model ({type(error).__name__}: {error})"
    ) from error


# Writing (training and export).


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes config.json (the run) and model.json (what inference reads) into workdir,
  atomically."""
  os.makedirs(workdir, exist_ok=True)
  write_atomically(
    os.path.join(workdir, CONFIG_FILE), config.to_json_best_effort(indent=2, sort_keys=True)
  )
  write_model_config(workdir, model_lib.model_config(config))


def checkpoint_manager(
  workdir: str, *, save_every_steps: int = 1, keep: int = 3
) -> ocp.CheckpointManager:
  """A manager over workdir/checkpoints keeping the latest `keep` steps."""
  options = ocp.CheckpointManagerOptions(
    save_interval_steps=save_every_steps,
    preservation_policy=ocp.checkpoint_managers.LatestN(keep),
    create=True,
  )
  return ocp.CheckpointManager(checkpoint_directory(workdir), options=options)


def _training_part(state) -> dict:
  return {"step": state.step, "opt_state": state.opt_state, "num_skipped": state.num_skipped}


def save_train_state(
  manager: ocp.CheckpointManager, step: int, state, *, force: bool = False
) -> bool:
  """Saves a train state (step, params, opt_state, num_skipped) as two items; see the module doc."""
  return manager.save(
    step,
    args=ocp.args.Composite(
      **{
        PARAMS_ITEM: ocp.args.StandardSave(state.params),
        TRAINING_ITEM: ocp.args.StandardSave(_training_part(state)),
      }
    ),
    force=force,
  )


def restore_train_state(manager: ocp.CheckpointManager, target, *, step: int | None = None):
  """The train state of `step` (default: latest) in the structure of `target` (a TrainState).

  Raises:
    FileNotFoundError: no checkpoint in the manager's directory.
    ValueError: the checkpoint exists but cannot be read or does not fit `target`.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"No checkpoint found in {manager.directory}.")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  step_dir = os.path.join(str(manager.directory), str(step))
  check_params_item(step_dir, step)
  try:
    restored = manager.restore(
      step,
      args=ocp.args.Composite(
        **{
          PARAMS_ITEM: ocp.args.StandardRestore(abstract.params),
          TRAINING_ITEM: ocp.args.StandardRestore(_training_part(abstract)),
        }
      ),
    )
    rest = restored[TRAINING_ITEM]
    return target._replace(
      step=rest["step"],
      params=restored[PARAMS_ITEM],
      opt_state=rest["opt_state"],
      num_skipped=rest["num_skipped"],
    )
  except Exception as error:  # Orbax raises many types for unreadable files.
    raise ValueError(
      f"Could not restore checkpoint step {step} from {manager.directory}: it is corrupt or "
      f"does not match the config's model ({type(error).__name__}: {error})"
    ) from error


def export_params(
  workdir: str, destination: str, abstract_params, step: int | None = None, transform=None
) -> int:
  """Writes one step's parameters (default: latest) and the config into a fresh workdir.

  Used to ship a trained run inside the package (kdeformer/pretrained): the
  optimiser state is dropped; `transform` (params -> params), if given, is applied first.
  Returns the step.
  """
  config = load_config(workdir)  # Fails loudly if the config is missing or corrupt.
  step = latest_step(workdir) if step is None else step
  if step is None:
    raise FileNotFoundError(f"No checkpoint found in {checkpoint_directory(workdir)}.")
  params = restore_params(workdir, abstract_params, step=step)
  if transform is not None:
    params = transform(params)
  target = checkpoint_directory(destination)
  if os.path.exists(target):
    shutil.rmtree(target)
  save_config(config, destination)
  exported = ocp.CheckpointManager(target, options=ocp.CheckpointManagerOptions(create=True))
  try:
    exported.save(
      step, args=ocp.args.Composite(**{PARAMS_ITEM: ocp.args.StandardSave(params)}), force=True
    )
    exported.wait_until_finished()
  finally:
    exported.close()
  return step
