"""Tests of experiments.harness.real_data (experiments/configs/real_data.py)."""

import json
import math
import types

import numpy as np
import pytest
from scipy import stats

from experiments.configs import real_data as real_data_config
from experiments.harness import real_data
from kdeformer import validation

WORKDIR = "/nonexistent/stand_in_workdir"  # Given to run() as a stand-in: never loaded.


class ScottStandIn:
  """An estimator-like stand-in for the equivariant network: any d, Scott's KDE (no compile)."""

  max_dim, handoff = 0, None

  def __call__(self, samples, queries):
    log_density = stats.gaussian_kde(np.asarray(samples).T).logpdf(np.asarray(queries).T)
    return types.SimpleNamespace(log_density=log_density - 1.0)  # Its own, recognisable numbers.


class WorkdirStandIn(ScottStandIn):
  """A trained network's stand-in: max_dim 10 and no model to hand larger d to, so it refuses
  them with the library's own check (as `kdeformer.load(workdir)` does)."""

  max_dim = 10

  def __call__(self, samples, queries):
    validation.check_points(samples, "samples", max_dim=self.max_dim)
    return super().__call__(samples, queries)


@pytest.fixture
def tiny_config():
  """iris (d = 2) and wine (d = 2, and all 13 columns): every method, both groups, two splits."""
  config = real_data_config.get_config()
  config.datasets = ("iris", "wine")
  config.prefix_sizes = (2,)
  config.max_rows = 120
  config.splits = (0, 1)
  config.models = ("general",)
  config.workdirs = (WORKDIR,)
  config.cv_kde.num_bandwidths = 6
  config.cv_kde.folds = 3
  return config


def test_run_writes_every_method_and_metric(tiny_config, general_model, tmp_path):
  estimators = {"general": general_model, "equivariant": ScottStandIn(), WORKDIR: WorkdirStandIn()}
  results = real_data.run(tiny_config, str(tmp_path), estimators=estimators)
  written = json.loads((tmp_path / "results.json").read_text())
  markdown = (tmp_path / "results.md").read_text()
  labels = ["general", "workdir:stand_in_workdir", "scott", "cv_kde", "gaussian"]
  assert written["methods"] == labels
  assert [(p["dataset"], p["d"]) for p in written["problems"]] == [
    ("iris", 2),
    ("wine", 2),
    ("wine", 13),
  ]
  for problem in written["problems"]:
    assert problem["num_train"] == 84 and problem["num_test"] == 36
    for label in labels:
      summary = problem["methods"][label]
      assert summary["splits"] == 2 and len(problem["splits"][label]) == 2
      if problem["d"] > 10 and label.startswith("workdir"):
        assert summary["status"] == "refused" and "mean" not in summary
        continue
      assert summary["status"] == "ok", (problem["d"], label, summary)
      assert math.isfinite(summary["mean"]) and summary["std"] >= 0
      assert summary["non_finite"] == 0
  wine_13 = written["problems"][-1]
  # The general model hands d = 13 to "equivariant" (here the stand-in), whose numbers it shows.
  assert wine_13["methods"]["general"]["answered_by"] == "equivariant"
  scott = wine_13["methods"]["scott"]["mean"]
  assert wine_13["methods"]["general"]["mean"] == pytest.approx(scott - 1.0, abs=1e-9)
  for group, count in (("d <= 10", 2), ("d > 10", 1)):
    stats_ = written["summary"][group]
    assert set(stats_) == set(labels)
    for label in labels:
      entry = stats_[label]
      assert entry["problems"] == count
      for key in (
        "beats_cv_kde",
        "compared_with_cv_kde",
        "mean_rank",
        "answered",
        "handed_off",
        "refused",
        "failed",
        "non_finite_problems",
      ):
        assert key in entry, (group, label, key)
    assert stats_["cv_kde"]["answered"] == count
  assert written["summary"]["d > 10"]["general"]["handed_off"] == 1
  # As called, the hand-off's answer counts for the general model too.
  assert written["summary"]["d > 10"]["general"]["compared_as_called"] == 1
  assert written["summary"]["d > 10"]["general"]["answered"] == 0  # A hand-off is not its own.
  assert written["summary"]["d > 10"]["workdir:stand_in_workdir"]["refused"] == 1
  assert written["summary"]["d <= 10"]["general"]["compared_with_cv_kde"] == 2
  for text in (
    "general",
    "workdir:stand_in_workdir",
    "Scott KDE",
    "CV KDE",
    "Gaussian",
    "beats CV KDE",
    "mean rank",
    "d > 10",
    "(→ equivariant)",
    "refused",
    "Command:",
    "CPU",
  ):
    assert text in markdown, text
  assert results["problems"][0]["cv_kde_bandwidth_factors"]


def test_cv_kde_is_on_the_data_scale():
  """Scaling the data by c moves every method's log-density by -d log c: the CV KDE's
  Jacobian term (and its bandwidth choice, made in whitened units, is unchanged)."""
  rng = np.random.default_rng(0)
  data = rng.normal(size=(150, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0.3], [0, 0, 2.0]])
  cfg = real_data_config.get_config().cv_kde
  cfg.num_bandwidths, cfg.folds = 6, 3
  train, test = data[:100], data[100:]
  base, info = real_data.cv_kde(train, test, cfg, seed=0)
  scaled, scaled_info = real_data.cv_kde(1e3 * train, 1e3 * test, cfg, seed=0)
  np.testing.assert_allclose(scaled, base - 3 * np.log(1e3), atol=1e-6)
  assert info == scaled_info
  # On Gaussian data the CV KDE is close to the fitted Gaussian's held-out log-likelihood.
  gaussian = real_data.fitted_gaussian(train, test)
  np.testing.assert_allclose(
    gaussian,
    stats.multivariate_normal(train.mean(axis=0), np.cov(train, rowvar=False)).logpdf(test),
    rtol=1e-10,
  )
  # Columns 1e4 apart in scale (scipy's own check refuses such a covariance) cost only the
  # Jacobian: the standardised computation answers.
  scales = np.array([1e4, 1.0, 1e-4])
  np.testing.assert_allclose(
    real_data.fitted_gaussian(train * scales, test * scales),
    gaussian - np.sum(np.log(scales)),
    atol=1e-8,
  )
  assert abs(np.mean(base) - np.mean(gaussian)) < 0.3


def test_non_finite_values_are_counted_and_refusals_recorded():
  out = real_data.outcome(lambda: np.array([-1.0, -np.inf, -2.0]))
  assert out["status"] == "ok" and out["non_finite"] == 1 and out["num_neg_inf"] == 1
  assert out["log_likelihood"] == -np.inf and out["finite_mean"] == pytest.approx(-1.5)

  def refuse():
    raise ValueError("d = 13 is above max_dim 10")

  assert real_data.outcome(refuse)["status"] == "refused"
  assert real_data.outcome(lambda: 1 / 0)["status"] == "failed"
  summary = real_data.problem_summary([out, dict(out)])
  assert summary["mean"] == -np.inf and summary["non_finite"] == 2 and summary["std"] is None
  assert "-inf (2 non-finite)" in real_data.cell(summary)


def test_cleaning_drops_index_constant_duplicate_and_collinear_columns():
  pd = pytest.importorskip("pandas")
  rng = np.random.default_rng(0)
  x = rng.normal(size=40)
  frame = pd.DataFrame(
    {
      "year": np.arange(40),
      "x": x,
      "const": np.ones(40),
      "copy": x,
      "y": rng.normal(size=40),
      "sum": x + 2 * rng.normal(size=40),
    }
  )
  frame["lin"] = frame["x"] - 3 * frame["y"]
  frame.loc[3, "y"] = np.nan
  config = real_data_config.get_config()
  data, columns, dropped = real_data.clean(frame, config, np.random.default_rng(0))
  assert columns == ["x", "y", "sum"] and data.shape == (39, 3)
  assert dropped == {
    "index column": ["year"],
    "constant": ["const"],
    "duplicate": ["copy"],
    "collinear": ["lin"],
  }
