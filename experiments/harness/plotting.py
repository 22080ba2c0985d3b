"""Figures: training curves (more in `experiments.harness.figures` for evaluation)."""

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top


def read_metrics(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def plot_training_curves(metrics_path: str, output_path: str) -> str | None:
  """Plots loss parts and learning rate against step; returns the PNG path (None if no data)."""
  if not os.path.exists(metrics_path):
    return None
  records = read_metrics(metrics_path)
  if not records:
    return None
  steps = [r["step"] for r in records]
  fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
  for ax, key, title in zip(
    axes,
    ["relative_score_mse", "log_density_mse"],
    ["relative score MSE (whitened, train batch)", "log-density MSE (train batch)"],
  ):
    ax.plot(steps, [r[key] for r in records], lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
  axes[2].plot(steps, [r["learning_rate"] for r in records])
  axes[2].set_xlabel("step")
  axes[2].set_title("learning rate")
  axes[2].grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(output_path, dpi=110)
  plt.close(fig)
  return output_path
