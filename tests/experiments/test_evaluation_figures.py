"""Tests of experiments.harness.evaluation.figures (the figures themselves: the suite's test)."""

import numpy as np
import pytest

from experiments.harness.evaluation import figures


def test_fitted_slope():
  sizes = np.array([256, 1024, 4096])
  assert figures.fitted_slope(sizes, 3.0 * sizes**-0.5) == pytest.approx(-0.5)
  assert np.isnan(figures.fitted_slope(sizes, [1.0, np.nan, np.nan]))


def test_error_vs_n_writes_a_png(tmp_path):
  rows = [
    {
      "dim": d,
      "n": n,
      "metrics": {
        "model": {"relative_score_mse": n**-0.5},
        "kde_scott": {"relative_score_mse": None},
      },
    }
    for d in (1, 2)
    for n in (64, 256)
  ]
  path = figures.plot_error_vs_n(
    rows,
    "relative_score_mse",
    {"model": "model", "kde_scott": "KDE Scott"},
    str(tmp_path / "error.png"),
    ylabel="relative score MSE",
  )
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
