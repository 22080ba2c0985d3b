"""Tests of the shipped equivariant model: any d, the hand-off from the default, exact
rotation equivariance through the public API, and a density by construction (heavy tails
included). Accuracy against baselines is measured in experiments/configs/next_network.py."""

import jax
import numpy as np
import pytest
from scipy import special
from scipy import stats

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


def test_default_model_hands_high_dimensions_to_the_equivariant_model(
  general_model, equivariant_model
):
  samples = two_component_mixture(16, 256, seed=0)
  out = general_model(samples, samples[:8])
  expected = equivariant_model(samples, samples[:8])
  np.testing.assert_array_equal(out.log_density, expected.log_density)
  assert out.score.shape == (8, 16)
  assert general_model.answering(samples[:, :10]) is general_model
  alone = kdeformer.load_pretrained("gmm")
  alone.handoff = None  # Without the hand-off, d > 10 is a clear error.
  with pytest.raises(ValueError, match=r"supports d <= 10\..*'equivariant'\) takes any d"):
    alone(samples, samples[:4])


def test_the_default_hands_1d_high_d_and_large_n_to_the_equivariant_model(
  general_model, equivariant_model
):
  default = kdeformer.load_pretrained()
  for shape, handed in (
    ((256, 1), True),
    ((256, 2), False),
    ((16384, 8), False),
    ((3, 256, 5), False),
    ((256, 9), True),
    ((16385, 2), True),
  ):
    answering = default.answering(np.zeros(shape))
    assert (answering is not default) == handed, shape
    assert answering.model_config.architecture == ("equivariant" if handed else "transformer")
  samples = np.random.default_rng(0).gamma(4.0, size=(300, 1))
  expected = equivariant_model(samples, samples[:8])
  np.testing.assert_array_equal(default(samples, samples[:8]).log_density, expected.log_density)
  assert general_model.answering(samples) is general_model  # By name: the network itself.


# d = 2 (inside the general model's range) and d = 64 (far beyond the trained sizes); d = 16
# is checked through the default's hand-off in tests/test_notebook.py (the quickstart's last
# cell prints the rotation error and the test bounds it).
@pytest.mark.parametrize("dim", [2, 64])
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
  # And the mass is where the samples are: an unbounded Gaussian start once put it on the
  # farthest sample (density 0.0003 at the centre, nu = 2, n = 16,384).
  centre = np.median(samples, axis=0, keepdims=True)
  scott = stats.gaussian_kde(samples[:, 0])(centre[0])[0]
  assert np.exp(float(equivariant_model(samples, centre).log_density[0])) > 0.7 * scott


def test_any_d_through_fit_sample_bounds_weights_and_sklearn(general_model):
  # n = 256 and the sklearn fit's 200 are one sample bucket (256): one encoding program.
  samples = np.abs(two_component_mixture(12, 256, seed=4)) + 0.1
  density = general_model.fit(samples)
  assert np.all(np.isfinite(density(samples[:5]).log_density))
  drawn = general_model.sample(samples, 16, key=jax.random.key(0))
  assert drawn.points.shape == (16, 12) and np.all(np.isfinite(drawn.points))
  bounded = general_model(samples, samples[:5], bounds=(0.0, np.inf))
  outside = general_model(samples, -samples[:2], bounds=(0.0, np.inf))
  assert np.all(np.isfinite(bounded.log_density)) and np.all(outside.log_density == -np.inf)
  weights = np.random.default_rng(0).uniform(size=256)
  weighted = general_model(samples, samples[:5], weights=weights)
  assert np.all(np.isfinite(weighted.log_density))
  estimator = kdeformer_sklearn.KDEFormerDensity().fit(samples[:200])
  assert np.isfinite(estimator.score(samples[200:]))


def test_memory_not_d_limits_the_equivariant_model(equivariant_model):
  with pytest.raises(ValueError, match="memory, not a table size"):
    equivariant.check_memory(equivariant_model.model_config, 10**6, 3000)


def test_pinned_accuracy_beats_the_fitted_gaussian_and_scott(equivariant_model):
  """Pinned on 2026-12-07 (step 5322): relative score MSE 0.0688 on the paper's mixture at
  d = 16, n = 512 (the fitted Gaussian: 0.160); ISE 1.05e-4 on N(0, 1), n = 2048 (Scott's
  KDE: 3.88e-4), curve no bumpier than the truth's. Full tables: the model card."""
  dim, num = 16, 512
  rng = np.random.default_rng(0)
  means, variances = rng.uniform(-3, 3, (2, dim)), rng.uniform(0.2, 1.0, (2, dim))
  labels = rng.integers(0, 2, num + 256)
  points = means[labels] + np.sqrt(variances[labels]) * rng.normal(size=(num + 256, dim))
  samples, queries = points[:num], points[num:]
  log_components = -0.5 * np.sum((queries[:, None] - means) ** 2 / variances, -1)
  log_components -= 0.5 * np.sum(np.log(2 * np.pi * variances), -1)
  responsibility = np.exp(log_components - special.logsumexp(log_components, 1, keepdims=True))
  true_score = np.einsum("kc,kcd->kd", responsibility, -(queries[:, None] - means) / variances)

  def relative_error(score):
    return np.mean(np.sum((score - true_score) ** 2, -1)) / np.mean(np.sum(true_score**2, -1))

  error = relative_error(np.asarray(equivariant_model(samples, queries).score))
  gaussian = relative_error(-(queries - samples.mean(0)) @ np.linalg.inv(np.cov(samples.T)))
  assert 0.05 < error < 0.086 and error < 0.5 * gaussian, (error, gaussian)

  samples_1d = np.random.default_rng(0).normal(size=(2048, 1))
  grid = np.linspace(-5, 5, 401)
  density = np.exp(equivariant_model(samples_1d, grid[:, None]).log_density)
  truth = stats.norm.pdf(grid)
  scott = stats.gaussian_kde(samples_1d[:, 0])(grid)
  ise = np.trapezoid((density - truth) ** 2, grid)
  assert 0.5e-4 < ise < 2e-4 and ise < np.trapezoid((scott - truth) ** 2, grid), ise
  assert np.sum(np.abs(np.diff(density))) <= 1.02 * np.sum(np.abs(np.diff(truth)))
