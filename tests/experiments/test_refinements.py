"""Tests of experiments.harness.refinements: per-variant pooled errors and their report.

The variants themselves (test-time training, rotation averaging) are tested in
tests/test_adaptation.py and tests/test_rotation_averaging.py; here fake
estimators with known errors check the pooling, the ratios to the plain model and
the tables.
"""

import numpy as np
import pytest

from experiments.configs import refinements as refinements_config
from experiments.harness import refinements
from experiments.harness.evaluation import problems as problems_lib
from kdeformer.estimate import Estimate


def problems_with_unit_scores(num: int = 3) -> problems_lib.Problems:
  m, d = 4, 2
  return problems_lib.Problems(
    samples=np.zeros((num, 8, d)),
    queries=np.zeros((num, m, d)),
    true_log_density=np.zeros((num, m)),
    true_score=np.ones((num, m, d)),
    true_sample_score=np.zeros((num, 8, d)),
    true_grid_log_density=np.zeros((num, 0)),
    true_grid_score=np.zeros((num, 0, d)),
  )


def constant_estimator(score: float, log_density: float):
  """Predicts `score` in every coordinate and `log_density` at every query."""

  def estimator(samples, queries):
    b, m, d = queries.shape
    return Estimate(np.full((b, m), log_density), np.full((b, m, d), score))

  return estimator


def test_score_cell_pools_every_problem_and_divides_by_plain():
  problems = problems_with_unit_scores()
  methods = {
    refinements.PLAIN: constant_estimator(0.5, 1.0),  # Relative score MSE 0.25.
    "rotations_4": constant_estimator(0.75, 0.5),
  }  # 0.0625; log-density MSE 0.25.
  row = refinements.score_cell(methods, problems, batch_size=2)  # Batches of 2 and 1.
  assert row["plain"]["relative_score_mse"] == pytest.approx(0.25)
  assert row["rotations_4"]["relative_score_mse"] == pytest.approx(0.0625)
  assert row["rotations_4"]["relative_score_mse_over_plain"] == pytest.approx(0.25)
  assert row["rotations_4"]["log_density_mse_over_plain"] == pytest.approx(0.25)
  assert row["plain"]["log_density_mse_over_plain"] == 1.0


def test_variants_follow_the_config():
  config = refinements_config.get_config()
  config.ttt.steps = (0, 5)
  config.rotations.counts = (1, 4)
  names = list(refinements.variants(lambda samples, queries, **options: None, config))
  assert names == ["plain", "ttt_5", "rotations_1", "rotations_4"]  # 0 steps is plain.


def test_markdown_has_accuracy_time_and_equivariance_tables():
  values = lambda error, ratio: {
    "relative_score_mse": error,
    "log_density_mse": error,
    "score_mse": error,
    "seconds": 2.25,
    "relative_score_mse_over_plain": ratio,
    "log_density_mse_over_plain": ratio,
  }
  results = {
    "cells": [
      {
        "family": "laplace",
        "dim": 2,
        "n": 512,
        "num_problems": 3,
        "methods": {"plain": values(0.2, 1.0), "ttt_5": values(0.1, 0.5)},
      }
    ],
    "equivariance": [
      {
        "dim": 2,
        "transform": "rotation",
        "method": "plain",
        "log_density_mean": 1e-3,
        "log_density_max": 2e-3,
        "score_mean": 3e-4,
        "score_max": 5e-4,
      }
    ],
  }
  text = refinements.results_markdown(results)
  assert "| family | d | n | problems | plain | ttt_5 |\n|---|---|---|---|---|---|" in text
  assert "| laplace | 2 | 512 | 3 | 0.2 | 0.1 (0.500) |" in text
  assert "| laplace | 2 | 512 | 2.2 | 2.2 |" in text
  assert "| 2 | rotation | plain | 1.00e-03 (2.0e-03) | 3.00e-04 (5.0e-04) |" in text
