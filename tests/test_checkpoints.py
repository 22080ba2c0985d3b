"""Tests of kdeformer.checkpoints: reading a workdir's config and parameters for inference.

The layout is written here with Orbax directly, as the module doc describes it,
so the reader is tested without the training code: the parameters-only export
(one `params` item, the shipped models' layout), and the errors a bad workdir must
give. Training's own two-item layout: tests/training/test_checkpointing.py (the
writer, `checkpoints.save_train_state`).
"""

import copy
import dataclasses
import os

import chex
import jax
import orbax.checkpoint as ocp
import pytest

from kdeformer import checkpoints
from kdeformer import estimator as estimator_lib
from kdeformer import model as model_lib
from kdeformer import problem as problem_lib


def write_config(config, workdir: str) -> None:
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, checkpoints.CONFIG_FILE), "w") as f:
    f.write(config.to_json_best_effort(indent=2))


def write_checkpoint(workdir: str, step: int, args: ocp.args.CheckpointArgs) -> str:
  """Saves one step with raw Orbax; returns the step's directory."""
  manager = ocp.CheckpointManager(
    checkpoints.checkpoint_directory(workdir), options=ocp.CheckpointManagerOptions(create=True)
  )
  try:
    manager.save(step, args=args)
    manager.wait_until_finished()
  finally:
    manager.close()
  return os.path.join(checkpoints.checkpoint_directory(workdir), str(step))


def params_only(params) -> ocp.args.CheckpointArgs:
  """The parameters-only export: one `params` item."""
  return ocp.args.Composite(**{checkpoints.PARAMS_ITEM: ocp.args.StandardSave(params)})


def shifted(params, offset: float):
  return jax.tree.map(lambda x: x + offset, params)


def abstract(params):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, params)


@pytest.fixture(scope="module")
def params(random_estimator):
  """Perturbed tiny-model parameters: no restore returns them by starting from the init."""
  return random_estimator.params


@pytest.fixture(scope="module")
def exported_workdir(tmp_path_factory, tiny_config, params):
  """A parameters-only export with two steps: step 1 holds params + 1, step 2 params."""
  workdir = str(tmp_path_factory.mktemp("export"))
  write_config(tiny_config, workdir)
  write_checkpoint(workdir, 1, params_only(shifted(params, 1.0)))
  write_checkpoint(workdir, 2, params_only(params))
  return workdir


def test_load_config_reads_what_was_written(exported_workdir, tiny_config):
  loaded = checkpoints.load_config(exported_workdir)
  assert loaded.model.width == tiny_config.model.width
  assert list(loaded.buckets) == list(tiny_config.buckets)


def test_load_config_names_a_missing_or_corrupt_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="No config.json"):
    checkpoints.load_config(str(tmp_path))
  (tmp_path / checkpoints.CONFIG_FILE).write_text('{"model": ')
  with pytest.raises(ValueError, match="config.json is not valid JSON"):
    checkpoints.load_config(str(tmp_path))


def test_latest_step_is_the_newest_finished_step(exported_workdir, tmp_path):
  assert checkpoints.latest_step(exported_workdir) == 2
  assert checkpoints.latest_step(str(tmp_path)) is None  # No checkpoints directory.
  os.makedirs(checkpoints.checkpoint_directory(str(tmp_path)))
  assert checkpoints.latest_step(str(tmp_path)) is None  # An empty one.


def test_restore_params_reads_the_latest_or_the_given_step(exported_workdir, params):
  latest = checkpoints.restore_params(exported_workdir, abstract(params))
  chex.assert_trees_all_equal(latest, params)
  first = checkpoints.restore_params(exported_workdir, abstract(params), step=1)
  chex.assert_trees_all_equal(first, shifted(params, 1.0))


def test_a_checkpoint_without_a_params_item_is_refused_by_name(tiny_config, params, tmp_path):
  """A step of another layout (here one `default` item holding {"params": ...}, how the gmm
  model was once shipped) is a FileNotFoundError naming the step and what it holds."""
  workdir = str(tmp_path)
  write_config(tiny_config, workdir)
  write_checkpoint(workdir, 5, ocp.args.StandardSave({"params": params}))
  with pytest.raises(FileNotFoundError, match=r"step 5 .* holds no 'params' item .*'default'"):
    checkpoints.restore_params(workdir, abstract(params))
  with pytest.raises(FileNotFoundError, match=r"step 5 .* holds no 'params' item"):
    estimator_lib.Estimator.restore(workdir)


def test_shipped_models_are_in_the_parameters_only_layout():
  for name in checkpoints.PRETRAINED_MODELS:
    directory = checkpoints.checkpoint_directory(checkpoints.pretrained_dir(name))
    steps = os.listdir(directory)
    assert len(steps) == 1, name
    items = [
      item
      for item in os.listdir(os.path.join(directory, steps[0]))
      if os.path.isdir(os.path.join(directory, steps[0], item))
    ]
    assert items == [checkpoints.PARAMS_ITEM], name


def test_restore_of_a_bad_workdir_says_what_is_missing(exported_workdir, tiny_config, tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    estimator_lib.Estimator.restore(str(tmp_path / "nowhere"))
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match="config.json"):
    estimator_lib.Estimator.restore(str(empty))
  no_checkpoints = str(tmp_path / "no_checkpoints")
  write_config(tiny_config, no_checkpoints)
  with pytest.raises(FileNotFoundError, match="No checkpoint found"):
    estimator_lib.Estimator.restore(no_checkpoints)


def test_unreadable_checkpoint_is_a_value_error_naming_the_path_and_step(
  params, tiny_config, tmp_path
):
  workdir = str(tmp_path / "corrupt")
  write_config(tiny_config, workdir)
  step_dir = write_checkpoint(workdir, 3, params_only(params))
  for root, _, names in os.walk(step_dir):
    for name in names:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  with pytest.raises(ValueError, match="step 3") as error:
    estimator_lib.Estimator.restore(workdir)
  assert workdir in str(error.value)


def test_config_that_does_not_fit_the_checkpoint_is_a_value_error(params, tiny_config, tmp_path):
  workdir = str(tmp_path)
  wider = copy.deepcopy(tiny_config)
  wider.model.width = 24
  write_config(wider, workdir)
  write_checkpoint(workdir, 2, params_only(params))
  with pytest.raises(ValueError, match="does not match"):
    estimator_lib.Estimator.restore(workdir)


def test_model_json_is_what_inference_reads(exported_workdir, tiny_config, params, tmp_path):
  """A workdir's model.json (model.ModelConfig with the trained sizes) is read before, and
  instead of, config.json; without it the config.json of older workdirs still serves."""
  implied = model_lib.model_config(tiny_config)
  assert checkpoints.load_model_config(exported_workdir) == implied  # No model.json here.
  assert (implied.trained_sample_sizes, implied.smallest_trained_size) == ((16, 32), 8)
  assert implied.max_embedded_samples == 32 and implied.max_self_attention_keys == 4096
  workdir = str(tmp_path / "with_model_json")
  write_checkpoint(workdir, 2, params_only(params))
  checkpoints.write_model_config(workdir, implied)  # And no config.json at all.
  assert checkpoints.load_model_config(workdir) == implied
  restored = estimator_lib.load(workdir)  # The one loader: a workdir, or a shipped name.
  assert restored.model_config == implied and restored.rules.trained_from == 8
  chex.assert_trees_all_equal(restored.params, params)


def test_a_workdir_named_like_a_shipped_model_is_not_silently_shadowed(tmp_path, monkeypatch):
  """Training with --workdir=gmm, then loading "gmm", must not give the shipped model."""
  monkeypatch.chdir(tmp_path)
  os.makedirs(os.path.join("gmm", checkpoints.CHECKPOINT_DIR))
  with pytest.raises(
    ValueError,
    match=r"'gmm' is both the name of a shipped model and a "
    r"training workdir.*Pass '\./gmm' for the workdir",
  ):
    estimator_lib.load("gmm")
  with pytest.raises(FileNotFoundError, match=r"in '\./gmm'"):  # The workdir, empty.
    estimator_lib.load("./gmm")
  os.makedirs("general")  # Not a workdir (no config, model config or checkpoints).
  assert not checkpoints.looks_like_workdir("general")


def test_bad_model_json_is_a_value_error_naming_the_file(tmp_path):
  workdir = str(tmp_path)
  path = os.path.join(workdir, checkpoints.MODEL_FILE)
  with open(path, "w") as f:
    f.write('{"width": 16, "depth": 3}')
  with pytest.raises(ValueError, match=r"model\.json.*Unknown model hyperparameters \['depth'\]"):
    checkpoints.load_model_config(workdir)
  with open(path, "w") as f:
    f.write('{"width": ')
  with pytest.raises(ValueError, match=r"model\.json is not a valid model config"):
    checkpoints.load_model_config(workdir)


def test_shipped_models_carry_their_model_json():
  """The config.json's implied model config, plus min_samples: measured per shipped model
  (README, "Small samples"), not implied by training."""
  for name in checkpoints.PRETRAINED_MODELS:
    directory = checkpoints.pretrained_dir(name)
    shipped = checkpoints.load_model_config(directory)
    implied = model_lib.model_config(checkpoints.load_config(directory))
    if shipped.architecture == "equivariant":  # No measured minimum yet: the floor and n > d.
      assert shipped.min_samples == implied.min_samples == 0, name
    else:
      assert implied.min_samples == 0 and shipped.min_samples > problem_lib.MIN_MODEL_SAMPLES, name
    assert shipped == dataclasses.replace(implied, min_samples=shipped.min_samples), name
