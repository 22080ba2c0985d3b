"""Tests of kdeformer.training.warm_start: what is copied, grown, kept, and refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import tiny
from kdeformer import model as model_lib
from kdeformer.training import train
from kdeformer.training import warm_start


def test_merge_copies_shared_leaves_grows_larger_ones_and_keeps_new_ones():
  fresh = {"a": jnp.zeros((2, 3)), "b": jnp.full((4,), -1.0), "new": jnp.ones(2)}
  source = {"a": jnp.arange(6.0).reshape(2, 3), "b": jnp.arange(3.0)}
  merged = warm_start.merge_params(fresh, source)
  np.testing.assert_array_equal(merged["a"], source["a"])
  np.testing.assert_array_equal(merged["b"], [0.0, 1.0, 2.0, -1.0])
  np.testing.assert_array_equal(merged["new"], fresh["new"])


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
  """Train tiny for 6 steps; a second run with tail bases, warm-started from it, starts from
  the same function (the bases gated off) with a fresh optimiser, and trains."""
  source = tiny.get_config()
  source_state = train.train_and_evaluate(source, str(tmp_path / "source"))
  config = tiny.get_config()
  config.init_from = str(tmp_path / "source")
  config.model.tail_base_dofs = (3.0,)
  fresh = model_lib.init_params(config, jax.random.key(1))
  merged = warm_start.warm_start(config, fresh)
  x = jax.random.normal(jax.random.key(0), (1, 24, 10)) * (jnp.arange(10) < 2)
  masks = (jnp.ones((1, 24), bool), (jnp.arange(10) < 2)[None])
  expected = model_lib.build_model(source).apply({"params": source_state.params}, x, x[:, :8],
                                                 *masks)
  actual = model_lib.build_model(config).apply({"params": merged}, x, x[:, :8], *masks)
  np.testing.assert_allclose(actual[0], expected[0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(actual[1], expected[1], rtol=1e-5, atol=1e-5)
  config.num_train_steps = 2
  state = train.train_and_evaluate(config, str(tmp_path / "warm"))
  assert int(state.step) == 2
  assert np.isfinite(float(jax.tree.leaves(state.params)[0].sum()))
