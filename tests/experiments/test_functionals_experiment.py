"""Tests of experiments.harness.functionals (experiments/configs/functionals.py)."""

import json

import jax
import pytest

from experiments.configs import functionals as functionals_config
from experiments.harness import functionals
from kdeformer import kde


@pytest.fixture
def small_config():
  """log Z in d = 1 at n = 256 (1024 draws); functionals in d = 2 at n = 256, two repeats."""
  config = functionals_config.get_config()
  config.log_normalizer.dims = (1,)
  config.log_normalizer.num_problems = 1
  config.log_normalizer.sample_sizes = (256,)
  config.log_normalizer.num_draws = 1024
  config.log_normalizer.grid_points_per_dim = (512,)
  config.functionals.dims = (2,)
  config.functionals.sample_sizes = (256,)
  config.functionals.repeats = 2
  config.functionals.monte_carlo_draws = 4096
  config.functionals.methods = ("exact", "model", "kde_scott")  # SD-KDE: tested in the core.
  return config


def test_experiment_tables_with_a_kde_standing_in_for_the_model(small_config):
  stand_in = lambda samples, queries: kde.gaussian_kde(samples, queries, "silverman")
  key = jax.random.key(0)
  results = {
    "model": "stand-in",
    "seed": 0,
    "config": small_config.to_dict(),
    "seconds": 0.0,
    "log_normalizer": functionals.log_normalizer_rows(stand_in, small_config, key),
    "functionals": functionals.functional_rows(stand_in, small_config, key),
  }
  results["summary"] = functionals.summary(results["functionals"], small_config.functionals.methods)
  (row,) = results["log_normalizer"]
  assert abs(row["log_z_grid"]) < 1e-3 and row["within_tolerance"]  # A KDE integrates to 1.
  assert [(r["family"], r["dim"]) for r in results["functionals"]] == [
    ("gaussian", 2),
    ("mixture", 2),
  ]
  for r in results["functionals"]:
    assert set(r["methods"]) == set(small_config.functionals.methods)
    assert r["excess_over_exact"]["exact"]["entropy"]["rms"] == 0.0
  text = functionals.results_markdown(results)
  assert "Differential entropy" in text and "Fisher information" in text and "log Z" in text


def test_run_writes_results_with_a_random_model(small_config, random_estimator, tmp_path):
  small_config.functionals.families = ("gaussian",)
  results = functionals.run(small_config, str(tmp_path), estimator=random_estimator)
  assert results["model_info"]["num_parameters"] > 0
  written = json.loads((tmp_path / "results.json").read_text())
  assert len(written["log_normalizer"]) == 1
  assert [(r["family"], r["dim"], r["n"]) for r in written["functionals"]] == [("gaussian", 2, 256)]
  assert set(written["summary"]) == {
    "entropy/model_over_scott",
    "fisher_information/model_over_scott",
  }
  markdown = (tmp_path / "results.md").read_text()
  assert "Model: given in-process" in markdown
  assert "| family | d | n | mean truth |" in markdown


def test_failures_are_the_log_z_rows_off_the_quadrature(small_config):
  row = dict(dim=1, n=256, problem=0, log_z_is=0.1, log_z_grid=0.0)
  results = {
    "log_normalizer": [
      dict(row, within_tolerance=True),
      dict(row, problem=1, within_tolerance=False),
    ]
  }
  (failure,) = functionals.failures(results, small_config)
  assert "d=1 n=256 mixture 1" in failure
  assert str(small_config.log_normalizer.tolerance) in failure


def test_unknown_method_is_rejected(random_estimator):
  with pytest.raises(ValueError, match="magic"):
    functionals.make_methods(random_estimator, ("model", "magic"))
