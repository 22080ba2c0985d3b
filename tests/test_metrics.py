"""Tests for kdeformer.metrics against hand-computed and closed-form values."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from kdeformer import metrics
from kdeformer import quadrature


def test_relative_score_mse():
  true = jnp.asarray([[[1.0, 0.0], [0.0, 2.0]], [[3.0, 4.0], [0.0, 0.0]]])  # (b, m, d)
  assert metrics.relative_score_mse(jnp.zeros_like(true), true) == pytest.approx(1.0)
  assert metrics.relative_score_mse(true, true) == 0.0
  estimated = true + 1.0
  # Sum over all 8 entries of 1, over sum ||s||^2 = 1 + 4 + 25 = 30.
  assert metrics.relative_score_mse(estimated, true) == pytest.approx(8.0 / 30.0)
  assert metrics.relative_score_mse(2.0 * true, true) == pytest.approx(1.0)


def test_score_and_log_density_mse():
  true = jnp.asarray([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
  estimated = jnp.asarray([[1.0, 1.0], [0.0, 0.0], [3.0, 1.0]])
  assert metrics.score_mse(estimated, true) == pytest.approx((1.0 + 4.0 + 4.0) / 3.0)
  assert metrics.log_density_mse(jnp.asarray([1.0, 2.0]), jnp.asarray([0.0, 0.0])) == pytest.approx(
    2.5
  )


@pytest.mark.parametrize("shift", [0.5, 2.0])
def test_grid_mise_1d_closed_form(shift):
  grid, cell = quadrature.regular_grid([-10.0], [10.0], 2001)
  reference = scipy.stats.norm.logpdf(np.asarray(grid[:, 0]))
  shifted = scipy.stats.norm.logpdf(np.asarray(grid[:, 0]), loc=shift)
  # int (N(0,1) - N(mu,1))^2 = (1 - exp(-mu^2 / 4)) / sqrt(pi).
  expected = (1.0 - np.exp(-(shift**2) / 4.0)) / np.sqrt(np.pi)
  assert metrics.grid_mise(jnp.asarray(shifted), jnp.asarray(reference), cell) == pytest.approx(
    expected, rel=1e-4
  )
  assert metrics.grid_mise(jnp.asarray(reference), jnp.asarray(reference), cell) == 0.0


def test_grid_mise_2d_closed_form():
  grid, cell = quadrature.regular_grid([-8.0, -8.0], [8.0, 8.0], 161)
  grid = np.asarray(grid, np.float64)
  shift = np.asarray([1.0, -0.5])
  reference = scipy.stats.multivariate_normal(np.zeros(2)).logpdf(grid)
  shifted = scipy.stats.multivariate_normal(shift).logpdf(grid)
  # int (N(0,I) - N(mu,I))^2 in 2-D = (1 - exp(-|mu|^2 / 4)) / (2 pi).
  expected = (1.0 - np.exp(-np.sum(shift**2) / 4.0)) / (2 * np.pi)
  assert metrics.grid_mise(jnp.asarray(shifted), jnp.asarray(reference), cell) == pytest.approx(
    expected, rel=1e-3
  )
