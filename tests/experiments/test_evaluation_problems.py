"""Tests of experiments.harness.evaluation.problems: the suite's problems and grids."""

import jax
import numpy as np
import pytest

from experiments.configs import evaluate_tiny
from experiments.harness.evaluation import problems as problems_lib


def test_padded_mixture_problems_match_their_dimension():
  config = evaluate_tiny.get_config()
  config.grid.points_2d = 41
  grid, _ = problems_lib.evaluation_grid(2, config)
  keys = jax.random.split(jax.random.key(0), 2)
  # Padded to 5 coordinates, sliced back to 2.
  problems, modes = problems_lib.draw_mixture_problems(
      keys, 2, grid, prior=problems_lib.mixture_prior(config), max_dim=5, num_samples=64,
      num_queries=16)
  assert problems.samples.shape == (2, 64, 2)
  assert np.all(np.std(problems.samples, axis=1) > 0.1)
  assert problems.true_grid_score.shape == (2, grid.shape[0], 2)
  assert np.all((modes >= config.prior.min_modes) & (modes <= config.prior.max_modes))
  # The grid truth is a normalised 2-D density: it integrates to about one on [-6, 6]^2 (the
  # prior's means lie in [-3, 3], so little mass leaves the box).
  spacing = (2 * config.grid.limit / (config.grid.points_2d - 1))**2
  mass = np.exp(problems.true_grid_log_density).sum(axis=1) * spacing
  np.testing.assert_allclose(mass, 1.0, atol=0.15)
  # Scores are the gradient of the log-density (finite differences along the grid's axis 0).
  log_density = problems.true_grid_log_density[0].reshape(config.grid.points_2d, -1)
  step = 2 * config.grid.limit / (config.grid.points_2d - 1)
  finite_difference = (log_density[2:, 20] - log_density[:-2, 20]) / (2 * step)
  score = problems.true_grid_score[0, :, 0].reshape(config.grid.points_2d, -1)[1:-1, 20]
  assert np.median(np.abs(finite_difference - score)) < 0.2 * np.median(np.abs(score))


def test_fixed_problems_are_independent_draws_with_nested_sample_sizes():
  config = evaluate_tiny.get_config()
  distribution = problems_lib.out_of_family_distribution("laplace", config)
  keys = jax.random.split(jax.random.key(1), 3)
  problems = problems_lib.draw_fixed_problems(distribution, keys, np.zeros((0, 2)),
                                              num_samples=32, num_queries=8)
  assert problems.samples.shape == (3, 32, 2)
  assert problems.true_grid_log_density.shape == (3, 0)
  assert not np.allclose(problems.samples[0], problems.samples[1])  # One sample set per key.
  smaller = problems_lib.with_sample_size(problems, 8)
  np.testing.assert_array_equal(smaller.samples, problems.samples[:, :8])
  np.testing.assert_array_equal(smaller.true_sample_score, problems.true_sample_score[:, :8])
  np.testing.assert_array_equal(smaller.queries, problems.queries)


def test_grid_only_up_to_two_dimensions():
  config = evaluate_tiny.get_config()
  grid, volume = problems_lib.evaluation_grid(1, config)
  assert grid.shape == (config.grid.points_1d, 1)
  assert volume == pytest.approx(2 * config.grid.limit / (config.grid.points_1d - 1))
  grid, volume = problems_lib.evaluation_grid(5, config)
  assert grid.shape == (0, 5) and volume == 0.0


def test_unknown_out_of_family_distribution_is_named():
  with pytest.raises(ValueError, match="'cauchy'"):
    problems_lib.out_of_family_distribution("cauchy", evaluate_tiny.get_config())
