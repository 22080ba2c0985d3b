"""Tests of experiments.harness.evaluation.problems: the suite's problems and grids."""

import jax
import numpy as np
import pytest

from experiments.configs import evaluate_full
from experiments.configs import evaluate_tiny
from experiments.harness.evaluation import problems as problems_lib
from kdeformer import distributions


def test_padded_mixture_problems_match_their_dimension():
  config = evaluate_tiny.get_config()
  config.grid.points_2d = 41
  grid, _ = problems_lib.evaluation_grid(2, config)
  keys = jax.random.split(jax.random.key(0), 2)
  # Padded to 5 coordinates, sliced back to 2.
  problems, modes = problems_lib.draw_mixture_problems(
    keys,
    2,
    grid,
    prior=problems_lib.mixture_prior(config),
    max_dim=5,
    num_samples=64,
    num_queries=16,
  )
  assert problems.samples.shape == (2, 64, 2)
  assert np.all(np.std(problems.samples, axis=1) > 0.1)
  assert problems.true_grid_score.shape == (2, grid.shape[0], 2)
  assert np.all((modes >= config.prior.min_modes) & (modes <= config.prior.max_modes))
  # The grid truth is a normalised 2-D density: it integrates to about one on [-6, 6]^2 (the
  # prior's means lie in [-3, 3], so little mass leaves the box).
  spacing = (2 * config.grid.limit / (config.grid.points_2d - 1)) ** 2
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
  distribution = problems_lib.out_of_family_row("laplace_d2", config).distribution
  keys = jax.random.split(jax.random.key(1), 3)
  problems = problems_lib.draw_fixed_problems(
    distribution, keys, np.zeros((0, 2)), num_samples=32, num_queries=8
  )
  assert problems.samples.shape == (3, 32, 2)
  assert problems.true_grid_log_density.shape == (3, 0)
  assert not np.allclose(problems.samples[0], problems.samples[1])  # One sample set per key.
  smaller = problems_lib.with_sample_size(problems, 8)
  np.testing.assert_array_equal(smaller.samples, problems.samples[:, :8])
  np.testing.assert_array_equal(smaller.true_sample_score, problems.true_sample_score[:, :8])
  np.testing.assert_array_equal(smaller.queries, problems.queries)


def test_grid_only_up_to_two_dimensions_and_where_configured():
  config = evaluate_tiny.get_config()
  grid, volume = problems_lib.evaluation_grid(1, config)
  assert grid.shape == (config.grid.points_1d, 1)
  assert volume == pytest.approx(2 * config.grid.limit / (config.grid.points_1d - 1))
  grid, volume = problems_lib.evaluation_grid(5, config)
  assert grid.shape == (0, 5) and volume == 0.0
  config.grid.points_2d = 0  # evaluate_paper.py: no grid in d = 2.
  grid, volume = problems_lib.evaluation_grid(2, config)
  assert grid.shape == (0, 2) and volume == 0.0


@pytest.mark.parametrize(
  "name, dim, kind",
  [
    ("student_t3_d2", 2, distributions.StudentT),
    ("student_t5_d5", 5, distributions.StudentT),
    ("student_t2.5_d1", 1, distributions.StudentT),
    ("laplace_d2", 2, distributions.Laplace),
    ("skewed_d1", 1, distributions.WarpedMixture),
    ("multiscale_d1", 1, distributions.GaussianMixture),
  ],
)
def test_out_of_family_rows_are_parsed_from_their_names(name, dim, kind):
  row = problems_lib.out_of_family_row(name, evaluate_full.get_config())
  assert (row.name, row.dim) == (name, dim)
  assert isinstance(row.distribution, kind)
  if kind is distributions.StudentT:
    assert float(row.distribution.dof) == float(name.split("_")[1][1:])
    assert f"nu = {float(row.distribution.dof):g}, d = {dim}" in row.description


def test_the_default_rows_cover_the_issue_and_parse():
  rows = problems_lib.out_of_family_rows(evaluate_full.get_config())
  assert [(row.name, row.dim) for row in rows] == [
    ("student_t3_d2", 2),
    ("student_t5_d2", 2),
    ("student_t3_d5", 5),
    ("student_t5_d5", 5),
    ("laplace_d2", 2),
    ("skewed_d1", 1),
    ("multiscale_d1", 1),
  ]


@pytest.mark.parametrize("name", ["skewed_d1", "multiscale_d1"])
def test_one_dimensional_rows_have_a_normalised_density_and_its_derivative_as_score(name):
  config = evaluate_full.get_config()
  distribution = problems_lib.out_of_family_row(name, config).distribution
  # Fine enough for the multi-scale row's spike (standard deviation 0.05); wide enough for
  # the skewed row's heavy right tail (mass beyond 60: about 1e-7).
  grid = np.linspace(-10.0, 60.0, 14_001, dtype=np.float32)[:, None]
  truth = distribution.log_prob_and_score(grid)
  step = float(grid[1, 0] - grid[0, 0])
  assert float(np.sum(np.exp(truth.log_density)) * step) == pytest.approx(1.0, abs=2e-3)
  log_density = np.asarray(truth.log_density, np.float64)
  difference = (log_density[2:] - log_density[:-2]) / (2 * step)
  inside = np.abs(grid[1:-1, 0]) < 5.0
  np.testing.assert_allclose(
    np.asarray(truth.score)[1:-1, 0][inside],
    difference[inside],
    atol=0.02 * np.abs(difference[inside]).max(),
  )
  if name == "multiscale_d1":  # Two modes whose scales differ 30x: the spike is 30x higher.
    spike, bump = np.exp(distribution.log_prob_and_score(np.array([[-1.0], [1.5]])).log_density)
    assert spike / bump == pytest.approx(30.0, rel=0.01)


@pytest.mark.parametrize(
  "name", ["cauchy_d2", "student_t_d2", "laplace", "laplace_d2x", "laplace_d0", "student_t0_d2"]
)
def test_unknown_or_bad_out_of_family_rows_are_named(name):
  config = evaluate_tiny.get_config()
  config.out_of_family.rows = ("laplace_d2", name)
  with pytest.raises(ValueError, match=f"'{name}'"):
    problems_lib.out_of_family_rows(config)


def test_a_rows_problems_do_not_depend_on_the_other_rows():
  config = evaluate_tiny.get_config()  # Its shapes: the suite test's compiled programs.
  config.out_of_family.rows = ("laplace_d2",)
  ((alone_row, alone),) = problems_lib.draw_out_of_family_sets(config, 1, with_grid=False)
  config.out_of_family.rows = ("student_t3_d2", "laplace_d2")
  (t_row, t), (row, together) = problems_lib.draw_out_of_family_sets(config, 1, with_grid=True)
  assert alone_row.name == row.name == "laplace_d2" and t_row.name == "student_t3_d2"
  np.testing.assert_array_equal(alone.samples, together.samples)
  np.testing.assert_array_equal(alone.queries, together.queries)
  repeats = config.out_of_family.repeats
  assert alone.true_grid_log_density.shape == (repeats, 0)
  assert together.true_grid_log_density.shape == (repeats, config.grid.points_2d**2)
  assert not np.allclose(t.samples, together.samples)
