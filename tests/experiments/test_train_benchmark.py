"""Tests of experiments.harness.train_benchmark (experiments/configs/train_benchmark.py)."""

from absl import app
import pytest

from experiments import run
from experiments.configs import train_benchmark as train_benchmark_config
from experiments.harness import train_benchmark
from tests.training import tiny_shared


def test_one_row_per_bucket_with_positive_time_and_flops():
  # One bucket, compilation is the cost: the training tests' one-bucket step (tiny_shared.py),
  # so the suite's compilation cache compiles it once for both.
  config = tiny_shared.one_bucket_config()
  rows = train_benchmark.benchmark_training_step(config, num_steps=1)
  assert [(r["num_samples"], r["batch_size"]) for r in rows] == [(16, 4)]
  (row,) = rows
  assert row["seconds_per_step"] > 0.0, row
  assert row["gflop_per_step"] > 0.0, row
  assert row["gflops_per_second"] == pytest.approx(row["gflop_per_step"] / row["seconds_per_step"])
  assert row["compile_seconds_all_buckets"] > 0.0, row


def test_report_weighs_every_bucket_once():
  rows = [
    dict(
      num_samples=16,
      batch_size=4,
      seconds_per_step=1.0,
      gflop_per_step=1.0,
      gflops_per_second=1.0,
      compile_seconds_all_buckets=7.0,
    ),
    dict(
      num_samples=32,
      batch_size=4,
      seconds_per_step=3.0,
      gflop_per_step=9.0,
      gflops_per_second=3.0,
      compile_seconds_all_buckets=7.0,
    ),
  ]
  report = train_benchmark.report_markdown(rows)
  assert "| n | batch | s/step | GFLOP/step | GFLOP/s |" in report
  assert "| 32 | 4 | 3 | 9 | 3 |" in report
  # 10 GFLOP in 4 s over the cycle: 2.5 GFLOP/s, not the mean rate 2.0.
  assert "2.000 s/step, 2.5 GFLOP/s (compile 7 s for all buckets)" in report


def test_config_nests_the_named_training_config_and_a_workdir_is_refused(tmp_path):
  config = train_benchmark_config.get_config("tiny")
  assert (config.experiment, config.train_config, config.steps) == ("train_benchmark", "tiny", 5)
  assert config.train.model.width > 0  # A training config, overridable as --config.train.*.
  assert train_benchmark_config.get_config().train_config == "cpu"
  with pytest.raises(app.UsageError, match="no --workdir"):
    run.run_experiment(config, str(tmp_path), workdir="/tmp/some_run")
