"""Cholesky factors, triangular inverses and orthonormal columns of small matrices, in plain XLA.

Concurrent batched LAPACK calls can deadlock XLA's CPU thread pool, so the package's hot programs
use these loops (unrolled over d at trace time) instead; docs/DESIGN.md tells why.
"""

import re

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


def lapack_calls(hlo_text: str) -> list[str]:
  """The LAPACK custom-call targets in a compiled program's HLO text, in order of appearance."""
  calls = []
  for line in hlo_text.splitlines():
    marker = 'custom_call_target="lapack_'
    if marker in line:
      start = line.index(marker) + len('custom_call_target="')
      calls.append(line[start:line.index('"', start)])
  return calls


def lapack_calls_in_loop_bodies(hlo_text: str) -> list[str]:
  """The LAPACK calls of a compiled program that sit in the body of a while loop (or deeper)."""
  computations, current = {}, None
  for line in hlo_text.splitlines():
    if line and not line[0].isspace() and line.rstrip().endswith("{"):
      current = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
      computations[current] = []
    elif current is not None:
      computations[current].append(line)
  called = {name: set(re.findall(r"(?:body|condition|to_apply|calls|branch_computations)="
                                 r"\{?%?([\w.\-]+)", "\n".join(lines)))
            for name, lines in computations.items()}
  inside, frontier = set(), set(re.findall(r"body=%?([\w.\-]+)", hlo_text))
  while frontier:  # Everything a loop body calls runs inside the loop too.
    name = frontier.pop()
    if name in inside:
      continue
    inside.add(name)
    frontier |= called.get(name, set())
  return [call for name in computations if name in inside
          for call in lapack_calls("\n".join(computations[name]))]
