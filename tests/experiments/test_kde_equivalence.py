"""Tests of experiments.harness.kde_equivalence, through the runner and its alias entry point."""

import functools
import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import kde_equivalence as kde_equivalence_config
from experiments.harness import kde_equivalence
from kdeformer import checkpoints

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def small_config():
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


@pytest.fixture(scope="module")
def shaken_estimator(random_estimator_factory):
  """The tiny model with strongly perturbed random parameters, so attention is not uniform."""
  return random_estimator_factory(perturb=0.5)


# (a) The construction.


def test_default_construction_passes_its_tolerance_and_writes_files(tmp_path):
  """Part (a) of `python -m experiments.kde_equivalence` exactly as configured by default (one
  run: it also checks the written files; a separate small run repeated the same path)."""
  config = kde_equivalence_config.get_config()
  config.attention.enabled = False  # Part (b) fits the shipped model's heads: no pass/fail.
  results = kde_equivalence.run(config, str(tmp_path))
  rows = results["construction"]["rows"]
  assert len(rows) == (
    len(config.construction.dims)
    * len(config.construction.bandwidths)
    * len(kde_equivalence.COMPARISONS)
  )
  assert results["construction"]["failures"] == []
  assert config.construction.tolerance <= 1e-4
  worst = max(max(row["log_density_rel"], row["score_rel"]) for row in rows)
  assert worst < config.construction.tolerance
  assert len(json.loads((tmp_path / "results.json").read_text())["construction"]["rows"]) == len(
    rows
  )
  markdown = (tmp_path / "results.md").read_text()
  assert "attention vs scipy" in markdown
  assert "Skipped" in markdown


def test_samples_are_exactly_whitened():
  samples, _ = kde_equivalence.exactly_whitened_problem(
    jax.random.key(0), 3, 64, 16, kde_equivalence_config.get_config().prior, 0.0, 1.0
  )
  np.testing.assert_allclose(np.mean(samples, 0), 0.0, atol=1e-6)
  np.testing.assert_allclose(np.cov(samples, rowvar=False), np.eye(3), atol=1e-6)


def test_failures_name_the_offending_rows():
  rows = [
    dict(
      dim=1,
      bandwidth=0.1,
      candidate="attention",
      reference="kde",
      log_density_rel=1e-6,
      score_rel=3e-4,
    ),
    dict(
      dim=2, bandwidth=1.0, candidate="kde", reference="scipy", log_density_rel=1e-7, score_rel=1e-7
    ),
  ]
  failures = kde_equivalence.construction_failures(rows, 1e-4)
  assert len(failures) == 1
  assert "d=1 h=0.1 attention vs kde" in failures[0]
  # What the runner exits non-zero on.
  results = {"construction": {"failures": failures}}
  (failure,) = kde_equivalence.failures(results, kde_equivalence_config.get_config())
  assert "above tolerance" in failure and "d=1 h=0.1" in failure


@pytest.mark.parametrize(
  "command",
  [
    ["experiments.run", "--config=experiments/configs/kde_equivalence.py"],
    ["experiments.kde_equivalence"],
  ],  # The alias: the runner with that config by default.
  ids=["runner", "alias"],
)
def test_entry_point_exits_nonzero_above_tolerance(command, tmp_path):
  completed = subprocess.run(
    [
      sys.executable,
      "-m",
      *command,
      f"--output_dir={tmp_path}",
      "--config.construction.dims=(1,)",
      "--config.construction.bandwidths=(0.5,)",
      "--config.construction.num_problems=1",
      "--config.construction.num_samples=32",
      "--config.construction.num_queries=8",
      "--config.construction.tolerance=1e-12",
      "--config.attention.enabled=False",
    ],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert completed.returncode != 0, completed.stderr[-2000:]
  assert "above tolerance" in completed.stderr
  assert (tmp_path / "results.json").exists()
  assert (tmp_path / "results.md").exists()


# (b) Fitting kernels to attention weights.


def test_recovers_a_known_isotropic_kernel():
  samples = jax.random.normal(jax.random.key(0), (400, 2))
  queries = jax.random.normal(jax.random.key(1), (6, 2))
  weights = jnp.exp(kde_equivalence.kernel_log_weights(queries, samples, jnp.eye(2) / 0.5**2))
  grid = jnp.geomspace(0.1, 5.0, 121)
  bandwidth, kl = kde_equivalence.fit_isotropic_bandwidth(weights, queries, samples, grid)
  assert abs(float(bandwidth) - 0.5) <= 0.02
  assert float(kl) < 1e-3


def test_recovers_a_known_anisotropic_kernel():
  samples = jax.random.normal(jax.random.key(0), (400, 2)) * 1.5
  queries = jax.random.normal(jax.random.key(1), (8, 2))
  precision = jnp.diag(jnp.array([1 / 0.3**2, 1 / 1.0**2]))
  weights = jnp.exp(kde_equivalence.kernel_log_weights(queries, samples, precision))
  fitted, kl = kde_equivalence.fit_full_precision(
    weights, queries, samples, 0.6, num_steps=600, learning_rate=0.05
  )
  bandwidths = np.sort(1 / np.sqrt(np.linalg.eigvalsh(np.asarray(fitted))))
  np.testing.assert_allclose(bandwidths, [0.3, 1.0], rtol=0.1)
  assert float(kl) < 1e-2


def test_query_dependence():
  uniform = jnp.full((3, 10), 0.1)
  assert float(kde_equivalence.query_dependence(uniform)) == pytest.approx(0.0, abs=5e-8)
  disjoint = jnp.eye(3, 10)
  assert float(kde_equivalence.query_dependence(disjoint)) == pytest.approx(1.0, abs=5e-7)


# (b) Trained heads: a random model stands in.


def test_sow_adds_no_parameters_and_changes_no_output(shaken_estimator):
  model = shaken_estimator.model
  init_variables = jax.eval_shape(
    model.init,
    jax.random.key(0),
    jnp.zeros((1, 4, 10)),
    jnp.zeros((1, 2, 10)),
    jnp.ones((1, 4), bool),
    jnp.ones((1, 10), bool),
  )
  assert set(init_variables) == {"params"}
  chex.assert_trees_all_equal_shapes(init_variables["params"], shaken_estimator.params)
  samples = jax.random.normal(jax.random.key(2), (1, 16, 10))
  queries = jax.random.normal(jax.random.key(3), (1, 5, 10))
  args = (samples, queries, jnp.ones((1, 16), bool), jnp.arange(10)[None] < 2)
  plain = jax.jit(model.apply)({"params": shaken_estimator.params}, *args)
  inspected, state = jax.jit(functools.partial(model.apply, mutable=["intermediates"]))(
    {"params": shaken_estimator.params}, *args
  )
  chex.assert_trees_all_close(plain, inspected)
  weights = state["intermediates"]["cross_attention_0"]["attention"]["attention_weights"][0]
  chex.assert_shape(weights, (1, 2, 5, 16))


def test_heads_of_a_random_model(shaken_estimator, small_config, tmp_path):
  small_config.construction.dims = (1,)
  small_config.construction.bandwidths = (1.0,)
  samples = jax.random.normal(jax.random.key(0), (64, 2))
  queries = jax.random.normal(jax.random.key(1), (16, 2))
  weights = kde_equivalence.cross_attention_weights(
    shaken_estimator.model, shaken_estimator.params, samples, queries
  )
  chex.assert_shape(weights, (2, 16, 64))
  np.testing.assert_allclose(np.sum(np.asarray(weights), -1), 1.0, rtol=1e-5)
  assert float(kde_equivalence.query_dependence(weights[0])) > 1e-3

  results = kde_equivalence.run(small_config, str(tmp_path), estimator=shaken_estimator)
  rows = results["attention"]["rows"]
  assert len(rows) == 2  # One d, two heads.
  for row in rows:
    for key in (
      "isotropic_bandwidth",
      "kl_isotropic",
      "correlation_isotropic",
      "kl_uniform",
      "kl_anisotropic",
      "correlation_anisotropic",
    ):
      assert np.isfinite(row[key]), (key, row)
    assert len(row["anisotropic_bandwidths"]) == 2
    assert row["kl_isotropic"] >= 0.0
    # The full fit starts at the isotropic optimum and only descends.
    assert row["kl_anisotropic"] <= row["kl_isotropic"] + 1e-4
  assert (tmp_path / "attention_weights_d2.png").exists()
  assert len(json.loads((tmp_path / "results.json").read_text())["attention"]["rows"]) == 2


def test_no_model_shipped_skips_part_b(small_config, monkeypatch, tmp_path):
  monkeypatch.setattr(checkpoints, "PRETRAINED_ROOT", str(tmp_path / "no_model_shipped"))
  small_config.construction.dims = (1,)
  small_config.construction.bandwidths = (1.0,)
  results = kde_equivalence.run(small_config, str(tmp_path / "out"))
  assert "no pretrained model shipped" in results["attention"]["skipped"]
  assert "Skipped: no --workdir given" in (tmp_path / "out" / "results.md").read_text()


def test_a_workdir_that_does_not_exist_is_an_error_not_a_skip(tmp_path):
  with pytest.raises(FileNotFoundError):
    kde_equivalence.load_trained_estimator(str(tmp_path / "missing"))
