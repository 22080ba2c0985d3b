"""Tests of kdeformer.training.warm_start: what is copied, grown, kept, and refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import tiny
from kdeformer import checkpoints
from kdeformer import networks
from kdeformer.training import train
from kdeformer.training import warm_start


def test_merge_copies_shared_leaves_grows_larger_ones_and_keeps_new_ones():
  fresh = {"a": jnp.zeros((2, 3)), "b": jnp.full((4,), -1.0), "new": jnp.ones(2)}
  source = {"a": jnp.arange(6.0).reshape(2, 3), "b": jnp.arange(3.0)}
  merged = warm_start.merge_params(fresh, source)
  np.testing.assert_array_equal(merged["a"], source["a"])
  np.testing.assert_array_equal(merged["b"], [0.0, 1.0, 2.0, -1.0])
  np.testing.assert_array_equal(merged["new"], fresh["new"])


def test_modules_named_fresh_keep_their_fresh_parameters():
  fresh = {"gate": {"kernel": jnp.zeros(3)}, "trunk": {"kernel": jnp.zeros(2)}}
  source = {"gate": {"kernel": jnp.ones(3)}, "trunk": {"kernel": jnp.ones(2)}}
  merged = warm_start.merge_params(fresh, source, keep_fresh=("gate",))
  np.testing.assert_array_equal(merged["gate"]["kernel"], 0.0)
  np.testing.assert_array_equal(merged["trunk"]["kernel"], 1.0)
  with pytest.raises(ValueError, match="does not have"):
    warm_start.merge_params(fresh, source, keep_fresh=("gates",))


@pytest.mark.parametrize("source_shape", [(5,), (2, 2)])
def test_merge_refuses_a_smaller_or_reshaped_layer(source_shape):
  with pytest.raises(ValueError, match="Cannot warm-start"):
    warm_start.merge_params({"a": jnp.zeros(4)}, {"a": jnp.zeros(source_shape)})


def test_missing_source_is_a_clear_error():
  config = tiny.get_config()
  config.init_from = "/nonexistent/workdir"
  with pytest.raises(FileNotFoundError, match="init_from"):
    warm_start.warm_start(config, {})


def test_training_warm_started_from_a_workdir_begins_at_its_outputs(tmp_path):
  """A workdir of the tiny model (random parameters and a used optimiser, written as training
  writes them); a run with tail bases warm-started from it starts from the same function (the
  bases gated off) with a fresh optimiser, and trains."""
  source = tiny.get_config()
  source.buckets, source.batch_sizes = (16,), (4,)  # One compiled step: compile dominates.
  source_dir = str(tmp_path / "source")
  source_state = train.create_train_state(source, jax.random.key(7))
  source_state = jax.jit(
    lambda state: train.TrainState(
      step=jnp.int32(5),
      params=jax.tree.map(
        lambda x: x + 0.1 * jax.random.normal(jax.random.key(1), x.shape), state.params
      ),
      opt_state=jax.tree.map(lambda x: x + 1, state.opt_state),
      num_skipped=jnp.int32(1),
    )
  )(source_state)
  checkpoints.save_config(source, source_dir)
  manager = checkpoints.checkpoint_manager(source_dir)
  checkpoints.save_train_state(manager, 5, source_state, force=True)
  manager.wait_until_finished()
  manager.close()
  config = source.copy_and_resolve_references()
  config.init_from = source_dir
  config.model.tail_base_dofs = (3.0,)
  fresh = networks.init_params(config, jax.random.key(1))
  merged = warm_start.warm_start(config, fresh)
  x = jax.random.normal(jax.random.key(0), (1, 24, 10)) * (jnp.arange(10) < 2)
  masks = (jnp.ones((1, 24), bool), (jnp.arange(10) < 2)[None])
  expected = jax.jit(networks.build_model(source).apply)(
    {"params": source_state.params}, x, x[:, :8], *masks
  )
  actual = jax.jit(networks.build_model(config).apply)({"params": merged}, x, x[:, :8], *masks)
  np.testing.assert_allclose(actual[0], expected[0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(actual[1], expected[1], rtol=1e-5, atol=1e-5)

  # Two steps: the first at learning rate 0 (the warm-up starts there), the second at
  # peak / warmup_steps = 1e-4, where Adam moves every parameter with a gradient by about
  # the learning rate.
  config.num_train_steps = 2
  state = jax.device_get(train.train(config, str(tmp_path / "warm")))
  assert int(state.step) == 2 and int(state.num_skipped) == 0  # Not the source's 5 and 1.
  counts = [int(x) for x in jax.tree.leaves(state.opt_state) if np.ndim(x) == 0]
  assert counts and all(count == 2 for count in counts)  # A fresh optimiser, two updates.
  rate = float(train.learning_rate(1, 2, config.optim))
  np.testing.assert_allclose(rate, 1e-4, rtol=1e-6)
  moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)), state.params, merged)
  largest = max(float(np.max(m)) for m in jax.tree.leaves(moved))
  # Every parameter starts where the warm start put it (the source's random parameters are
  # 0.1 away from a fresh network's) and the step moved it by at most about the rate ...
  assert largest < 2 * rate
  # ... and it did move them: measured 2026-12-05, the largest move 1.0014e-4 and 80% of the
  # parameters moved by over 1e-5 (those without a gradient, e.g. padded dimensions', do not).
  assert largest > 0.5 * rate
  fraction = np.mean(np.concatenate([np.ravel(m) for m in jax.tree.leaves(moved)]) > 0.1 * rate)
  assert fraction > 0.7
