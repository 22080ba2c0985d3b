"""Tests for kdeformer.whitening: exact round trip, scale invariance, residual rotation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdeformer import whitening

fit = jax.jit(whitening.fit_affine_map)
whiten = jax.jit(whitening.whiten)


def random_gaussian(dim: int, seed: int):
  """A random mean (d,) and well-conditioned correlated covariance (d, d), float64."""
  rng = np.random.default_rng(seed)
  factor = rng.normal(size=(dim, dim))
  covariance = factor @ factor.T / dim + 0.2 * np.eye(dim)
  mean = rng.uniform(-3.0, 3.0, size=dim)
  return mean, covariance


def gaussian_log_density_and_score(points, mean, covariance):
  """Exact log N(points; mean, covariance) (m,) and its score (m, d), row convention."""
  precision = jnp.linalg.inv(covariance)
  diff = points - mean
  dim = mean.shape[-1]
  _, log_det = jnp.linalg.slogdet(covariance)
  log_density = (
    -0.5 * jnp.einsum("mi,ij,mj->m", diff, precision, diff)
    - 0.5 * log_det
    - 0.5 * dim * jnp.log(2 * jnp.pi)
  )
  return log_density, -diff @ precision


def random_samples(dim: int, seed: int, num: int = 500):
  mean, covariance = random_gaussian(dim, seed)
  rng = np.random.default_rng(seed + 1000)
  samples = rng.multivariate_normal(mean, covariance, size=num)
  return samples.astype(np.float32), mean, covariance


def relative_error(actual, expected):
  return float(np.max(np.abs(np.asarray(actual) - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_round_trip_of_exact_gaussian_targets(dim):
  samples, mean, covariance = random_samples(dim, seed=dim)
  queries = samples[:64] + 0.5
  affine_map = fit(samples)
  host_map = np.asarray(affine_map.whitening, np.float64)
  # X ~ N(mean, C)  =>  Z = (X - m) W ~ N((mean - m) W, W C W) (W symmetric).
  whitened_mean = (mean - np.asarray(affine_map.mean, np.float64)) @ host_map
  whitened_covariance = host_map @ covariance @ host_map
  whitened_ld, whitened_score = gaussian_log_density_and_score(
    whiten(queries, affine_map),
    jnp.asarray(whitened_mean, jnp.float32),
    jnp.asarray(whitened_covariance, jnp.float32),
  )
  log_density, score = whitening.unwhiten_estimate(whitened_ld, whitened_score, affine_map)
  expected_ld, expected_score = gaussian_log_density_and_score(
    queries.astype(np.float64), mean, covariance
  )
  np.testing.assert_allclose(log_density, expected_ld, rtol=1e-4, atol=1e-4)
  assert relative_error(score, expected_score) < 1e-4
  # And whiten_estimate inverts unwhiten_estimate.
  back = whitening.whiten_estimate(log_density, score, affine_map)
  chex.assert_trees_all_close(back, (whitened_ld, whitened_score), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dim", [1, 3])
def test_whitened_samples_have_identity_covariance(dim):
  samples, _, _ = random_samples(dim, seed=10 + dim)
  affine_map = fit(samples)
  whitened = np.asarray(whiten(samples, affine_map), np.float64)
  np.testing.assert_allclose(whitened.mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(np.cov(whitened.T).reshape(dim, dim), np.eye(dim), atol=1e-4)
  np.testing.assert_allclose(
    affine_map.whitening, np.swapaxes(affine_map.whitening, -1, -2), atol=1e-6
  )
  np.testing.assert_allclose(affine_map.whitening @ affine_map.unwhitening, np.eye(dim), atol=1e-4)
  _, log_det_cov = np.linalg.slogdet(np.cov(samples.astype(np.float64).T).reshape(dim, dim))
  np.testing.assert_allclose(affine_map.log_det, -0.5 * log_det_cov, rtol=1e-4)


@pytest.mark.parametrize("scale", [1e-6, 1e6])
@pytest.mark.parametrize("dim", [1, 3])
def test_scale_does_not_change_whitened_inputs(dim, scale):
  samples, _, _ = random_samples(dim, seed=20 + dim)
  queries = samples[:32] * 1.5
  reference = fit(samples)
  scaled = fit(samples * scale)
  np.testing.assert_allclose(
    whiten(queries * scale, scaled), whiten(queries, reference), rtol=1e-4, atol=1e-4
  )
  np.testing.assert_allclose(scaled.log_det, reference.log_det - dim * np.log(scale), rtol=1e-5)


def random_invertible(dim: int, seed: int):
  """A random invertible (d, d) map (condition number <= 4, any scale) and a shift (d,)."""
  rng = np.random.default_rng(seed)
  left, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
  right, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
  overall_scale = 10.0 ** rng.uniform(-2, 2)
  singular_values = rng.uniform(0.5, 2.0, size=dim) * overall_scale
  # The shift is a few spreads: much larger would lose the data to float32 rounding of the offset.
  shift = rng.normal(size=dim) * 3.0 * overall_scale
  return (left * singular_values) @ right, shift


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_affine_map_leaves_only_an_orthogonal_transform(dim, seed):
  samples, _, _ = random_samples(dim, seed=30 + dim)
  queries = samples[:64] + 0.3
  matrix, shift = random_invertible(dim, seed)
  original = np.asarray(whiten(queries, fit(samples)), np.float64)
  transform = lambda x: (x.astype(np.float64) @ matrix + shift).astype(np.float32)
  transformed = np.asarray(whiten(transform(queries), fit(transform(samples))), np.float64)
  # The fitted map between the two whitened point sets (least squares) must be orthogonal.
  fitted, *_ = np.linalg.lstsq(original, transformed, rcond=None)
  np.testing.assert_allclose(fitted @ fitted.T, np.eye(dim), atol=1e-4)
  np.testing.assert_allclose(original @ fitted, transformed, atol=1e-4)


def test_pure_rotation_rotates_whitened_inputs_by_the_same_rotation():
  dim = 3
  samples, _, _ = random_samples(dim, seed=40)
  rotation, _ = np.linalg.qr(np.random.default_rng(41).normal(size=(dim, dim)))
  rotated = (samples.astype(np.float64) @ rotation).astype(np.float32)
  original = whiten(samples, fit(samples))
  np.testing.assert_allclose(whiten(rotated, fit(rotated)), original @ rotation, atol=1e-4)


@pytest.mark.parametrize("dim", [1, 4])
def test_sample_mask_ignores_padding(dim):
  samples, _, _ = random_samples(dim, seed=50 + dim, num=100)
  garbage = np.random.default_rng(0).normal(size=(37, dim)).astype(np.float32) * 1e3 + 7.0
  padded = np.concatenate([samples, garbage])[np.random.default_rng(1).permutation(137)]
  mask = np.isin(padded[:, 0], samples[:, 0])
  assert mask.sum() == 100
  expected = fit(samples)
  actual = fit(padded, jnp.asarray(mask))
  chex.assert_trees_all_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_dim_mask_leaves_padded_coordinates_alone():
  real_dim, max_dim = 3, 5
  samples, _, _ = random_samples(real_dim, seed=60)
  padded = np.pad(samples, [(0, 0), (0, max_dim - real_dim)])
  dim_mask = jnp.arange(max_dim) < real_dim
  expected = fit(samples)
  actual = fit(padded, None, dim_mask)
  np.testing.assert_allclose(
    actual.whitening[:real_dim, :real_dim], expected.whitening, rtol=1e-5, atol=1e-5
  )
  np.testing.assert_allclose(actual.whitening[real_dim:, real_dim:], np.eye(2), atol=1e-6)
  np.testing.assert_array_equal(actual.whitening[:real_dim, real_dim:], 0.0)
  np.testing.assert_allclose(actual.log_det, expected.log_det, rtol=1e-5)
  whitened = whiten(padded, actual)
  np.testing.assert_array_equal(whitened[:, real_dim:], 0.0)
  np.testing.assert_allclose(whitened[:, :real_dim], whiten(samples, expected), atol=1e-5)
  score = jnp.ones((4, max_dim)).at[:, real_dim:].set(0.0)
  _, back = whitening.unwhiten_estimate(jnp.zeros(4), score, actual)
  np.testing.assert_array_equal(back[:, real_dim:], 0.0)


def test_batched_fit_equals_per_member_fit():
  dim = 2
  members = [random_samples(dim, seed=70 + i, num=80)[0] for i in range(3)]
  mask = np.ones((3, 80), bool)
  mask[1, 60:] = False
  batched = fit(np.stack(members), jnp.asarray(mask))
  for i, member in enumerate(members):
    single = fit(member[mask[i]])
    chex.assert_trees_all_close(
      jax.tree.map(lambda x, i=i: x[i], batched), single, rtol=1e-5, atol=1e-5
    )
  queries = np.stack(members)[:, :5]
  whitened = whiten(queries, batched)
  chex.assert_shape(whitened, (3, 5, dim))
  log_density, score = whitening.unwhiten_estimate(jnp.zeros((3, 5)), whitened, batched)
  chex.assert_shape((log_density, score), [(3, 5), (3, 5, dim)])
  np.testing.assert_allclose(log_density, np.broadcast_to(batched.log_det[:, None], (3, 5)))
