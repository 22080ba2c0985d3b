"""Tests of experiments.harness.evaluation.reports: the Markdown report of a results dict."""

from experiments.harness import common
from experiments.harness.evaluation import reports

METHODS = ["model", "kde_scott"]


def cell_row(dim, n, model, scott, mise=None, family="gmm"):
  """Every metric of a method is its value (the typical set's: half of it)."""
  metrics = lambda value: {
    "relative_score_mse": value,
    "typical_relative_score_mse": value / 2,
    "score_mse": value,
    "log_density_mse": value,
    "mise": mise,
  }
  return {
    "family": family,
    "dim": dim,
    "n": n,
    "num_problems": 3,
    "num_queries": 16,
    "metrics": {"model": metrics(model), "kde_scott": metrics(scott)},
    "model_over_scott": {
      k: model / scott if k != "mise" else None
      for k in (
        "relative_score_mse",
        "typical_relative_score_mse",
        "score_mse",
        "log_density_mse",
        "mise",
      )
    },
  }


def results(**parts):
  base = {
    "model": {
      "source": "unit test",
      "step": 12,
      "num_parameters": 1234,
      "width": 8,
      "num_layers": 1,
      "num_heads": 2,
    },
    "config_name": "evaluate_unit",
    "seed": 0,
    "methods": METHODS,
    "config": {"typical_quantile": 0.05},
    "seconds": {"total": 3.0},
    "benchmark": {
      "rows": [cell_row(5, 64, 0.1, 0.4), cell_row(5, 128, 0.2, 0.25)],
      "summary": {
        "relative_score_mse": {"geometric_mean_model_over_scott": 0.5, "max_model_over_scott": 0.8}
      },
    },
  }
  base.update(parts)
  return base


def test_benchmark_tables_skip_missing_metrics_and_format_numbers():
  text = reports.results_markdown(results())
  assert "Model: unit test, step 12, 1,234 parameters (width 8, 1 layers, 2 heads)." in text
  assert "| d | n | model | KDE Scott | model / Scott |\n|---|---|---|---|---|" in text
  assert "\n| 5 | 64 | 0.1 | 0.4 | 0.25 |" in text
  # No MISE in d = 5: its table is left out, the four others are there, the typical set's
  # right after the pooled relative score MSE.
  assert text.count("| d | n | model | KDE Scott |") == 4
  assert "### MISE" not in text
  pooled = text.index("### relative score MSE (pooled")
  typical = text.index("### relative score MSE on the typical set")
  assert pooled < typical < text.index("### score MSE")
  assert "\n| 5 | 64 | 0.05 | 0.2 | 0.25 |" in text[typical:]
  assert "at or above the 0.05 quantile of its queries' true log-densities" in text
  assert "worse than zero" not in text  # Nothing to mark.
  assert "Geometric mean over the cells of model / Scott: 0.5; worst cell 0.8." in text
  for absent in ("Out of family", "Equivariance", "Bars", "Figures"):
    assert absent not in text


def test_other_sections_when_present():
  text = reports.results_markdown(
    results(
      out_of_family={
        "rows": [cell_row(2, 64, 0.3, 0.3, mise=1e-3, family="laplace_d2")],
        "distributions": {"laplace_d2": "product of Laplace densities, d = 2"},
      },
      equivariance={
        "rows": [
          {
            "transform": "rotation",
            "dim": 2,
            "num_trials": 4,
            "log_density_mean": 1e-4,
            "log_density_max": 2e-4,
            "score_mean": float("nan"),
            "score_max": None,
          }
        ]
      },
      checks=[{"check": "a bar", "value": 0.7, "bar": 0.6, "passed": False}],
      figures=["density_1d.png"],
    )
  )
  assert "| distribution | n | model | KDE Scott | model / Scott |" in text
  assert "\n| laplace_d2 | 64 | 0.001 | 0.001 | - |" in text  # The MISE row: no ratio.
  assert "\n- laplace_d2: product of Laplace densities, d = 2\n" in text
  assert "| rotation | 2 | 1.00e-04 | 2.00e-04 | nan | - |" in text
  assert "| a bar | 0.7 | 0.6 | NO |" in text
  assert "![density_1d.png](density_1d.png)" in text


def test_errors_worse_than_predicting_zero_are_marked_and_never_a_win():
  # d = 10, n = 64: the model (1.5) beats Scott (3.0) by the ratio, yet both are worse than
  # predicting zero; n = 128: only Scott is, and the model's ratio is a real win.
  bench = {
    "rows": [cell_row(10, 64, 1.5, 3.0), cell_row(10, 128, 0.5, 1.2)],
    "summary": {
      "relative_score_mse": {
        "geometric_mean_model_over_scott": 0.45,
        "max_model_over_scott": 0.5,
        "model_worse_than_zero": 1,
      }
    },
  }
  text = reports.results_markdown(results(benchmark=bench))
  assert (
    "\n| 10 | 64 | 1.5 (worse than zero) | 3 (worse than zero) | "
    "0.5 (no win: model worse than zero) |"
  ) in text
  assert "\n| 10 | 128 | 0.5 | 1.2 (worse than zero) | 0.4167 |" in text
  # The typical set (half the values) is below 1 for the model: unmarked there.
  assert "\n| 10 | 64 | 0.75 | 1.5 (worse than zero) | 0.5 |" in text
  # The log-density MSE is not relative to a zero predictor: never marked.
  assert "\n| 10 | 64 | 1.5 | 3 | 0.5 |" in text
  assert reports.WORSE_THAN_ZERO_NOTE in text
  assert "In 1 of the cells the model is worse than predicting zero" in text


def test_methods_not_run_on_a_cell_say_skipped():
  row = cell_row(2, 1024, 0.1, 0.2)
  del row["metrics"]["kde_scott"], row["model_over_scott"]
  table = reports.cell_table([cell_row(2, 256, 0.1, 0.2), row], "relative_score_mse", METHODS)
  assert "\n| 2 | 1024 | 0.1 | skipped | - |" in table


def test_paper_comparison_puts_the_papers_numbers_beside_ours():
  rows = [cell_row(2, 256, 0.12, 0.5), cell_row(2, 2**17, 1.25, 0.4)]
  del rows[1]["metrics"]["kde_scott"], rows[1]["model_over_scott"]  # Scott skipped at 2^17.
  reference = ((2, 256, 0.1467, 0.438), (2, 2**14, 0.068, 0.172), (2, 2**17, 0.0541, None))
  text = reports.results_markdown(
    results(
      config={"typical_quantile": 0.05, "paper_reference": reference},
      benchmark={"rows": rows, "summary": {}},
    )
  )
  assert (
    "| d | n | paper: transformer | ours: model | ours: model, typical set | "
    "paper: Scott KDE | ours: Scott KDE | ours: Scott KDE, typical set |"
  ) in text
  assert "\n| 2 | 256 | 14.67% | 12.00% | 6.00% | 43.80% | 50.00% | 25.00% |" in text
  assert ("\n| 2 | 16384 | 6.80% | not run | not run | 17.20% | not run | not run |") in text
  assert (
    "\n| 2 | 131072 | 5.41% | 125.00% (worse than zero) | 62.50% | "
    "out of memory (paper) | skipped | skipped |"
  ) in text
  # First, before the benchmark's tables; absent without a reference.
  assert text.index("Against the paper") < text.index("Standard benchmark")
  assert "Against the paper" not in reports.results_markdown(results())


def test_a_report_of_a_shipped_model_names_its_shape(gmm_model):
  """The model line of a real report: `common.model_info` of a loaded model (it read an
  attribute that no longer existed, so reports said "width None, None layers")."""
  info = common.model_info(gmm_model, "pretrained 'gmm'", 19077)
  config = gmm_model.model_config
  assert (info["width"], info["num_layers"], info["num_heads"], info["mlp_ratio"]) == (
    config.width,
    config.num_layers,
    config.num_heads,
    config.mlp_ratio,
  )
  assert info["num_parameters"] > 10**6
  markdown = reports.results_markdown(results(model=info))
  assert f"(width {config.width}, {config.num_layers} layers, {config.num_heads} heads)" in markdown
  assert "None" not in markdown
