"""Tests of experiments.harness.evaluation.suite: one tiny end-to-end run, checked part by part."""

import json
import os

import numpy as np
import pytest

from experiments.configs import evaluate_paper
from experiments.configs import evaluate_tiny
from experiments.harness import equivariance
from experiments.harness import evaluation
from experiments.harness.evaluation import methods as methods_lib
from experiments.harness.evaluation import reports
from experiments.harness.evaluation import suite

FIGURES = (
  "error_vs_n_score.png",
  "error_vs_n_log_density.png",
  "score_field_2d.png",
  "density_1d.png",
)


@pytest.fixture(scope="module")
def tiny_run(random_estimator, tmp_path_factory):
  """One tiny end-to-end run (compilation dominates its cost), checked by several tests."""
  config = evaluate_tiny.get_config()
  output_dir = str(tmp_path_factory.mktemp("evaluate_tiny"))
  results = evaluation.evaluate(random_estimator, config, output_dir, config_name="evaluate_tiny")
  return config, output_dir, results


def test_writes_results_and_figures(tiny_run):
  _, output_dir, results = tiny_run
  for name in ("results.json", "results.md") + FIGURES:
    path = os.path.join(output_dir, name)
    assert os.path.isfile(path), name
    assert os.path.getsize(path) > 100, name
  assert sorted(results["figures"]) == sorted(FIGURES)
  with open(os.path.join(output_dir, "score_field_2d.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_benchmark_rows(tiny_run):
  config, output_dir, _ = tiny_run
  with open(os.path.join(output_dir, "results.json")) as f:
    results = json.load(f)
  bench = config.benchmark
  rows = results["benchmark"]["rows"]
  assert [(r["dim"], r["n"]) for r in rows] == [
    (d, n) for d in bench.dims for n in bench.sample_sizes
  ]
  for row in rows:
    assert row["num_problems"] == bench.mixtures_per_cell
    assert list(row["metrics"]) == list(methods_lib.METHODS)
    assert row["skipped"] == []
    for method, values in row["metrics"].items():
      for metric in (
        "relative_score_mse",
        "typical_relative_score_mse",
        "score_mse",
        "log_density_mse",
      ):
        assert np.isfinite(values[metric]) and values[metric] > 0, (method, metric)
      assert values["mise"] > 0.0  # Every tiny cell has d <= 2, so a grid.
    ratio = (
      row["metrics"]["model"]["relative_score_mse"]
      / row["metrics"]["kde_scott"]["relative_score_mse"]
    )
    assert row["model_over_scott"]["relative_score_mse"] == pytest.approx(ratio)
    assert set(row["oracle_factor"]) == {"score", "log_density", "mise"}
    assert all(0.02 <= factor <= 2.0 for factor in row["oracle_factor"].values())
    # The oracle's factor grid brackets Scott's: chosen per metric by that metric's error, it is
    # never much worse than Scott on it.
    for metric in ("score_mse", "log_density_mse", "mise"):
      assert row["metrics"]["kde_oracle"][metric] < 1.05 * row["metrics"]["kde_scott"][metric], (
        metric
      )
  geo = results["benchmark"]["summary"]["relative_score_mse"]["geometric_mean_model_over_scott"]
  ratios = [r["model_over_scott"]["relative_score_mse"] for r in rows]
  assert geo == pytest.approx(float(np.exp(np.mean(np.log(ratios)))))
  assert [c["passed"] for c in results["checks"]][:3] == [False, False, False]  # Untrained.


def test_out_of_family_and_equivariance_rows(tiny_run):
  config, _, results = tiny_run
  oof = config.out_of_family
  rows = results["out_of_family"]["rows"]
  assert [(r["family"], r["dim"], r["n"]) for r in rows] == [
    (name, int(name[-1]), n) for name in oof.rows for n in oof.sample_sizes
  ]
  assert all(r["num_problems"] == oof.repeats for r in rows)
  assert list(results["out_of_family"]["distributions"]) == list(oof.rows)
  for row in rows:
    for values in row["metrics"].values():
      assert np.isfinite(values["typical_relative_score_mse"]) and values["mise"] > 0
  eq = results["equivariance"]["rows"]
  assert [r["transform"] for r in eq] == (
    list(equivariance.TRANSFORMS) * len(config.equivariance.dims)
  )
  for row in eq:
    assert 0.0 <= row["log_density_mean"] <= row["log_density_max"] < 1.0, row
    assert 0.0 <= row["score_mean"] <= row["score_max"] < 1.0, row


def test_markdown_tables(tiny_run):
  config, output_dir, _ = tiny_run
  with open(os.path.join(output_dir, "results.md")) as f:
    text = f.read()
  header = "| d | n | " + " | ".join(methods_lib.METHOD_LABELS[m] for m in methods_lib.METHODS)
  assert header + " | model / Scott |" in text
  # One table per metric (the typical set's too); MISE too since every d <= 2.
  assert text.count(header) == 5
  bench = config.benchmark
  for d in bench.dims:
    for n in bench.sample_sizes:
      assert text.count(f"\n| {d} | {n} | ") == 5
  for name in config.out_of_family.rows:
    assert text.count(f"\n| {name} | 64 | ") == 5
    assert f"\n- {name}: " in text
  for title in (
    "Standard benchmark",
    "Out of family",
    "Equivariance",
    "Figures",
    "criterion='score'",
    "Geometric mean",
    "typical set",
  ):
    assert title in text
  for name in FIGURES:
    assert f"![{name}]({name})" in text


def test_figures_validate_cells():
  config = evaluate_tiny.get_config()
  config.figures.field_num_samples = 100
  with pytest.raises(ValueError, match="benchmark cell"):
    suite.figure_cells(config)


def test_unknown_methods_are_refused(tmp_path):
  config = evaluate_tiny.get_config()
  config.methods = ("model", "kde_magic")
  with pytest.raises(ValueError, match="kde_magic"):
    suite.evaluate(lambda samples, queries: None, config, str(tmp_path))


def test_bar_checks_compare_with_the_bars_and_a_ratio_is_no_win_above_zero_error():
  config = evaluate_tiny.get_config()
  row = lambda ratio, n=64, family="gmm", model=0.2: {
    "family": family,
    "n": n,
    "metrics": {"model": {"relative_score_mse": model}},
    "model_over_scott": {"relative_score_mse": ratio, "log_density_mse": ratio},
  }
  bar_n = config.bars.out_of_family_n
  scott_skipped = {"family": "gmm", "n": 9, "metrics": {"model": {"relative_score_mse": 0.1}}}
  results = {
    "benchmark": {
      "rows": [row(0.3), row(0.5), scott_skipped],
      "summary": {"relative_score_mse": {"geometric_mean_model_over_scott": 0.39}},
    },
    "out_of_family": {
      "rows": [
        row(1.2, n=bar_n, family="laplace_d2"),
        row(0.1, n=7, family="laplace_d2"),
        # Beats Scott, but worse than predicting zero: fails.
        row(0.5, n=bar_n, family="student_t3_d2", model=1.3),
        row(0.1, n=bar_n, family="skewed_d1"),
      ]
    },
  }  # Not a bar row.
  checks = suite.bar_checks(results, config)
  assert [(c["value"], c["passed"]) for c in checks] == [
    (0.5, True),
    (0.39, True),
    (0.5, True),
    (0, True),
    (1.2, False),
    (0.5, False),
  ]
  assert "worse than predicting zero" in checks[3]["check"]
  results["benchmark"]["rows"][0]["metrics"]["model"]["relative_score_mse"] = 1.7
  assert suite.bar_checks(results, config)[3]["value"] == 1
  assert not suite.bar_checks(results, config)[3]["passed"]
  scott_skipped["metrics"]["model"]["relative_score_mse"] = 2.0  # Counts without a ratio too.
  assert suite.bar_checks(results, config)[3]["value"] == 2


def test_cell_methods_skip_the_baselines_above_max_baseline_samples():
  config = evaluate_tiny.get_config()
  assert suite.cell_methods(methods_lib.METHODS, 10**6, config) == methods_lib.METHODS
  config.max_baseline_samples = 1024
  assert suite.cell_methods(methods_lib.METHODS, 1024, config) == methods_lib.METHODS
  assert suite.cell_methods(methods_lib.METHODS, 1025, config) == ("model",)
  # Below the model's min_samples the estimator refuses: its methods are skipped, not crashed.
  without_model = tuple(m for m in methods_lib.METHODS if m not in methods_lib.MODEL_METHODS)
  assert suite.cell_methods(methods_lib.METHODS, 47, config, model_min_samples=48) == without_model
  assert (
    suite.cell_methods(methods_lib.METHODS, 48, config, model_min_samples=48) == methods_lib.METHODS
  )


def test_paper_config_end_to_end_shrunk(random_estimator, tmp_path):
  """evaluate_paper.py with its cells shrunk: the table, skipped and not-run cells."""
  config = evaluate_paper.get_config()
  config.benchmark.dims = (2,)
  # One sample-count bucket of the estimator (64) for both n: one compiled model program.
  config.benchmark.sample_sizes = (48, 64)
  config.benchmark.mixtures_per_cell = 2
  config.benchmark.num_queries = 16
  config.max_baseline_samples = 48
  config.paper_reference = ((2, 48, 0.5, 0.9), (2, 64, 0.4, None), (2, 2**17, 0.0541, None))
  results = evaluation.evaluate(
    random_estimator, config, str(tmp_path), config_name="evaluate_paper"
  )
  small, large = results["benchmark"]["rows"]
  assert list(small["metrics"]) == ["model", "kde_scott"] and small["skipped"] == []
  assert list(large["metrics"]) == ["model"] and large["skipped"] == ["kde_scott"]
  assert small["metrics"]["model"]["mise"] is None  # No grid in this config.
  with open(os.path.join(tmp_path, "results.md")) as f:
    text = f.read()
  model, kde = small["metrics"]["model"], small["metrics"]["kde_scott"]
  percent = lambda metric, values: reports.metric_cell(metric, values[metric], percent=True)
  assert (
    f"\n| 2 | 48 | 50.00% | {percent('relative_score_mse', model)} | "
    f"{percent('typical_relative_score_mse', model)} | 90.00% | "
    f"{percent('relative_score_mse', kde)} | "
    f"{percent('typical_relative_score_mse', kde)} |"
  ) in text
  assert "\n| 2 | 64 | 40.00% | " in text
  assert "| out of memory (paper) | skipped | skipped |" in text
  assert "\n| 2 | 131072 | 5.41% | not run | not run |" in text
  assert results["out_of_family"]["rows"] == [] and results["figures"] == []
