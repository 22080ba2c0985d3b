"""Estimator.fit: samples encoded once give what the plain call gives, without re-encoding."""

import jax
import numpy as np
import pytest

SAMPLES = np.random.default_rng(0).normal(size=(300, 2)) * np.array([1.0, 3.0]) + 5.0
QUERIES = [np.random.default_rng(seed).normal(size=(40, 2)) * 2.0 + 5.0 for seed in (1, 2)]
WEIGHTS = np.r_[np.ones(200), np.zeros(50), np.full(50, 2.0)]


@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["unweighted", "weighted"])
def test_fitted_calls_equal_the_plain_call(random_estimator, weights):
  density = random_estimator.fit(SAMPLES, weights=weights)
  for queries in QUERIES:
    expected = random_estimator(SAMPLES, queries, weights=weights)
    out = density(queries)
    np.testing.assert_allclose(out.log_density, expected.log_density, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.score, expected.score, rtol=1e-6, atol=1e-6)


def test_the_samples_are_encoded_once(random_estimator, monkeypatch):
  calls = []
  encode = random_estimator.encode
  monkeypatch.setattr(random_estimator, "encode", lambda *args: calls.append(args) or encode(*args))
  density = random_estimator.fit(SAMPLES)
  for queries in QUERIES:
    density(queries)
  density(QUERIES[0], normalize=True, key=jax.random.key(0))
  density.sample(8, key=jax.random.key(1), num_steps=4)
  assert len(calls) == 1


def test_fitted_normalize_is_the_plain_normalize_and_is_kept_per_key(random_estimator):
  key = jax.random.key(3)
  density = random_estimator.fit(SAMPLES, weights=WEIGHTS)
  expected = random_estimator(SAMPLES, QUERIES[0], weights=WEIGHTS, normalize=True, key=key)
  out = density(QUERIES[0], normalize=True, key=key)
  np.testing.assert_allclose(out.log_density, expected.log_density, rtol=1e-5, atol=1e-5)
  log_z = density.log_normalizer(key)
  assert density.log_normalizer(key) == log_z  # Kept, not re-estimated.
  assert density.log_normalizer(jax.random.key(4)) != log_z  # Another key, another estimate.
  np.testing.assert_allclose(
    density(QUERIES[0]).log_density - log_z, out.log_density, rtol=1e-6, atol=1e-6
  )
  with pytest.raises(ValueError, match="pass key"):
    density(QUERIES[0], normalize=True)


def test_fitted_sample_is_the_plain_sample(random_estimator):
  key = jax.random.key(5)
  expected = random_estimator.sample(SAMPLES, 16, key=key, num_steps=6)
  drawn = random_estimator.fit(SAMPLES).sample(16, key=key, num_steps=6)
  np.testing.assert_array_equal(drawn.points, expected.points)
  assert drawn.acceptance_rate == expected.acceptance_rate


def test_fitted_with_bounds_is_the_plain_call_with_bounds(random_estimator):
  positive = np.random.default_rng(6).exponential(size=(200, 1))
  queries = np.array([[-1.0], [0.0], [0.2], [1.0], [4.0]])
  expected = random_estimator(positive, queries, bounds=(0.0, np.inf))
  out = random_estimator.fit(positive, bounds=(0.0, np.inf))(queries)
  np.testing.assert_allclose(out.log_density, expected.log_density, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(out.score, expected.score, rtol=1e-6, atol=1e-6)
  assert np.isneginf(out.log_density[:2]).all()
  drawn = random_estimator.fit(positive, bounds=(0.0, np.inf)).sample(
    8, key=jax.random.key(7), num_steps=4
  )
  assert (drawn.points > 0).all()


def test_fit_and_its_calls_reject_bad_input(random_estimator):
  with pytest.raises(ValueError, match="NaN"):
    random_estimator.fit(np.full((50, 2), np.nan))
  with pytest.raises(ValueError, match="must have shape \\(n, d\\)"):
    random_estimator.fit(SAMPLES[None])
  density = random_estimator.fit(SAMPLES)
  with pytest.raises(ValueError, match="d = 3 columns"):
    density(np.zeros((4, 3)))
  with pytest.raises(ValueError, match="num_steps"):
    density.sample(4, key=jax.random.key(0), num_steps=1)
