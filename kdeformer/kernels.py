"""Gaussian-kernel primitives shared by the model and the KDE baselines.

`gaussian_kernel_attention` is the KDE-as-attention core (one head per bandwidth); the kernel
bank, the KDE baselines and the attention-is-KDE construction all go through it. Below both
`kdeformer.model` and `kdeformer.kde`, above `kdeformer.attention` only.
"""

import jax
import jax.numpy as jnp
import numpy as np

from kdeformer import attention as attention_lib


def scott_factor(num_samples, dim):
  """Scott's n^(-1/(d+4)); numbers or (traced) arrays, broadcast."""
  return num_samples ** (-1.0 / (dim + 4))


def effective_sample_size(weights, *, normalized: bool = True):
  """Kish's effective n, (sum w)^2 / sum w^2 over the last axis (n for equal weights).

  Args:
    weights: (..., n); jax arrays (traced too) are summed by jax, anything else by numpy.
    normalized: the weights sum to 1, so the effective n is 1 / sum w^2.
  """
  if not isinstance(weights, jax.Array):
    weights = np.asarray(weights)
  squares = (weights**2).sum(axis=-1)
  if normalized:
    return 1.0 / squares
  return weights.sum(axis=-1) ** 2 / squares


def masked_log_weights(
  sample_weights: jax.Array | None, sample_mask: jax.Array
) -> jax.Array | None:
  """(..., n) log w where sample_mask (..., n) is set, 0 elsewhere (masked keys never count);
  None without weights."""
  if sample_weights is None:
    return None
  return jnp.log(jnp.where(sample_mask, sample_weights, 1.0))


def gaussian_kernel_attention(
  queries: jax.Array,
  samples: jax.Array,
  inverse_bandwidth_squared: jax.Array,
  *,
  sample_mask: jax.Array | None = None,
  sample_log_weights: jax.Array | None = None,
  runtime: attention_lib.AttentionRuntime = attention_lib.DENSE,
) -> tuple[jax.Array, jax.Array]:
  """Isotropic Gaussian kernels as attention: one head per bandwidth (the KDE-as-attention core).

  With the squared-norm lift, query [y / h^2, 1 / h^2] against key [x, -||x||^2 / 2]
  has logit -||y - x||^2 / (2 h^2) + ||y||^2 / (2 h^2), so the softmax weights are
  the Gaussian-kernel weights (see `kdeformer.kde_attention` for the proof as a
  model block).

  Args:
    queries: (..., m, d).
    samples: (..., n, d).
    inverse_bandwidth_squared: (..., K) 1 / h_k^2 per head (broadcast over m).
    sample_mask: optional (..., n) bool, True for real samples.
    sample_log_weights: optional (..., n) log w_j, added to the logits (weighted kernels).
    runtime: dense or blockwise attention.

  Returns:
    (log_kernel_sum (..., m, K): log sum_j w_j exp(-||y - x_j||^2 / (2 h_k^2)) (w_j = 1
     without weights),
     kernel_mean (..., m, K, d): sum_j w_kj x_j, the kernel-weighted mean of the samples).
  """
  inverse_h2 = inverse_bandwidth_squared[..., None, :]  # (..., 1, K)
  num_heads = inverse_bandwidth_squared.shape[-1]
  query = jnp.concatenate([queries, jnp.ones_like(queries[..., :1])], axis=-1)
  query = query[..., :, None, :] * inverse_h2[..., None]
  key = jnp.concatenate([samples, -0.5 * jnp.sum(samples**2, axis=-1, keepdims=True)], axis=-1)
  key = jnp.broadcast_to(key[..., :, None, :], key.shape[:-1] + (num_heads, key.shape[-1]))
  value = jnp.broadcast_to(
    samples[..., :, None, :], samples.shape[:-1] + (num_heads, samples.shape[-1])
  )
  kernel_mean, log_partition = runtime.attend(query, key, value, sample_mask, sample_log_weights)
  log_kernel_sum = log_partition - 0.5 * jnp.sum(queries**2, axis=-1)[..., None] * inverse_h2
  return log_kernel_sum, kernel_mean
