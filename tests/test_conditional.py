"""Tests of kdeformer.conditional through FittedDensity: closed-form Gaussian conditionals."""

import jax
import numpy as np
import pytest
from scipy import stats

RHO = 0.8


def gaussian_samples(n, seed):
  return np.random.default_rng(seed).multivariate_normal(
    [0.0, 0.0], [[1.0, RHO], [RHO, 1.0]], size=n
  )


def exact_conditional(queries):
  """log f(x2 | x1) and its score for the RHO-correlated standard Gaussian."""
  variance = 1 - RHO**2
  mean = RHO * queries[:, 0]
  return (
    stats.norm.logpdf(queries[:, 1], mean, np.sqrt(variance)),
    -(queries[:, 1] - mean) / variance,
  )


@pytest.fixture(scope="module")
def gaussian_density(general_model):
  return general_model.fit(gaussian_samples(1000, 0))


@pytest.fixture(scope="module")
def queries():
  return gaussian_samples(100, 1)


def test_conditional_matches_the_closed_form(gaussian_density, queries):
  """Both modes within 0.12 nats on average of log f(x2 | x1) (measured 2026-12-07: ratio
  0.088, normalize=True 0.074; Scott's KDE ratio on the same data 0.088); a broken
  normalisation (the joint alone is 1.34 off) or a wrong score column crosses (the score's
  relative MSE was 0.023)."""
  truth, truth_score = exact_conditional(queries)
  ratio = gaussian_density.log_conditional(queries, [0])
  normalized = gaussian_density.log_conditional(queries, [0], normalize=True, key=jax.random.key(0))
  for out in (ratio, normalized):
    assert out.log_density.shape == (100,) and out.score.shape == (100, 1)
    assert np.mean(np.abs(np.asarray(out.log_density) - truth)) < 0.12
  # The score with respect to the rest is the joint's x2 component: relative MSE well below 1.
  score = np.asarray(normalized.score)[:, 0]
  assert np.mean((score - truth_score) ** 2) / np.mean(truth_score**2) < 0.15
  np.testing.assert_allclose(ratio.score, normalized.score)


def test_normalized_conditional_integrates_to_one(gaussian_density):
  """The trapezoid rule over x2 of exp(log f(x2 | x1)) on a fine line, for three x1."""
  line = np.linspace(-6.0, 6.0, 401)
  for x1 in (-1.5, 0.0, 2.0):
    rows = np.column_stack([np.full_like(line, x1), line])
    out = gaussian_density.log_conditional(rows, [0], normalize=True, key=jax.random.key(3))
    values = np.asarray(out.log_density, np.float64)
    # Rows of one x1 share one integral: the slice is the joint's, shifted.
    assert np.ptp(values - np.asarray(gaussian_density(rows).log_density, np.float64)) < 1e-5
    total = np.trapezoid(np.exp(values), line)
    assert abs(total - 1.0) < 0.02, (x1, total)


def test_equal_weights_give_the_unweighted_conditional(general_model, queries):
  samples = gaussian_samples(200, 2)
  plain = general_model.fit(samples).log_conditional(queries, [0])
  weighted = general_model.fit(samples, weights=np.full(200, 3.0)).log_conditional(queries, [0])
  np.testing.assert_allclose(weighted.log_density, plain.log_density, atol=1e-4)


def test_bounds_conditionals_integrate_to_one_inside_the_support(general_model):
  """x1 ~ Exp(1), x2 | x1 ~ N(x1, 1), bounds on x1 only: both conditionals are densities on
  the support, and rows outside it get -inf and a zero score."""
  rng = np.random.default_rng(4)
  x1 = rng.exponential(size=400)
  samples = np.column_stack([x1, x1 + rng.normal(size=400)])
  density = general_model.fit(samples, bounds=([0.0, -np.inf], [np.inf, np.inf]))
  key = jax.random.key(5)
  line = np.linspace(-6.0, 8.0, 281)
  rows = np.column_stack([np.full_like(line, 1.0), line])
  out = density.log_conditional(rows, [0], normalize=True, key=key)
  assert abs(np.trapezoid(np.exp(np.asarray(out.log_density, np.float64)), line) - 1) < 0.03
  # x1 given x2: a density on x1 > 0 (a sinh-stretched line reaches the bound).
  u = np.linspace(-12.0, 3.0, 1501)
  positive = np.exp(u)
  rows = np.column_stack([positive, np.full_like(positive, 1.0)])
  out = density.log_conditional(rows, [1], normalize=True, key=key)
  integrand = np.exp(np.asarray(out.log_density, np.float64)) * positive
  assert abs(np.trapezoid(integrand, u) - 1) < 0.03
  outside = density.log_conditional(np.array([[-0.5, 1.0], [0.0, 1.0]]), [1])
  assert np.all(np.asarray(outside.log_density) == -np.inf)
  assert np.all(np.asarray(outside.score) == 0)
  outside = density.log_conditional(np.array([[-0.5, 1.0]]), [0], normalize=True, key=key)
  assert np.asarray(outside.log_density)[0] == -np.inf


def test_sample_conditional_draws_the_gaussian_conditional(gaussian_density):
  """Given x1 = 1: x2 ~ N(0.8, 0.36); 400 draws, mean within 0.1 and sd within 20%."""
  drawn = gaussian_density.sample_conditional([0], [1.0], 400, key=jax.random.key(6))
  assert drawn.points.shape == (400, 2) and np.all(drawn.points[:, 0] == 1.0)
  assert 0.5 < drawn.acceptance_rate <= 1.0, drawn.acceptance_rate
  x2 = drawn.points[:, 1]
  assert abs(x2.mean() - RHO) < 0.1, x2.mean()
  assert abs(x2.std() / np.sqrt(1 - RHO**2) - 1) < 0.2, x2.std()
  assert len(np.unique(x2)) > 300  # Chains moved apart, not copies of a few draws.


@pytest.mark.parametrize(
  "given, message",
  [
    ([], "non-empty"),
    ([2], "outside"),
    ([-1], "outside"),
    ([0, 0], "duplicate"),
    ([0, 1], "all 2 columns"),
    ([0.5], "integer"),
    ("a", "integer"),
  ],
)
def test_bad_given_columns_are_refused(gaussian_density, queries, given, message):
  with pytest.raises(ValueError, match=message):
    gaussian_density.log_conditional(queries, given)
  with pytest.raises(ValueError, match=message):
    gaussian_density.sample_conditional(given, [0.0], 4, key=jax.random.key(0))


def test_bad_queries_and_options_are_refused(gaussian_density, queries):
  bad = queries.copy()
  bad[3, 1] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    gaussian_density.log_conditional(bad, [0])
  with pytest.raises(ValueError, match="d = 3 columns"):
    gaussian_density.log_conditional(np.zeros((4, 3)), [0])
  with pytest.raises(ValueError, match="shape"):
    gaussian_density.log_conditional(np.zeros(4), [0])
  with pytest.raises(ValueError, match="key"):
    gaussian_density.log_conditional(queries, [0], normalize=True)
  with pytest.raises(ValueError, match="even"):
    gaussian_density.log_conditional(
      queries, [0], normalize=True, key=jax.random.key(0), num_draws=3
    )
  with pytest.raises(ValueError, match="shape"):
    gaussian_density.sample_conditional([0], [0.0, 1.0], 4, key=jax.random.key(0))
  with pytest.raises(ValueError, match="NaN"):
    gaussian_density.sample_conditional([0], [np.nan], 4, key=jax.random.key(0))
  with pytest.raises(ValueError, match="key"):
    gaussian_density.sample_conditional([0], [0.0], 4, key=None)
  with pytest.raises(ValueError, match="num_samples"):
    gaussian_density.sample_conditional([0], [0.0], 0, key=jax.random.key(0))


def test_values_outside_the_support_are_refused(general_model):
  samples = np.abs(gaussian_samples(200, 7)) + 0.01
  density = general_model.fit(samples, bounds=(0.0, np.inf))
  with pytest.raises(ValueError, match="outside the support"):
    density.sample_conditional([0], [-1.0], 4, key=jax.random.key(0))
