"""Tests for kdeformer.distributions: exact log-densities, scores, padding, sampling moments."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from kdeformer import distributions

PRIOR = dict(
  min_modes=1,
  max_modes=10,
  mean_range=3.0,
  min_variance=0.2,
  max_variance=1.0,
  weight_concentration=1.0,
)
MAX_DIM = 10


# Jitted once per pytree structure and shape: the prior mixtures of every d share one program.
@jax.jit
def log_prob_and_score(dist, points):
  return dist.log_prob_and_score(points)


@jax.jit
def autodiff_score(dist, points):
  return jax.grad(lambda p: jnp.sum(dist.log_prob_and_score(p).log_density))(points)


@functools.partial(jax.jit, static_argnums=2)
def sample(dist, key, num):
  return dist.sample(key, num)


@jax.jit
def draw_prior_jit(key, dim):
  return distributions.sample_mixture_prior(key, dim, max_dim=MAX_DIM, **PRIOR)


def draw_prior(dim, seed):
  return draw_prior_jit(jax.random.key(seed), jnp.asarray(dim))


def random_covariances(rng, num, dim):
  """num well-conditioned, strongly correlated covariances (num, d, d)."""
  factors = rng.normal(size=(num, dim, dim))
  return factors @ np.swapaxes(factors, -1, -2) / dim + 0.3 * np.eye(dim)


def random_full_mixture(dim: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  weights = rng.dirichlet(np.ones(3))
  means = rng.uniform(-2.0, 2.0, size=(3, dim))
  covariances = random_covariances(rng, 3, dim)
  return weights, means, covariances


def assert_scores_close(actual, expected, rtol=1e-5):
  expected = np.asarray(expected)
  np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.max(np.abs(expected)))


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_gaussian_mixture_log_density_matches_scipy(dim):
  weights, means, covariances = random_full_mixture(dim)
  mixture = distributions.gaussian_mixture(weights, means, covariances)
  points = np.random.default_rng(1).normal(size=(30, dim)) * 2.0
  expected = scipy.special.logsumexp(
    [
      np.log(w) + scipy.stats.multivariate_normal(mu, cov).logpdf(points)
      for w, mu, cov in zip(weights, means, covariances)
    ],
    axis=0,
  )
  estimate = log_prob_and_score(mixture, jnp.asarray(points, jnp.float32))
  chex.assert_shape((estimate.log_density, estimate.score), [(30,), (30, dim)])
  np.testing.assert_allclose(estimate.log_density, np.reshape(expected, -1), rtol=1e-5)


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_gaussian_mixture_score_is_gradient(dim):
  weights, means, covariances = random_full_mixture(dim, seed=2)
  mixture = distributions.gaussian_mixture(weights, means, covariances)
  points = jnp.asarray(np.random.default_rng(3).normal(size=(30, dim)) * 2.0, jnp.float32)
  assert_scores_close(log_prob_and_score(mixture, points).score, autodiff_score(mixture, points))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_gaussian_mixture_sample_moments(dim):
  weights, means, covariances = random_full_mixture(dim, seed=4)
  mixture = distributions.gaussian_mixture(weights, means, covariances)
  samples = np.asarray(sample(mixture, jax.random.key(0), 40_000), np.float64)
  mean = weights @ means
  second_moment = np.einsum(
    "k,kij->ij", weights, covariances + means[:, :, None] * means[:, None, :]
  )
  np.testing.assert_allclose(samples.mean(axis=0), mean, atol=0.05)
  np.testing.assert_allclose(
    np.cov(samples.T).reshape(dim, dim), second_moment - np.outer(mean, mean), atol=0.1
  )


@pytest.mark.parametrize("dim", [1, 3, 10])
def test_prior_padding_is_exactly_zero_and_score_is_gradient(dim):
  mixture = draw_prior(dim, seed=dim)
  samples = sample(mixture, jax.random.key(100), 64)
  chex.assert_shape(samples, (64, MAX_DIM))
  np.testing.assert_array_equal(samples[:, dim:], 0.0)
  estimate = log_prob_and_score(mixture, samples)
  np.testing.assert_array_equal(estimate.score[:, dim:], 0.0)
  chex.assert_tree_all_finite(estimate)
  autodiff = autodiff_score(mixture, samples)
  assert_scores_close(estimate.score[:, :dim], autodiff[:, :dim])


@pytest.mark.parametrize("dim", [1, 3, 10])
def test_prior_density_is_the_unpadded_mixture(dim):
  mixture = draw_prior(dim, seed=10 + dim)
  active = np.isfinite(np.asarray(mixture.log_weights))
  scales = np.asarray(mixture.scales, np.float64)[active][:, :dim, :dim]
  unpadded = distributions.gaussian_mixture(
    np.exp(np.asarray(mixture.log_weights)[active]),
    np.asarray(mixture.means)[active][:, :dim],
    scales @ np.swapaxes(scales, -1, -2),
  )
  samples = sample(mixture, jax.random.key(7), 64)
  padded = log_prob_and_score(mixture, samples)
  expected = log_prob_and_score(unpadded, samples[:, :dim])
  np.testing.assert_allclose(padded.log_density, expected.log_density, rtol=1e-5, atol=1e-5)
  assert_scores_close(padded.score[:, :dim], expected.score, rtol=1e-4)


@pytest.mark.parametrize("seed", range(5))
def test_prior_respects_its_knobs(seed):
  dim = 4
  mixture = draw_prior(dim, seed=20 + seed)
  active = np.isfinite(np.asarray(mixture.log_weights))
  assert PRIOR["min_modes"] <= active.sum() <= PRIOR["max_modes"]
  np.testing.assert_allclose(np.sum(np.exp(mixture.log_weights)), 1.0, rtol=1e-5)
  means = np.asarray(mixture.means)[active]
  assert np.all(np.abs(means[:, :dim]) <= PRIOR["mean_range"])
  np.testing.assert_array_equal(means[:, dim:], 0.0)
  scales = np.asarray(mixture.scales, np.float64)[active][:, :dim, :dim]
  variances = np.linalg.eigvalsh(scales @ np.swapaxes(scales, -1, -2))
  assert np.all(variances >= PRIOR["min_variance"] * (1 - 1e-4))
  assert np.all(variances <= PRIOR["max_variance"] * (1 + 1e-4))
  # A random rotation makes the covariances non-diagonal.
  covariance = scales[0] @ scales[0].T
  assert np.max(np.abs(covariance - np.diag(np.diag(covariance)))) > 1e-3
  np.testing.assert_allclose(
    np.asarray(mixture.inv_scales)[active] @ np.asarray(mixture.scales)[active],
    np.broadcast_to(np.eye(MAX_DIM), (active.sum(), MAX_DIM, MAX_DIM)),
    atol=1e-5,
  )


@pytest.mark.parametrize("dim", [1, 3])
def test_laplace_log_density_and_score(dim):
  laplace = distributions.Laplace(jnp.linspace(-1.0, 1.0, dim), jnp.asarray(0.7))
  points = jnp.asarray(np.random.default_rng(5).normal(size=(30, dim)) * 2.0, jnp.float32)
  estimate = log_prob_and_score(laplace, points)
  expected = np.sum(
    scipy.stats.laplace(loc=np.asarray(laplace.loc), scale=0.7).logpdf(np.asarray(points)), axis=-1
  )
  np.testing.assert_allclose(estimate.log_density, expected, rtol=1e-5)
  assert_scores_close(estimate.score, autodiff_score(laplace, points))


def test_laplace_sample_moments():
  laplace = distributions.Laplace(jnp.asarray([0.5, -1.0]), jnp.asarray(0.7))
  samples = np.asarray(sample(laplace, jax.random.key(1), 40_000), np.float64)
  np.testing.assert_allclose(samples.mean(axis=0), [0.5, -1.0], atol=0.03)
  np.testing.assert_allclose(np.cov(samples.T), 2 * 0.7**2 * np.eye(2), atol=0.05)
  assert np.allclose(distributions.laplace(3).loc, 0.0)


def random_student_t(dim, dof, seed=0):
  rng = np.random.default_rng(seed)
  scale_tril = np.linalg.cholesky(random_covariances(rng, 1, dim)[0])
  loc = rng.uniform(-1.0, 1.0, size=dim)
  return distributions.StudentT(
    jnp.asarray(loc, jnp.float32),
    jnp.asarray(scale_tril, jnp.float32),
    jnp.asarray(dof, jnp.float32),
  )


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_student_t_log_density_and_score(dim):
  dist = random_student_t(dim, dof=3.0)
  points = jnp.asarray(np.random.default_rng(6).normal(size=(30, dim)) * 3.0, jnp.float32)
  estimate = log_prob_and_score(dist, points)
  shape = np.asarray(dist.scale_tril, np.float64) @ np.asarray(dist.scale_tril, np.float64).T
  expected = scipy.stats.multivariate_t(np.asarray(dist.loc), shape, df=3.0).logpdf(
    np.asarray(points)
  )
  np.testing.assert_allclose(estimate.log_density, np.reshape(expected, -1), rtol=1e-5)
  assert_scores_close(estimate.score, autodiff_score(dist, points))


def test_student_t_sample_moments():
  dof = 8.0
  dist = random_student_t(2, dof, seed=1)
  samples = np.asarray(sample(dist, jax.random.key(2), 40_000), np.float64)
  shape = np.asarray(dist.scale_tril, np.float64) @ np.asarray(dist.scale_tril, np.float64).T
  np.testing.assert_allclose(samples.mean(axis=0), dist.loc, atol=0.03)
  np.testing.assert_allclose(np.cov(samples.T), dof / (dof - 2) * shape, rtol=0.1, atol=0.03)
  assert np.allclose(distributions.student_t(2).scale_tril, np.eye(2))


# ---------------------------------------------------------------------------------------------
# The broad prior's WarpedMixture: every kind, warped and rotated, against quadrature and
# finite differences.

BROAD = dict(
  kind_probabilities=(0.4, 0.4, 0.2),
  min_dof=2.0,
  max_dof=30.0,
  min_scale=0.03,
  max_scale=3.0,
  warp_probability=0.5,
  max_skew=1.0,
  min_tail_weight=0.6,
  max_tail_weight=1.5,
  rotation_probability=1.0,
)


def warped_example(dim: int, kind: int, warp: bool):
  """Two components of one kind, correlated in 2-D, optionally warped and rotated."""
  rng = np.random.default_rng(kind + 10 * dim)
  covariances = random_covariances(rng, 2, dim)
  rotation = np.linalg.qr(rng.normal(size=(dim, dim)))[0] if warp else None
  return distributions.warped_mixture(
    [0.3, 0.7],
    rng.uniform(-1.0, 1.0, size=(2, dim)),
    covariances,
    kinds=[kind, kind],
    dofs=[2.5, 7.0],
    skew=0.8 if warp else 0.0,
    tail_weight=0.7 if warp else 1.0,
    rotation=rotation,
  )


@jax.jit
def log_prob_jit(dist, points):
  return dist.log_prob(points)


KINDS = [distributions.GAUSSIAN, distributions.STUDENT_T, distributions.LAPLACE]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("warp", [False, True])
def test_warped_mixture_integrates_to_one_in_1d(kind, warp):
  dist = warped_example(1, kind, warp)
  # A substitution x = sinh(t) puts the polynomial tails of Student-t (nu = 2.5) on a finite
  # t-range: int f(x) dx = int f(sinh t) cosh t dt.
  t = np.linspace(-16.0, 16.0, 100_001)
  log_f = log_prob_and_score(dist, jnp.asarray(np.sinh(t)[:, None], jnp.float32)).log_density
  integral = np.trapezoid(np.exp(np.asarray(log_f, np.float64)) * np.cosh(t), t)
  np.testing.assert_allclose(integral, 1.0, atol=2e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_warped_mixture_integrates_to_one_in_2d(kind):
  dist = warped_example(2, kind, warp=True)
  t = np.linspace(-9.0, 9.0, 401)
  grid = np.stack(np.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
  log_f = log_prob_and_score(dist, jnp.asarray(np.sinh(grid), jnp.float32)).log_density
  integrand = (np.exp(np.asarray(log_f, np.float64)) * np.prod(np.cosh(grid), -1)).reshape(401, 401)
  integral = np.trapezoid(np.trapezoid(integrand, t, axis=1), t)
  np.testing.assert_allclose(integral, 1.0, atol=1e-2)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dim", [1, 3])
def test_warped_mixture_score_matches_finite_differences(kind, dim):
  dist = warped_example(dim, kind, warp=True)
  points = jax.random.normal(jax.random.key(kind), (16, dim)) * 1.5 + 0.1
  score = np.asarray(log_prob_and_score(dist, points).score, np.float64)
  step = 1e-3
  log_prob = lambda p: np.asarray(log_prob_jit(dist, jnp.asarray(p, jnp.float32)), np.float64)
  numeric = np.stack(
    [(log_prob(points + step * e) - log_prob(points - step * e)) / (2 * step) for e in np.eye(dim)],
    axis=-1,
  )
  np.testing.assert_allclose(score, numeric, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("kind", KINDS)
def test_warped_mixture_samples_follow_its_density(kind):
  """Kolmogorov-Smirnov distance of 4,000 1-D draws to the quadrature CDF of the density."""
  dist = warped_example(1, kind, warp=True)
  draws = np.sort(np.asarray(sample(dist, jax.random.key(3), 4000))[:, 0])
  t = np.linspace(-16.0, 16.0, 100_001)
  density = np.exp(
    np.asarray(
      log_prob_and_score(dist, jnp.asarray(np.sinh(t)[:, None], jnp.float32)).log_density,
      np.float64,
    )
  ) * np.cosh(t)
  cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(t))])
  empirical_at = np.interp(np.arcsinh(draws), t, cdf)
  distance = np.max(np.abs(empirical_at - (np.arange(1, 4001) - 0.5) / 4000))
  assert distance < 0.03  # The 1% critical value of KS at n = 4,000 is 0.026.


def test_as_warped_is_the_same_gaussian_mixture():
  mixture = draw_prior(3, seed=4)
  points = jax.random.normal(jax.random.key(0), (32, MAX_DIM)) * (jnp.arange(MAX_DIM) < 3)
  expected = log_prob_and_score(mixture, points)
  actual = log_prob_and_score(distributions.as_warped(mixture), points)
  np.testing.assert_allclose(actual.log_density, expected.log_density, rtol=1e-5, atol=1e-5)
  assert_scores_close(actual.score, expected.score, rtol=1e-4)


@jax.jit
def draw_broad_jit(key, dim):
  return distributions.sample_warped_prior(key, dim, max_dim=MAX_DIM, **PRIOR, **BROAD)


@pytest.mark.parametrize("seed", range(2))
def test_broad_prior_padding_is_zero_and_outputs_finite(seed):
  dim = 1 + seed * 6
  dist = draw_broad_jit(jax.random.key(seed), jnp.asarray(dim))
  points = sample(dist, jax.random.key(seed + 100), 256)
  assert np.all(np.asarray(points)[:, dim:] == 0.0)
  truth = log_prob_and_score(dist, points)
  assert np.all(np.isfinite(truth.log_density)) and np.all(np.isfinite(truth.score))
  assert np.all(np.asarray(truth.score)[:, dim:] == 0.0)


def test_broad_prior_draws_every_kind_and_scales_over_two_decades():
  dists = [draw_broad_jit(jax.random.key(seed), jnp.asarray(2)) for seed in range(40)]
  kinds = np.concatenate([np.asarray(d.kinds)[np.isfinite(d.log_weights)] for d in dists])
  assert set(kinds.tolist()) == set(KINDS)
  log_dets = np.concatenate(
    [np.asarray(d.log_det_scales)[np.isfinite(d.log_weights)] for d in dists]
  )
  # log|det| of 2-D scales: ratio of the largest to the smallest component scale > 30x.
  assert np.exp((log_dets.max() - log_dets.min()) / 2) > 30
  assert any(np.any(np.asarray(d.skew) != 0) for d in dists)
  assert all(not np.allclose(np.asarray(d.rotation)[:2, :2], np.eye(2)) for d in dists)


# ---------------------------------------------------------------------------------------------
# Loop-free samplers (training's config.data.fast_sampling): the same laws as jax.random's.


@pytest.mark.parametrize("shape", [0.4, 1.0, 1.7, 5.0, 15.0])
def test_loop_free_gamma_follows_the_gamma_law(shape):
  draws = np.asarray(
    jax.jit(distributions.loop_free_gamma, static_argnums=2)(
      jax.random.key(1), jnp.float32(shape), (20_000,)
    )
  )
  assert np.all(draws > 0)
  assert scipy.stats.kstest(draws, scipy.stats.gamma(shape).cdf).pvalue > 0.01
  reference = np.asarray(jax.random.gamma(jax.random.key(2), shape, (20_000,)))
  assert scipy.stats.ks_2samp(draws, reference).pvalue > 0.01
  np.testing.assert_allclose(draws.mean(), shape, rtol=0.03)
  np.testing.assert_allclose(draws.var(), shape, rtol=0.06)


def test_loop_free_gamma_takes_a_shape_per_draw_and_has_no_while_loop():
  """Student-t scales: one shape per point (dofs / 2), compiled without a while loop."""
  shapes = jnp.tile(jnp.asarray([1.0, 3.0, 15.0]), 10_000)
  sample = jax.jit(distributions.loop_free_gamma)
  # Only threefry's rolled rounds (a known trip count) may loop.
  loops = lambda f: [
    line
    for line in f.lower(jax.random.key(0), shapes).compile().as_text().splitlines()
    if " while(" in line and "known_trip_count" not in line
  ]
  assert not loops(sample) and loops(jax.jit(jax.random.gamma))
  draws = np.asarray(sample(jax.random.key(0), shapes)).reshape(-1, 3)
  for column, shape in enumerate([1.0, 3.0, 15.0]):
    assert scipy.stats.kstest(draws[:, column], scipy.stats.gamma(shape).cdf).pvalue > 0.01


@pytest.mark.parametrize("concentration", [1.0, 0.7])
def test_loop_free_dirichlet_marginals_are_beta(concentration):
  size = 10
  keys = jax.random.split(jax.random.key(0), 5_000)
  draws = np.asarray(
    jax.jit(jax.vmap(lambda k: distributions.loop_free_dirichlet(k, concentration, size)))(keys)
  )
  np.testing.assert_allclose(draws.sum(axis=1), 1.0, rtol=1e-5)
  beta = scipy.stats.beta(concentration, (size - 1) * concentration)
  for column in (0, 7):
    assert scipy.stats.kstest(draws[:, column], beta.cdf).pvalue > 0.01


def test_loop_free_warped_sample_follows_the_same_law():
  """A Student-t component of 2.5 degrees of freedom: loop-free and looped samples agree."""
  mixture = distributions.warped_mixture(
    [0.5, 0.5],
    [[0.0], [3.0]],
    [[[1.0]], [[0.25]]],
    kinds=[distributions.STUDENT_T, distributions.GAUSSIAN],
    dofs=[2.5, 5.0],
  )
  sample = jax.jit(
    lambda key, loop_free: mixture.sample(key, 20_000, loop_free=loop_free), static_argnums=1
  )
  fast, reference = sample(jax.random.key(0), True), sample(jax.random.key(1), False)
  assert scipy.stats.ks_2samp(np.asarray(fast[:, 0]), np.asarray(reference[:, 0])).pvalue > 0.01
  # And against the density itself (1-D: its CDF by quadrature).
  grid = jnp.linspace(-60.0, 60.0, 200_001)
  density = np.exp(np.asarray(mixture.log_prob(grid[:, None])))
  cdf = np.cumsum(density) * float(grid[1] - grid[0])
  statistic = scipy.stats.kstest(np.asarray(fast[:, 0]), lambda x: np.interp(x, grid, cdf))
  assert statistic.pvalue > 0.01
