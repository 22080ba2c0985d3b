"""Tests for kdeformer.kde_attention: one constructed attention block *is* a Gaussian KDE."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdeformer import kde
from kdeformer import kde_attention
from kdeformer import model as model_lib


def random_problem(dim: int, seed: int = 0, num_samples: int = 150, num_queries: int = 40):
  rng = np.random.default_rng(seed)
  samples = rng.normal(size=(num_samples, dim)).astype(np.float32)
  queries = (samples[:num_queries] + 0.5 * rng.normal(size=(num_queries, dim))).astype(np.float32)
  return samples, queries


@functools.partial(jax.jit, static_argnums=2)
def both_estimates(samples, queries, bandwidth):
  dim = samples.shape[-1]
  constructed = kde_attention.attention_kde(samples, queries, bandwidth)
  reference = kde.kde_with_covariance(samples, queries, bandwidth**2 * jnp.eye(dim))
  return constructed, reference


@pytest.mark.parametrize("bandwidth", [0.2, 0.5, 1.0])
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_constructed_block_is_the_kde(dim, bandwidth):
  samples, queries = random_problem(dim, seed=dim)
  constructed, reference = both_estimates(samples, queries, bandwidth)
  chex.assert_trees_all_equal_shapes_and_dtypes(constructed, reference)
  np.testing.assert_allclose(constructed.log_density, reference.log_density, rtol=1e-4)
  reference_score = np.asarray(reference.score)
  np.testing.assert_allclose(
    constructed.score, reference_score, rtol=1e-4, atol=1e-4 * np.max(np.abs(reference_score))
  )


def test_constructed_block_matches_a_direct_sum():
  """Guards against the reference and the construction sharing a mistake."""
  samples, queries = random_problem(2, seed=7, num_samples=50, num_queries=10)
  bandwidth = 0.5
  diff = queries[:, None, :].astype(np.float64) - samples[None].astype(np.float64)
  log_kernels = -0.5 * np.sum(diff**2, axis=-1) / bandwidth**2 - np.log(2 * np.pi * bandwidth**2)
  log_density = np.log(np.mean(np.exp(log_kernels), axis=1))
  weights = np.exp(log_kernels - log_kernels.max(axis=1, keepdims=True))
  weights /= weights.sum(axis=1, keepdims=True)
  score = (weights @ samples.astype(np.float64) - queries) / bandwidth**2
  constructed, _ = both_estimates(samples, queries, bandwidth)
  np.testing.assert_allclose(constructed.log_density, log_density, rtol=1e-5)
  np.testing.assert_allclose(constructed.score, score, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dim", [1, 3])
def test_block_is_the_models_own_module(dim):
  block = kde_attention.kde_block(dim)
  assert isinstance(block, model_lib.CrossAttentionBlock)
  assert block.num_heads == 1 and not block.use_layer_norm and not block.use_mlp
  tokens = kde_attention.lifted_tokens(jnp.zeros((4, dim)))
  chex.assert_shape(tokens, (4, 2 * dim + 1))
  initial = jax.eval_shape(block.init, jax.random.key(0), tokens, tokens)["params"]
  constructed = kde_attention.kde_block_params(dim, 0.5)
  # Same tree, same shapes: the construction sets the weights of the model's module, nothing more.
  chex.assert_trees_all_equal_shapes_and_dtypes(constructed, initial)


def test_lifted_tokens_layout():
  points = jnp.asarray([[1.0, 2.0], [3.0, -1.0]])
  np.testing.assert_allclose(
    kde_attention.lifted_tokens(points), [[1.0, 2.0, 5.0, 0.0, 0.0], [3.0, -1.0, 10.0, 0.0, 0.0]]
  )
