"""Attention *is* a Gaussian KDE: the constructive proof, in code.

The model's own `CrossAttentionBlock` (one head, no LayerNorm, no MLP) on lifted tokens
[z, ||z||^2, 0_d], with query [y / h^2, 1], key [x, -||x||^2 / 2] and value [x, 0], outputs the
kernel-weighted mean; with its log-partition function an affine read-out gives the normalised KDE
(1/n) sum_j N(y; x_j, h^2 I) and its score. The derivation is in docs/DESIGN.md.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from kdeformer import model as model_lib
from kdeformer.estimate import Estimate


def kde_block(dim: int) -> model_lib.CrossAttentionBlock:
  """The model's cross-attention block in the configuration of the construction."""
  return model_lib.CrossAttentionBlock(
    num_heads=1, qkv_features=dim + 1, use_layer_norm=False, use_mlp=False, name=None
  )


def kde_block_params(dim: int, bandwidth: float) -> dict:
  """Parameters of `kde_block(dim)` that make it a KDE with bandwidth h = `bandwidth`."""
  width, head = 2 * dim + 1, dim + 1
  eye = np.eye(dim, dtype=np.float32)
  # The module divides queries by sqrt(head_dim); undo that.
  query_scale = math.sqrt(head)
  query_kernel = np.zeros((width, 1, head), np.float32)
  query_kernel[:dim, 0, :dim] = eye * query_scale / bandwidth**2
  query_bias = np.zeros((1, head), np.float32)
  query_bias[0, dim] = query_scale / bandwidth**2
  key_kernel = np.zeros((width, 1, head), np.float32)
  key_kernel[:dim, 0, :dim] = eye
  key_kernel[dim, 0, dim] = -0.5
  value_kernel = np.zeros((width, 1, head), np.float32)
  value_kernel[:dim, 0, :dim] = eye
  out_kernel = np.zeros((1, head, width), np.float32)
  out_kernel[0, :dim, dim + 1 :] = eye
  zeros = lambda *shape: np.zeros(shape, np.float32)
  attention = {
    "query": {"kernel": query_kernel, "bias": query_bias},
    "key": {"kernel": key_kernel, "bias": zeros(1, head)},
    "value": {"kernel": value_kernel, "bias": zeros(1, head)},
    "out": {"kernel": out_kernel, "bias": zeros(width)},
  }
  return jax.tree.map(jnp.asarray, {"attention": attention})


def lifted_tokens(points: jax.Array) -> jax.Array:
  """(m, d) -> (m, 2d + 1) tokens [z, ||z||^2, 0_d]."""
  return jnp.concatenate([model_lib.lift(points), jnp.zeros_like(points)], axis=-1)


def kde_readout(
  tokens: jax.Array, log_partition: jax.Array, num_samples: int, bandwidth: float
) -> Estimate:
  """Affine read-out of the block's output tokens (m, 2d+1) and log-partition function (m,)."""
  dim = (tokens.shape[-1] - 1) // 2
  queries, squared_norm, kernel_mean = tokens[:, :dim], tokens[:, dim], tokens[:, dim + 1 :]
  score = (kernel_mean - queries) / bandwidth**2
  log_density = (
    log_partition
    - squared_norm / (2 * bandwidth**2)
    - math.log(num_samples)
    - 0.5 * dim * math.log(2 * math.pi * bandwidth**2)
  )
  return Estimate(log_density, score)


def attention_kde(samples: jax.Array, queries: jax.Array, bandwidth: float) -> Estimate:
  """Isotropic Gaussian KDE (1/n) sum_j N(y; x_j, h^2 I) computed by the constructed block.

  Args:
    samples: (n, d).
    queries: (m, d).
    bandwidth: h > 0.
  """
  samples = jnp.asarray(samples, jnp.float32)
  queries = jnp.asarray(queries, jnp.float32)
  n, dim = samples.shape
  tokens, log_partition = kde_block(dim).apply(
    {"params": kde_block_params(dim, bandwidth)},
    lifted_tokens(queries),
    lifted_tokens(samples),
    return_log_partition=True,
  )
  return kde_readout(tokens, log_partition[:, 0], n, bandwidth)
