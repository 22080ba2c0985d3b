"""Tests of rotation averaging (kdeformer.rotation_averaging and Estimator(rotations=...)).

The estimator is conftest.py's tiny model with every parameter perturbed, so it is far from
rotation-invariant and averaging has something to do.
"""

import functools

import jax
import numpy as np
import pytest

from experiments.harness import equivariance
from kdeformer import rotation_averaging


def problems(num=3, n=64, m=16, dim=3, seed=0):
  rng = np.random.default_rng(seed)
  mixing = rng.normal(size=(num, dim, dim))
  samples = np.einsum("bni,bij->bnj", rng.standard_t(4, size=(num, n, dim)), mixing)
  queries = np.einsum("bni,bij->bnj", rng.standard_t(4, size=(num, m, dim)), mixing)
  return samples, queries


def test_random_orthogonal_matrices_are_orthogonal():
  matrices = np.asarray(jax.random.orthogonal(jax.random.key(0), 3, shape=(8,)), np.float64)
  assert matrices.shape == (8, 3, 3)
  np.testing.assert_allclose(
    np.einsum("kji,kjl->kil", matrices, matrices), np.broadcast_to(np.eye(3), (8, 3, 3)), atol=1e-5
  )
  padded = rotation_averaging.pad_rotations(matrices, 5)
  np.testing.assert_array_equal(padded[:, :3, :3], matrices.astype(np.float32))
  np.testing.assert_array_equal(padded[:, 3:, 3:], np.broadcast_to(np.eye(2), (8, 2, 2)))
  np.testing.assert_array_equal(padded[:, :3, 3:], 0.0)


def test_identity_rotation_equals_the_plain_call(random_estimator):
  samples, queries = problems()
  plain = random_estimator(samples, queries)
  out = random_estimator(samples, queries, rotations=np.eye(3)[None])
  np.testing.assert_allclose(out.log_density, plain.log_density, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(out.score, plain.score, rtol=1e-6, atol=1e-6)


def test_one_rotation_is_the_rotated_problem_mapped_back(random_estimator):
  samples, queries = problems()
  rotation = np.asarray(jax.random.orthogonal(jax.random.key(3), 3, shape=(1,))[0], np.float64)
  out = random_estimator(samples, queries, rotations=rotation[None])
  rotated = random_estimator(samples @ rotation, queries @ rotation)
  # log f is unchanged by an orthogonal map; the score maps back with R^T.
  np.testing.assert_allclose(out.log_density, rotated.log_density, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(
    out.score, np.asarray(rotated.score) @ rotation.T, rtol=1e-4, atol=1e-4
  )
  plain = random_estimator(samples, queries)
  assert np.max(np.abs(out.score - plain.score)) > 1e-3  # It did something.


def test_exact_symmetries_stay_exact_with_random_rotations(random_estimator):
  samples, queries = problems()
  averaged = functools.partial(random_estimator, rotations=4, key=jax.random.key(7))
  errors = equivariance.transform_errors(
    averaged,
    samples,
    queries,
    np.random.default_rng(1),
    kinds=("permutation", "translation", "isotropic_scaling"),
  )
  for kind, per_output in errors.items():
    for output, values in per_output.items():
      assert values.max() < 1e-8, (kind, output, values)


def test_rotation_error_falls_with_the_number_of_rotations(random_estimator):
  samples, queries = problems(num=6)
  mean_error = {}
  for count in (1, 16):
    averaged = functools.partial(random_estimator, rotations=count, key=jax.random.key(count))
    errors = equivariance.transform_errors(
      averaged, samples, queries, np.random.default_rng(2), kinds=("rotation",)
    )
    mean_error[count] = float(np.mean(errors["rotation"]["score"]))
  plain = equivariance.transform_errors(
    random_estimator, samples, queries, np.random.default_rng(2), kinds=("rotation",)
  )
  assert mean_error[1] > 1e-4 and np.mean(plain["rotation"]["score"]) > 1e-4
  assert mean_error[16] < 0.3 * mean_error[1], mean_error


def test_bad_rotation_arguments_are_rejected(random_estimator):
  samples, queries = problems(num=1)
  with pytest.raises(ValueError, match="key"):
    random_estimator(samples, queries, rotations=4)
  with pytest.raises(ValueError, match="orthogonal"):
    random_estimator(samples, queries, rotations=2.0 * np.eye(3)[None])
  with pytest.raises(ValueError, match="shape"):
    random_estimator(samples, queries, rotations=np.eye(2)[None])
  with pytest.raises(ValueError, match="at least 1"):
    random_estimator(samples, queries, rotations=0, key=jax.random.key(0))
