"""Tests of experiments/harness/log_normalizer.py (is exp(log f_hat) a density?)."""

import math

import jax.numpy as jnp
import numpy as np

from experiments.configs import log_normalizer as log_normalizer_config
from experiments.harness import log_normalizer
from kdeformer.estimate import Estimate


class ExactGaussian:
  """A stand-in model: N(0, I)'s exact log-density plus log_offset, whatever the samples.

  Its integral is exp(log_offset) on every source; normalize=True removes the offset,
  as a perfect normaliser would.
  """

  def __init__(self, log_offset: float = 0.0):
    self.log_offset = log_offset

  def __call__(self, samples, queries=None, *, normalize=False, key=None) -> Estimate:
    del key
    queries = jnp.asarray(samples if queries is None else queries, jnp.float32)
    log_density = -0.5 * jnp.sum(queries**2, axis=-1) - 0.5 * queries.shape[-1] * math.log(
      2 * math.pi
    )
    return Estimate(log_density + (0.0 if normalize else self.log_offset), -queries)


def tiny_config():
  config = log_normalizer_config.get_config()
  config.seeds = 2
  config.quadrature.sample_sizes = ((16, 64), (16,))
  config.quadrature.points_per_dim = (513, 129)
  config.log_z.dims = (2,)  # With n = 16: (1)'s 2-D mixture program draws its samples.
  config.log_z.sample_sizes = (16,)
  config.log_z.num_draws = 2048
  config.normalize.sample_sizes = ((64,), (16,))
  config.normalize.seeds = 1
  return config


def test_verdict_marks_every_value_against_the_bar():
  assert log_normalizer.verdict([0.95, 1.1, 0.9], 0.9, 1.1) == "PASS"
  assert log_normalizer.verdict([0.95, 1.12], 0.9, 1.1) == "FAIL"
  assert log_normalizer.verdict([0.89], 0.9, 1.1) == "FAIL"
  assert log_normalizer.verdict([1.0, float("nan")], 0.9, 1.1) == "FAIL"


def test_exact_density_integrates_to_its_constant_and_is_marked():
  # One test for both offsets: the second run reuses the first one's compiled programs.
  for log_offset in (0.0, math.log(1.3)):
    results = log_normalizer.evaluate(ExactGaussian(log_offset), tiny_config(), {"source": "exact"})
    expected, verdict = math.exp(log_offset), "PASS" if log_offset == 0 else "FAIL"
    quadrature = results["quadrature"]
    assert {(r["dim"], r["source"]) for r in quadrature} == {
      (d, s) for d in (1, 2) for s in log_normalizer.SOURCES
    }
    for row in quadrature:
      # The model's and the truth's integrals on the same grid: 1 (times the offset) tightly,
      # Student-t tails included.
      np.testing.assert_allclose(row["integrals"], expected, rtol=1e-5)
      np.testing.assert_allclose(row["true_integrals"], 1.0, atol=1e-5)
      assert row["resolution"] < 1e-5 and row["edge_mass"] < 1e-10
      if row["source"] == "gaussian":  # The model is the truth: the same mass off the samples.
        np.testing.assert_allclose(row["outside_share"], row["true_outside_share"], rtol=1e-4)
        assert 0.01 < row["outside_share"] < 0.5
      assert row["verdict"] == verdict
    (log_z,) = results["log_z"]
    np.testing.assert_allclose(
      log_z["log_z"], log_offset, atol=4 * max(log_z["standard_errors"]) + 1e-3
    )
    assert log_z["verdict"] == verdict
    for row in results["normalize"]:
      np.testing.assert_allclose(row["log_z_quadrature"], log_offset, atol=1e-5)
      np.testing.assert_allclose(row["log_z_normalize"], log_offset, atol=1e-5)
    markdown = log_normalizer.results_markdown(results)
    assert "### d = 1: bar [0.9, 1.1], " + ("6/6" if log_offset == 0 else "0/6") in markdown
    assert f"| Student-t | 16 | {expected:.4f} |" in markdown and f"| {verdict} |" in markdown


def test_model_and_the_public_normalize_is_the_library_estimate(random_estimator):
  config = tiny_config()  # 1-D only: the model compiles per query count, so few shapes.
  config.quadrature.dims, config.quadrature.sources = (1,), ("student_t",)
  config.quadrature.sample_sizes = config.normalize.sample_sizes = ((64,),)
  config.quadrature.points_per_dim, config.quadrature.bars = (513,), ((0.9, 1.1),)
  config.log_z.enabled = False  # The exact-density test covers (2).
  results = log_normalizer.evaluate(random_estimator, config, {"source": "random"})
  for row in results["quadrature"]:
    assert np.isfinite(row["integrals"]).all()
    low, high = row["bar"]
    assert row["verdict"] == log_normalizer.verdict(row["integrals"], low, high)
  assert len(results["normalize"]) == 1 and not results["log_z"]
  for row in results["normalize"]:
    # Same sampler key, same draws: the public path's log Z is the library's, to round-off.
    assert abs(row["library_minus_public"]) < 1e-4
    np.testing.assert_allclose(row["difference"], row["log_z_normalize"] - row["log_z_quadrature"])
  assert "normalize=True" in log_normalizer.results_markdown(results)


def test_sizes_below_the_models_minimum_are_skipped_not_failed():
  """The documented gmm command runs n = 16 and 32, which that model now refuses."""

  class Refusing:
    min_samples = 48

  config = log_normalizer_config.get_config()
  kept = log_normalizer.sizes_the_model_answers(Refusing(), config)
  assert kept.quadrature.sample_sizes == ((64, 128, 512, 4096), (64, 512, 4096))
  assert kept.log_z.sample_sizes == config.log_z.sample_sizes  # All at or above 48.
  assert kept.normalize.sample_sizes == config.normalize.sample_sizes
  assert config.quadrature.sample_sizes[0][0] == 16  # The caller's config is left alone.
  unchanged = log_normalizer.sizes_the_model_answers(lambda s, q: None, config)
  assert unchanged.quadrature.sample_sizes == config.quadrature.sample_sizes
