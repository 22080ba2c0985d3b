"""Tests for kdeformer.held_out: cross-fitted likelihoods choose the base that generalises."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdeformer import equivariant
from kdeformer import held_out
from kdeformer import kernels

COMPONENTS, EM_STEPS, TAIL_DOFS = (2, 4), 10, (1.0, 10.0)
BASES = ("gaussian", "mixture 2", "mixture 4", "t1", "t10")
# One compiled program per shape (eager dispatch of the EM loops is slower than compiling).
log_likelihoods = jax.jit(
  functools.partial(
    held_out.log_likelihoods,
    mixture_components=COMPONENTS,
    em_steps=EM_STEPS,
    tail_base_dofs=TAIL_DOFS,
  )
)


def whiten(samples):
  samples = samples - samples.mean(0)
  values, vectors = np.linalg.eigh(np.cov(samples.T))
  return samples @ (vectors / np.sqrt(values)) @ vectors.T


def local_means(samples, weights, dim):
  """The network's: kernel-smoothed positions at twice Scott's bandwidth."""
  bandwidth = 2 * kernels.scott_factor(jnp.asarray([samples.shape[1]], jnp.float32), dim)
  return equivariant.leave_one_out_bank(
    samples, jnp.log(weights), dim, bandwidth[:, None], samples.shape[1]
  )[1][:, :, 0]


def held_out_log_likelihoods(samples):
  n, dim = samples.shape
  samples = jnp.asarray(samples[None], jnp.float32)
  weights = jnp.full((1, n), 1.0 / n)
  return np.asarray(
    log_likelihoods(
      samples,
      weights,
      jnp.ones((1, dim), bool),
      local_means(samples, weights, jnp.asarray([float(dim)])),
    )[0]
  )


def problem(kind: str, dim: int, n: int = 1024, seed: int = 0):
  rng = np.random.default_rng(seed)
  if kind == "gaussian":
    return whiten(rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)))
  if kind == "mixture":
    labels = rng.integers(0, 2, n)[:, None]
    return whiten(rng.normal(size=(n, dim)) * 0.5 + np.where(labels, 2.0, -2.0) * np.eye(dim)[0])
  return whiten(rng.normal(size=(n, dim)) / np.sqrt(rng.chisquare(1.0, size=(n, 1))))  # nu = 1.


@pytest.mark.parametrize(
  "kind, dim, best",
  [("gaussian", 16, "gaussian"), ("mixture", 16, "mixture 2"), ("cauchy", 16, "t1")],
)
def test_the_true_family_has_the_best_held_out_likelihood(kind, dim, best):
  # In-sample, the 4-component mixture would beat the Gaussian and the 2-component one here.
  likelihoods = held_out_log_likelihoods(problem(kind, dim))
  assert BASES[int(np.argmax(likelihoods))] == best, dict(zip(BASES, likelihoods))


def test_rotation_and_sample_order_leave_them_unchanged():
  samples = problem("mixture", 16)
  rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(16, 16)))[0]
  expected = held_out_log_likelihoods(samples)
  np.testing.assert_allclose(held_out_log_likelihoods(samples @ rotation), expected, atol=2e-4)
  # The folds are positions: reordering changes them, but not what the estimate says.
  order = np.random.default_rng(2).permutation(1024)
  np.testing.assert_allclose(held_out_log_likelihoods(samples[order]), expected, atol=0.05)


def test_padding_and_fewer_samples_than_dimensions_stay_finite():
  samples = problem("gaussian", 30, n=40)  # 30 training samples per fold in 30 dimensions.
  padded = np.zeros((1, 40, 32))
  padded[0, :, :30] = samples
  padded = jnp.asarray(padded, jnp.float32)
  weights = jnp.full((1, 40), 1.0 / 40)
  result = log_likelihoods(
    padded,
    weights,
    jnp.asarray([[True] * 30 + [False] * 2]),
    local_means(padded, weights, jnp.asarray([30.0])),
  )
  expected = held_out_log_likelihoods(samples)
  assert np.all(np.isfinite(expected))
  np.testing.assert_allclose(result[0], expected, rtol=1e-4)
