"""Tests of experiments/harness/weighted.py (the weighted-samples experiment)."""

import jax
import numpy as np

from experiments.configs import weighted as weighted_config
from experiments.harness import weighted


def small_config():
  config = weighted_config.get_config()
  config.dims = (2,)
  config.sample_sizes = (64,)
  config.num_problems = 2
  config.num_queries = 16
  return config


def test_importance_weights_reweight_the_proposal_to_the_target():
  config = small_config()
  problem = jax.device_get(weighted.draw_problem(jax.random.key(0), 2, config, 20000))
  np.testing.assert_allclose(problem["weights"].sum(), 1.0, rtol=1e-5)
  # The weighted proposal mean equals the target mean (from its own draws) within MC error.
  np.testing.assert_allclose(
    problem["weights"] @ problem["samples"], problem["target_draws"].mean(axis=0), atol=0.15
  )


def test_evaluate_reports_every_method_and_metric(random_estimator):
  results = weighted.evaluate(random_estimator, small_config(), {"source": "test"})
  (row,) = results["rows"]
  assert 1.0 < row["median_n_eff"] <= 64
  assert set(row["metrics"]) == set(weighted.METHODS)
  for values in row["metrics"].values():
    assert np.isfinite(list(values.values())).all()
  markdown = weighted.results_markdown(results)
  assert "Scott KDE, weighted" in markdown and "typical set" in markdown
