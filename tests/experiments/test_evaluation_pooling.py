"""Tests of experiments.harness.evaluation.pooling: pooled metrics, ratios, summaries."""

import math

import numpy as np
import pytest

from experiments.harness.evaluation import methods as methods_lib
from experiments.harness.evaluation import pooling
from experiments.harness.evaluation import problems as problems_lib


def test_error_sums_pool_over_problems():
  sums = pooling.ErrorSums()
  true_score = np.array([[[1.0, 0.0]], [[0.0, 3.0]]])  # Two problems, one query each.
  estimated = np.array([[[0.0, 0.0]], [[0.0, 2.0]]])
  problems = problems_lib.Problems(
      samples=np.zeros((2, 4, 2)), queries=np.zeros((2, 1, 2)),
      true_log_density=np.array([[0.0], [1.0]]), true_score=true_score,
      true_sample_score=np.zeros((2, 4, 2)), true_grid_log_density=np.zeros((2, 0)),
      true_grid_score=np.zeros((2, 0, 2)))
  output = methods_lib.MethodOutput(np.array([[1.0], [1.0]]), estimated, np.zeros((2, 0)),
                                    np.zeros((2, 0, 2)))
  sums.add(output, problems, 0.0)
  result = sums.result()
  # Pooled: (1 + 1) / (1 + 9), not the mean of per-problem ratios (1 + 1/9) / 2.
  assert result["relative_score_mse"] == pytest.approx(0.2)
  assert result["score_mse"] == pytest.approx(1.0)
  assert result["log_density_mse"] == pytest.approx(0.5)
  assert result["mise"] is None


def test_error_sums_integrate_the_grid_error_and_average_over_problems():
  sums = pooling.ErrorSums()
  # One problem, two grid points with densities 1 and e^-1 against estimates e^-1 and 1.
  problems = problems_lib.Problems(
      samples=np.zeros((1, 4, 1)), queries=np.zeros((1, 1, 1)),
      true_log_density=np.zeros((1, 1)), true_score=np.ones((1, 1, 1)),
      true_sample_score=np.zeros((1, 4, 1)), true_grid_log_density=np.array([[0.0, -1.0]]),
      true_grid_score=np.zeros((1, 2, 1)))
  output = methods_lib.MethodOutput(np.zeros((1, 1)), np.ones((1, 1, 1)),
                                    np.array([[-1.0, 0.0]]), np.zeros((1, 2, 1)))
  sums.add(output, problems, cell_volume=0.5)
  sums.add(output._replace(grid_log_density=np.array([[0.0, -1.0]])), problems, cell_volume=0.5)
  # First problem: 2 (1 - e^-1)^2 * 0.5; second: exact. Mean over the two grids.
  expected = (1 - math.exp(-1))**2 / 2
  assert sums.result()["mise"] == pytest.approx(expected)
  assert sums.result()["relative_score_mse"] == 0.0


def test_ratios_and_their_summary():
  def row(model, scott):
    metrics = {"relative_score_mse": model, "score_mse": 1.0, "log_density_mse": model,
               "mise": None}
    return pooling.add_ratios({"metrics": {"model": metrics, "kde_scott": {
        "relative_score_mse": scott, "score_mse": 2.0, "log_density_mse": scott, "mise": None}}})

  rows = [row(0.1, 0.4), row(0.2, 0.2)]
  assert rows[0]["model_over_scott"] == {"relative_score_mse": 0.25, "score_mse": 0.5,
                                         "log_density_mse": 0.25, "mise": None}
  summary = pooling.ratio_summary(rows)
  assert set(summary) == set(pooling.SUMMARY_METRICS)
  assert summary["relative_score_mse"]["geometric_mean_model_over_scott"] == pytest.approx(0.5)
  assert summary["relative_score_mse"]["max_model_over_scott"] == 1.0
  assert pooling.ratio_summary([{"metrics": {"model": {}}}]) == {}  # No Scott column: none.


def test_geometric_mean_skips_missing_and_non_positive_values():
  assert pooling.geometric_mean([2.0, None, 8.0, 0.0, float("nan")]) == pytest.approx(4.0)
  assert pooling.geometric_mean([None, float("inf")]) is None
