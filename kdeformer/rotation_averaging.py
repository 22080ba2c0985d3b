"""Rotation averaging: the network's outputs averaged over random orthogonal transforms.

After whitening (`kdeformer.normalization`, symmetric inverse square root) the
only symmetry left is an orthogonal transform Q of the whitened points, and the
network respects it only approximately. For orthogonal R (|det R| = 1) the
exact transformation rules give, for a whitened-space network (T, S),

  log f(z) = T(z R),    score(z) = S(z R) R^T,

so every R yields an estimate of the same quantities; we average k of them
(arithmetic mean of log-densities and of scores, so the averaged score is the
gradient of the averaged log-density whenever each one is). Rotating the
whitened points by R is the same as rotating the data by R before whitening
(the whitened points of x R are z R exactly), so this is averaging over random
rotations of the samples and queries with the outputs mapped back exactly.

The rotations are drawn Haar-uniformly from O(d) (reflections included) by
`jax.random.orthogonal` from an explicit key, and are the same for every problem
of a batch; they do not depend on the data, so permutation, translation and
scaling equivariance remain exact, and the residual rotation error falls
roughly like 1/k (the variance of a mean of k estimates).
"""

from typing import Callable

import jax
import jax.numpy as jnp

Network = Callable[..., tuple[jax.Array, jax.Array]]


def pad_rotations(rotations: jax.Array, max_dim: int) -> jax.Array:
  """(k, d, d) -> (k, max_dim, max_dim) with an identity block on the padded coordinates."""
  rotations = jnp.asarray(rotations)
  k, d, _ = rotations.shape
  padded = jnp.broadcast_to(jnp.eye(max_dim, dtype=rotations.dtype), (k, max_dim, max_dim))
  return padded.at[:, :d, :d].set(rotations)


def with_rotation_averaging(network: Network, rotations: jax.Array | None) -> Network:
  """Wraps a whitened-space network (see `kdeformer.test_time_training.Network`).

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
      log_density, score = network(params, rotate(whitened_samples), rotate(whitened_queries),
                                   sample_mask, dim_mask)
      return log_density, jnp.einsum("bmj,ij->bmi", score, rotation)  # S(z R) R^T.

    log_density, score = jax.lax.map(one_rotation, rotations)
    return jnp.mean(log_density, axis=0), jnp.mean(score, axis=0)

  return averaged_network
