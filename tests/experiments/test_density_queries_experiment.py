"""Tests of experiments.harness.density_queries (experiments/configs/density_queries.py)."""

import json
import math

import numpy as np
import pytest

from experiments.configs import density_queries as density_queries_config
from experiments.harness import density_queries


@pytest.fixture
def small_config():
  """Every part, shrunk: n = 200, 20 test points, one repeat, no statsmodels."""
  config = density_queries_config.get_config()
  config.repeats = 1
  config.conditional.cases = ("gaussian4",)
  config.conditional.sample_sizes = (200,)
  config.conditional.num_test = 20
  config.conditional.num_draws = 32
  config.conditional.methods = ("model", "model_normalized", "kde_ratio")
  config.real.methods = ("kde_ratio", "gaussian")  # The model's d = 10 fit: (a) covers it.
  config.cdf.cases = ("exponential",)
  config.cdf.sample_size = 200
  config.cdf.methods = ("model", "empirical")
  config.mutual_information.cases = ("gaussian", "blocks")
  config.mutual_information.num_references = 0
  config.mutual_information.sample_size = 200
  config.mutual_information.methods = ("model", "ksg", "gaussian")
  return config


def test_run_writes_every_part_with_the_general_model(small_config, general_model, tmp_path):
  results = density_queries.run(small_config, str(tmp_path), estimator=general_model)
  written = json.loads((tmp_path / "results.json").read_text())
  assert [(r["case"], r["n"]) for r in written["conditional"]] == [("gaussian4", 200)]
  for row in written["conditional"]:
    for method in small_config.conditional.methods:
      assert 0 < row["methods"][method]["mean_abs"] < 1.0, (row["case"], method)
  real = written["real"]
  assert real["d"] == 10 and real["target"] == "target" and len(real["given"]) == 9
  assert all(math.isfinite(v["mean_log_likelihood"]) for v in real["methods"].values())
  (cdf_row,) = written["cdf"]
  assert cdf_row["methods"]["model"]["cdf_at_lower_bound"] == 0.0
  assert cdf_row["methods"]["model"]["sup_cdf_error"] < 0.15
  gaussian, blocks = written["mutual_information"]
  assert blocks["methods"]["ksg"] is None  # KSG of scikit-learn: one feature, one target.
  assert abs(gaussian["methods"]["gaussian"]["mean_estimate"] - gaussian["exact"]) < 0.1
  markdown = (tmp_path / "results.md").read_text()
  for title in ("(a) Conditionals", "(b) Real data", "(c) CDF", "(d) Mutual information"):
    assert title in markdown
  assert density_queries.failures(results, small_config) == [] or all(
    "conditional" in f or "mutual" in f for f in density_queries.failures(results, small_config)
  )


def test_failures_name_the_missed_done_bars(small_config):
  row = lambda case, model, kde: {
    "case": case,
    "n": 2000,
    "methods": {"model_normalized": {"mean_abs": model}, "kde_ratio": {"mean_abs": kde}},
  }
  results = {
    "conditional": [row("gaussian", 0.07, 0.08), row("banana", 0.12, 0.11)],
    "mutual_information": [
      {"case": "gaussian", "exact": 0.511, "methods": {"model": {"mean_estimate": 0.45}}}
    ],
  }
  found = density_queries.failures(results, small_config)
  assert len(found) == 2 and "banana" in found[0] and "mutual information" in found[1]


def test_exact_values_of_the_cases(small_config):
  """The banana's MI by integration (0.4299 nats; 0.4299 also on a grid 2-4x finer, measured
  2026-12-07), the 4-D cases' shapes and the blocks' closed form."""
  exact = density_queries.banana_mutual_information(0.5, 0.5)
  assert abs(exact - 0.4299) < 1e-3
  rng = np.random.default_rng(0)
  case = density_queries.conditional_case("gaussian4", small_config.conditional)
  x = case.draw(rng, 5)
  assert case.log_conditional(x).shape == (5,)
  draw, a, b, exact_blocks = density_queries.mutual_information_case("blocks", small_config)
  assert a == [0, 1] and b == [2, 3] and 0.1 < exact_blocks < 0.2


def test_statsmodels_peers_when_installed():
  pytest.importorskip("statsmodels")
  rng = np.random.default_rng(1)
  samples = rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], size=150)
  queries = rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], size=10)
  value = density_queries.statsmodels_conditional(samples, queries, [0])
  assert value.shape == (10,) and np.all(np.isfinite(value))
  grid = np.linspace(-3, 3, 7)
  cdf, quantiles = density_queries.cdf_estimates(
    None, "statsmodels", samples[:, 0], None, grid, np.array([0.1, 0.5, 0.9])
  )
  assert np.all(np.diff(cdf) >= 0) and np.all(np.diff(quantiles) > 0)
