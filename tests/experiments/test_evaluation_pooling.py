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
    samples=np.zeros((2, 4, 2)),
    queries=np.zeros((2, 1, 2)),
    true_log_density=np.array([[0.0], [1.0]]),
    true_score=true_score,
    true_sample_score=np.zeros((2, 4, 2)),
    true_grid_log_density=np.zeros((2, 0)),
    true_grid_score=np.zeros((2, 0, 2)),
  )
  output = methods_lib.MethodOutput(
    np.array([[1.0], [1.0]]), estimated, np.zeros((2, 0)), np.zeros((2, 0, 2))
  )
  sums.add(output, problems, 0.0)
  result = sums.result()
  # Pooled: (1 + 1) / (1 + 9), not the mean of per-problem ratios (1 + 1/9) / 2.
  assert result["relative_score_mse"] == pytest.approx(0.2)
  assert result["score_mse"] == pytest.approx(1.0)
  assert result["log_density_mse"] == pytest.approx(0.5)
  assert result["mise"] is None


def test_typical_set_is_taken_within_each_problem():
  # Problem 0's log-densities are 0..19, problem 1's all far lower: -100..-81. np.quantile of
  # 0..19 at 0.05 is 0.95, so each problem loses its one lowest query (a pooled quantile
  # would take both problems' lowest from problem 1).
  levels = np.arange(20.0)
  typical = pooling.typical_set(np.stack([levels, levels - 100.0]), 0.05)
  expected = np.ones((2, 20), bool)
  expected[:, 0] = False
  np.testing.assert_array_equal(typical, expected)
  np.testing.assert_array_equal(pooling.typical_set(levels, 0.0), np.ones(20, bool))


def test_error_sums_typical_set_leaves_out_the_tail_queries():
  # Per problem: the tail query (lowest log-density) has true score 10 and is estimated as
  # 0; the other 19 have true score 1 and error 0.5.
  true_score = np.ones((2, 20, 1))
  true_score[:, 0] = 10.0
  estimated = true_score - 0.5
  estimated[:, 0] = 0.0
  problems = problems_lib.Problems(
    samples=np.zeros((2, 4, 1)),
    queries=np.zeros((2, 20, 1)),
    true_log_density=np.stack([np.arange(20.0), np.arange(20.0) - 100.0]),
    true_score=true_score,
    true_sample_score=np.zeros((2, 4, 1)),
    true_grid_log_density=np.zeros((2, 0)),
    true_grid_score=np.zeros((2, 0, 1)),
  )
  output = methods_lib.MethodOutput(
    np.zeros((2, 20)), estimated, np.zeros((2, 0)), np.zeros((2, 0, 1))
  )
  sums = pooling.ErrorSums(typical_quantile=0.05)
  sums.add(output, problems, 0.0)
  result = sums.result()
  assert result["relative_score_mse"] == pytest.approx((100 + 19 * 0.25) / (100 + 19))
  assert result["typical_relative_score_mse"] == pytest.approx(0.25)
  without = pooling.ErrorSums()
  without.add(output, problems, 0.0)
  assert without.result()["typical_relative_score_mse"] is None


def test_worse_than_zero_only_for_relative_score_errors_above_one():
  assert pooling.worse_than_zero("relative_score_mse", 1.01)
  assert pooling.worse_than_zero("typical_relative_score_mse", 3.0)
  assert not pooling.worse_than_zero("relative_score_mse", 1.0)
  assert not pooling.worse_than_zero("relative_score_mse", None)
  assert not pooling.worse_than_zero("log_density_mse", 5.0)  # Not relative to zero.


def test_error_sums_integrate_the_grid_error_and_average_over_problems():
  sums = pooling.ErrorSums()
  # One problem, two grid points with densities 1 and e^-1 against estimates e^-1 and 1.
  problems = problems_lib.Problems(
    samples=np.zeros((1, 4, 1)),
    queries=np.zeros((1, 1, 1)),
    true_log_density=np.zeros((1, 1)),
    true_score=np.ones((1, 1, 1)),
    true_sample_score=np.zeros((1, 4, 1)),
    true_grid_log_density=np.array([[0.0, -1.0]]),
    true_grid_score=np.zeros((1, 2, 1)),
  )
  output = methods_lib.MethodOutput(
    np.zeros((1, 1)), np.ones((1, 1, 1)), np.array([[-1.0, 0.0]]), np.zeros((1, 2, 1))
  )
  sums.add(output, problems, cell_volume=0.5)
  sums.add(output._replace(grid_log_density=np.array([[0.0, -1.0]])), problems, cell_volume=0.5)
  # First problem: 2 (1 - e^-1)^2 * 0.5; second: exact. Mean over the two grids.
  expected = (1 - math.exp(-1)) ** 2 / 2
  assert sums.result()["mise"] == pytest.approx(expected)
  assert sums.result()["relative_score_mse"] == 0.0


def test_ratios_and_their_summary():
  def row(model, scott):
    metrics = {
      "relative_score_mse": model,
      "typical_relative_score_mse": model / 4,
      "score_mse": 1.0,
      "log_density_mse": model,
      "mise": None,
    }
    return pooling.add_ratios(
      {
        "metrics": {
          "model": metrics,
          "kde_scott": {
            "relative_score_mse": scott,
            "typical_relative_score_mse": scott / 2,
            "score_mse": 2.0,
            "log_density_mse": scott,
            "mise": None,
          },
        }
      }
    )

  rows = [row(0.1, 0.4), row(0.2, 0.2), row(2.0, 8.0)]
  assert rows[0]["model_over_scott"] == {
    "relative_score_mse": 0.25,
    "typical_relative_score_mse": 0.125,
    "score_mse": 0.5,
    "log_density_mse": 0.25,
    "mise": None,
  }
  skipped = {"metrics": {"model": {}}}  # Scott not run there: the cell does not count.
  summary = pooling.ratio_summary(rows + [skipped])
  assert set(summary) == set(pooling.SUMMARY_METRICS)
  assert summary["relative_score_mse"]["geometric_mean_model_over_scott"] == pytest.approx(
    0.0625 ** (1 / 3)
  )
  assert summary["relative_score_mse"]["max_model_over_scott"] == 1.0
  # The third cell's ratio 0.25 looks like a win, but the model is worse than predicting zero.
  assert summary["relative_score_mse"]["model_worse_than_zero"] == 1
  assert summary["typical_relative_score_mse"]["model_worse_than_zero"] == 0
  assert "model_worse_than_zero" not in summary["log_density_mse"]
  assert pooling.ratio_summary([{"metrics": {"model": {}}}]) == {}  # No Scott column: none.


def test_geometric_mean_skips_missing_and_non_positive_values():
  assert pooling.geometric_mean([2.0, None, 8.0, 0.0, float("nan")]) == pytest.approx(4.0)
  assert pooling.geometric_mean([None, float("inf")]) is None
