"""Tests of experiments.harness.runtime_benchmark (the engine of experiments.benchmark)."""

import json
import os
import tempfile

from absl.testing import absltest
import numpy as np

from experiments.configs import benchmark_quick
from experiments.configs import tiny
from kdeformer import estimator as estimator_lib
from experiments.harness import runtime_benchmark


def tiny_config():
  """d = 2, n in {64, 128}, m = 32, one timed call, scipy skipped above n = 64."""
  config = benchmark_quick.get_config()
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


class BenchmarkTest(absltest.TestCase):

  def random_model_source(self):
    """resolve_model_source with no workdir and (forced) no shipped model: the loud fallback."""
    empty = self.enterContext(tempfile.TemporaryDirectory())
    original = estimator_lib.PRETRAINED_DIR
    estimator_lib.PRETRAINED_DIR = empty
    self.addCleanup(setattr, estimator_lib, "PRETRAINED_DIR", original)
    return runtime_benchmark.resolve_model_source(None, tiny.get_config(), "tiny")

  def test_writes_results_table_and_figure(self):
    source = self.random_model_source()
    self.assertEqual(source["kind"], "random")
    self.assertIn("MEANINGLESS", source["warning"])
    output_dir = self.enterContext(tempfile.TemporaryDirectory())
    results = runtime_benchmark.run(tiny_config(), output_dir, source)

    rows = {(r["method"], r["num_samples"]): r for r in results["rows"]}
    self.assertLen(rows, 6)
    self.assertStartsWith(rows[("scipy_kde", 128)]["status"], "skipped")
    for key, row in rows.items():
      if key == ("scipy_kde", 128):
        continue
      self.assertEqual(row["status"], "ok", msg=row)
      self.assertTrue(row["finite"], msg=row)
      self.assertGreater(row["seconds"], 0.0)
      if key[0] != "scipy_kde":  # Only the JAX methods compile on their first call.
        self.assertGreater(row["compile_s"], 0.0, msg=row)
      self.assertGreaterEqual(row["peak_rss_mb"], row["baseline_rss_mb"])
      self.assertTrue(np.isfinite(row["relative_score_mse"]))
    # scipy's KDE and ours are the same estimator: same errors (scipy's score by differences).
    np.testing.assert_allclose(rows[("scipy_kde", 64)]["relative_score_mse"],
                               rows[("jax_kde", 64)]["relative_score_mse"], rtol=1e-3)
    np.testing.assert_allclose(rows[("scipy_kde", 64)]["log_density_mse"],
                               rows[("jax_kde", 64)]["log_density_mse"], rtol=1e-3)

    for name in ("results.json", "results.md", "benchmark.png"):
      self.assertTrue(os.path.exists(os.path.join(output_dir, name)), msg=name)
    with open(os.path.join(output_dir, "results.json")) as f:
      self.assertLen(json.load(f)["rows"], 6)
    with open(os.path.join(output_dir, "results.md")) as f:
      markdown = f.read()
    self.assertIn("WARNING", markdown)
    self.assertIn("skipped (n > scipy_max_samples = 64)", markdown)
    self.assertIn("## Time to accuracy", markdown)

  def test_fresh_process_measures_its_own_peak_memory(self):
    config = tiny_config()
    tmp = self.enterContext(tempfile.TemporaryDirectory())
    problem_path = os.path.join(tmp, "problem.npz")
    np.savez(problem_path, **runtime_benchmark.draw_problem(0, 2, 64, 32, config.prior))
    spec = runtime_benchmark.run_spec(config, "jax_kde", 2, 64, problem_path,
                                      model_source={"kind": "none"})
    row = runtime_benchmark.measure_in_fresh_process(spec, timeout_seconds=300)
    self.assertEqual(row["status"], "ok", msg=row)
    self.assertGreater(row["peak_rss_mb"], 50.0)  # At least the interpreter and JAX.
    self.assertGreaterEqual(row["peak_rss_mb"], row["baseline_rss_mb"])
    self.assertEqual((row["method"], row["dim"], row["num_samples"]), ("jax_kde", 2, 64))

  def test_crash_in_the_child_becomes_a_status_row(self):
    spec = dict(method="jax_kde", dim=2, num_samples=64, problem_path="/nonexistent.npz")
    row = runtime_benchmark.measure_in_fresh_process(spec, timeout_seconds=300)
    self.assertStartsWith(row["status"], "failed")

  def test_large_n_settings_single_call_and_subset_self_attention(self):
    """benchmark_scale's settings at small size: one call (compilation included), k < n."""
    config = tiny_config()
    config.methods = ("model",)
    config.sample_sizes = (128,)
    config.repeats = 0
    config.model_max_self_attention_keys = 32  # n = 128 > k: the sub-quadratic path.
    output_dir = self.enterContext(tempfile.TemporaryDirectory())
    results = runtime_benchmark.run(config, output_dir, self.random_model_source())
    (row,) = results["rows"]
    self.assertEqual(row["status"], "ok", msg=row)
    self.assertTrue(row["finite"], msg=row)
    self.assertEqual(row["timed_calls"], 0)
    self.assertEqual(row["seconds"], row["first_call_s"])
    with open(os.path.join(output_dir, "results.md")) as f:
      markdown = f.read()
    self.assertIn("the first 32 samples", markdown)
    self.assertIn("| incl. |", markdown)

  def test_scale_config_covers_the_issue_sizes(self):
    from experiments.configs import benchmark_scale  # pylint: disable=g-import-not-at-top
    config = benchmark_scale.get_config()
    self.assertEqual(tuple(config.sample_sizes), (2**14, 2**17, 2**20))
    self.assertEqual(tuple(config.dims), (2, 10))
    self.assertEqual(config.num_queries, 1024)
    self.assertEqual(tuple(config.methods), ("model", "jax_kde"))

  def test_time_to_accuracy_takes_the_fastest_n_that_reached_each_target(self):
    def row(method, n, seconds, error):
      return dict(method=method, dim=2, num_samples=n, seconds=seconds, status="ok",
                  relative_score_mse=error)
    rows = [row("model", 256, 0.1, 0.30), row("model", 1024, 0.5, 0.08),
            row("model", 4096, 2.0, 0.09),  # Slower and worse than n = 1024.
            row("jax_kde", 256, 0.01, 0.60), row("jax_kde", 4096, 0.05, 0.25),
            dict(method="scipy_kde", dim=2, num_samples=4096, status="skipped")]
    table = runtime_benchmark.time_to_accuracy(rows, (0.5, 0.1, 0.01))
    self.assertEqual([(e["dim"], e["method"]) for e in table], [(2, "model"), (2, "jax_kde")])
    model, kde = table
    self.assertEqual(model["reached"][0.5], dict(seconds=0.1, num_samples=256))
    self.assertEqual(model["reached"][0.1], dict(seconds=0.5, num_samples=1024))
    self.assertIsNone(model["reached"][0.01])
    self.assertEqual((model["best_error"], model["best_error_n"]), (0.08, 1024))
    self.assertEqual(kde["reached"][0.5], dict(seconds=0.05, num_samples=4096))
    self.assertIsNone(kde["reached"][0.1])

  def test_unknown_method_is_rejected(self):
    config = tiny_config()
    config.methods = ("model", "magic")
    with self.assertRaisesRegex(ValueError, "magic"):
      runtime_benchmark.run(config, self.enterContext(tempfile.TemporaryDirectory()),
                            {"kind": "none"})


if __name__ == "__main__":
  absltest.main()
