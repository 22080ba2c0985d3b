"""Tests of experiments.harness.kde_equivalence and the experiments.kde_equivalence entry point."""

import functools
import json
import os
import subprocess
import sys
import tempfile
import types

from absl.testing import absltest
import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from experiments.configs import kde_equivalence as kde_equivalence_config
from experiments.configs import tiny
from kdeformer import estimator as estimator_lib
from experiments.harness import kde_equivalence
from kdeformer.training import train

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config():
  """(a) on d in {1, 2}, two bandwidths, n = 64; (b) on d = 2 with a short anisotropic fit."""
  config = kde_equivalence_config.get_config()
  config.construction.dims = (1, 2)
  config.construction.bandwidths = (0.5, 1.0)
  config.construction.num_problems = 1
  config.construction.num_samples = 64
  config.construction.num_queries = 16
  config.attention.dims = (2,)
  config.attention.num_samples = 64
  config.attention.num_queries = 16  # Same shapes as (a): one compiled mixture sampler.
  config.attention.num_bandwidths = 41
  config.attention.anisotropic_steps = 20
  config.attention.figure_queries = 2
  return config


def perturbed_tiny_model():
  """A randomly initialised tiny model whose parameters are shaken so attention is not uniform."""
  config = tiny.get_config()

  params = jax.jit(lambda key: train.init_params(config, key))(jax.random.key(0))
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  params = unravel(flat + 0.5 * jax.random.normal(jax.random.key(1), flat.shape))
  return types.SimpleNamespace(model=estimator_lib.build_model(config), params=params,
                               config=config)


class ConstructionTest(absltest.TestCase):

  def test_run_passes_and_writes_files(self):
    config = tiny_config()
    config.attention.enabled = False
    output_dir = self.enterContext(tempfile.TemporaryDirectory())
    results = kde_equivalence.run(config, output_dir)
    rows = results["construction"]["rows"]
    self.assertLen(rows, 2 * 2 * len(kde_equivalence.COMPARISONS))
    self.assertEqual(results["construction"]["failures"], [])
    for row in rows:
      self.assertLess(max(row["log_density_rel"], row["score_rel"]), 1e-4, msg=row)
    with open(os.path.join(output_dir, "results.json")) as f:
      self.assertLen(json.load(f)["construction"]["rows"], len(rows))
    with open(os.path.join(output_dir, "results.md")) as f:
      markdown = f.read()
    self.assertIn("attention vs scipy", markdown)
    self.assertIn("Skipped", markdown)

  def test_default_construction_passes_its_tolerance(self):
    """Part (a) of `python -m experiments.kde_equivalence` exactly as configured by default."""
    config = kde_equivalence_config.get_config()
    config.attention.enabled = False  # Part (b) fits the shipped model's heads: no pass/fail.
    results = kde_equivalence.run(config, self.enterContext(tempfile.TemporaryDirectory()))
    rows = results["construction"]["rows"]
    self.assertLen(rows, len(config.construction.dims) * len(config.construction.bandwidths)
                   * len(kde_equivalence.COMPARISONS))
    self.assertEqual(results["construction"]["failures"], [])
    worst = max(max(row["log_density_rel"], row["score_rel"]) for row in rows)
    self.assertLess(worst, config.construction.tolerance)

  def test_samples_are_exactly_whitened(self):
    samples, _ = kde_equivalence.exactly_whitened_problem(
        jax.random.key(0), 3, 64, 16, kde_equivalence_config.get_config().prior, 0.0, 1.0)
    np.testing.assert_allclose(np.mean(samples, 0), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.cov(samples, rowvar=False), np.eye(3), atol=1e-6)

  def test_failures_name_the_offending_rows(self):
    rows = [dict(dim=1, bandwidth=0.1, candidate="attention", reference="kde",
                 log_density_rel=1e-6, score_rel=3e-4),
            dict(dim=2, bandwidth=1.0, candidate="kde", reference="scipy",
                 log_density_rel=1e-7, score_rel=1e-7)]
    failures = kde_equivalence.construction_failures(rows, 1e-4)
    self.assertLen(failures, 1)
    self.assertIn("d=1 h=0.1 attention vs kde", failures[0])

  def test_entry_point_exits_nonzero_above_tolerance(self):
    output_dir = self.enterContext(tempfile.TemporaryDirectory())
    completed = subprocess.run(
        [sys.executable, "-m", "experiments.kde_equivalence", f"--output_dir={output_dir}",
         "--config.construction.dims=(1,)", "--config.construction.bandwidths=(0.5,)",
         "--config.construction.num_problems=1", "--config.construction.num_samples=32",
         "--config.construction.num_queries=8",
         "--config.construction.tolerance=1e-12", "--config.attention.enabled=False"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    self.assertNotEqual(completed.returncode, 0, msg=completed.stderr[-2000:])
    self.assertIn("above tolerance", completed.stderr)
    self.assertTrue(os.path.exists(os.path.join(output_dir, "results.json")))
    self.assertTrue(os.path.exists(os.path.join(output_dir, "results.md")))


class AttentionFitTest(absltest.TestCase):

  def test_recovers_a_known_isotropic_kernel(self):
    samples = jax.random.normal(jax.random.key(0), (400, 2))
    queries = jax.random.normal(jax.random.key(1), (6, 2))
    weights = jnp.exp(kde_equivalence.kernel_log_weights(queries, samples, jnp.eye(2) / 0.5**2))
    grid = jnp.geomspace(0.1, 5.0, 121)
    bandwidth, kl = kde_equivalence.fit_isotropic_bandwidth(weights, queries, samples, grid)
    self.assertAlmostEqual(float(bandwidth), 0.5, delta=0.02)
    self.assertLess(float(kl), 1e-3)

  def test_recovers_a_known_anisotropic_kernel(self):
    samples = jax.random.normal(jax.random.key(0), (400, 2)) * 1.5
    queries = jax.random.normal(jax.random.key(1), (8, 2))
    precision = jnp.diag(jnp.array([1 / 0.3**2, 1 / 1.0**2]))
    weights = jnp.exp(kde_equivalence.kernel_log_weights(queries, samples, precision))
    fitted, kl = kde_equivalence.fit_full_precision(weights, queries, samples, 0.6,
                                                    num_steps=600, learning_rate=0.05)
    bandwidths = np.sort(1 / np.sqrt(np.linalg.eigvalsh(np.asarray(fitted))))
    np.testing.assert_allclose(bandwidths, [0.3, 1.0], rtol=0.1)
    self.assertLess(float(kl), 1e-2)

  def test_query_dependence(self):
    uniform = jnp.full((3, 10), 0.1)
    self.assertAlmostEqual(float(kde_equivalence.query_dependence(uniform)), 0.0)
    disjoint = jnp.eye(3, 10)
    self.assertAlmostEqual(float(kde_equivalence.query_dependence(disjoint)), 1.0, places=6)


class TrainedHeadsTest(absltest.TestCase):

  def test_sow_adds_no_parameters_and_changes_no_output(self):
    estimator = perturbed_tiny_model()
    model = estimator.model
    init_variables = jax.eval_shape(
        model.init, jax.random.key(0), jnp.zeros((1, 4, 10)), jnp.zeros((1, 2, 10)),
        jnp.ones((1, 4), bool), jnp.ones((1, 10), bool))
    self.assertEqual(set(init_variables), {"params"})
    chex.assert_trees_all_equal_shapes(init_variables["params"], estimator.params)
    samples = jax.random.normal(jax.random.key(2), (1, 16, 10))
    queries = jax.random.normal(jax.random.key(3), (1, 5, 10))
    args = (samples, queries, jnp.ones((1, 16), bool), jnp.arange(10)[None] < 2)
    plain = jax.jit(model.apply)({"params": estimator.params}, *args)
    inspected, state = jax.jit(functools.partial(model.apply, mutable=["intermediates"]))(
        {"params": estimator.params}, *args)
    chex.assert_trees_all_close(plain, inspected)
    weights = state["intermediates"]["cross_attention_0"]["attention"]["attention_weights"][0]
    chex.assert_shape(weights, (1, 2, 5, 16))

  def test_heads_of_a_random_model(self):
    estimator = perturbed_tiny_model()
    config = tiny_config()
    config.construction.dims = (1,)
    config.construction.bandwidths = (1.0,)
    samples = jax.random.normal(jax.random.key(0), (64, 2))
    queries = jax.random.normal(jax.random.key(1), (16, 2))
    weights = kde_equivalence.cross_attention_weights(estimator.model, estimator.params,
                                                      samples, queries)
    chex.assert_shape(weights, (2, 16, 64))
    np.testing.assert_allclose(np.sum(np.asarray(weights), -1), 1.0, rtol=1e-5)
    self.assertGreater(float(kde_equivalence.query_dependence(weights[0])), 1e-3)

    output_dir = self.enterContext(tempfile.TemporaryDirectory())
    results = kde_equivalence.run(config, output_dir, estimator=estimator)
    rows = results["attention"]["rows"]
    self.assertLen(rows, 2)  # One d, two heads.
    for row in rows:
      for key in ("isotropic_bandwidth", "kl_isotropic", "correlation_isotropic", "kl_uniform",
                  "kl_anisotropic", "correlation_anisotropic"):
        self.assertTrue(np.isfinite(row[key]), msg=(key, row))
      self.assertLen(row["anisotropic_bandwidths"], 2)
      self.assertGreaterEqual(row["kl_isotropic"], 0.0)
      # The full fit starts at the isotropic optimum and only descends.
      self.assertLessEqual(row["kl_anisotropic"], row["kl_isotropic"] + 1e-4)
    self.assertTrue(os.path.exists(os.path.join(output_dir, "attention_weights_d2.png")))
    with open(os.path.join(output_dir, "results.json")) as f:
      self.assertLen(json.load(f)["attention"]["rows"], 2)


if __name__ == "__main__":
  absltest.main()
