"""Tests for kdeformer.kde: scipy agreement, closed-form scores, chunking, oracle and SD-KDE."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from kdeformer import distributions
from kdeformer import kde
from kdeformer import metrics
from kdeformer import quadrature
from kdeformer.estimate import Estimate

NUM_SAMPLES = 200
NUM_QUERIES = 40


def random_problem(dim: int, seed: int = 0):
  """Correlated Gaussian samples (n, d) and queries (m, d) near them, float32."""
  rng = np.random.default_rng(seed)
  mixing = np.eye(dim) + 0.3 * rng.normal(size=(dim, dim))
  mean = rng.uniform(-2.0, 2.0, size=dim)
  samples = (rng.normal(size=(NUM_SAMPLES, dim)) @ mixing + mean).astype(np.float32)
  queries = (samples[:NUM_QUERIES] + 0.3 * rng.normal(size=(NUM_QUERIES, dim))).astype(np.float32)
  return samples, queries


def assert_scores_close(actual, expected, rtol):
  """Elementwise relative error with a floor at rtol times the largest component."""
  expected = np.asarray(expected)
  np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.max(np.abs(expected)))


@pytest.mark.parametrize("bandwidth", ["scott", "silverman", 0.3])
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_log_density_matches_scipy(dim, bandwidth):
  samples, queries = random_problem(dim)
  expected = scipy.stats.gaussian_kde(samples.T.astype(np.float64), bw_method=bandwidth).logpdf(
    queries.T.astype(np.float64)
  )
  estimate = kde.gaussian_kde(samples, queries, bandwidth)
  assert isinstance(estimate, Estimate)
  chex.assert_shape((estimate.log_density, estimate.score), [(NUM_QUERIES,), (NUM_QUERIES, dim)])
  np.testing.assert_allclose(estimate.log_density, expected, rtol=1e-5)


@pytest.mark.parametrize("bandwidth", ["scott", "silverman", 0.3])
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_score_is_gradient_of_log_density(dim, bandwidth):
  samples, queries = random_problem(dim)
  estimate = kde.gaussian_kde(samples, queries, bandwidth)
  # Each log-density depends on its own query only, so the gradient of the sum is the score.
  autodiff = jax.grad(lambda q: jnp.sum(kde.gaussian_kde(samples, q, bandwidth).log_density))(
    jnp.asarray(queries)
  )
  assert_scores_close(estimate.score, autodiff, rtol=1e-4)


def test_queries_default_to_samples():
  samples, _ = random_problem(2)
  chex.assert_trees_all_close(kde.gaussian_kde(samples), kde.gaussian_kde(samples, samples))


@pytest.mark.parametrize("query_chunk, key_chunk", [(7, 13), (16, 64), (NUM_QUERIES, 1)])
def test_chunked_equals_unchunked(query_chunk, key_chunk):
  samples, queries = random_problem(2, seed=1)
  expected = kde.gaussian_kde(samples, queries, query_chunk_size=10_000, key_chunk_size=10_000)
  actual = kde.gaussian_kde(
    samples, queries, query_chunk_size=query_chunk, key_chunk_size=key_chunk
  )
  np.testing.assert_allclose(actual.log_density, expected.log_density, rtol=1e-5)
  assert_scores_close(actual.score, expected.score, rtol=1e-5)


def test_kde_with_covariance_matches_scipy_for_any_kernel_covariance():
  samples, queries = random_problem(3, seed=2)
  kernel_covariance = np.array([[0.5, 0.2, 0.0], [0.2, 0.3, -0.1], [0.0, -0.1, 0.8]], np.float32)
  expected = scipy.special.logsumexp(
    scipy.stats.multivariate_normal(np.zeros(3), kernel_covariance).logpdf(
      queries[:, None, :].astype(np.float64) - samples[None].astype(np.float64)
    ),
    axis=1,
  ) - np.log(NUM_SAMPLES)
  estimate = jax.jit(kde.kde_with_covariance)(samples, queries, kernel_covariance)
  np.testing.assert_allclose(estimate.log_density, expected, rtol=1e-5)


def float64_kde(samples, queries, kernel_covariance):
  """A KDE's log-density (m,) and responsibilities (m, n) in float64, by log-sum-exp."""
  samples, queries = np.asarray(samples, np.float64), np.asarray(queries, np.float64)
  kernel_covariance = np.asarray(kernel_covariance, np.float64)
  component_log_density = scipy.stats.multivariate_normal(
    np.zeros(samples.shape[1]), kernel_covariance
  ).logpdf(queries[:, None] - samples[None])
  log_density = scipy.special.logsumexp(component_log_density, axis=1) - np.log(len(samples))
  responsibilities = np.exp(component_log_density - np.log(len(samples)) - log_density[:, None])
  return log_density, responsibilities


def test_far_queries_get_the_exact_log_density_and_score():
  """Queries 1e3 kernel widths away: every kernel underflows in float32 unless log-sum-exp'd."""
  samples, _ = random_problem(2, seed=3)
  queries = np.array([[1e3, -1e3], [50.0, 50.0]], np.float32)
  estimate = kde.gaussian_kde(samples, queries)
  covariance = np.cov(samples.astype(np.float64).T) * kde.scott_factor(NUM_SAMPLES, 2) ** 2
  log_density, responsibilities = float64_kde(samples, queries, covariance)
  assert np.all(log_density < -1e3)
  np.testing.assert_allclose(estimate.log_density, log_density, rtol=1e-5)
  # score(y) = sum_j r_j(y) H^-1 (x_j - y).
  score = np.einsum(
    "mn,mnd->md",
    responsibilities,
    (samples[None].astype(np.float64) - queries[:, None]) @ np.linalg.inv(covariance),
  )
  assert_scores_close(estimate.score, score, rtol=1e-4)


def test_jit_and_gradient_in_samples_is_the_closed_form():
  samples, queries = random_problem(2, seed=4)
  covariance = kde.sample_covariance(jnp.asarray(samples)) * 0.3**2
  fn = jax.jit(lambda x: jnp.sum(kde.kde_with_covariance(x, queries, covariance).log_density))
  grads = jax.grad(fn)(jnp.asarray(samples))
  chex.assert_shape(grads, samples.shape)
  # d/dx_j sum_q log f(q) = sum_q r_qj H^-1 (q - x_j).
  _, responsibilities = float64_kde(samples, queries, covariance)
  precision = np.linalg.inv(np.asarray(covariance, np.float64))
  differences = queries[:, None].astype(np.float64) - samples[None].astype(np.float64)
  expected = np.einsum("qj,qjd->jd", responsibilities, differences @ precision)
  assert_scores_close(grads, expected, rtol=1e-4)


def test_bandwidth_factor_rules():
  assert kde.bandwidth_factor("scott", 100, 2) == pytest.approx(100 ** (-1 / 6))
  assert kde.bandwidth_factor("silverman", 100, 2) == pytest.approx((100 * 4 / 4) ** (-1 / 6))
  assert kde.bandwidth_factor(0.7, 100, 2) == 0.7
  with pytest.raises(ValueError, match="bandwidth"):
    kde.bandwidth_factor("wide", 100, 2)
  samples, queries = random_problem(1)
  with pytest.raises(ValueError, match="positive"):
    kde.gaussian_kde(samples, queries, -0.5)


def two_component_mixture():
  return distributions.gaussian_mixture(
    weights=[0.4, 0.6], means=[[-2.0], [1.5]], covariances=[[[0.5]], [[1.0]]]
  )


def test_oracle_kde_is_no_worse_than_scott():
  mixture = two_component_mixture()
  factors = jnp.concatenate([kde.default_factor_grid(), jnp.asarray([kde.scott_factor(400, 1)])])

  @jax.jit
  def errors(key):
    samples = mixture.sample(key, 400)
    queries = mixture.sample(jax.random.fold_in(key, 1), 200)
    truth = mixture.log_prob_and_score(queries)
    by_score, best = kde.oracle_kde(samples, queries, true_score=truth.score, factors=factors)
    by_log_density, _ = kde.oracle_kde(
      samples, queries, true_log_density=truth.log_density, factors=factors, criterion="log_density"
    )
    scott = kde.kde_with_covariance(
      samples, queries, kde.sample_covariance(samples) * kde.scott_factor(400, 1) ** 2
    )
    score_errors = [metrics.relative_score_mse(e.score, truth.score) for e in (by_score, scott)]
    log_density_errors = [
      metrics.log_density_mse(e.log_density, truth.log_density) for e in (by_log_density, scott)
    ]
    return best, score_errors, log_density_errors

  best, (oracle_score, scott_score), (oracle_ld, scott_ld) = errors(jax.random.key(0))
  assert np.any(np.isclose(factors, best))
  assert oracle_score <= scott_score
  assert oracle_ld <= scott_ld
  samples, queries = random_problem(1)
  with pytest.raises(ValueError, match="true_score"):
    kde.oracle_kde(samples, queries, true_log_density=np.zeros(NUM_QUERIES))
  with pytest.raises(ValueError, match="criterion"):
    kde.oracle_kde(samples, queries, true_score=np.zeros((NUM_QUERIES, 1)), criterion="mise")


def test_sd_kde_shift_and_empirical_variant():
  mixture = two_component_mixture()
  samples = mixture.sample(jax.random.key(2), 300)
  queries = samples[:50]
  score_fn = lambda x: mixture.log_prob_and_score(x).score

  @jax.jit
  def run(samples, queries):
    covariance = kde.sample_covariance(samples) * kde.sd_kde_factor(300, 1) ** 2
    scores = score_fn(samples)
    shifted = kde.shift_samples(samples, scores, covariance)
    expected = kde.kde_with_covariance(shifted, queries, covariance)
    exact = kde.sd_kde(samples, queries, score_fn)
    empirical = kde.sd_kde(samples, queries)
    pilot_scores = kde.gaussian_kde(samples, samples, "silverman").score
    empirical_expected = kde.kde_with_covariance(
      kde.shift_samples(samples, pilot_scores, covariance), queries, covariance
    )
    return (
      shifted,
      samples + 0.5 * covariance[0, 0] * scores,
      exact,
      expected,
      empirical,
      empirical_expected,
    )

  shifted, shifted_by_hand, exact, expected, empirical, empirical_expected = run(samples, queries)
  np.testing.assert_allclose(shifted, shifted_by_hand, rtol=1e-6)
  chex.assert_trees_all_close(exact, expected, rtol=1e-5, atol=1e-5)
  chex.assert_trees_all_close(empirical, empirical_expected, rtol=1e-5, atol=1e-5)
  chex.assert_shape(empirical.score, (50, 1))


SD_KDE_SAMPLES = 1000
SD_KDE_REPETITIONS = 50


def test_sd_kde_with_exact_score_beats_silverman_kde_on_grid_mise():
  """SD-KDE (exact score) vs Silverman KDE, and vs the same bandwidth without the score shift.

  The second comparison makes the test about the debiasing shift: Silverman's rule alone
  oversmooths a bimodal density, so any smaller bandwidth would beat it here.
  """
  mixture = two_component_mixture()
  grid, cell = quadrature.regular_grid([-7.0], [7.0], 701)
  true_log_density = mixture.log_prob_and_score(grid).log_density
  score_fn = lambda x: mixture.log_prob_and_score(x).score

  @jax.jit
  @jax.vmap
  def mise(key):
    samples = mixture.sample(key, SD_KDE_SAMPLES)
    silverman = kde.gaussian_kde(samples, grid, "silverman")
    debiased = kde.sd_kde(samples, grid, score_fn)
    unshifted = kde.kde_with_covariance(
      samples, grid, kde.sample_covariance(samples) * kde.sd_kde_factor(SD_KDE_SAMPLES, 1) ** 2
    )
    return [
      metrics.grid_mise(estimate.log_density, true_log_density, cell)
      for estimate in (silverman, debiased, unshifted)
    ]

  keys = jax.random.split(jax.random.key(2024), SD_KDE_REPETITIONS)
  silverman_mise, sd_mise, unshifted_mise = jax.device_get(mise(keys))
  wins = int(np.sum(sd_mise < silverman_mise))
  shift_wins = int(np.sum(sd_mise < unshifted_mise))
  print(
    f"SD-KDE beats Silverman KDE in {wins}/{SD_KDE_REPETITIONS} repetitions and its own "
    f"bandwidth without the shift in {shift_wins}; mean MISE {np.mean(sd_mise):.2e} vs "
    f"{np.mean(silverman_mise):.2e} (Silverman) and {np.mean(unshifted_mise):.2e} (unshifted)"
  )
  assert wins >= 0.9 * SD_KDE_REPETITIONS
  assert shift_wins >= 0.9 * SD_KDE_REPETITIONS
