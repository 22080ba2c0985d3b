"""Tests of kdeformer.quadrature: tensor grids and trapezoid-rule integrals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdeformer import distributions
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


def test_regular_grid():
  points, cell = quadrature.regular_grid([0.0, -1.0], [1.0, 1.0], 5)
  assert points.shape == (25, 2)
  assert cell == pytest.approx(0.25 * 0.5)
  np.testing.assert_allclose(points[0], [0.0, -1.0])
  np.testing.assert_allclose(points[1], [0.0, -0.5])  # "ij" order: the last axis moves fastest.
  np.testing.assert_allclose(points[-1], [1.0, 1.0])
  line, width = quadrature.regular_grid(-2.0, 2.0, 9)
  assert line.shape == (9, 1) and width == pytest.approx(0.5)


def test_grid_quadrature_of_a_mixture():
  for dim, points in ((1, 1024), (2, 128)):
    mixture = prior_mixture(5, dim)
    samples = mixture.sample(jax.random.key(12), 512)
    log_f = lambda x: mixture.log_prob_and_score(x).log_density - 1.5  # noqa: B023 (used here)
    np.testing.assert_allclose(
      quadrature.grid_log_normalizer(log_f, samples, points), -1.5, atol=1e-4
    )


def test_sinh_grid_integrates_heavy_tails_that_the_box_misses():
  for dim, points in ((1, 1025), (2, 129)):
    student = distributions.student_t(dim, 3.0)
    samples = student.sample(jax.random.key(15), 16)
    integral = lambda grid: float(
      jnp.exp(
        jax.nn.logsumexp(
          student.log_prob_and_score(grid[0]).log_density  # noqa: B023 (used here)
          + grid[1]
        )
      )
    )
    # Mass beyond 200 whitened standard deviations is ~1e-7; float32 sums leave ~1e-6.
    np.testing.assert_allclose(
      integral(quadrature.sinh_grid_points(samples, points, 200.0)), 1.0, atol=5e-6
    )
    assert integral(quadrature.grid_points(samples, points)) < 1 - 1e-3  # The box loses the tails.
    mixture = prior_mixture(6, dim)
    log_f = lambda x: mixture.log_prob_and_score(x).log_density  # noqa: B023 (used here)
    mixture_samples = mixture.sample(jax.random.key(16), 64)
    grid, log_weights = quadrature.sinh_grid_points(mixture_samples, points, 200.0)
    np.testing.assert_allclose(jax.nn.logsumexp(log_f(grid) + log_weights), 0.0, atol=1e-5)


def test_sinh_grid_layout_and_every_other_node():
  samples = jax.random.normal(jax.random.key(0), (64, 2)) * jnp.array([1.0, 3.0]) + 5.0
  fine, fine_log_w = quadrature.sinh_grid_points(samples, 9, 50.0)
  coarse, coarse_log_w = quadrature.sinh_grid_points(samples, 5, 50.0)
  assert fine.shape == (81, 2) and fine_log_w.shape == (81,)
  # C order of the node indices: every other node in both axes is the coarse grid.
  np.testing.assert_allclose(
    np.asarray(fine).reshape(9, 9, 2)[::2, ::2].reshape(25, 2), coarse, rtol=1e-5, atol=1e-4
  )
  centre = np.asarray(fine).reshape(9, 9, 2)[4, 4]
  np.testing.assert_allclose(centre, np.mean(np.asarray(samples), axis=0), atol=1e-4)
  # The centre node's weight: du^2 (cosh 0 = 1) times the volume |det Cov|^(1/2) of dz -> dx.
  du = 2 * np.arcsinh(50.0) / 8
  covariance = np.cov(np.asarray(samples, np.float64), rowvar=False)
  np.testing.assert_allclose(
    np.asarray(fine_log_w).reshape(9, 9)[4, 4],
    2 * np.log(du) + 0.5 * np.linalg.slogdet(covariance)[1],
    atol=1e-4,
  )
