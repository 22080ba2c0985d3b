"""Tests of kdeformer.kernel_bank: each head is the isotropic Gaussian KDE of the real samples.

The bank works in whitened, padded coordinates: padded samples and coordinates
must not enter, and the bandwidths follow Scott's rate in the real n and d.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdeformer import kde
from kdeformer import kernel_bank

FACTORS = (0.3, 1.0, 1.4)
MAX_DIM = 5
NUM_SAMPLES, NUM_QUERIES = 40, 12
# Per problem: (real samples, real coordinates).
PROBLEMS = ((40, 1), (31, 3), (25, MAX_DIM))

reference_kde = jax.jit(kde.kde_with_covariance)  # One program per problem shape.


def padded_problems():
  """Whitened-like samples (b, n, D) and queries (b, m, D), zero beyond each d, and the masks."""
  rng = np.random.default_rng(0)
  samples = np.zeros((len(PROBLEMS), NUM_SAMPLES, MAX_DIM), np.float32)
  queries = np.zeros((len(PROBLEMS), NUM_QUERIES, MAX_DIM), np.float32)
  for index, (count, dim) in enumerate(PROBLEMS):
    samples[index, :count, :dim] = rng.normal(size=(count, dim))
    samples[index, count:, :dim] = 1e3  # Garbage in padded rows: the mask must hide it.
    queries[index, :, :dim] = 1.5 * rng.normal(size=(NUM_QUERIES, dim))
  sample_mask = np.arange(NUM_SAMPLES)[None] < np.array([c for c, _ in PROBLEMS])[:, None]
  dim_mask = np.arange(MAX_DIM)[None] < np.array([d for _, d in PROBLEMS])[:, None]
  return samples, queries, sample_mask, dim_mask


@pytest.fixture(scope="module")
def bank():
  samples, queries, sample_mask, dim_mask = padded_problems()
  outputs = jax.jit(kernel_bank.kernel_bank, static_argnames="factors")(
    queries, samples, sample_mask, dim_mask, factors=FACTORS
  )
  return (samples, queries, sample_mask, dim_mask), outputs


def test_bandwidths_follow_scotts_rate_in_the_real_n_and_d():
  _, _, sample_mask, dim_mask = padded_problems()
  widths = kernel_bank.bandwidths(FACTORS, jnp.asarray(sample_mask), jnp.asarray(dim_mask))
  expected = [
    [factor * count ** (-1.0 / (dim + 4)) for factor in FACTORS] for count, dim in PROBLEMS
  ]
  np.testing.assert_allclose(widths, expected, rtol=1e-6)


def test_each_head_is_the_isotropic_kde_of_the_real_samples(bank):
  (samples, queries, _, _), (log_density, score, displacement) = bank
  chex.assert_shape(
    [log_density, score, displacement],
    [
      (len(PROBLEMS), NUM_QUERIES, len(FACTORS)),
      (len(PROBLEMS), NUM_QUERIES, len(FACTORS), MAX_DIM),
      (len(PROBLEMS), NUM_QUERIES, len(FACTORS), MAX_DIM),
    ],
  )
  for index, (count, dim) in enumerate(PROBLEMS):
    for head, factor in enumerate(FACTORS):
      width = factor * count ** (-1.0 / (dim + 4))
      expected = reference_kde(
        samples[index, :count, :dim],
        queries[index, :, :dim],
        width**2 * np.eye(dim, dtype=np.float32),
      )
      np.testing.assert_allclose(
        log_density[index, :, head], expected.log_density, rtol=1e-5, atol=1e-4
      )
      np.testing.assert_allclose(
        score[index, :, head, :dim],
        expected.score,
        rtol=1e-4,
        atol=1e-4 * np.max(np.abs(expected.score)),
      )
      # The score is the displacement to the kernel-weighted mean over h^2.
      np.testing.assert_allclose(
        displacement[index, :, head] / width**2, score[index, :, head], rtol=1e-5, atol=1e-5
      )
    np.testing.assert_array_equal(score[index, :, :, dim:], 0.0)  # Padded coordinates.


def test_uniform_weights_are_the_unweighted_bank(bank):
  (samples, queries, sample_mask, dim_mask), unweighted = bank
  counts = sample_mask.sum(axis=1, keepdims=True)
  log_weights = np.where(sample_mask, -np.log(counts), -np.inf).astype(np.float32)
  weighted = jax.jit(kernel_bank.kernel_bank, static_argnames="factors")(
    queries, samples, sample_mask, dim_mask, factors=FACTORS, sample_log_weights=log_weights
  )
  chex.assert_trees_all_close(weighted, unweighted, rtol=1e-5, atol=1e-4)


def test_query_features_clip_the_relative_log_density():
  kernel_log_density = jnp.asarray([[[-100.0, 0.0, 5.0]]])  # (b, m, K)
  gaussian_log_density = jnp.asarray([[-2.0]])
  displacement = jnp.arange(6, dtype=jnp.float32).reshape(1, 1, 3, 2)
  features = kernel_bank.query_features(kernel_log_density, gaussian_log_density, displacement)
  chex.assert_shape(features, (1, 1, 3 * 2 + 3))
  np.testing.assert_array_equal(features[0, 0, :6], np.arange(6))
  clip, scale = kernel_bank.RELATIVE_LOG_DENSITY_CLIP, kernel_bank.RELATIVE_LOG_DENSITY_SCALE
  np.testing.assert_allclose(features[0, 0, 6:], np.array([-clip, 2.0, 7.0]) / scale, rtol=1e-6)
