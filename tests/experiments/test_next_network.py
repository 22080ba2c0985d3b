"""Tests of experiments.harness.next_network (experiments/configs/next_network.py)."""

import json

import numpy as np
import pytest

from experiments.configs import next_network as next_network_config
from experiments.harness import next_network
from kdeformer import kde


def finite_difference_score(truth, x, step=1e-5):
  """Central differences of truth.log_density: (k, d)."""
  columns = []
  for j in range(x.shape[1]):
    shift = np.zeros(x.shape[1])
    shift[j] = step
    columns.append((truth.log_density(x + shift) - truth.log_density(x - shift)) / (2 * step))
  return np.stack(columns, -1)


@pytest.mark.parametrize("name", ["mixture", "student_t", "spiked", "gamma"])
def test_truth_scores_are_gradients_of_normalised_log_densities(name):
  rng = np.random.default_rng(0)
  config = next_network_config.get_config()
  truth = {
    "mixture": lambda d: next_network.paper_mixture(rng, d, config.mixture),
    "student_t": lambda d: next_network.student_t(d, 3.0),
    "spiked": lambda d: next_network.spiked_gaussian(rng, d, (9.0, 4.0)),
    "gamma": lambda d: next_network.standard_gamma(4.0),
  }[name]
  t = truth(1 if name == "gamma" else 3)
  x = t.sample(rng, 64)
  np.testing.assert_allclose(t.score(x), finite_difference_score(t, x), rtol=1e-4, atol=1e-4)
  if name == "spiked":  # Two orthogonal spikes need d >= 2.
    return
  # In 1-D, exp(log-density) integrates to 1 on a wide grid.
  one_d = truth(1)
  grid = np.linspace(-60, 60, 200001)
  mass = np.trapezoid(np.exp(one_d.log_density(grid[:, None])), grid)
  assert abs(mass - 1) < (2e-3 if name == "student_t" else 1e-6)  # t_3 tail beyond 60: ~1e-3.


@pytest.fixture
def tiny_config():
  """Every part at its smallest: d = 2 mixture, d = 3 others, n of a few hundred."""
  config = next_network_config.get_config()
  config.mixture.dims = (2,)
  config.mixture.seeds = (0, 1)
  config.mixture.num_samples = 256
  config.mixture.num_queries = 128
  config.other_high_d.dims = (3,)
  config.other_high_d.seeds = (0,)
  config.other_high_d.num_samples = 256
  config.other_high_d.num_queries = 128
  config.smooth_1d.families = ("normal",)
  config.smooth_1d.sample_sizes = (1024,)
  config.smooth_1d.seeds = (0,)
  config.smooth_1d.grid_points = 601
  config.integral_1d.dofs = (3.0,)
  config.integral_1d.sample_sizes = (256,)
  config.integral_1d.grid_points = 2001
  config.consistency.sample_sizes = (512, 8192)
  config.consistency.num_queries = 256
  config.cost.num_samples = 256
  config.cost.num_queries = 64
  config.cost.repeats = 1
  config.cost.methods = ("new", "general", "jax_kde", "scipy")
  return config


def test_run_measures_and_reports_with_stand_ins(tiny_config, tmp_path):
  # `new`: a KDE with a far too small bandwidth (bumpy, a poor score); `general`: Scott's
  # KDE that answers only d <= 1, so its d > 1 cells must be skipped, not handed on; `default`:
  # Scott's KDE at every d (the default answers every d).
  bumpy = lambda samples, queries: kde.gaussian_kde(samples, queries, bandwidth=0.05)
  general = next_network.Method("general", next_network.scott_kde, max_dim=1)
  methods = {"new": bumpy, "general": general, "default": next_network.scott_kde}
  results = next_network.run(tiny_config, str(tmp_path), methods=methods)

  # The fitted Gaussian is the truth's family on N(0, I): its score error is sampling
  # error only (~d^2 / n), far below Scott's KDE's bias, and it falls with n.
  consistency = {row["n"]: row["metrics"] for row in results["consistency"]}
  gaussian = [consistency[n]["gaussian"]["relative_score_mse"]["mean"] for n in (512, 8192)]
  scott = [consistency[n]["scott"]["relative_score_mse"]["mean"] for n in (512, 8192)]
  assert gaussian[1] < 2e-3 and gaussian[1] < gaussian[0] and gaussian[0] < 0.1 * scott[0]
  assert scott[1] < scott[0]  # A KDE is consistent.
  assert consistency[512]["general"] is None  # d = 2 > max_dim = 1: skipped.

  (mixture,) = results["mixture"]
  assert mixture["metrics"]["general"] is None
  assert len(mixture["metrics"]["scott"]["relative_score_mse"]["values"]) == 2  # Two seeds.
  assert [(r["family"], r["dim"]) for r in results["other_high_d"]] == [
    ("student_t", 3),
    ("spiked", 3),
  ]
  (smooth,) = results["smooth_1d"]
  assert abs(smooth["true_total_variation"] - 2 / np.sqrt(2 * np.pi)) < 1e-3
  assert smooth["metrics"]["scott"]["ise"]["mean"] < 5e-3
  assert smooth["metrics"]["new"]["total_variation"]["mean"] > 1.5 * smooth["true_total_variation"]
  (integral,) = results["integral_1d"]
  for name in ("new", "general", "scott"):  # KDEs integrate to 1; the quadrature must see it.
    assert abs(integral["metrics"][name]["integral"]["mean"] - 1) < 0.01
  assert {row["method"] for row in results["cost"]} == {"new", "jax_kde", "scipy"}  # d = 2 > 1.
  assert all(row["seconds"] > 0 for row in results["cost"])
  assert results["errors"] == []

  # The bumpy `new` misses the smooth-1-D bars (ISE and total variation), and says so.
  failed = next_network.failures(results, tiny_config)
  assert any("smooth_1d" in f and "ISE" in f for f in failed)
  assert any("smooth_1d" in f and "total variation" in f for f in failed)
  assert not any("integral_1d" in f for f in failed)
  assert results["losses"]["smooth_1d"][0] == "ISE: normal, n=1024 (to general, default, scott)"
  assert mixture["metrics"]["default"] is not None  # Every d.
  # The default's ISE equals Scott's, so its bar (strictly below) fails too.
  assert any(f.startswith("smooth_1d: default's ISE") for f in failed)
  assert results["losses"]["integral_1d"] == []  # All integrate to 1 within the grid's error.
  written = json.loads((tmp_path / "results.json").read_text())
  assert written["failures"] == failed
  markdown = (tmp_path / "results.md").read_text()
  assert "Where `new` loses" in markdown and results["machine"]["jax"] in markdown
  assert results["models"]["new"].startswith("stand-in")


def test_a_method_error_is_recorded_and_fails_its_bars(tiny_config, tmp_path):
  for part in ("mixture", "other_high_d", "smooth_1d", "integral_1d", "cost"):
    tiny_config[part].enabled = False
  tiny_config.consistency.sample_sizes = (512,)
  tiny_config.consistency.methods = ("new", "scott")

  def broken(samples, queries):
    raise ValueError("no network here")

  results = next_network.run(tiny_config, str(tmp_path), methods={"new": broken})
  assert results["errors"] == [
    {"method": "new", "cell": "consistency: n=512, seed 0", "error": "ValueError: no network here"}
  ]
  assert results["consistency"][0]["metrics"]["new"] is None
  assert any("no network here" in f for f in next_network.failures(results, tiny_config))
