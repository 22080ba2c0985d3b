"""Cholesky factors, triangular inverses and orthonormal columns of small matrices, in plain XLA.

Concurrent batched LAPACK calls can deadlock XLA's CPU thread pool, so the package's hot programs
use these loops (unrolled over d at trace time) instead; docs/DESIGN.md tells why.
"""

import jax
import jax.numpy as jnp


def cholesky(matrix: jax.Array) -> jax.Array:
  """Lower Cholesky factor L (..., d, d) of symmetric positive definite matrices (..., d, d).

  NaN where a matrix is not positive definite (as `jnp.linalg.cholesky`).
  """
  d = matrix.shape[-1]
  factor = jnp.zeros_like(matrix)
  for j in range(d):
    row = factor[..., j, :j]
    diagonal = jnp.sqrt(matrix[..., j, j] - jnp.sum(row * row, axis=-1))
    below = (
      matrix[..., j + 1 :, j] - jnp.einsum("...ik,...k->...i", factor[..., j + 1 :, :j], row)
    ) / diagonal[..., None]
    factor = factor.at[..., j, j].set(diagonal).at[..., j + 1 :, j].set(below)
  return factor


def lower_triangular_inverse(factor: jax.Array) -> jax.Array:
  """Inverse (..., d, d) of lower-triangular matrices (..., d, d), by forward substitution."""
  d = factor.shape[-1]
  eye = jnp.eye(d, dtype=factor.dtype)
  rows = []
  for i in range(d):
    row = jnp.broadcast_to(eye[i], factor.shape[:-2] + (d,))
    if i:
      row = row - jnp.einsum("...k,...kj->...j", factor[..., i, :i], jnp.stack(rows, axis=-2))
    rows.append(row / factor[..., i, i, None])
  return jnp.stack(rows, axis=-2)


def orthonormal_columns(matrix: jax.Array) -> jax.Array:
  """Q of the QR decomposition with R's diagonal positive, for full-rank (..., d, d) matrices.

  Modified Gram-Schmidt, applied twice (one pass loses orthogonality like the condition
  number times the rounding error; the second restores it to rounding level). Q of a
  Gaussian matrix is Haar-distributed.
  """
  d = matrix.shape[-1]
  columns = []
  for j in range(d):
    column = matrix[..., :, j]
    for _ in range(2):
      for previous in columns:
        column = column - jnp.sum(previous * column, axis=-1, keepdims=True) * previous
      column = column / jnp.linalg.norm(column, axis=-1, keepdims=True)
    columns.append(column)
  return jnp.stack(columns, axis=-1)


def cholesky_loop(matrix: jax.Array) -> jax.Array:
  """`cholesky` as a fori_loop over columns: compile time independent of d (for large d).

  Same factor to round-off; NaN where a matrix is not positive definite.
  """
  d = matrix.shape[-1]
  index = jnp.arange(d)

  def column(j, factor):
    row = jnp.where(index < j, jnp.take(factor, j, axis=-2), 0.0)  # L[j, :j]
    diagonal = jnp.sqrt(
      jnp.take(jnp.take(matrix, j, axis=-1), j, axis=-1) - jnp.sum(row * row, axis=-1)
    )
    below = (jnp.take(matrix, j, axis=-1) - jnp.einsum("...ik,...k->...i", factor, row)) / diagonal[
      ..., None
    ]
    new = jnp.where(index > j, below, jnp.where(index == j, diagonal[..., None], 0.0))
    return jnp.where(index[None, :] == j, new[..., :, None], factor)

  return jax.lax.fori_loop(0, d, column, jnp.zeros_like(matrix))


def lower_triangular_inverse_loop(factor: jax.Array) -> jax.Array:
  """`lower_triangular_inverse` as a fori_loop over rows (compile time independent of d)."""
  d = factor.shape[-1]
  index = jnp.arange(d)
  eye = jnp.eye(d, dtype=factor.dtype)

  def row(i, inverse):
    coefficients = jnp.where(index < i, jnp.take(factor, i, axis=-2), 0.0)  # L[i, :i]
    value = (eye[i] - jnp.einsum("...k,...kj->...j", coefficients, inverse)) / jnp.take(
      jnp.take(factor, i, axis=-2), i, axis=-1
    )[..., None]
    return jnp.where(index[:, None] == i, value[..., None, :], inverse)

  return jax.lax.fori_loop(0, d, row, jnp.zeros_like(factor))
