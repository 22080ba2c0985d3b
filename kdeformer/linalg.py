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
    below = (matrix[..., j + 1:, j]
             - jnp.einsum("...ik,...k->...i", factor[..., j + 1:, :j], row)) / diagonal[..., None]
    factor = factor.at[..., j, j].set(diagonal).at[..., j + 1:, j].set(below)
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

