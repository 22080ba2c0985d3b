"""MALA sampling (kdeformer.sampling), Estimator.sample and the KDE's resample."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdeformer import distributions
from kdeformer import kde
from kdeformer import sampling


def test_mala_targets_a_known_gaussian():
  scale = jnp.array([0.5, 2.0])
  target = lambda z: (-0.5 * jnp.sum((z / scale) ** 2, -1), -z / scale**2)
  initial = jnp.full((4000, 2), 3.0)  # Far from the mode: the chains must travel.
  points, acceptance, step = jax.jit(
    lambda key: sampling.mala(target, initial, key, num_steps=200, step_size=1.0)
  )(jax.random.key(0))
  np.testing.assert_allclose(np.mean(points, 0), [0.0, 0.0], atol=0.1)
  np.testing.assert_allclose(np.std(points, 0), scale, rtol=0.1)
  assert abs(float(acceptance) - sampling.TARGET_ACCEPTANCE) < 0.1, float(acceptance)
  assert 0 < float(step) < 1.0


def test_kde_resample_has_the_kde_covariance():
  rng = np.random.default_rng(0)
  samples = rng.normal(size=(400, 2)) * np.array([1.0, 3.0])
  drawn = np.asarray(kde.resample(samples, 20000, key=jax.random.key(1)))
  factor = kde.scott_factor(400, 2)
  expected = np.cov(samples.T) * (1 + factor**2)  # Samples' covariance plus the kernel's.
  np.testing.assert_allclose(np.cov(drawn.T), expected, rtol=0.06, atol=0.05)
  weights = np.r_[np.ones(200), np.zeros(200)]
  drawn = np.asarray(kde.resample(samples, 2000, key=jax.random.key(2), weights=weights))
  # Only the first half's points are picked: every draw is near one of them.
  nearest = np.min(np.linalg.norm(drawn[:, None] - samples[None, :200], axis=-1), axis=1)
  assert np.quantile(nearest, 0.5) < 1.0


@pytest.fixture
def pretrained(general_model):
  return general_model


def model_density_on_a_grid(model, samples, grid):
  """exp(log f) of the model at grid points (g, d), normalised to sum 1 over the grid."""
  log_density = np.asarray(model(samples, grid).log_density, np.float64)
  weights = np.exp(log_density - log_density.max())
  return weights / weights.sum()


def test_model_draws_follow_the_models_own_density_in_1d(pretrained):
  """MALA samples exp(log f) of the model: the draws' CDF and moments are the model's.

  A skewed problem (two overlapping components), n = 256 (one sample bucket: a chain step costs
  about half of n = 500's, and the property does not depend on n), 512 chains of the default
  100 steps; the model's CDF and moments by quadrature on a fine grid. Modes far apart would
  test the start instead: the chains start from a KDE resample and cross between modes 3.5
  apart slowly (measured: 40% of the draws in the smaller mode after 100 steps, 35.5% after
  400, 34% of the model's mass). The null's KS 1% point at 512 draws is 0.072; the standard
  deviation (standard error ~3%) catches a wrong scale. Measured: KS 0.061, mean 0.354 vs 0.442,
  standard deviation 1.101 vs 1.129 at n = 500 (2026-12-05); KS 0.048, mean 0.369 vs 0.443,
  standard deviation 1.030 vs 1.065 at n = 256 (2026-12-07).
  """
  mixture = distributions.gaussian_mixture([0.4, 0.6], [[-0.5], [1.0]], [[[0.25]], [[1.0]]])
  samples = np.asarray(mixture.sample(jax.random.key(10), 256))
  result = pretrained.sample(samples, 512, key=jax.random.key(0))
  assert result.points.shape == (512, 1)
  assert 0.4 < result.acceptance_rate < 0.8, result.acceptance_rate
  grid = np.linspace(-5.0, 6.0, 2201)
  density = model_density_on_a_grid(pretrained, samples, grid[:, None])
  draws = np.sort(result.points[:, 0])
  model_cdf = np.interp(draws, grid, np.cumsum(density))
  empirical = np.arange(1, len(draws) + 1) / len(draws)
  distance = np.max(
    np.maximum(np.abs(model_cdf - empirical), np.abs(model_cdf - (empirical - 1 / len(draws))))
  )
  mean = density @ grid
  deviation = np.sqrt(density @ (grid - mean) ** 2)
  print(
    f"KS distance of the draws to the model's CDF: {distance:.4f}; mean {draws.mean():.3f} "
    f"vs {mean:.3f}, standard deviation {draws.std():.3f} vs {deviation:.3f}"
  )
  assert distance < 0.09
  assert abs(draws.mean() - mean) < 0.15  # Standard error ~0.05.
  assert abs(draws.std() / deviation - 1) < 0.08


def test_model_draws_have_the_models_mean_and_covariance_in_2d(pretrained):
  """A correlated 2-D mixture with weights: the draws' moments are the model density's.

  n = 256 (one sample bucket, half of n = 400's cost per chain step), 512 chains; the model's
  moments by a Riemann sum on a grid of spacing 0.15 (the density is smooth on that scale: the
  sum's error is far below the draws' standard errors).
  """
  mixture = distributions.gaussian_mixture(
    [0.5, 0.5], [[-2.0, 0.0], [2.0, 1.0]], [np.eye(2) * 0.5, [[1.0, 0.5], [0.5, 1.0]]]
  )
  samples = np.asarray(mixture.sample(jax.random.key(11), 256))
  weights = np.r_[np.ones(192), np.full(64, 3.0)]
  result = pretrained.sample(samples, 512, key=jax.random.key(1), weights=weights)
  axis = np.linspace(-6.0, 6.0, 81)
  grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
  density = model_density_on_a_grid(lambda s, q: pretrained(s, q, weights=weights), samples, grid)
  mean = density @ grid
  covariance = (grid - mean).T @ ((grid - mean) * density[:, None])
  draws_mean, draws_covariance = result.points.mean(0), np.cov(result.points.T)
  print(
    f"means {draws_mean} vs {mean}; covariances {draws_covariance.ravel()} vs {covariance.ravel()}"
  )
  # Standard errors at 512 draws: ~0.09 on the means, ~10% on the covariance.
  np.testing.assert_allclose(draws_mean, mean, atol=0.25)
  np.testing.assert_allclose(draws_covariance, covariance, rtol=0.25, atol=0.25)


def test_sample_rejects_bad_arguments(pretrained):
  samples = np.random.default_rng(0).normal(size=(100, 2))
  with pytest.raises(ValueError, match="num_samples"):
    pretrained.sample(samples, 0, key=jax.random.key(0))
  with pytest.raises(ValueError, match="step_size"):
    pretrained.sample(samples, 10, key=jax.random.key(0), step_size=-1.0)
  with pytest.raises(
    ValueError, match="key must be a JAX PRNG key, jax.random.key\\(seed\\); got int"
  ):
    pretrained.sample(samples, 10, key=0)  # JAX's own TypeError spoke of "key_data.ndim".
  pretrained.sample(samples, 2, key=jax.random.PRNGKey(0), num_steps=2)  # Raw keys still work.
  with pytest.raises(ValueError, match="shape"):
    pretrained.sample(samples[None], 10, key=jax.random.key(0))
