"""Rotation averaging: the network's outputs averaged over random orthogonal transforms.

For orthogonal R, log f(z) = T(z R) and score(z) = S(z R) R^T exactly, so each R gives an
estimate of the same quantities; the mean of k of them reduces the network's residual rotation
error. The same rotations serve every problem of a batch.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from kdeformer import validation

Network = Callable[..., tuple[jax.Array, jax.Array]]


def pad_rotations(rotations: jax.Array, max_dim: int) -> jax.Array:
  """(k, d, d) -> (k, max_dim, max_dim) with an identity block on the padded coordinates."""
  rotations = jnp.asarray(rotations)
  k, d, _ = rotations.shape
  padded = jnp.broadcast_to(jnp.eye(max_dim, dtype=rotations.dtype), (k, max_dim, max_dim))
  return padded.at[:, :d, :d].set(rotations)


def with_rotation_averaging(network: Network, rotations: jax.Array | None) -> Network:
  """Wraps a whitened-space network (see `kdeformer.adaptation.Network`).

  Args:
    network: (params, whitened_samples (b, n, D), whitened_queries (b, m, D), sample_mask,
      dim_mask) -> (log_density (b, m), score (b, m, D)).
    rotations: (k, D, D) orthogonal matrices (block-diagonal with the identity on padded
      coordinates, see `pad_rotations`), or None for no averaging.

  Returns:
    The averaged network with the same signature. The k evaluations run one after
    another (`lax.map`), so memory does not grow with k.
  """
  if rotations is None:
    return network

  def averaged_network(params, whitened_samples, whitened_queries, sample_mask, dim_mask):
    def one_rotation(rotation):
      rotate = lambda x: jnp.einsum("bni,ij->bnj", x, rotation)
      log_density, score = network(
        params, rotate(whitened_samples), rotate(whitened_queries), sample_mask, dim_mask
      )
      return log_density, jnp.einsum("bmj,ij->bmi", score, rotation)  # S(z R) R^T.

    log_density, score = jax.lax.map(one_rotation, rotations)
    return jnp.mean(log_density, axis=0), jnp.mean(score, axis=0)

  return averaged_network


def resolve_rotations(rotations, key, *, dim: int) -> jax.Array | None:
  """The (k, d, d) float32 orthogonal matrices of a call's `rotations` argument, or None."""
  if rotations is None:
    return None
  if isinstance(rotations, (int, np.integer)):
    if rotations < 1:
      raise ValueError(f"rotations={rotations}: the number of rotations must be at least 1.")
    validation.check_key(key, "rotations=k draws k random rotations")
    return jax.random.orthogonal(key, dim, shape=(int(rotations),))  # Haar on O(d).
  matrices = np.asarray(rotations, np.float64)
  if matrices.ndim != 3 or matrices.shape[1:] != (dim, dim) or not len(matrices):
    raise ValueError(
      f"rotations has shape {matrices.shape}; expected (k, {dim}, {dim}) "
      "orthogonal matrices with k >= 1, or an int k."
    )
  gram = np.einsum("kji,kjl->kil", matrices, matrices)
  if not np.allclose(gram, np.eye(dim), atol=1e-4):
    raise ValueError("rotations must be orthogonal (R^T R = I within 1e-4).")
  return jnp.asarray(matrices, jnp.float32)
