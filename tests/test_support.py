"""kdeformer.support: the change of variables to a bounded support, exact and checked.

The Jacobian terms are compared with finite differences, and the pulled-back estimate with
exact densities: a stand-in estimator returns the exact log-density and score of the mapped
variable Z = t(X) (derived by hand), so the pull-back must give X's exact ones.
"""

import jax
import numpy as np
import pytest
from scipy import special
from scipy import stats

from kdeformer import kde
from kdeformer import support
from kdeformer.estimate import Estimate

INF = np.inf
# One coordinate of each kind: lower only, upper only, both, neither.
MIXED_BOUNDS = (np.array([0.0, -INF, -1.0, -INF]), np.array([INF, 2.0, 3.0, INF]))


def mixed_points(rng, count):
  """(count, 4) points strictly inside MIXED_BOUNDS, some close to a bound."""
  return np.stack(
    [
      rng.exponential(size=count),
      2.0 - rng.exponential(size=count),
      -1.0 + 4.0 * rng.uniform(0.01, 0.99, size=count),
      rng.normal(size=count),
    ],
    axis=-1,
  )


def test_inverse_undoes_forward():
  bounds = support.make_bounds(MIXED_BOUNDS, 4)
  points = mixed_points(np.random.default_rng(0), 50)
  np.testing.assert_allclose(bounds.inverse(bounds.forward(points)), points, rtol=1e-13, atol=1e-13)
  # The unbounded coordinate is passed through untouched.
  np.testing.assert_array_equal(bounds.forward(points)[:, 3], points[:, 3])


def test_forward_is_log_and_logit():
  bounds = support.make_bounds(MIXED_BOUNDS, 4)
  x = np.array([[0.5, 1.5, 0.0, 7.0]])
  np.testing.assert_allclose(
    bounds.forward(x)[0], [np.log(0.5), np.log(0.5), special.logit(0.25), 7.0], rtol=1e-14
  )


def test_extreme_mapped_values_stay_inside_the_support():
  bounds = support.make_bounds(MIXED_BOUNDS, 4)
  points = bounds.inverse(np.array([[-800.0, -800.0, 800.0, 1.0], [800.0, 800.0, -800.0, 1.0]]))
  assert bounds.contains(points).all()


def test_jacobian_terms_match_finite_differences():
  bounds = support.make_bounds(MIXED_BOUNDS, 4)
  points = mixed_points(np.random.default_rng(1), 20)
  step = 1e-6 * np.maximum(1.0, np.abs(points))
  step = np.minimum(
    step,
    0.1
    * np.minimum(
      points - np.where(np.isfinite(MIXED_BOUNDS[0]), MIXED_BOUNDS[0], -1e9),
      np.where(np.isfinite(MIXED_BOUNDS[1]), MIXED_BOUNDS[1], 1e9) - points,
    ),
  )
  # The map acts coordinatewise, so one step of every coordinate at once is a diagonal FD.
  forward_fd = (bounds.forward(points + step) - bounds.forward(points - step)) / (2 * step)
  log_jacobian_fd = (
    bounds.log_abs_jacobian(points + step) - bounds.log_abs_jacobian(points - step)
  ) / (2 * step)
  np.testing.assert_allclose(bounds.jacobian(points), forward_fd, rtol=1e-6)
  np.testing.assert_allclose(
    bounds.log_abs_jacobian_gradient(points), log_jacobian_fd, rtol=1e-5, atol=1e-7
  )
  np.testing.assert_allclose(
    bounds.log_abs_jacobian(points), np.log(np.abs(bounds.jacobian(points))), rtol=1e-12, atol=1e-12
  )


def exact_mapped(log_prob_z, score_z):
  """A stand-in estimator: the exact estimate of Z at the (mapped) queries, float64."""

  def estimate(samples, queries):
    del samples
    queries = np.asarray(queries, np.float64)
    return Estimate(log_prob_z(queries), score_z(queries))

  return estimate


def logistic_log_prob(z):
  return -np.logaddexp(0.0, -z) - np.logaddexp(0.0, z)  # log sigma(z) + log(1 - sigma(z)).


# name, bounds, (log f_Z, score_Z) of Z = t(X) derived by hand, X's exact (log f, score),
# and a sampler of X.
EXACT_CASES = {
  # Z = log X, X ~ Exp(1): f_Z(z) = exp(z - e^z).
  "exponential": (
    (0.0, INF),
    lambda z: z[:, 0] - np.exp(z[:, 0]),
    lambda z: 1.0 - np.exp(z),
    lambda x: -x[:, 0],
    lambda x: -np.ones_like(x),
    lambda rng, k: rng.exponential(size=(k, 1)),
  ),
  # Z = log X, X ~ Gamma(2): f_Z(z) = exp(2 z - e^z).
  "gamma2": (
    (0.0, INF),
    lambda z: 2.0 * z[:, 0] - np.exp(z[:, 0]),
    lambda z: 2.0 - np.exp(z),
    lambda x: np.log(x[:, 0]) - x[:, 0],
    lambda x: 1.0 / x - 1.0,
    lambda rng, k: rng.gamma(2.0, size=(k, 1)),
  ),
  # Z = log X ~ N(0, 1).
  "lognormal": (
    (0.0, INF),
    lambda z: stats.norm.logpdf(z[:, 0]),
    lambda z: -z,
    lambda x: stats.lognorm(1.0).logpdf(x[:, 0]),
    lambda x: -(1.0 + np.log(x)) / x,
    lambda rng, k: rng.lognormal(size=(k, 1)),
  ),
  # X = 5 - E: Z = log(5 - X) = log E, an upper bound alone.
  "upper_exponential": (
    (-INF, 5.0),
    lambda z: z[:, 0] - np.exp(z[:, 0]),
    lambda z: 1.0 - np.exp(z),
    lambda x: -(5.0 - x[:, 0]),
    lambda x: np.ones_like(x),
    lambda rng, k: 5.0 - rng.exponential(size=(k, 1)),
  ),
  # X = 2 + 3 B, B ~ Beta(2, 5), Z = logit(B): f_Z = Beta(sigma) sigma (1 - sigma).
  "beta_2_5_on_2_5": (
    (2.0, 5.0),
    lambda z: stats.beta(2, 5).logpdf(special.expit(z[:, 0])) + logistic_log_prob(z[:, 0]),
    lambda z: 2.0 * (1.0 - special.expit(z)) - 5.0 * special.expit(z),
    lambda x: stats.beta(2, 5).logpdf((x[:, 0] - 2.0) / 3.0) - np.log(3.0),
    lambda x: (1.0 / ((x - 2.0) / 3.0) - 4.0 / (1.0 - (x - 2.0) / 3.0)) / 3.0,
    lambda rng, k: 2.0 + 3.0 * rng.beta(2.0, 5.0, size=(k, 1)),
  ),
  "beta_half": (
    (0.0, 1.0),
    lambda z: stats.beta(0.5, 0.5).logpdf(special.expit(z[:, 0])) + logistic_log_prob(z[:, 0]),
    lambda z: 0.5 * (1.0 - special.expit(z)) - 0.5 * special.expit(z),
    lambda x: stats.beta(0.5, 0.5).logpdf(x[:, 0]),
    lambda x: -0.5 / x + 0.5 / (1.0 - x),
    lambda rng, k: rng.beta(0.5, 0.5, size=(k, 1)),
  ),
  # Uniform on [-1, 2] x [0, 3]: each logit coordinate is standard logistic.
  "uniform_box": (
    ([-1.0, 0.0], [2.0, 3.0]),
    lambda z: np.sum(logistic_log_prob(z), axis=-1),
    lambda z: 1.0 - 2.0 * special.expit(z),
    lambda x: np.full(len(x), -2.0 * np.log(3.0)),
    np.zeros_like,
    lambda rng, k: rng.uniform([-1.0, 0.0], [2.0, 3.0], size=(k, 2)),
  ),
  # A positive coordinate (Exp(1)) beside an unbounded one (N(0, 1)).
  "exponential_and_normal": (
    ([0.0, -INF], [INF, INF]),
    lambda z: z[:, 0] - np.exp(z[:, 0]) + stats.norm.logpdf(z[:, 1]),
    lambda z: np.stack([1.0 - np.exp(z[:, 0]), -z[:, 1]], -1),
    lambda x: -x[:, 0] + stats.norm.logpdf(x[:, 1]),
    lambda x: np.stack([-np.ones(len(x)), -x[:, 1]], -1),
    lambda rng, k: np.stack([rng.exponential(size=k), rng.normal(size=k)], -1),
  ),
}


@pytest.mark.parametrize("name", sorted(EXACT_CASES))
def test_pull_back_of_the_exact_mapped_density_is_the_exact_density(name):
  bounds, log_prob_z, score_z, log_prob_x, score_x, draw = EXACT_CASES[name]
  rng = np.random.default_rng(2)
  samples, queries = draw(rng, 10), draw(rng, 200)
  out = support.estimate_with_bounds(exact_mapped(log_prob_z, score_z), samples, queries, bounds)
  np.testing.assert_allclose(out.log_density, log_prob_x(queries), rtol=1e-10, atol=1e-10)
  # Scores grow like 1 / (distance to a bound): compare relative to the Jacobian's size.
  scale = np.abs(support.make_bounds(bounds, queries.shape[1]).jacobian(queries))
  np.testing.assert_allclose(out.score / scale, score_x(queries) / scale, rtol=1e-9, atol=1e-9)


def test_pulled_back_score_is_the_gradient_of_the_pulled_back_log_density():
  # A correlated Gaussian in the mapped space: the pull-back couples the coordinates.
  precision = np.array(
    [[2.0, 0.6, 0.1, 0.0], [0.6, 1.5, 0.2, 0.3], [0.1, 0.2, 1.0, 0.4], [0.0, 0.3, 0.4, 1.2]]
  )
  fake = exact_mapped(
    lambda z: -0.5 * np.einsum("mi,ij,mj->m", z, precision, z), lambda z: -z @ precision
  )
  rng = np.random.default_rng(3)
  points = mixed_points(rng, 12)
  out = support.estimate_with_bounds(fake, mixed_points(rng, 10), points, MIXED_BOUNDS)
  for i in range(4):
    step = np.zeros(4)
    step[i] = 1e-6
    plus = support.estimate_with_bounds(fake, points[:5], points + step, MIXED_BOUNDS)
    minus = support.estimate_with_bounds(fake, points[:5], points - step, MIXED_BOUNDS)
    np.testing.assert_allclose(
      out.score[:, i], (plus.log_density - minus.log_density) / 2e-6, rtol=1e-5, atol=1e-5
    )


def test_queries_on_or_outside_the_support_get_minus_infinity_and_zero_score():
  rng = np.random.default_rng(4)
  samples = rng.beta(2.0, 5.0, size=(200, 1))
  queries = np.array([[-0.5], [0.0], [1e-300], [0.3], [1.0 - 1e-12], [1.0], [1.5]])
  out = kde.gaussian_kde(samples, queries, bounds=(0.0, 1.0))
  log_density, score = np.asarray(out.log_density), np.asarray(out.score)
  assert np.all(log_density[[0, 1, 5, 6]] == -INF)
  assert np.all(score[[0, 1, 5, 6]] == 0.0)
  assert np.all(np.isfinite(log_density[[2, 3, 4]]))
  assert not np.any(np.isnan(score))


def test_unbounded_bounds_give_bit_identical_outputs(random_estimator):
  rng = np.random.default_rng(5)
  samples = rng.normal(size=(96, 2)).astype(np.float32)
  queries = rng.normal(size=(20, 2)).astype(np.float32)
  for bounds in ((-INF, INF), (None, None), ([-INF, -INF], INF)):
    for call in (kde.gaussian_kde, random_estimator):
      plain, bounded = call(samples, queries), call(samples, queries, bounds=bounds)
      np.testing.assert_array_equal(bounded.log_density, plain.log_density)
      np.testing.assert_array_equal(bounded.score, plain.score)
      assert bounded.log_density.dtype == plain.log_density.dtype


def test_unbounded_coordinates_reach_the_estimator_unchanged():
  samples = np.random.default_rng(6).exponential(size=(30, 2)).astype(np.float32)
  mapped, _ = support.map_samples(samples, ([0.0, -INF], INF))
  np.testing.assert_array_equal(mapped[:, 1], samples[:, 1])
  np.testing.assert_allclose(mapped[:, 0], np.log(samples[:, 0].astype(np.float64)), rtol=1e-15)


def test_bounded_kde_is_the_mapped_kde_pulled_back():
  rng = np.random.default_rng(7)
  samples, queries = rng.gamma(2.0, size=(300, 1)), rng.gamma(2.0, size=(40, 1))
  out = kde.gaussian_kde(samples, queries, bounds=(0.0, INF))
  mapped = kde.gaussian_kde(np.log(samples), np.log(queries))
  # log f_X(x) = log f_Z(log x) - log x; score = (score_Z - 1) / x.
  np.testing.assert_allclose(
    out.log_density, mapped.log_density - np.log(queries[:, 0]), rtol=1e-6, atol=1e-6
  )
  np.testing.assert_allclose(out.score, (mapped.score - 1.0) / queries, rtol=1e-5, atol=1e-6)


def test_model_normalize_with_bounds_subtracts_the_mapped_problems_log_z(random_estimator):
  rng = np.random.default_rng(8)
  samples, queries = rng.exponential(size=(100, 1)), rng.exponential(size=(16, 1))
  key = jax.random.key(0)
  raw = random_estimator(samples, queries, bounds=(0.0, INF))
  normalized = random_estimator(samples, queries, bounds=(0.0, INF), normalize=True, key=key)
  mapped_raw = random_estimator(np.log(samples), np.log(queries))
  mapped_normalized = random_estimator(np.log(samples), np.log(queries), normalize=True, key=key)
  log_z = np.asarray(raw.log_density - normalized.log_density)
  np.testing.assert_allclose(log_z, log_z[0], atol=1e-5)  # One constant for every query.
  np.testing.assert_allclose(
    log_z[0], mapped_raw.log_density[0] - mapped_normalized.log_density[0], atol=1e-5
  )
  np.testing.assert_array_equal(normalized.score, raw.score)


def test_pull_back_broadcasts_over_a_batch_of_problems():
  bounds, log_prob_z, score_z, log_prob_x, score_x, draw = EXACT_CASES["exponential_and_normal"]
  rng = np.random.default_rng(9)
  queries = np.stack([draw(rng, 30), draw(rng, 30)])  # (b, m, d) = (2, 30, 2)
  bounds = support.make_bounds(bounds, 2)
  mapped, inside = support.map_queries(queries, bounds)
  assert mapped.shape == queries.shape and inside.all()
  flat = mapped.reshape(-1, 2)
  out = support.pull_back(
    Estimate(log_prob_z(flat).reshape(2, 30), score_z(flat).reshape(2, 30, 2)), queries, bounds
  )
  for index in range(2):
    np.testing.assert_allclose(out.log_density[index], log_prob_x(queries[index]), rtol=1e-10)
    np.testing.assert_allclose(out.score[index], score_x(queries[index]), rtol=1e-9, atol=1e-9)


def test_sampling_with_bounds_stays_inside_and_maps_back(random_estimator):
  rng = np.random.default_rng(10)
  samples = rng.beta(2.0, 5.0, size=(200, 1))
  key = jax.random.key(1)
  drawn = kde.resample(samples, 500, key=key, bounds=(0.0, 1.0))
  expected = special.expit(
    np.asarray(kde.resample(special.logit(samples), 500, key=key), np.float64)
  )
  np.testing.assert_allclose(drawn, expected, rtol=1e-6)
  assert np.all((np.asarray(drawn) > 0) & (np.asarray(drawn) < 1))
  result = random_estimator.sample(samples, 64, key=key, num_steps=4, bounds=(0.0, 1.0))
  assert result.points.shape == (64, 1)
  assert np.all((result.points > 0) & (result.points < 1))


@pytest.mark.parametrize(
  "bounds, samples, match",
  [
    ((0.0, INF), [[0.0], [1.0], [2.0]], r"exactly on the lower bound 0 of coordinate 0.*offset"),
    ((0.0, INF), [[-0.5], [1.0], [2.0]], r"1 sample\(s\) lie on or beyond the lower bound"),
    ((-INF, 1.0), [[0.5], [1.5], [0.2]], r"beyond the upper bound 1 of coordinate 0"),
    ((1.0, 0.0), [[0.5], [0.6], [0.2]], r"lower < upper.*coordinate 0 has lower = 1 >= upper"),
    ((INF, INF), [[0.5], [0.6], [0.2]], r"lower < upper"),
    (([0.0, 0.0], INF), [[0.5], [0.6], [0.2]], r"expected a scalar or shape \(d,\) = \(1,\)"),
    ((0.0,), [[0.5], [0.6], [0.2]], r"a pair \(lower, upper\)"),
    ("positive", [[0.5], [0.6], [0.2]], r"a pair \(lower, upper\)"),
    ((np.nan, 1.0), [[0.5], [0.6], [0.2]], r"NaN"),
  ],
)
def test_bad_bounds_or_samples_raise_a_clear_error(bounds, samples, match):
  with pytest.raises(ValueError, match=match):
    kde.gaussian_kde(np.asarray(samples), bounds=bounds)
  with pytest.raises(ValueError, match=match):
    support.map_samples(np.asarray(samples), bounds)


def test_estimator_and_resample_reject_samples_on_a_bound(random_estimator):
  samples = np.random.default_rng(11).exponential(size=(50, 1))
  samples[3] = 0.0
  with pytest.raises(ValueError, match="exactly on the lower bound"):
    random_estimator(samples, bounds=(0.0, INF))
  with pytest.raises(ValueError, match="exactly on the lower bound"):
    random_estimator.sample(samples, 4, key=jax.random.key(0), bounds=(0.0, INF))
  with pytest.raises(ValueError, match="exactly on the lower bound"):
    kde.resample(samples, 4, key=jax.random.key(0), bounds=(0.0, INF))


def support_quadrature(log_density_fn, lower, upper):
  """The trapezoid rule of exp(log f) over (lower, upper), geometric near finite bounds."""
  near = np.geomspace(1e-12, 0.05, 400)
  if np.isfinite(upper):
    width = upper - lower
    inner = np.linspace(0.05, width - 0.05, 1000)
    offsets = np.concatenate([near, inner, width - near[::-1]])
  else:
    offsets = np.concatenate([near, np.linspace(0.05, 60.0, 2400)[1:]])
  points = (lower + offsets)[:, None]
  return np.trapezoid(np.exp(np.asarray(log_density_fn(points), np.float64)), points[:, 0])


@pytest.mark.parametrize(
  "draw, lower, upper",
  [
    (lambda rng: rng.exponential(size=(256, 1)), 0.0, INF),
    (lambda rng: rng.beta(2.0, 5.0, size=(256, 1)), 0.0, 1.0),
  ],
)
def test_general_model_with_bounds_integrates_to_one_over_the_support(
  general_model, draw, lower, upper
):
  samples = draw(np.random.default_rng(12))
  total = support_quadrature(
    lambda points: general_model(samples, points, bounds=(lower, upper)).log_density, lower, upper
  )
  # Measured 2026-12-04: 0.984 (exponential), 1.006 (Beta(2, 5)).
  assert abs(total - 1.0) < 0.05, total


def test_bounds_are_a_frozen_copy_of_the_callers_arrays():
  lower = np.zeros(2)
  bounds = support.make_bounds((lower, INF), 2)
  lower[0] = -5.0
  assert bounds.lower[0] == 0.0
  with pytest.raises(ValueError):
    bounds.lower[0] = 1.0  # Read-only.
