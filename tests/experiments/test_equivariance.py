"""Tests of experiments.harness.equivariance: the transforms and the errors of Table 1."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.harness import equivariance
from kdeformer import kde
from kdeformer.estimate import Estimate


def batched_kde(covariance_fn):
  """A batched estimator from a KDE with kernel covariance covariance_fn(samples)."""

  def one(samples, queries):
    return kde.kde_with_covariance(samples, queries, covariance_fn(samples))

  batched = jax.jit(jax.vmap(one))
  return lambda samples, queries: batched(
    jnp.asarray(samples, jnp.float32), jnp.asarray(queries, jnp.float32)
  )


SCOTT_KDE = batched_kde(lambda x: kde.sample_covariance(x) * kde.scott_factor(*x.shape) ** 2)
FIXED_BANDWIDTH_KDE = batched_kde(lambda x: 0.3 * jnp.eye(x.shape[1]))


def gaussian_problems(num: int = 4, n: int = 128, m: int = 32, d: int = 2):
  key_samples, key_queries, key_mix = jax.random.split(jax.random.key(7), 3)
  mix = jax.random.normal(key_mix, (num, d, d)) + 2 * jnp.eye(d)
  samples = jnp.einsum("bni,bij->bnj", jax.random.normal(key_samples, (num, n, d)), mix)
  queries = jnp.einsum("bni,bij->bnj", jax.random.normal(key_queries, (num, m, d)), mix)
  return samples, queries


def test_affine_equivariant_kde_has_zero_errors():
  samples, queries = gaussian_problems()
  errors = equivariance.transform_errors(SCOTT_KDE, samples, queries, np.random.default_rng(0))
  assert list(errors) == list(equivariance.TRANSFORMS)
  for kind, per_output in errors.items():
    for output, values in per_output.items():
      assert values.shape == (4,)
      # Measured: at most 7e-11 (float32 round-off), so 1e-8 leaves a wide margin.
      assert values.max() < 1e-8, (kind, output, values.max())


def test_fixed_bandwidth_kde_breaks_scaling_only():
  samples, queries = gaussian_problems()
  errors = equivariance.transform_errors(
    FIXED_BANDWIDTH_KDE, samples, queries, np.random.default_rng(0)
  )
  for kind in ("permutation", "translation", "rotation"):  # An isotropic kernel keeps these.
    assert errors[kind]["score"].max() < 1e-8, kind
  for kind in ("isotropic_scaling", "anisotropic_scaling", "affine"):
    assert errors[kind]["score"].min() > 1e-3, kind
    assert errors[kind]["log_density"].min() > 1e-4, kind


def test_random_model_is_exactly_equivariant_except_rotation(random_estimator):
  # The shapes of evaluate_tiny's equivariance table, so the compiled model is reused.
  samples, queries = gaussian_problems(num=2, n=32, m=8)
  errors = equivariance.transform_errors(
    random_estimator, samples, queries, np.random.default_rng(1)
  )
  for kind in ("permutation", "translation", "isotropic_scaling"):
    for output in ("log_density", "score"):
      assert errors[kind][output].max() < 1e-8, (kind, output)
  # Whitening leaves an orthogonal transform that the network only approximately respects.
  for kind in ("rotation", "affine"):
    for output in ("log_density", "score"):
      assert np.all(np.isfinite(errors[kind][output]))
      assert errors[kind][output].max() > 1e-8, (kind, output)


@pytest.mark.parametrize("kind", equivariance.TRANSFORMS)
def test_transforms_are_what_they_say(kind):
  rng = np.random.default_rng(3)
  t = equivariance.random_transforms(
    rng, kind, num=5, dim=3, num_samples=10, min_scale=0.1, max_scale=10.0, max_shift=5.0
  )
  assert t.matrix.shape == (5, 3, 3)
  moved = kind in ("translation", "affine")
  assert bool(np.any(t.shift != 0)) == moved
  assert bool(np.any(t.permutation != np.arange(10))) == (kind == "permutation")
  gram = np.einsum("bji,bjk->bik", t.matrix, t.matrix)
  if kind in ("permutation", "translation", "rotation"):
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(3), gram.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(t.matrix), 1.0, atol=1e-12)
  else:
    assert not np.allclose(gram, np.eye(3))


def test_expected_outputs_follow_the_change_of_variables():
  # A standard normal in d = 2 mapped by A: the truth is N(mu, A^T A) in row convention.
  matrix = np.array([[[2.0, 0.5], [0.0, 1.0]]])
  shift = np.array([[1.0, -2.0]])
  transform = equivariance.Transform(matrix, shift, np.arange(4)[None])
  y = np.array([[[0.3, -0.7], [1.0, 2.0]]])
  original = Estimate(-0.5 * np.sum(y**2, -1) - np.log(2 * np.pi), -y)
  expected = equivariance.expected_outputs(original, transform)
  y_new = y @ matrix[0] + shift
  covariance = matrix[0].T @ matrix[0]
  diff = y_new[0] - shift[0]
  precision = np.linalg.inv(covariance)
  log_density = (
    -0.5 * np.einsum("mi,ij,mj->m", diff, precision, diff)
    - np.log(2 * np.pi)
    - 0.5 * np.log(np.linalg.det(covariance))
  )
  np.testing.assert_allclose(expected.log_density[0], log_density, rtol=1e-12)
  np.testing.assert_allclose(expected.score[0], -diff @ precision, rtol=1e-12)


def test_summary_rows_give_mean_and_max_per_transform():
  errors = {"rotation": {"log_density": np.array([1.0, 3.0]), "score": np.array([0.5, 0.1])}}
  assert equivariance.summary_rows(errors, 2) == [
    {
      "transform": "rotation",
      "dim": 2,
      "num_trials": 2,
      "log_density_mean": 2.0,
      "log_density_max": 3.0,
      "score_mean": pytest.approx(0.3),
      "score_max": 0.5,
    }
  ]
