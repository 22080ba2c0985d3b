"""Pooling the errors of a cell's problems into its metrics, the model / Scott ratios, summaries.

  sums = pooling.ErrorSums(config.typical_quantile)
  for batch, output in ...:
    sums.add(output, batch, cell_volume)
  row = pooling.add_ratios({"metrics": {"model": sums.result(), ...}})

The metrics of a cell pool the squared errors over all its problems and queries:

  relative score MSE  sum ||s_hat - s||^2 / sum ||s||^2 (the zero predictor scores 1); a
                      pooled ratio, not the mean of per-problem ratios
  typical-set one     the same over the typical set only (`typical_set`: the queries whose
                      true log-density is at or above its q-quantile within their problem),
                      so a few far-tail queries with huge true scores cannot dominate it
  score MSE           mean over queries of ||s_hat - s||^2
  log-density MSE     mean over queries of (log f_hat - log f)^2
  MISE                (d <= 2) integral of (f_hat - f)^2 on a regular grid, averaged over
                      the problems.

The sums are float64 on the host, whatever precision the methods ran in.
"""

import math

import numpy as np

from experiments.harness.evaluation.methods import MethodOutput
from experiments.harness.evaluation.problems import Problems

METRICS = (
  "relative_score_mse",
  "typical_relative_score_mse",
  "score_mse",
  "log_density_mse",
  "mise",
)
METRIC_LABELS = {
  "relative_score_mse": "relative score MSE (pooled: sum ||s_hat - s||^2 / sum ||s||^2)",
  "typical_relative_score_mse": (
    "relative score MSE on the typical set (pooled over the "
    "queries at or above their problem's typical_quantile "
    "quantile of the true log-density)"
  ),
  "score_mse": "score MSE (mean over queries of ||s_hat - s||^2)",
  "log_density_mse": "log-density MSE (mean over queries)",
  "mise": "MISE on the grid (mean over problems of the integral of (f_hat - f)^2)",
}
# Relative score errors: 1 is the zero predictor's, so a value above 1 is worse than no estimate.
RELATIVE_METRICS = ("relative_score_mse", "typical_relative_score_mse")
# The metrics whose model / Scott ratios the benchmark summarises over its cells.
SUMMARY_METRICS = ("relative_score_mse", "typical_relative_score_mse", "log_density_mse")


def typical_set(true_log_density: np.ndarray, quantile: float) -> np.ndarray:
  """The typical queries: true log-density at or above its `quantile` quantile, per problem.

  Args:
    true_log_density: (..., m), the last axis the queries of one problem.
    quantile: in [0, 1]; 0.05 leaves out the 5% of queries deepest in the tails.

  Returns:
    A boolean mask of the same shape.
  """
  return true_log_density >= np.quantile(true_log_density, quantile, axis=-1, keepdims=True)


def worse_than_zero(metric: str, value: float | None) -> bool:
  """Whether a relative score error is above 1: predicting a zero score would do better."""
  return metric in RELATIVE_METRICS and value is not None and value > 1.0


class ErrorSums:
  """Running sums of squared errors for one method over the problems of a cell (float64)."""

  def __init__(self, typical_quantile: float | None = None):
    """typical_quantile: of `typical_set`; None leaves the typical-set metric out (None)."""
    self.typical_quantile = typical_quantile
    self.score_error = 0.0  # sum ||s_hat - s||^2
    self.score_norm = 0.0  # sum ||s||^2
    self.typical_score_error = 0.0  # The same two sums over the typical set.
    self.typical_score_norm = 0.0
    self.log_density_error = 0.0  # sum (log f_hat - log f)^2
    self.num_queries = 0
    self.integrated_error = 0.0  # sum over problems of the grid ISE
    self.num_grids = 0

  def add(self, output: MethodOutput, problems: Problems, cell_volume: float) -> None:
    """Adds a batch of b problems' errors.

    Args:
      output: the method's estimates, (b, m) and (b, m, d) at the queries, (b, g) and
        (b, g, d) on the grid.
      problems: the same b problems with the truth.
      cell_volume: volume of a grid cell (the ISE is the grid sum times it).
    """
    f64 = lambda x: np.asarray(x, np.float64)
    error = np.sum((f64(output.score) - f64(problems.true_score)) ** 2, axis=-1)  # (b, m)
    norm = np.sum(f64(problems.true_score) ** 2, axis=-1)
    self.score_error += float(np.sum(error))
    self.score_norm += float(np.sum(norm))
    if self.typical_quantile is not None:
      typical = typical_set(problems.true_log_density, self.typical_quantile)
      self.typical_score_error += float(np.sum(error[typical]))
      self.typical_score_norm += float(np.sum(norm[typical]))
    self.log_density_error += float(
      np.sum((f64(output.log_density) - f64(problems.true_log_density)) ** 2)
    )
    self.num_queries += problems.true_log_density.size
    if problems.true_grid_log_density.shape[-1]:
      difference = np.exp(f64(output.grid_log_density)) - np.exp(
        f64(problems.true_grid_log_density)
      )
      self.integrated_error += float(np.sum(difference**2)) * cell_volume
      self.num_grids += difference.shape[0]

  def result(self) -> dict:
    """{metric: value} for METRICS (the MISE None without a grid, the typical set's without
    a typical_quantile)."""
    return {
      "relative_score_mse": self.score_error / self.score_norm,
      "typical_relative_score_mse": (
        self.typical_score_error / self.typical_score_norm
        if self.typical_quantile is not None
        else None
      ),
      "score_mse": self.score_error / self.num_queries,
      "log_density_mse": self.log_density_error / self.num_queries,
      "mise": self.integrated_error / self.num_grids if self.num_grids else None,
    }


def add_ratios(row: dict) -> dict:
  """Adds row["model_over_scott"][metric] = model / KDE Scott where both are present."""
  table = row["metrics"]
  if "model" in table and "kde_scott" in table:
    row["model_over_scott"] = {
      metric: (
        table["model"][metric] / table["kde_scott"][metric]
        if table["model"][metric] is not None and table["kde_scott"][metric]
        else None
      )
      for metric in METRICS
    }
  return row


def geometric_mean(values) -> float | None:
  """exp(mean(log v)) over the positive finite values; None if there are none."""
  values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
  return float(np.exp(np.mean(np.log(values)))) if values else None


def ratio_summary(rows: list[dict]) -> dict:
  """{metric: {"geometric_mean_model_over_scott", "max_model_over_scott"}} over the rows.

  Rows without the ratios (Scott skipped there) do not count; for the relative score errors
  the summary also counts "model_worse_than_zero" (cells where the model's error is above 1,
  whose ratios are no win whatever their value). Empty if no row has model / Scott ratios.
  """
  rows = [row for row in rows if "model_over_scott" in row]
  summary = {}
  for metric in SUMMARY_METRICS if rows else ():
    ratios = [row["model_over_scott"][metric] for row in rows]
    summary[metric] = {
      "geometric_mean_model_over_scott": geometric_mean(ratios),
      "max_model_over_scott": max((r for r in ratios if r is not None), default=None),
    }
    if metric in RELATIVE_METRICS:
      summary[metric]["model_worse_than_zero"] = sum(
        worse_than_zero(metric, row["metrics"]["model"][metric]) for row in rows
      )
  return summary
