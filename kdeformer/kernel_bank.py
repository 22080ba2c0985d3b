"""The model's kernel bank: isotropic Gaussian KDEs of the whitened samples at fixed bandwidths.

The network gates these KDEs per query (`kdeformer.model.KDEFormer`); each is one head of
`kdeformer.kernels.gaussian_kernel_attention`. No parameters live here.
"""

import dataclasses

import jax
import jax.numpy as jnp

from kdeformer import attention as attention_lib
from kdeformer import kernels

# Bank log-densities relative to the Gaussian's, clipped (far out a narrow KDE's falls like
# -distance^2 / h^2 and would dominate the embedding) and scaled to the other features.
RELATIVE_LOG_DENSITY_CLIP = 30.0
RELATIVE_LOG_DENSITY_SCALE = 10.0


def sample_count(sample_mask: jax.Array, sample_log_weights: jax.Array | None = None) -> jax.Array:
  """(b,) n, or with weights Kish's effective n (`kernels.effective_sample_size`)."""
  if sample_log_weights is None:
    return jnp.sum(sample_mask, axis=-1).astype(jnp.float32)
  weights = jnp.where(sample_mask, jnp.exp(sample_log_weights), 0.0)
  return kernels.effective_sample_size(weights, normalized=False)


def bandwidths(
  factors: tuple[float, ...],
  sample_mask: jax.Array,
  dim_mask: jax.Array,
  sample_log_weights: jax.Array | None = None,
) -> jax.Array:
  """(b, K) bandwidths factor_k * n^(-1/(d+4)) in whitened space (factor 1: Scott's rule)."""
  dim = jnp.sum(dim_mask, axis=-1).astype(jnp.float32)
  count = sample_count(sample_mask, sample_log_weights)
  return jnp.asarray(factors, jnp.float32)[None, :] * kernels.scott_factor(
    count[:, None], dim[:, None]
  )


def kernel_bank(
  queries: jax.Array,
  samples: jax.Array,
  sample_mask: jax.Array,
  dim_mask: jax.Array,
  factors: tuple[float, ...],
  runtime: attention_lib.AttentionRuntime = attention_lib.DENSE,
  sample_log_weights: jax.Array | None = None,
):
  """The bank's KDEs at the queries, in whitened, padded coordinates.

  Args:
    queries: (b, m, D) whitened queries, zero beyond each problem's d.
    samples: (b, n, D) whitened samples, zero-padded likewise.
    sample_mask: (b, n) True for real samples.
    dim_mask: (b, D) True for real coordinates.
    factors: the K bandwidth factors (see `bandwidths`).
    runtime: dense or blockwise attention.
    sample_log_weights: optional (b, n) log weights summing to 1 over the real samples: the
      KDEs are then sum_j w_j K_h(y - x_j), with n_eff in the bandwidths.

  Returns:
    (log_density (b, m, K), score (b, m, K, D), kernel_mean - query (b, m, K, D)).
  """
  # Never fused: the bank's keys are one wider than its values and its log-normaliser is
  # the KDE itself, which only the float32 path returns.
  runtime = dataclasses.replace(runtime, fused=False)
  dim = jnp.sum(dim_mask, axis=-1).astype(jnp.float32)
  inverse_h2 = 1.0 / bandwidths(factors, sample_mask, dim_mask, sample_log_weights) ** 2  # (b, K)
  log_kernel_sum, kernel_mean = kernels.gaussian_kernel_attention(
    queries,
    samples,
    inverse_h2,
    sample_mask=sample_mask,
    sample_log_weights=sample_log_weights,
    runtime=runtime,
  )
  displacement = (kernel_mean - queries[:, :, None, :]) * dim_mask[:, None, None, :]
  if sample_log_weights is None:  # The weights 1/n are not in the kernel sum.
    log_kernel_sum = log_kernel_sum - jnp.log(sample_count(sample_mask))[:, None, None]
  log_density = log_kernel_sum - 0.5 * dim[:, None, None] * jnp.log(
    2 * jnp.pi / inverse_h2[:, None]
  )
  return log_density, displacement * inverse_h2[:, None, :, None], displacement


def query_features(
  kernel_log_density: jax.Array, gaussian_log_density: jax.Array, displacement: jax.Array
) -> jax.Array:
  """What the bank adds to each query token: (b, m, K * D + K).

  Args:
    kernel_log_density: (b, m, K) from `kernel_bank`.
    gaussian_log_density: (b, m) of the moment-matched Gaussian N(0, I).
    displacement: (b, m, K, D) kernel mean minus query, from `kernel_bank`.
  """
  relative = jnp.clip(
    kernel_log_density - gaussian_log_density[..., None],
    -RELATIVE_LOG_DENSITY_CLIP,
    RELATIVE_LOG_DENSITY_CLIP,
  )
  return jnp.concatenate(
    [displacement.reshape(displacement.shape[:2] + (-1,)), relative / RELATIVE_LOG_DENSITY_SCALE],
    axis=-1,
  )
