"""Tests of kdeformer.checkpoints' writing side: the two-item layout, resume, export.

A training run writes parameters and the rest of the train state as two Orbax
items, so inference (`kdeformer.checkpoints.restore_params`) reads the
parameters alone.
"""

import os
import pathlib
import shutil

import chex
import jax
import jax.numpy as jnp
import pytest

from kdeformer import checkpoints
from kdeformer import estimator as estimator_lib
from kdeformer import model as model_lib
from kdeformer import networks
from kdeformer.training import train

SAVED_STEP = 7


def moved_train_state(config, seed: int) -> train.TrainState:
  """A train state whose every leaf is off its initial value, so a restore cannot pass by luck."""
  state = train.create_train_state(config, jax.random.key(seed))
  return jax.jit(
    lambda state: train.TrainState(
      step=jnp.int32(SAVED_STEP),
      params=jax.tree.map(lambda x: x + 0.5, state.params),
      opt_state=jax.tree.map(lambda x: x + 1, state.opt_state),
      num_skipped=jnp.int32(2),
    )
  )(state)


def abstract_params(config):
  return jax.eval_shape(lambda: networks.init_params(config, jax.random.key(0)))


def copy_workdir(workdir: str, destination: pathlib.Path) -> str:
  shutil.copytree(workdir, destination)
  return str(destination)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, tiny_config):
  """A workdir holding one checkpoint written as training writes it, and the saved state."""
  workdir = str(tmp_path_factory.mktemp("run"))
  state = moved_train_state(tiny_config, seed=0)
  checkpoints.save_config(tiny_config, workdir)
  manager = checkpoints.checkpoint_manager(workdir)
  try:
    assert checkpoints.save_train_state(manager, SAVED_STEP, state, force=True)
    manager.wait_until_finished()
  finally:
    manager.close()
  return workdir, state


@pytest.fixture(scope="module")
def fresh_state(tiny_config):
  """A restore target: the right structure, other values."""
  return train.create_train_state(tiny_config, jax.random.key(1))


def restore_train_state(workdir: str, target, **kwargs):
  manager = checkpoints.checkpoint_manager(workdir)
  try:
    return checkpoints.restore_train_state(manager, target, **kwargs)
  finally:
    manager.close()


def test_save_writes_parameters_and_training_state_as_two_items(saved_run, tiny_config):
  workdir, _ = saved_run
  step_dir = os.path.join(checkpoints.checkpoint_directory(workdir), str(SAVED_STEP))
  items = sorted(
    name for name in os.listdir(step_dir) if os.path.isdir(os.path.join(step_dir, name))
  )
  assert items == [checkpoints.PARAMS_ITEM, checkpoints.TRAINING_ITEM]
  assert checkpoints.latest_step(workdir) == SAVED_STEP
  assert checkpoints.load_config(workdir).to_json_best_effort(
    sort_keys=True
  ) == tiny_config.to_json_best_effort(sort_keys=True)


def test_restore_returns_the_saved_train_state(saved_run, fresh_state):
  workdir, state = saved_run
  restored = restore_train_state(workdir, fresh_state)
  assert isinstance(restored, train.TrainState)
  chex.assert_trees_all_equal(restored, state)


def test_inference_restores_the_parameters_without_the_training_item(
  saved_run, fresh_state, tiny_config, tmp_path
):
  workdir, state = saved_run
  params_only = copy_workdir(workdir, tmp_path / "params_only")
  shutil.rmtree(
    os.path.join(
      checkpoints.checkpoint_directory(params_only), str(SAVED_STEP), checkpoints.TRAINING_ITEM
    )
  )
  restored = checkpoints.restore_params(params_only, abstract_params(tiny_config))
  chex.assert_trees_all_equal(restored, state.params)
  # Resuming training does need it.
  with pytest.raises(ValueError, match=f"step {SAVED_STEP}"):
    restore_train_state(params_only, fresh_state)


def truncate_data_files(item_directory: str) -> int:
  """Cuts every OCDBT data file of an Orbax item to half its length; returns how many.

  The data files are in `d/` folders: the item's own and each process's (`ocdbt.process_0/d`).
  Reads may go through either, so both are cut; cutting one alone left a readable
  checkpoint in 5 of 30 saves.
  """
  count = 0
  for root, _, names in os.walk(item_directory):
    if os.path.basename(root) != "d":
      continue
    for name in names:
      path = os.path.join(root, name)
      size = os.path.getsize(path)
      if size > 1:
        os.truncate(path, size // 2)
        count += 1
  return count


def test_corrupt_checkpoint_raises_value_error_naming_the_step(
  saved_run, fresh_state, tiny_config, tmp_path
):
  workdir, _ = saved_run
  corrupt = copy_workdir(workdir, tmp_path / "corrupt")
  params_dir = os.path.join(
    checkpoints.checkpoint_directory(corrupt), str(SAVED_STEP), checkpoints.PARAMS_ITEM
  )
  assert truncate_data_files(params_dir) > 0
  with pytest.raises(ValueError, match=f"step {SAVED_STEP}"):
    checkpoints.restore_params(corrupt, abstract_params(tiny_config))
  with pytest.raises(ValueError, match=f"step {SAVED_STEP}"):
    restore_train_state(corrupt, fresh_state)


def test_missing_checkpoint_raises_file_not_found(fresh_state, tiny_config, tmp_path):
  checkpoints.save_config(tiny_config, str(tmp_path))
  with pytest.raises(FileNotFoundError, match="No checkpoint found"):
    restore_train_state(str(tmp_path), fresh_state)
  with pytest.raises(FileNotFoundError, match="No checkpoint found"):
    checkpoints.restore_params(str(tmp_path), abstract_params(tiny_config))


def test_a_step_that_was_never_saved_raises_file_not_found(saved_run, tiny_config):
  workdir, _ = saved_run
  with pytest.raises(FileNotFoundError, match=f"No checkpoint of step {SAVED_STEP + 1}"):
    checkpoints.restore_params(workdir, abstract_params(tiny_config), step=SAVED_STEP + 1)


def test_manager_saves_on_the_interval_and_keeps_the_latest_steps(fresh_state, tmp_path):
  manager = checkpoints.checkpoint_manager(str(tmp_path), save_every_steps=2, keep=2)
  try:
    saved = {step: checkpoints.save_train_state(manager, step, fresh_state) for step in range(1, 8)}
    manager.wait_until_finished()
    # Orbax also saves the first step it is given while the directory holds no checkpoint.
    assert [step for step, was_saved in saved.items() if was_saved and step > 1] == [2, 4, 6]
    assert checkpoints.save_train_state(manager, 7, fresh_state, force=True)  # The run's last step.
    manager.wait_until_finished()
    assert sorted(manager.all_steps()) == [6, 7]
  finally:
    manager.close()


def test_export_keeps_the_parameters_only_and_restores_the_same_estimator(
  saved_run, tiny_config, tmp_path
):
  workdir, state = saved_run
  exported = str(tmp_path / "export")
  assert checkpoints.export_params(workdir, exported, abstract_params(tiny_config)) == SAVED_STEP
  step_dir = os.path.join(checkpoints.checkpoint_directory(exported), str(SAVED_STEP))
  assert checkpoints.TRAINING_ITEM not in os.listdir(step_dir)
  estimator = estimator_lib.Estimator.restore(exported)
  chex.assert_trees_all_equal(estimator.params, state.params)
  assert estimator.model_config == model_lib.model_config(tiny_config)
  assert checkpoints.load_model_config(exported) == estimator.model_config  # model.json
  assert os.path.isfile(os.path.join(exported, checkpoints.MODEL_FILE))
  assert checkpoints.load_config(exported).to_json_best_effort(
    sort_keys=True
  ) == tiny_config.to_json_best_effort(sort_keys=True)
