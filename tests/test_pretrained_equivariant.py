"""Tests of the shipped equivariant model: any d, the hand-off from the default, exact
rotation equivariance through the public API, and a density by construction (heavy tails
included). Accuracy against baselines is measured in experiments/configs/next_network.py."""

import jax
import numpy as np
import pytest

import kdeformer
from kdeformer import equivariant
from kdeformer import sklearn as kdeformer_sklearn


def two_component_mixture(dim: int, num: int, seed: int):
  """The paper's problem: means uniform in [-3, 3]^d, diagonal variances in [0.2, 1]."""
  rng = np.random.default_rng(seed)
  means = rng.uniform(-3, 3, (2, dim))
  scales = np.sqrt(rng.uniform(0.2, 1.0, (2, dim)))
  labels = rng.integers(0, 2, num)
  return means[labels] + scales[labels] * rng.normal(size=(num, dim))


def test_default_model_hands_high_dimensions_to_the_equivariant_model(general_model,
                                                                      equivariant_model):
  samples = two_component_mixture(16, 256, seed=0)
  out = general_model(samples, samples[:8])
  expected = equivariant_model(samples, samples[:8])
  np.testing.assert_array_equal(out.log_density, expected.log_density)
  assert out.score.shape == (8, 16)
  assert general_model.for_dimension(samples[:, :10]) is general_model
  alone = kdeformer.load_pretrained("gmm")
  alone.beyond_max_dim = None  # Without the hand-off, d > 10 is a clear error.
  with pytest.raises(ValueError, match=r"supports d <= 10\..*'equivariant'\) takes any d"):
    alone(samples, samples[:4])


@pytest.mark.parametrize("dim", [2, 16, 64])
def test_rotation_equivariance_through_the_api(equivariant_model, dim):
  samples = two_component_mixture(dim, 512, seed=dim)
  queries = samples[:32] + 0.1
  rotation = np.linalg.qr(np.random.default_rng(dim).normal(size=(dim, dim)))[0]
  out = equivariant_model(samples, queries)
  rotated = equivariant_model(samples @ rotation, queries @ rotation)
  scale = float(np.max(np.abs(out.score)))
  np.testing.assert_allclose(rotated.log_density, out.log_density, atol=1e-4 * dim, rtol=1e-5)
  np.testing.assert_allclose(rotated.score, np.asarray(out.score) @ rotation, atol=1e-4 * scale)


@pytest.mark.parametrize("dof,num", [(2.0, 256), (3.0, 4096), (5.0, 16384)])
def test_integral_is_one_on_heavy_tails(equivariant_model, dof, num):
  samples = np.random.default_rng(int(dof)).standard_t(dof, size=(num, 1))
  scale = np.std(samples)
  grid = scale * np.sinh(np.linspace(-10.0, 10.0, 4001))[:, None]  # Out to ~1e4 scales.
  density = np.exp(np.asarray(equivariant_model.fit(samples)(grid).log_density, np.float64))
  assert 0.99 < np.trapezoid(density, grid[:, 0]) < 1.01


def test_any_d_through_fit_sample_bounds_weights_and_sklearn(general_model):
  samples = np.abs(two_component_mixture(12, 300, seed=4)) + 0.1
  density = general_model.fit(samples)
  assert np.all(np.isfinite(density(samples[:5]).log_density))
  drawn = general_model.sample(samples, 16, key=jax.random.key(0))
  assert drawn.points.shape == (16, 12) and np.all(np.isfinite(drawn.points))
  bounded = general_model(samples, samples[:5], bounds=(0.0, np.inf))
  outside = general_model(samples, -samples[:2], bounds=(0.0, np.inf))
  assert np.all(np.isfinite(bounded.log_density)) and np.all(outside.log_density == -np.inf)
  weights = np.random.default_rng(0).uniform(size=300)
  weighted = general_model(samples, samples[:5], weights=weights)
  assert np.all(np.isfinite(weighted.log_density))
  estimator = kdeformer_sklearn.KDEFormerDensity().fit(samples[:200])
  assert np.isfinite(estimator.score(samples[200:]))


def test_memory_not_d_limits_the_equivariant_model(equivariant_model):
  with pytest.raises(ValueError, match="memory, not a table size"):
    equivariant.check_memory(equivariant_model.model_config, 10**6, 3000)
