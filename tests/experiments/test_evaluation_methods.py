"""Tests of experiments.harness.evaluation.methods: the estimator and the baselines on a batch."""

import jax.numpy as jnp
import numpy as np
import pytest

from experiments.harness.evaluation import methods as methods_lib
from experiments.harness.evaluation import problems as problems_lib
from kdeformer import kde
from kdeformer.estimate import Estimate


def point_echo(samples, points):
  """A fake estimator: log-density = first coordinate of the point, score = the point + 100."""
  del samples
  return Estimate(points[..., 0], points + 100.0)


def fake_problems(b: int = 2, n: int = 5, m: int = 3, d: int = 2) -> problems_lib.Problems:
  rng = np.random.default_rng(0)
  return problems_lib.Problems(
    samples=rng.normal(size=(b, n, d)),
    queries=rng.normal(size=(b, m, d)),
    true_log_density=np.zeros((b, m)),
    true_score=np.zeros((b, m, d)),
    true_sample_score=np.zeros((b, n, d)),
    true_grid_log_density=np.zeros((b, 0)),
    true_grid_score=np.zeros((b, 0, d)),
  )


def test_run_model_splits_one_call_into_queries_grid_and_samples():
  problems = fake_problems()
  grid = np.array([[7.0, 8.0], [9.0, 10.0], [11.0, 12.0], [13.0, 14.0]])
  output, sample_score = methods_lib.run_model(point_echo, problems, grid)
  np.testing.assert_array_equal(output.log_density, problems.queries[..., 0])
  np.testing.assert_array_equal(output.score, problems.queries + 100.0)
  np.testing.assert_array_equal(output.grid_log_density, np.broadcast_to(grid[:, 0], (2, 4)))
  np.testing.assert_array_equal(output.grid_score, np.broadcast_to(grid + 100.0, (2, 4, 2)))
  # Returned as a JAX (float32) array, ready for the jitted baselines.
  np.testing.assert_allclose(sample_score, problems.samples + 100.0, rtol=1e-6)


def test_run_model_answers_at_the_samples_only_when_asked():
  shapes = []

  def recording_echo(samples, points):
    shapes.append(points.shape)
    return point_echo(samples, points)

  problems = fake_problems(n=5, m=3)
  output, sample_score = methods_lib.run_model(
    recording_echo, problems, np.zeros((0, 2)), at_samples=False
  )
  assert sample_score is None and shapes == [(2, 3, 2)]  # The queries alone: no 5 samples.
  np.testing.assert_array_equal(output.score, problems.queries + 100.0)


def test_best_factor_on_grid_recovers_the_factor_of_a_kde_truth():
  # The truth is itself a KDE with a factor from the grid: that factor has zero grid error.
  rng = np.random.default_rng(0)
  samples = jnp.asarray(rng.normal(size=(64, 1)), jnp.float32)
  grid = jnp.linspace(-4.0, 4.0, 81)[:, None]
  factors = kde.default_factor_grid()
  chosen = factors[7]
  truth = kde.gaussian_kde(samples, grid, chosen)
  factor = methods_lib.best_factor_on_grid(samples, grid, truth.log_density)
  assert float(factor) == pytest.approx(float(chosen))


def test_method_names_and_labels_agree():
  assert set(methods_lib.METHOD_LABELS) == set(methods_lib.METHODS)
  assert set(methods_lib.BASELINES) | set(methods_lib.MODEL_METHODS) == set(methods_lib.METHODS)
