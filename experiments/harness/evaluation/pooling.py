"""Pooling the errors of a cell's problems into its metrics, the model / Scott ratios, summaries.

  sums = pooling.ErrorSums()
  for batch, output in ...:
    sums.add(output, batch, cell_volume)
  row = pooling.add_ratios({"metrics": {"model": sums.result(), ...}})

The metrics of a cell pool the squared errors over all its problems and queries:

  relative score MSE  sum ||s_hat - s||^2 / sum ||s||^2 (the zero predictor scores 1); a
                      pooled ratio, not the mean of per-problem ratios
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

METRICS = ("relative_score_mse", "score_mse", "log_density_mse", "mise")
METRIC_LABELS = {
    "relative_score_mse": "relative score MSE (pooled: sum ||s_hat - s||^2 / sum ||s||^2)",
    "score_mse": "score MSE (mean over queries of ||s_hat - s||^2)",
    "log_density_mse": "log-density MSE (mean over queries)",
    "mise": "MISE on the grid (mean over problems of the integral of (f_hat - f)^2)",
}
# The metrics whose model / Scott ratios the benchmark summarises over its cells.
SUMMARY_METRICS = ("relative_score_mse", "log_density_mse")


class ErrorSums:
  """Running sums of squared errors for one method over the problems of a cell (float64)."""

  def __init__(self):
    self.score_error = 0.0  # sum ||s_hat - s||^2
    self.score_norm = 0.0  # sum ||s||^2
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
    self.score_error += float(np.sum((f64(output.score) - f64(problems.true_score))**2))
    self.score_norm += float(np.sum(f64(problems.true_score)**2))
    self.log_density_error += float(np.sum(
        (f64(output.log_density) - f64(problems.true_log_density))**2))
    self.num_queries += problems.true_log_density.size
    if problems.true_grid_log_density.shape[-1]:
      difference = (np.exp(f64(output.grid_log_density))
                    - np.exp(f64(problems.true_grid_log_density)))
      self.integrated_error += float(np.sum(difference**2)) * cell_volume
      self.num_grids += difference.shape[0]

  def result(self) -> dict:
    """{metric: value} for METRICS; the MISE is None without a grid."""
    return {
        "relative_score_mse": self.score_error / self.score_norm,
        "score_mse": self.score_error / self.num_queries,
        "log_density_mse": self.log_density_error / self.num_queries,
        "mise": self.integrated_error / self.num_grids if self.num_grids else None,
    }


def add_ratios(row: dict) -> dict:
  """Adds row["model_over_scott"][metric] = model / KDE Scott where both are present."""
  table = row["metrics"]
  if "model" in table and "kde_scott" in table:
    row["model_over_scott"] = {
        metric: (table["model"][metric] / table["kde_scott"][metric]
                 if table["model"][metric] is not None and table["kde_scott"][metric] else None)
        for metric in METRICS}
  return row


def geometric_mean(values) -> float | None:
  """exp(mean(log v)) over the positive finite values; None if there are none."""
  values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
  return float(np.exp(np.mean(np.log(values)))) if values else None


def ratio_summary(rows: list[dict]) -> dict:
  """{metric: {"geometric_mean_model_over_scott", "max_model_over_scott"}} over the rows.

  Empty if the rows carry no model / Scott ratios (the model or Scott not run).
  """
  summary = {}
  if rows and "model_over_scott" in rows[0]:
    for metric in SUMMARY_METRICS:
      ratios = [row["model_over_scott"][metric] for row in rows]
      summary[metric] = {"geometric_mean_model_over_scott": geometric_mean(ratios),
                         "max_model_over_scott": max(ratios)}
  return summary
