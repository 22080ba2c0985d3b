"""Tests of experiments.harness.model_comparison: the shipping rule and the bars, on known
inputs."""

import json

from absl import app
import pytest

from experiments import run
from experiments.configs import model_comparison as model_comparison_config
from experiments.harness import model_comparison


def metrics(model_score, model_typical, scott=1.0, log_density=1.0, oracle_log_density=1.0):
  return {
    "model": {
      "relative_score_mse": model_score,
      "typical_relative_score_mse": model_typical,
      "log_density_mse": log_density,
    },
    "kde_scott": {"relative_score_mse": scott, "typical_relative_score_mse": scott},
    "kde_oracle": {"log_density_mse": oracle_log_density},
  }


def results(gmm_scores, oof_scores, rotation=1e-2):
  return {
    "benchmark": {
      "rows": [
        {"dim": 2, "n": n, "metrics": metrics(s, s)} for n, s in zip((256, 1024), gmm_scores)
      ]
    },
    "out_of_family": {
      "rows": [
        {"family": "student_t3_d2", "dim": 2, "n": n, "metrics": metrics(s, s / 2, log_density=5.0)}
        for n, s in zip((512, 2048, 4096), oof_scores)
      ]
    },
    "equivariance": {"rows": [{"transform": "rotation", "dim": 5, "score_mean": rotation}]},
  }


def test_ships_when_no_cell_is_5_percent_worse_and_out_of_family_improves():
  before = results([0.10, 0.05], [1.0, 1.5, 2.0])
  after = results([0.104, 0.05], [0.38, 0.35, 0.3], rotation=4e-3)  # n = 512, 2048, 4096.
  comparison = model_comparison.compare(before, after)
  assert comparison["ship"]
  assert abs(comparison["worst_gmm_ratio"] - 1.04) < 1e-9
  bars = {name: ok for name, _, ok in comparison["bars"]}
  assert bars["Student-t nu=3 d=2, n=512..4096: relative score MSE <= 0.4, not rising"]
  # log-density MSE 5 against the oracle's 1: more than 3x.
  assert not bars["Student-t nu=3 d=2: log-density MSE within 3x the oracle KDE's"]
  assert bars["Rotation error of the score, d = 5: <= 5e-3"]
  assert "**Ship: yes.**" in model_comparison.report_markdown(comparison, "shipped", "v2")


def test_one_cell_6_percent_worse_blocks_shipping():
  comparison = model_comparison.compare(
    results([0.10, 0.05], [1.0, 1.5, 2.0]), results([0.106, 0.04], [0.3, 0.3, 0.3])
  )
  assert not comparison["ship"] and not comparison["gmm_ok"] and comparison["out_of_family_ok"]


def test_worse_out_of_family_blocks_shipping_and_marks_worse_than_zero():
  before, after = results([0.1, 0.05], [0.5, 0.5, 0.5]), results([0.1, 0.05], [1.2, 0.6, 0.7])
  comparison = model_comparison.compare(before, after)
  assert not comparison["ship"] and comparison["gmm_ok"] and not comparison["out_of_family_ok"]
  bars = {name: ok for name, _, ok in comparison["bars"]}
  assert not bars["Student-t nu=3 d=2, n=512..4096: relative score MSE <= 0.4, not rising"]
  assert "1.2 (worse than 0)" in model_comparison.report_markdown(comparison, "a", "b")


def test_runner_compares_two_files_and_refuses_unpaired_ones(tmp_path):
  before = dict(results([0.10, 0.05], [1.0, 1.5, 2.0]), config="evaluate_quick.py", seed=0)
  after = dict(
    results([0.104, 0.05], [0.38, 0.35, 0.3], rotation=4e-3), config="evaluate_quick.py", seed=0
  )
  for name, value in (("before", before), ("after", after), ("other", dict(after, seed=1))):
    (tmp_path / f"{name}.json").write_text(json.dumps(value))
  config = model_comparison_config.get_config()
  config.before, config.after = str(tmp_path / "before.json"), str(tmp_path / "after.json")
  comparison, failures = run.run_experiment(config, str(tmp_path / "out"))
  assert comparison["ship"] and failures == []  # The verdict never fails the command.
  assert "**Ship: yes.**" in (tmp_path / "out" / "results.md").read_text()
  config.after = str(tmp_path / "other.json")
  with pytest.raises(app.UsageError, match="different configs or seeds"):
    run.run_experiment(config, str(tmp_path / "out"))
  config.after = None
  with pytest.raises(app.UsageError, match="--config.after"):
    run.run_experiment(config, str(tmp_path / "out"))
