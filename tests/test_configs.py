"""Every experiment config loads, and training configs build a model and an optimiser."""

import importlib

import jax
import pytest

from kdeformer import networks
from kdeformer.training import train

TRAINING_CONFIGS = ["default", "tiny", "cpu", "gpu"]


@pytest.mark.parametrize("name", TRAINING_CONFIGS)
def test_training_config_is_consistent(name):
  config = importlib.import_module(f"experiments.configs.{name}").get_config()
  assert len(config.buckets) == len(config.batch_sizes)
  module = importlib.import_module(f"experiments.configs.{name}")
  assert "Command:" in module.__doc__ and "Expected result" in module.__doc__
  shapes = jax.eval_shape(lambda: networks.init_params(config, jax.random.key(0)))
  assert sum(x.size for x in jax.tree.leaves(shapes)) > 0
  # AdamW keeps two moments per parameter.
  opt_state = jax.eval_shape(train.build_optimizer(config).init, shapes)
  moments = [x for x in jax.tree.leaves(opt_state) if x.ndim]
  assert sum(x.size for x in moments) == 2 * sum(x.size for x in jax.tree.leaves(shapes))
