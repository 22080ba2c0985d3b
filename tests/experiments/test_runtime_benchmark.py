"""Tests of experiments.harness.runtime_benchmark and of its child, runtime_benchmark_child."""

import json

import jax
import numpy as np
import pytest

from experiments.configs import runtime_benchmark_quick
from experiments.configs import runtime_benchmark_scale
from experiments.harness import runtime_benchmark
from kdeformer import checkpoints

# VmHWM (the peak) is updated from the kernel's per-CPU RSS counters, which lag VmRSS (the
# baseline) a little: measured peak 3954.54 MiB under a baseline of 3954.66 MiB (2026-12-06,
# a fresh clone's suite on the 2-core CPU). A swapped or zeroed field is off by far more.
RSS_COUNTER_SLACK_MIB = 1.0


@pytest.fixture
def small_config():
  """d = 2, n in {64, 128}, m = 32, one timed call, scipy skipped above n = 64."""
  config = runtime_benchmark_quick.get_config()
  config.dims = (2,)
  config.sample_sizes = (64, 128)
  config.num_queries = 32
  config.repeats = 1
  config.scipy_max_samples = 64
  config.model_query_chunk_size = 32
  config.model_key_chunk_size = 64  # n = 128 takes the blockwise path.
  config.kde_key_chunk_size = 64
  config.fresh_process = False
  return config


@pytest.fixture
def random_model_source(monkeypatch, tmp_path, tiny_config):
  """resolve_model_source with no workdir and (forced) no shipped model: the loud fallback."""
  monkeypatch.setattr(checkpoints, "PRETRAINED_ROOT", str(tmp_path / "no_model_shipped"))
  return runtime_benchmark.resolve_model_source(None, tiny_config, "tiny")


def test_writes_results_table_and_figure(small_config, random_model_source, tmp_path):
  assert random_model_source["kind"] == "random"
  assert "MEANINGLESS" in random_model_source["warning"]
  results = runtime_benchmark.run(small_config, str(tmp_path), model_source=random_model_source)

  rows = {(r["method"], r["num_samples"]): r for r in results["rows"]}
  assert len(rows) == 6
  assert rows[("scipy_kde", 128)]["status"].startswith("skipped")
  for key, row in rows.items():
    if key == ("scipy_kde", 128):
      continue
    assert row["status"] == "ok", row
    assert row["finite"], row
    assert row["seconds"] > 0.0
    if key[0] != "scipy_kde":  # Only the JAX methods compile on their first call.
      assert row["compile_s"] > 0.0, row
    assert row["peak_rss_mb"] >= row["baseline_rss_mb"] - RSS_COUNTER_SLACK_MIB, row
    assert np.isfinite(row["relative_score_mse"])
  # scipy's KDE and ours are the same estimator: same errors (scipy's score by differences).
  np.testing.assert_allclose(
    rows[("scipy_kde", 64)]["relative_score_mse"],
    rows[("jax_kde", 64)]["relative_score_mse"],
    rtol=1e-3,
  )
  np.testing.assert_allclose(
    rows[("scipy_kde", 64)]["log_density_mse"], rows[("jax_kde", 64)]["log_density_mse"], rtol=1e-3
  )

  for name in ("results.json", "results.md", "benchmark.png"):
    assert (tmp_path / name).exists(), name
  assert len(json.loads((tmp_path / "results.json").read_text())["rows"]) == 6
  markdown = (tmp_path / "results.md").read_text()
  assert "WARNING" in markdown
  assert "skipped (n > scipy_max_samples = 64)" in markdown
  assert "## Time to accuracy" in markdown


def test_a_workdir_that_does_not_exist_is_an_error_not_a_fallback(tiny_config, tmp_path):
  with pytest.raises(FileNotFoundError):
    runtime_benchmark.resolve_model_source(str(tmp_path / "missing"), tiny_config, "tiny")


def test_fresh_process_measures_its_own_peak_memory(small_config, tmp_path):
  problem_path = str(tmp_path / "problem.npz")
  np.savez(problem_path, **runtime_benchmark.draw_problem(0, 2, 64, 32, small_config.prior))
  spec = runtime_benchmark.run_spec(
    small_config, "jax_kde", 2, 64, problem_path, model_source={"kind": "none"}
  )
  row = runtime_benchmark.measure_in_fresh_process(spec, timeout_seconds=300)
  assert row["status"] == "ok", row
  assert row["peak_rss_mb"] > 50.0  # At least the interpreter and JAX.
  assert row["peak_rss_mb"] >= row["baseline_rss_mb"] - RSS_COUNTER_SLACK_MIB, row
  assert (row["method"], row["dim"], row["num_samples"]) == ("jax_kde", 2, 64)


def test_crash_in_the_child_becomes_a_status_row():
  spec = dict(method="jax_kde", dim=2, num_samples=64, problem_path="/nonexistent.npz")
  row = runtime_benchmark.measure_in_fresh_process(spec, timeout_seconds=300)
  assert row["status"].startswith("failed")
  assert "nonexistent" in row["status"]  # The child's error, not a missing-module one.


def test_a_child_over_its_time_becomes_a_timeout_row():
  spec = dict(method="jax_kde", dim=2, num_samples=64, problem_path="/nonexistent.npz")
  row = runtime_benchmark.measure_in_fresh_process(spec, timeout_seconds=0.01)
  assert row["status"] == "timeout (> 0.01 s)"


def test_large_n_settings_single_call_and_subset_self_attention(
  small_config, random_model_source, tmp_path
):
  """runtime_benchmark_scale's settings at small size: one call (compilation included), k < n."""
  small_config.methods = ("model",)
  small_config.sample_sizes = (128,)
  small_config.repeats = 0
  small_config.model_max_self_attention_keys = 32  # n = 128 > k: the sub-quadratic path.
  results = runtime_benchmark.run(small_config, str(tmp_path), model_source=random_model_source)
  (row,) = results["rows"]
  assert row["status"] == "ok", row
  assert row["finite"], row
  assert row["timed_calls"] == 0
  assert row["seconds"] == row["first_call_s"]
  markdown = (tmp_path / "results.md").read_text()
  assert "the first 32 samples" in markdown
  assert "| incl. |" in markdown


def test_scale_config_sizes():
  config = runtime_benchmark_scale.get_config()
  assert tuple(config.sample_sizes) == (2**14, 2**17, 2**20)
  assert tuple(config.dims) == (2, 10)
  assert config.num_queries == 1024
  assert tuple(config.methods) == ("model", "jax_kde")


def test_time_to_accuracy_takes_the_fastest_n_that_reached_each_target():
  def row(method, n, seconds, error):
    return dict(
      method=method, dim=2, num_samples=n, seconds=seconds, status="ok", relative_score_mse=error
    )

  rows = [
    row("model", 256, 0.1, 0.30),
    row("model", 1024, 0.5, 0.08),
    row("model", 4096, 2.0, 0.09),  # Slower and worse than n = 1024.
    row("jax_kde", 256, 0.01, 0.60),
    row("jax_kde", 4096, 0.05, 0.25),
    dict(method="scipy_kde", dim=2, num_samples=4096, status="skipped"),
  ]
  table = runtime_benchmark.time_to_accuracy(rows, (0.5, 0.1, 0.01))
  assert [(e["dim"], e["method"]) for e in table] == [(2, "model"), (2, "jax_kde")]
  model, kde = table
  assert model["reached"][0.5] == dict(seconds=0.1, num_samples=256)
  assert model["reached"][0.1] == dict(seconds=0.5, num_samples=1024)
  assert model["reached"][0.01] is None
  assert (model["best_error"], model["best_error_n"]) == (0.08, 1024)
  assert kde["reached"][0.5] == dict(seconds=0.05, num_samples=4096)
  assert kde["reached"][0.1] is None


def test_unknown_method_is_rejected(small_config, tmp_path):
  small_config.methods = ("model", "magic")
  with pytest.raises(ValueError, match="magic"):
    runtime_benchmark.run(small_config, str(tmp_path), model_source={"kind": "none"})


def test_the_shipped_model_loads_in_the_child_from_its_json_source(small_config, tiny_config):
  source = runtime_benchmark.resolve_model_source(None, tiny_config, "tiny")
  assert (source["kind"], source["workdir"]) == ("pretrained", None)
  assert "warning" not in source
  spec = json.loads(
    json.dumps(runtime_benchmark.run_spec(small_config, "model", 2, 64, "", source))
  )  # What the child reads.
  estimator = runtime_benchmark.model_estimator(
    spec["model_source"], **runtime_benchmark.model_options(spec)
  )
  assert source["info"]["num_parameters"] == sum(x.size for x in jax.tree.leaves(estimator.params))
  assert source["info"]["num_parameters"] > 10_000  # The trained model, not the tiny one.
