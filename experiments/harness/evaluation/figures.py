"""Evaluation figures (matplotlib, Agg backend): error versus n, 2-D score fields, 1-D densities.

  names = figures.make_figures(results, kept, config, output_dir, methods)

`make_figures` draws the suite's figures from benchmark problems and outputs
already computed (the outputs on the MISE grid): they cost no extra model calls.
The plot functions take plain arrays and result rows, write one PNG each and
return its path; they compute nothing but the slopes.
"""

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import ml_collections
import numpy as np

from experiments.harness.evaluation.methods import METHOD_LABELS
from experiments.harness.evaluation.pooling import METRIC_LABELS

# Line colours per method label, so every figure uses the same ones.
_COLOURS = {
  "truth": "black",
  "model": "tab:red",
  "KDE Scott": "tab:blue",
  "KDE Silverman": "tab:cyan",
  "KDE oracle h": "tab:purple",
  "SD-KDE exact score": "tab:green",
  "Emp-SD-KDE": "tab:olive",
  "SD-KDE model score": "tab:orange",
}
DPI = 110


def fitted_slope(sizes, errors) -> float:
  """Least-squares slope of log(error) against log(n); nan with fewer than two usable points."""
  sizes, errors = np.asarray(sizes, float), np.asarray(errors, float)
  usable = np.isfinite(errors) & (errors > 0)
  if usable.sum() < 2:
    return math.nan
  return float(np.polyfit(np.log(sizes[usable]), np.log(errors[usable]), 1)[0])


def plot_error_vs_n(
  rows: list[dict], metric: str, labels: dict[str, str], path: str, *, ylabel: str
) -> str:
  """One log-log panel per d: the metric against n for every method, slope in the legend.

  Args:
    rows: cell rows with "dim", "n" and "metrics" {method: {metric: value}}.
    metric: which metric to plot.
    labels: {method: label} in legend order.
    path: PNG path.
    ylabel: y-axis label.
  """
  dims = sorted({row["dim"] for row in rows})
  fig, axes = plt.subplots(1, len(dims), figsize=(4.2 * len(dims), 3.8), squeeze=False)
  for ax, dim in zip(axes[0], dims):
    cells = sorted((row for row in rows if row["dim"] == dim), key=lambda row: row["n"])
    sizes = [row["n"] for row in cells]
    for method, label in labels.items():
      # A method skipped in a cell (n above max_baseline_samples) leaves a gap.
      errors = [row["metrics"].get(method, {}).get(metric) for row in cells]
      errors = [math.nan if e is None else e for e in errors]
      slope = fitted_slope(sizes, errors)
      ax.plot(
        sizes,
        errors,
        marker="o",
        ms=4,
        color=_COLOURS.get(label),
        lw=2.2 if method == "model" else 1.2,
        label=f"{label} (slope {slope:.2f})",
      )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("n (samples)")
    ax.set_title(f"d = {dim}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5)
  axes[0][0].set_ylabel(ylabel)
  fig.tight_layout()
  fig.savefig(path, dpi=DPI)
  plt.close(fig)
  return path


def plot_score_field(
  contour_points: np.ndarray,
  arrow_points: np.ndarray,
  panels,
  samples,
  path: str,
  *,
  title: str = "",
) -> str:
  """Density contours and score arrows, one panel per estimate, side by side.

  Args:
    contour_points: (g*g, 2) regular grid (meshgrid "ij" order) for the contours.
    arrow_points: (a*a, 2) coarser grid for the arrows.
    panels: list of (title, log_density at contour_points (g*g,), score at arrow_points (a*a, 2)).
    samples: (n, 2) shown as dots.
    path: PNG path.
    title: figure title.

  Arrows share one scale across the panels; their length is clipped at the
  90th percentile of the first panel's (the truth's) score norm.
  """
  g = int(round(math.sqrt(contour_points.shape[0])))
  xs = contour_points[:, 0].reshape(g, g)
  ys = contour_points[:, 1].reshape(g, g)
  cap = float(np.percentile(np.linalg.norm(panels[0][2], axis=-1), 90)) or 1.0
  levels = np.linspace(0.0, float(np.exp(panels[0][1]).max()), 12)[1:]
  fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
  for ax, (name, log_density, score) in zip(axes[0], panels):
    density = np.exp(np.clip(log_density, -50.0, 50.0)).reshape(g, g)
    ax.contourf(xs, ys, density, levels=levels, cmap="Blues", extend="max")
    ax.scatter(samples[:, 0], samples[:, 1], s=1.5, c="k", alpha=0.25, linewidths=0)
    norm = np.linalg.norm(score, axis=-1, keepdims=True)
    clipped = score * np.minimum(1.0, cap / np.maximum(norm, 1e-12))
    ax.quiver(
      arrow_points[:, 0],
      arrow_points[:, 1],
      clipped[:, 0],
      clipped[:, 1],
      color="tab:red",
      angles="xy",
      scale_units="xy",
      scale=cap / 0.5,
      width=0.004,
    )
    ax.set_title(name)
    ax.set_aspect("equal")
    ax.set_xlim(xs.min(), xs.max())
    ax.set_ylim(ys.min(), ys.max())
  if title:
    fig.suptitle(
      title + " (contours: density; arrows: score, clipped at the truth's 90th percentile norm)",
      fontsize=9,
    )
  fig.tight_layout()
  fig.savefig(path, dpi=DPI)
  plt.close(fig)
  return path


def plot_density_1d(
  grid: np.ndarray, truth, curves: dict, samples: np.ndarray, path: str, *, title: str = ""
) -> str:
  """1-D density (left) and score (right) of several estimates against the truth.

  Args:
    grid: (g,) points.
    truth: (log_density (g,), score (g,)).
    curves: {label: (log_density (g,), score (g,))}.
    samples: (n,) shown as a rug.
    path: PNG path.
    title: figure title.
  """
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.9))
  left.plot(grid, np.exp(truth[0]), color="black", lw=2.4, label="truth")
  right.plot(grid, truth[1], color="black", lw=2.4, label="truth")
  for label, (log_density, score) in curves.items():
    style = dict(color=_COLOURS.get(label), lw=1.8 if label == "model" else 1.1)
    left.plot(grid, np.exp(log_density), label=label, **style)
    right.plot(grid, score, label=label, **style)
  left.plot(
    samples, np.full_like(samples, -0.01 * np.exp(truth[0]).max()), "|", color="k", alpha=0.3, ms=6
  )
  left.set_title("density")
  left.legend(fontsize=7)
  score_range = np.abs(truth[1]).max()
  right.set_ylim(-1.5 * score_range, 1.5 * score_range)
  right.set_title("score d/dx log f")
  for ax in (left, right):
    ax.set_xlabel("x")
    ax.grid(alpha=0.3)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=DPI)
  plt.close(fig)
  return path


def make_figures(
  results: dict, kept: dict, config: ml_collections.ConfigDict, output_dir: str, methods
) -> list[str]:
  """Writes the PNG figures; returns their file names (relative to output_dir).

  Args:
    results: the suite's results so far (its benchmark rows).
    kept: {d: {"problem": Problems, "outputs": {method: MethodOutput}, "grid": (g, d), "n": n}}
      of the benchmark cells shown (d = 2: the score field, d = 1: the density), unbatched.
    config: the evaluate_* config (grid and figures blocks).
    output_dir: where the PNGs go.
    methods: the methods run, in table order.
  """
  written = []
  rows = results["benchmark"]["rows"]
  labels = {k: METHOD_LABELS[k] for k in methods}
  for metric, name in (
    ("relative_score_mse", "error_vs_n_score.png"),
    ("log_density_mse", "error_vs_n_log_density.png"),
  ):
    if rows:
      plot_error_vs_n(
        rows,
        metric,
        labels,
        os.path.join(output_dir, name),
        ylabel=METRIC_LABELS[metric].split(" (")[0],
      )
      written.append(name)
  if 2 in kept:
    cell = kept[2]
    stride = config.figures.quiver_stride
    points = config.grid.points_2d
    arrows = np.arange(points * points).reshape(points, points)[::stride, ::stride].reshape(-1)
    problem = cell["problem"]
    panels = [("truth", problem.true_grid_log_density, problem.true_grid_score[arrows])]
    for method in ("model", "kde_scott"):
      if method in cell["outputs"]:
        out = cell["outputs"][method]
        panels.append((METHOD_LABELS[method], out.grid_log_density, out.grid_score[arrows]))
    plot_score_field(
      cell["grid"],
      cell["grid"][arrows],
      panels,
      problem.samples,
      os.path.join(output_dir, "score_field_2d.png"),
      title=f"2-D benchmark mixture, n = {cell['n']}",
    )
    written.append("score_field_2d.png")
  if 1 in kept:
    cell = kept[1]
    problem = cell["problem"]
    curves = {
      METHOD_LABELS[k]: (cell["outputs"][k].grid_log_density, cell["outputs"][k].grid_score[:, 0])
      for k in ("model", "kde_scott", "sd_kde_exact", "emp_sd_kde", "sd_kde_model")
      if k in cell["outputs"]
    }
    plot_density_1d(
      cell["grid"][:, 0],
      (problem.true_grid_log_density, problem.true_grid_score[:, 0]),
      curves,
      problem.samples[:, 0],
      os.path.join(output_dir, "density_1d.png"),
      title=f"1-D benchmark mixture, n = {cell['n']}",
    )
    written.append("density_1d.png")
  return written
