"""Weighted samples: the KDE baseline against scipy, and the estimator's weight conventions."""

import jax
import numpy as np
import pytest
import scipy.stats

from kdeformer import kde
from kdeformer import kernels
from kdeformer import whitening


@pytest.fixture(scope="module")
def weighted_data():
  rng = np.random.default_rng(0)
  samples = rng.normal(size=(300, 2)) @ np.array([[1.0, 0.4], [0.0, 0.7]])
  return samples, rng.normal(size=(40, 2)), rng.uniform(0.1, 2.0, size=300)


@pytest.mark.parametrize("bandwidth", ["scott", "silverman", 0.3])
def test_weighted_kde_equals_scipy(weighted_data, bandwidth):
  samples, queries, weights = weighted_data
  expected = scipy.stats.gaussian_kde(samples.T, bw_method=bandwidth, weights=weights)
  out = kde.gaussian_kde(samples, queries, bandwidth, weights=weights)
  np.testing.assert_allclose(out.log_density, expected.logpdf(queries.T), atol=1e-5)
  # scipy has no score: central differences of its log-density.
  step = 1e-4
  numerical = np.stack(
    [
      (expected.logpdf((queries + step * e).T) - expected.logpdf((queries - step * e).T))
      / (2 * step)
      for e in np.eye(2)
    ],
    axis=-1,
  )
  np.testing.assert_allclose(out.score, numerical, atol=2e-3)


def test_equal_weights_are_the_unweighted_kde(weighted_data):
  samples, queries, _ = weighted_data
  plain = kde.gaussian_kde(samples, queries)
  equal = kde.gaussian_kde(samples, queries, weights=np.full(len(samples), 7.0))
  # float32: the weights' log(1/n) rounds differently from the unweighted -log n.
  np.testing.assert_allclose(equal.log_density, plain.log_density, atol=1e-5)
  np.testing.assert_allclose(equal.score, plain.score, rtol=1e-4, atol=1e-5)


def test_zero_weights_are_dropped_samples(weighted_data):
  samples, queries, weights = weighted_data
  zeroed = weights.copy()
  zeroed[::3] = 0.0
  kept = zeroed > 0
  out = kde.gaussian_kde(samples, queries, weights=zeroed)
  expected = kde.gaussian_kde(samples[kept], queries, weights=weights[kept])
  np.testing.assert_allclose(out.log_density, expected.log_density, atol=1e-5)
  np.testing.assert_allclose(out.score, expected.score, atol=1e-5)


@pytest.mark.parametrize("outlier", [1e6, 1e100])
def test_a_far_outlier_of_weight_zero_changes_nothing(random_estimator, outlier):
  """Weighting out a wild value is how users drop it. At 1e6 standard deviations it set the
  KDE to one wrong value at every query (an unweighted centring in float32); at 1e100 every
  estimate, model and KDE, was NaN (inf after the float32 cast)."""
  rng = np.random.default_rng(3)
  samples, queries = rng.normal(size=(120, 2)), rng.normal(size=(6, 2))
  with_outlier = samples.copy()
  with_outlier[0] = [outlier, -outlier]
  weights = np.r_[0.0, np.ones(119)]
  key = jax.random.key(0)
  for name, estimate in [
    ("kde", lambda x, w: kde.gaussian_kde(x, queries, weights=w)),
    ("model", lambda x, w: random_estimator(x, queries, weights=w)),
    ("fitted model", lambda x, w: random_estimator.fit(x, weights=w)(queries)),
  ]:
    dropped = estimate(samples[1:], None)
    out = estimate(with_outlier, weights)
    np.testing.assert_allclose(out.log_density, dropped.log_density, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(out.score, dropped.score, atol=1e-4, err_msg=name)
  np.testing.assert_allclose(
    kde.resample(with_outlier, 50, key=key, weights=weights),
    kde.resample(samples, 50, key=key, weights=weights),
    atol=1e-6,
  )
  # The kernel itself, as traced programs call it (no float64 step before): the weighted
  # centring keeps the outlier out of the logits.
  if outlier < 1e30:  # Beyond float32's range the host step is what protects.
    cholesky = np.float32(np.linalg.cholesky(np.cov(samples[1:].T)) * 0.4)
    kernel = jax.jit(lambda x, w: kde.kde_with_cholesky(x, queries, cholesky, weights=w))
    out = kernel(with_outlier, weights / weights.sum())
    expected = kernel(samples[1:], weights[1:] / weights.sum())
    np.testing.assert_allclose(out.log_density, expected.log_density, atol=1e-4)


def test_weights_near_float64s_maximum_are_equal_weights(weighted_data):
  """Normalised by their largest first: 300 weights of 1e308 summed to inf (a NumPy error
  about an empty reduction followed)."""
  samples, queries, _ = weighted_data
  out = kde.gaussian_kde(samples, queries, weights=np.full(300, 1e308))
  expected = kde.gaussian_kde(samples, queries)
  np.testing.assert_allclose(out.log_density, expected.log_density, atol=1e-5)


def test_weighted_affine_map_uses_numpy_aweights_covariance(weighted_data):
  samples, _, weights = weighted_data
  normalized = weights / weights.sum()
  fitted = whitening.fit_affine_map(samples[None], sample_weights=normalized[None])
  np.testing.assert_allclose(fitted.mean[0], normalized @ samples, rtol=1e-5, atol=1e-6)
  covariance = np.cov(samples.T, aweights=weights)
  np.testing.assert_allclose(
    np.linalg.inv(fitted.whitening[0] @ fitted.whitening[0]), covariance, rtol=1e-4, atol=1e-5
  )


@pytest.mark.parametrize(
  "weights, message",
  [
    (np.ones(5), "shape"),
    (-np.ones(300), "non-negative"),
    (np.zeros(300), "sum to zero"),
    (np.r_[np.nan, np.ones(299)], "NaN"),
    (np.r_[np.ones(2), np.zeros(298)], "positive weight"),
  ],
)
def test_bad_weights_are_rejected(weighted_data, weights, message):
  samples, queries, _ = weighted_data
  with pytest.raises(ValueError, match=message):
    kde.gaussian_kde(samples, queries, weights=weights)


def test_effective_sample_size():
  assert kernels.effective_sample_size(np.full(10, 0.1)) == pytest.approx(10.0)
  assert kernels.effective_sample_size(np.array([0.5, 0.5, 0.0])) == pytest.approx(2.0)


def test_estimator_weight_conventions(random_estimator):
  rng = np.random.default_rng(1)
  samples, queries = rng.normal(size=(60, 2)), rng.normal(size=(20, 2))
  weights = rng.uniform(0.2, 1.0, size=60)
  plain = random_estimator(samples, queries)
  equal = random_estimator(samples, queries, weights=np.full(60, 2.0))
  np.testing.assert_allclose(equal.log_density, plain.log_density, atol=1e-5)
  np.testing.assert_allclose(equal.score, plain.score, atol=1e-5)
  zeroed = weights.copy()
  zeroed[:15] = 0.0
  out = random_estimator(samples, queries, weights=zeroed)
  dropped = random_estimator(samples[15:], queries, weights=weights[15:])
  np.testing.assert_allclose(out.log_density, dropped.log_density, atol=1e-5)
  np.testing.assert_allclose(out.score, dropped.score, atol=1e-5)
  # Weights change the answer (they are not ignored), batched like the samples.
  weighted = random_estimator(samples, queries, weights=weights)
  assert np.max(np.abs(weighted.log_density - plain.log_density)) > 1e-3
  batched = random_estimator(
    np.stack([samples, samples]),
    np.stack([queries, queries]),
    weights=np.stack([weights, np.ones(60)]),
  )
  np.testing.assert_allclose(batched.log_density[0], weighted.log_density, atol=1e-5)
  np.testing.assert_allclose(batched.log_density[1], plain.log_density, atol=1e-5)
  with pytest.raises(ValueError, match="test-time training"):
    random_estimator(samples, queries, weights=weights, ttt_steps=2)
  # Normalised: zero weights drop the samples from log Z too (integrand and proposal), so the
  # same key gives the dropped samples' normalised density; log Z is not ignored.
  key = jax.random.key(0)
  normalized = random_estimator(samples, queries, weights=zeroed, normalize=True, key=key)
  expected = random_estimator(samples[15:], queries, weights=weights[15:], normalize=True, key=key)
  np.testing.assert_allclose(normalized.log_density, expected.log_density, atol=1e-5)
  np.testing.assert_allclose(normalized.score, out.score, atol=1e-6)
  log_z = out.log_density - normalized.log_density
  np.testing.assert_allclose(log_z, log_z[0], atol=1e-5)  # One constant.
  assert abs(float(log_z[0])) > 1e-3, log_z[0]
