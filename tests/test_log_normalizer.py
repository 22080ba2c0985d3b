"""Tests of the importance-sampling log Z and the normalised estimator (against quadrature)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdeformer import distributions
from kdeformer import kde
from kdeformer import log_normalizer as nc
from kdeformer import quadrature

# The training prior (experiments/configs/default.py's data section).
PRIOR = dict(
  min_modes=1,
  max_modes=10,
  mean_range=3.0,
  min_variance=0.2,
  max_variance=1.0,
  weight_concentration=1.0,
)


def prior_mixture(seed: int, dim: int) -> distributions.GaussianMixture:
  return distributions.sample_mixture_prior(jax.random.key(seed), dim, max_dim=dim, **PRIOR)


@pytest.mark.parametrize("dim", [1, 2])
def test_importance_sampling_recovers_a_known_constant(dim):
  mixture = prior_mixture(dim, dim)
  samples = mixture.sample(jax.random.key(10), 512)
  log_z = 0.7
  log_f = lambda points: mixture.log_prob_and_score(points).log_density + log_z
  out = nc.log_normalizer(log_f, samples, jax.random.key(0), 8192)
  assert out.num_draws == 8192
  assert 0 < float(out.standard_error) < 0.01
  assert abs(float(out.log_z) - log_z) < max(4 * float(out.standard_error), 1e-3)
  assert abs(float(out.log_z) - log_z) < 0.01
  assert float(out.effective_sample_size) > 0.5 * 8192


def test_standard_error_is_honest_over_independent_keys():
  mixture = prior_mixture(3, 2)
  samples = mixture.sample(jax.random.key(11), 256)
  log_f = lambda points: mixture.log_prob_and_score(points).log_density
  outs = [nc.log_normalizer(log_f, samples, jax.random.key(k), 2048) for k in range(12)]
  z_scores = np.array([float(o.log_z) / float(o.standard_error) for o in outs])
  # If the standard errors were ~10x too small (draws treated as i.i.d. wrongly, or the
  # replicates correlated), the mean squared z-score would be ~100.
  assert np.mean(z_scores**2) < 4.0
  spread = np.std([float(o.log_z) for o in outs])
  assert 0.3 < spread / np.mean([float(o.standard_error) for o in outs]) < 3.0


def test_proposal_draws_are_antithetic_and_their_density_is_the_kde_mixture():
  centres = jax.random.normal(jax.random.key(0), (50, 2))
  draws = nc.proposal_draws(jax.random.key(1), centres, 200, 0.3, 0.1, 2.0)
  assert nc.defensive_share(200, 0.1) == 0.1
  log_q = nc.proposal_log_density(draws, centres, 0.3, 0.1, 2.0)
  assert draws.shape == (200, 2) and log_q.shape == (200,)
  # Layout: 90 kernel draws, 10 defensive, then their antithetic mirrors (share a = 0.1).
  kernel_first, kernel_second = draws[:90], draws[100:190]
  midpoints = np.asarray(0.5 * (kernel_first + kernel_second))
  squared = np.sum((midpoints[:, None] - np.asarray(centres)[None]) ** 2, -1)
  np.testing.assert_allclose(squared.min(axis=1), 0, atol=1e-10)  # Mirrored about a centre.
  np.testing.assert_allclose(draws[90:100], -draws[190:200], atol=1e-6)
  # Systematic sampling: 90 draws over 50 centres gives every centre 1 or 2 draws.
  counts = np.bincount(np.argmin(squared, axis=1), minlength=50)
  assert counts.min() >= 1 and counts.max() <= 2
  kernel = kde.kde_with_covariance(centres, draws, 0.09 * jnp.eye(2)).log_density
  broad = jax.scipy.stats.multivariate_normal.logpdf(draws, jnp.zeros(2), 4.0 * jnp.eye(2))
  np.testing.assert_allclose(
    log_q, jnp.logaddexp(jnp.log(0.9) + kernel, jnp.log(0.1) + broad), rtol=1e-5, atol=1e-5
  )


def test_invalid_arguments_raise():
  samples = np.random.default_rng(0).normal(size=(64, 1))
  log_f = lambda x: jnp.zeros(x.shape[0])
  with pytest.raises(ValueError, match="multiple of 2 \\* num_replicates"):
    nc.log_normalizer(log_f, samples, jax.random.key(0), 100, num_replicates=16)
  with pytest.raises(ValueError, match="defensive_weight"):
    nc.log_normalizer(log_f, samples, jax.random.key(0), 64, defensive_weight=1.0)
  with pytest.raises(ValueError):
    nc.log_normalizer(log_f, samples[:, 0], jax.random.key(0), 64)


def test_non_finite_log_densities_are_refused_not_averaged():
  """NaN (or +inf) at any draw made log Z NaN silently; -inf everywhere made it -inf. -inf at
  some draws (a bounded support) is a zero density and stays allowed."""
  samples = np.random.default_rng(0).normal(size=(64, 1))
  key = jax.random.key(0)
  one_nan = lambda x: jnp.where(jnp.arange(x.shape[0]) == 5, jnp.nan, -0.5 * x[:, 0] ** 2)
  with pytest.raises(ValueError, match="NaN or \\+inf at 1 of 64 importance draws"):
    nc.log_normalizer(one_nan, samples, key, 64)
  with pytest.raises(ValueError, match="-inf \\(zero density\\) at all 64"):
    nc.log_normalizer(lambda x: jnp.full(x.shape[0], -jnp.inf), samples, key, 64)
  half_line = lambda x: jnp.where(x[:, 0] > 0, -x[:, 0], -jnp.inf)  # Exp(1): log Z = 0.
  assert np.isfinite(float(nc.log_normalizer(half_line, samples, key, 64).log_z))


@pytest.fixture
def model(general_model):
  return general_model


def test_normalized_model_density_integrates_to_one_in_1d(model):
  samples = prior_mixture(0, 1).sample(jax.random.key(13), 512)
  normalized = nc.normalized_estimator(model, jax.random.key(1), 8192)
  grid, log_weights = quadrature.grid_points(samples, 8192)
  out = normalized(samples, grid)
  raw = model(samples, grid)
  integral = float(jnp.exp(jax.nn.logsumexp(out.log_density + log_weights)))
  assert abs(integral - 1.0) < 1e-2
  np.testing.assert_allclose(out.score, raw.score)
  shift = raw.log_density - out.log_density
  np.testing.assert_allclose(shift, shift[0], atol=1e-5)  # One constant, log Z.


def test_model_log_z_matches_grid_quadrature_in_2d(model):
  samples = prior_mixture(1, 2).sample(jax.random.key(14), 512)
  log_f = lambda points: model(samples, points).log_density
  estimate = nc.log_normalizer(log_f, samples, jax.random.key(2), 8192)
  # 8100 queries: the same compiled program.
  grid = quadrature.grid_log_normalizer(log_f, samples, 90)
  assert abs(float(estimate.log_z) - float(grid)) < 0.01
  assert float(estimate.standard_error) < 0.01
