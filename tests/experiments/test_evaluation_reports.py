"""Tests of experiments.harness.evaluation.reports: the Markdown report of a results dict."""

from experiments.harness.evaluation import reports

METHODS = ["model", "kde_scott"]


def cell_row(dim, n, model, scott, mise=None, family="gmm"):
  metrics = lambda value: {"relative_score_mse": value, "score_mse": value,
                           "log_density_mse": value, "mise": mise}
  return {"family": family, "dim": dim, "n": n, "num_problems": 3, "num_queries": 16,
          "metrics": {"model": metrics(model), "kde_scott": metrics(scott)},
          "model_over_scott": {k: model / scott if k != "mise" else None
                               for k in ("relative_score_mse", "score_mse", "log_density_mse",
                                         "mise")}}


def results(**parts):
  base = {"model": {"source": "unit test", "step": 12, "num_parameters": 1234, "width": 8,
                    "num_layers": 1, "num_heads": 2},
          "config_name": "evaluate_unit", "seed": 0, "methods": METHODS,
          "seconds": {"total": 3.0},
          "benchmark": {"rows": [cell_row(5, 64, 0.1, 0.4), cell_row(5, 128, 0.2, 0.25)],
                        "summary": {"relative_score_mse": {
                            "geometric_mean_model_over_scott": 0.5,
                            "max_model_over_scott": 0.8}}}}
  base.update(parts)
  return base


def test_benchmark_tables_skip_missing_metrics_and_format_numbers():
  text = reports.results_markdown(results())
  assert "Model: unit test, step 12, 1,234 parameters (width 8, 1 layers, 2 heads)." in text
  assert "| d | n | model | KDE Scott | model / Scott |\n|---|---|---|---|---|" in text
  assert "\n| 5 | 64 | 0.1 | 0.4 | 0.25 |" in text
  # No MISE in d = 5: its table is left out, the three others are there.
  assert text.count("| d | n | model | KDE Scott |") == 3
  assert "### MISE" not in text
  assert "Geometric mean over the cells of model / Scott: 0.5; worst cell 0.8." in text
  for absent in ("Out of family", "Equivariance", "Bars", "Figures"):
    assert absent not in text


def test_other_sections_when_present():
  text = reports.results_markdown(results(
      out_of_family={"rows": [cell_row(2, 64, 0.3, 0.3, mise=1e-3, family="laplace")]},
      equivariance={"rows": [{"transform": "rotation", "dim": 2, "num_trials": 4,
                              "log_density_mean": 1e-4, "log_density_max": 2e-4,
                              "score_mean": float("nan"), "score_max": None}]},
      checks=[{"check": "a bar", "value": 0.7, "bar": 0.6, "passed": False}],
      figures=["density_1d.png"]))
  assert "| distribution | n | model | KDE Scott | model / Scott |" in text
  assert "\n| laplace | 64 | 0.001 | 0.001 | - |" in text  # The MISE row: no ratio.
  assert "| rotation | 2 | 1.00e-04 | 2.00e-04 | nan | - |" in text
  assert "| a bar | 0.7 | 0.6 | NO |" in text
  assert "![density_1d.png](density_1d.png)" in text
