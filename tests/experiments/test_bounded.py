"""Tests of experiments/harness/bounded.py (the bounded-support experiment)."""

import numpy as np
import pytest

from experiments.configs import bounded as bounded_config
from experiments.harness import bounded


def small_config():
  config = bounded_config.get_config()
  config.problems = ("exponential", "positive_mixture_2d")
  config.sample_sizes = (64,)
  config.num_datasets = 2
  config.num_heldout = 16
  config.grid_cells_1d = 200
  config.grid_cells_2d = 12
  config.normalize = False
  config.figure_n = 64
  return config


@pytest.mark.parametrize("name", bounded_config.ALL_PROBLEMS)
def test_problem_draws_lie_in_the_support_and_the_truth_integrates_to_one(name):
  problem = bounded.make_problem(name, 0.01)
  draws = problem.draw(np.random.default_rng(0), 500)
  lower, upper = problem.bounds
  assert draws.shape == (500, problem.dim)
  assert np.all((draws > lower) & (draws < upper))
  assert np.all(np.isfinite(problem.log_prob(draws)))
  config = bounded_config.get_config()
  grid, volume = bounded.midpoint_grid(problem, config)
  mass = np.sum(np.exp(problem.log_prob(grid))) * volume
  # The box holds all but the far tail; Beta(0.5, 0.5)'s singular ends cost the midpoint rule.
  assert abs(mass - 1.0) < 0.03, mass
  assert np.isfinite(problem.log_prob(problem.boundary_point[None])).all()


def test_reflection_kde_integrates_to_one_over_the_support():
  samples = np.random.default_rng(1).beta(2.0, 5.0, size=(200, 1))
  grid = (np.arange(4000) + 0.5)[:, None] / 4000
  log_density = bounded.reflection_kde(samples, grid, (np.zeros(1), np.ones(1)))
  np.testing.assert_allclose(np.mean(np.exp(log_density)), 1.0, atol=2e-3)
  outside = bounded.reflection_kde(samples, np.array([[-0.1], [1.2]]), (np.zeros(1), np.ones(1)))
  assert np.all(outside == -np.inf)


def test_evaluate_reports_every_method_and_metric(random_estimator, tmp_path):
  results = bounded.evaluate(
    random_estimator, small_config(), {"source": "test"}, figure_dir=str(tmp_path)
  )
  one_d, two_d = results["rows"]
  assert set(one_d["metrics"]) == set(bounded.METHODS) | {"truth"}
  assert "reflection" not in two_d["metrics"]  # Reflection is 1-D only.
  for row in results["rows"]:
    assert row["metrics"]["truth"]["l1"] == 0.0
    assert row["metrics"]["truth"]["boundary_ratio"] == 1.0
    for values in row["metrics"].values():
      assert np.isfinite(list(values.values())).all()
  assert (tmp_path / "bounded.png").exists()
  markdown = bounded.results_markdown(results)
  assert "Scott KDE, bounds" in markdown and "reflection KDE" in markdown
