"""Tests for kdeformer.equivariant and kdeformer.mixture_fit: the equivariant network.

Its symmetries are exact by construction, so they are asserted to float32 round-off with
every parameter drawn at random (the zero-initialised heads would make them trivial; a test
checks that the random parameters move the output away from the untrained network's).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats

from kdeformer import equivariant
from kdeformer import mixture_fit
from kdeformer import model as model_lib
from kdeformer import networks

CONFIG = model_lib.ModelConfig(
  architecture="equivariant",
  max_dim=0,
  width=16,
  num_layers=1,
  num_heads=2,
  mlp_ratio=2,
  dropout_rate=0.0,
  kernel_bandwidths=(0.5, 1.0, 2.0),
  initial_bandwidth_index=1,
  tail_base_dofs=(3.0,),
  mixture_components=(2,),
  em_steps=5,
)
# With cross-validated base weights (kdeformer.held_out).
EVIDENCE_CONFIG = dataclasses.replace(CONFIG, held_out_evidence=1.0)
NUM_SAMPLES, NUM_QUERIES = 64, 16


@functools.cache
def parameters(perturb: float, config=CONFIG):
  params = networks.init_params(config, jax.random.key(0))
  if not perturb:
    return params
  rng = np.random.default_rng(1)
  return jax.tree.map(lambda x: x + perturb * rng.normal(size=x.shape).astype(np.float32), params)


@functools.cache
def apply_fn(config=CONFIG):
  model = networks.build_model(config)
  return jax.jit(
    lambda params, samples, queries: model.apply(
      {"params": params},
      samples,
      queries,
      jnp.ones(samples.shape[:2], bool),
      jnp.ones((samples.shape[0], samples.shape[-1]), bool),
    )
  )


def whitened_problem(dim: int, seed: int = 0, num_samples: int = NUM_SAMPLES):
  rng = np.random.default_rng(seed)
  samples = rng.standard_t(4, size=(1, num_samples, dim)) * rng.uniform(0.5, 2.0, size=dim)
  samples = samples - samples.mean(axis=1, keepdims=True)
  covariance = np.cov(samples[0].T).reshape(dim, dim)
  values, vectors = np.linalg.eigh(covariance)
  samples = samples @ (vectors / np.sqrt(values)) @ vectors.T
  queries = rng.normal(size=(1, NUM_QUERIES, dim)) * 1.2
  return samples.astype(np.float32), queries.astype(np.float32)


def scott_kde(samples, queries):
  n, dim = samples.shape[1:]
  h = n ** (-1.0 / (dim + 4))
  squared = np.sum((queries[0][:, None] - samples[0][None]) ** 2, -1)
  return (
    special.logsumexp(-0.5 * squared / h**2, axis=1)
    - np.log(n)
    - 0.5 * dim * np.log(2 * np.pi * h**2)
  )


@pytest.mark.parametrize(
  "dim, config", [(2, CONFIG), (16, CONFIG), (64, CONFIG), (16, EVIDENCE_CONFIG)]
)
def test_rotation_equivariance_is_exact(dim, config):
  # n well above d: with n ~ d the mixture bases' EM is ill-posed and float32 rounding alone
  # can move it (measured at n = d = 64: 0.16 in log f; at n = 256: 8e-6).
  samples, queries = whitened_problem(dim, num_samples=256)
  rotation = np.linalg.qr(np.random.default_rng(dim).normal(size=(dim, dim)))[0]
  rotation = rotation.astype(np.float32)
  params = parameters(0.3, config)
  log_density, score = apply_fn(config)(params, samples, queries)
  rotated_log_density, rotated_score = apply_fn(config)(
    params, samples @ rotation, queries @ rotation
  )
  scale = float(jnp.max(jnp.abs(score)))
  np.testing.assert_allclose(rotated_log_density, log_density, atol=2e-5 * max(dim, 10))
  np.testing.assert_allclose(rotated_score, score @ rotation, atol=2e-5 * scale)


def test_sample_permutation_invariance():
  samples, queries = whitened_problem(3)
  order = np.random.default_rng(0).permutation(NUM_SAMPLES)
  params = parameters(0.3)
  expected = apply_fn()(params, samples, queries)
  actual = apply_fn()(params, samples[:, order], queries)
  np.testing.assert_allclose(actual[0], expected[0], atol=1e-4)
  np.testing.assert_allclose(actual[1], expected[1], atol=1e-4)


@pytest.mark.parametrize("dim", [1, 2])
def test_untrained_network_is_scotts_kde(dim):
  samples, queries = whitened_problem(dim, seed=3)
  queries = queries * 0.8
  untrained, _ = apply_fn()(parameters(0.0), samples, queries)
  # The other bases start at weight ~e^-6 each: a few thousandths of the density's scale
  # (in log terms, more where the KDE itself is far below the Gaussian).
  expected = np.exp(scott_kde(samples, queries))
  np.testing.assert_allclose(np.exp(untrained[0]), expected, atol=0.01 * expected.max())
  perturbed, _ = apply_fn()(parameters(0.3), samples, queries)
  # The random parameters matter.
  assert np.max(np.abs(np.exp(perturbed[0]) - np.exp(untrained[0]))) > 0.05 * expected.max()


@pytest.mark.parametrize("tail_dof", [2.0, 30.0])
def test_density_integrates_to_one_by_construction(tail_dof):
  rng = np.random.default_rng(5)
  samples = rng.standard_t(tail_dof, size=(1, NUM_SAMPLES, 1)).astype(np.float32)
  samples = (samples - samples.mean()) / samples.std()
  grid = np.sinh(np.linspace(-12.0, 12.0, 4001)).astype(np.float32)  # Out to |y| ~ 8e4.
  log_density, _ = apply_fn()(parameters(0.3), samples, grid[None, :, None])
  integral = np.trapezoid(np.exp(np.asarray(log_density[0], np.float64)), grid)
  assert abs(integral - 1.0) < 2e-3


def test_score_is_the_gradient_of_the_log_density():
  samples, queries = whitened_problem(3, seed=7)
  params = parameters(0.3)
  _, score = apply_fn()(params, samples, queries)
  log_f = lambda q: jnp.sum(apply_fn()(params, samples, q)[0])
  np.testing.assert_allclose(jax.grad(log_f)(jnp.asarray(queries)), score, rtol=1e-3, atol=1e-3)


def test_mixture_fit_recovers_two_separated_clusters():
  rng = np.random.default_rng(0)
  dim, n = 5, 400
  centres = np.zeros((2, dim))
  centres[0, 0], centres[1, 0] = -1.0, 1.0
  labels = rng.integers(0, 2, n)
  samples = centres[labels] + 0.15 * rng.normal(size=(n, dim)) * [1, 5, 5, 5, 5]
  samples = jnp.asarray(samples[None], jnp.float32)
  weights = jnp.full((1, n), 1.0 / n)
  fitted = mixture_fit.fit(samples, weights, jnp.ones((1, dim), bool), samples, 2, 10)
  means = np.asarray(fitted.means[0])
  means = means[np.argsort(means[:, 0])]
  np.testing.assert_allclose(means, centres, atol=0.1)
  np.testing.assert_allclose(np.exp(fitted.log_weights[0]), 0.5, atol=0.08)


def test_held_out_evidence_chooses_the_two_component_mixture_on_two_clusters():
  # With evidence the untrained gate is level over the non-tail bases, and the cross-fitted
  # evidence of 256 samples chooses.
  rng = np.random.default_rng(4)
  labels = rng.integers(0, 2, 256)[:, None]
  samples = rng.normal(size=(256, 4)) * 0.4 + np.where(labels, 1.0, -1.0) * np.eye(4)[0]
  samples = (samples - samples.mean(0)) / samples.std(0)
  samples = jnp.asarray(samples[None], jnp.float32)
  model = networks.build_model(EVIDENCE_CONFIG)
  encoded = jax.jit(
    lambda params, samples: model.apply(
      {"params": params},
      samples,
      jnp.ones((1, 256), bool),
      jnp.ones((1, 4), bool),
      method=model.encode,
    )
  )(parameters(0.0, EVIDENCE_CONFIG), samples)
  weights = np.exp(np.asarray(encoded["base_log_weights"][0]))
  assert np.argmax(weights) == 2 and weights[2] > 0.9, weights  # [kernel, Gaussian, mixture 2].
  without, _ = apply_fn()(parameters(0.0), samples, samples[:, :8])
  assert not np.allclose(
    without,
    apply_fn(EVIDENCE_CONFIG)(parameters(0.0, EVIDENCE_CONFIG), samples, samples[:, :8])[0],
    atol=1e-2,
  )


# With the 1-D Gaussian start (Hjort and Glad) and no mixture bases in 1-D.
GAUSSIAN_START_CONFIG = dataclasses.replace(EVIDENCE_CONFIG, one_dim_gaussian_start=True)


def test_gaussian_start_is_hjort_and_glads_estimate_normalised():
  rng = np.random.default_rng(6)
  samples = rng.beta(2.0, 5.0, size=(1, 200, 1))  # Skewed, and inside the start's reach.
  samples = ((samples - samples.mean()) / samples.std()).astype(np.float32)
  assert np.abs(samples).max() < equivariant.GAUSSIAN_START_REACH
  grid = np.linspace(-8.0, 8.0, 3201)
  h = 0.8
  centres, inverse_h2, log_weights = equivariant.gaussian_start(
    jnp.asarray(samples), jnp.full((1, 200), -np.log(200.0)), jnp.asarray([h])
  )
  mixture = np.exp(np.asarray(log_weights[0], np.float64))[None] * stats.norm.pdf(
    grid[:, None], np.asarray(centres[0, :, 0]), np.asarray(inverse_h2[0]) ** -0.5
  )
  x = samples[0, :, 0].astype(np.float64)
  direct = stats.norm.pdf(grid) * np.mean(
    stats.norm.pdf(grid[:, None], x[None], h) / stats.norm.pdf(x)[None], axis=1
  )
  direct /= np.trapezoid(direct, grid)
  np.testing.assert_allclose(mixture.sum(1), direct, atol=1e-5 * direct.max())
  assert abs(np.trapezoid(mixture.sum(1), grid) - 1.0) < 1e-4


def test_a_far_sample_does_not_take_the_gaussian_starts_mass():
  samples = np.random.default_rng(7).normal(size=(1, 500, 1))
  samples[0, 0, 0] = 120.0  # Unclipped, its tilt would be e^140.
  _, _, log_weights = equivariant.gaussian_start(
    jnp.asarray(samples, jnp.float32), jnp.full((1, 500), -np.log(500.0)), jnp.asarray([0.3])
  )
  weights = np.exp(np.asarray(log_weights[0], np.float64))
  assert weights[0] < 2.0 / 500  # Its tilt is at most that of a sample at the reach.
  np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-5)


def test_one_dim_gaussian_start_replaces_the_kernel_and_drops_the_mixtures_in_1d_only():
  model = networks.build_model(GAUSSIAN_START_CONFIG)
  params = parameters(0.3, GAUSSIAN_START_CONFIG)

  # Jitted: run eagerly, each of the encode's ~400 ops compiles on its own (~20 s on 2 cores).
  @jax.jit
  def encode(samples):
    return model.apply(
      {"params": params},
      samples,
      jnp.ones(samples.shape[:2], bool),
      jnp.ones((1, samples.shape[-1]), bool),
      method=model.encode,
    )

  samples, _ = whitened_problem(1, seed=2)
  one_d = encode(samples)
  scott = 1.0 * NUM_SAMPLES ** (-1 / 5)  # kernel_bandwidths[initial_bandwidth_index] = 1.0.
  np.testing.assert_allclose(one_d["inverse_h2"], (1 + scott**2) / scott**2, rtol=1e-5)
  one_d_weights = np.exp(np.asarray(one_d["base_log_weights"][0], np.float64))
  assert one_d_weights[2] == 0.0  # The 2-component mixture is off in 1-D.
  # The tail base (nu = 3) holds at least its share of the kernel base's weight.
  assert one_d_weights[3] >= equivariant.ONE_DIM_TAIL_WEIGHT * one_d_weights[0]
  np.testing.assert_allclose(one_d_weights.sum(), 1.0, rtol=1e-5)
  samples_2d, _ = whitened_problem(2, seed=2)
  two_d = encode(samples_2d)  # Unchanged at d >= 2: the learned per-sample kernels.
  reference_model = networks.build_model(EVIDENCE_CONFIG)
  reference = jax.jit(
    lambda samples: reference_model.apply(
      {"params": params},
      samples,
      jnp.ones(samples.shape[:2], bool),
      jnp.ones((1, 2), bool),
      method=reference_model.encode,
    )
  )(samples_2d)
  np.testing.assert_array_equal(two_d["inverse_h2"], reference["inverse_h2"])
  np.testing.assert_array_equal(two_d["base_log_weights"], reference["base_log_weights"])


@pytest.mark.parametrize("num_keys", [40, 25])
def test_gaussian_start_leave_one_out_is_the_estimate_without_each_sample(num_keys):
  rng = np.random.default_rng(8)
  samples = rng.beta(2.0, 4.0, size=(1, 40, 1))
  samples = (samples - samples.mean()) / samples.std()
  assert np.abs(samples).max() < equivariant.GAUSSIAN_START_REACH
  weights = rng.uniform(0.5, 1.5, 40)
  weights /= weights.sum()
  h = 0.6
  loo = equivariant.gaussian_start_leave_one_out(
    jnp.asarray(samples, jnp.float32),
    jnp.asarray(np.log(weights)[None], jnp.float32),
    jnp.ones(1),
    jnp.asarray([h]),
    num_keys,
  )
  x = samples[0, :, 0]
  expected = []
  for i in range(40):
    others = [j for j in range(num_keys) if j != i]
    v = weights[others] / stats.norm.pdf(x[others])
    numerator = np.sum(v * stats.norm.pdf(x[i], x[others], h))
    normaliser = np.sum(v * stats.norm.pdf(x[others], 0.0, np.sqrt(1 + h**2)))
    expected.append(np.log(stats.norm.pdf(x[i]) * numerator / normaliser))
  np.testing.assert_allclose(loo[0], expected, atol=2e-4)
