"""The permutation-equivariant density-and-score transformer (Flax Linen).

Inputs are already whitened (see `kdeformer.normalization`) and zero-padded to
`max_dim` coordinates; `dim_mask` marks the real ones. Every token carries the
squared-norm lift ||z||^2 as an extra feature, which is what lets dot-product
attention express a Gaussian kernel (see `kdeformer.kde_attention`).

Architecture: sample tokens go through pre-LayerNorm self-attention blocks;
query tokens, in the same layers, cross-attend to the sample tokens. There are
no positional encodings, so outputs are invariant to the order of the samples
and follow the order of the queries. Two zero-initialised heads predict a
residual on the moment-matched Gaussian N(0, I) of whitened space, so the
untrained network already is a sensible (Gaussian) estimator.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdeformer import attention as attention_lib


class MultiHeadAttention(nn.Module):
  """Multi-head dot-product attention with a key-padding mask.

  Attributes:
    num_heads: number of heads.
    qkv_features: total query/key/value width (split evenly over heads).
    out_features: width of the output projection.
    key_chunk_size: if set, keys are processed in blocks of this size (online
      softmax), so memory does not grow with m * n.
  """
  num_heads: int
  qkv_features: int
  out_features: int
  key_chunk_size: int | None = None

  @nn.compact
  def __call__(self, inputs_q, inputs_kv, key_mask=None, return_log_normalizer=False):
    """inputs_q (..., m, c), inputs_kv (..., n, c), key_mask (..., n) -> (..., m, out)."""
    if self.qkv_features % self.num_heads:
      raise ValueError(f"qkv_features={self.qkv_features} is not divisible by "
                       f"num_heads={self.num_heads}.")
    head_dim = self.qkv_features // self.num_heads
    project = lambda name: nn.DenseGeneral((self.num_heads, head_dim), name=name)
    query = project("query")(inputs_q) / math.sqrt(head_dim)
    key = project("key")(inputs_kv)
    value = project("value")(inputs_kv)
    out, log_normalizer = attention_lib.attention(
        query, key, value, key_mask, key_chunk_size=self.key_chunk_size)
    out = nn.DenseGeneral(self.out_features, axis=(-2, -1), name="out")(out)
    return (out, log_normalizer) if return_log_normalizer else out


class MlpBlock(nn.Module):
  hidden_features: int
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, deterministic: bool):
    width = x.shape[-1]
    x = nn.gelu(nn.Dense(self.hidden_features, name="fc1")(x))
    x = nn.Dense(width, name="fc2")(x)
    return nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)


class CrossAttentionBlock(nn.Module):
  """Residual block: queries attend to context tokens, then an optional MLP.

  With `use_layer_norm=False, use_mlp=False` and one head this is exactly the
  block of the attention-is-KDE construction.
  """
  num_heads: int
  qkv_features: int
  mlp_features: int = 0
  dropout_rate: float = 0.0
  use_layer_norm: bool = True
  use_mlp: bool = True
  key_chunk_size: int | None = None

  @nn.compact
  def __call__(self, queries, context, context_mask=None, *, deterministic: bool = True,
               return_log_normalizer: bool = False):
    normed_q, normed_kv = queries, context
    if self.use_layer_norm:
      normed_q = nn.LayerNorm(name="norm_query")(queries)
      normed_kv = nn.LayerNorm(name="norm_context")(context)
    attended, log_normalizer = MultiHeadAttention(
        self.num_heads, self.qkv_features, queries.shape[-1], self.key_chunk_size,
        name="attention")(normed_q, normed_kv, context_mask, return_log_normalizer=True)
    attended = nn.Dropout(self.dropout_rate)(attended, deterministic=deterministic)
    x = queries + attended
    if self.use_mlp:
      hidden = nn.LayerNorm(name="norm_mlp")(x) if self.use_layer_norm else x
      x = x + MlpBlock(self.mlp_features, self.dropout_rate, name="mlp")(hidden, deterministic)
    return (x, log_normalizer) if return_log_normalizer else x


class SelfAttentionBlock(nn.Module):
  """Pre-LayerNorm self-attention block over the sample tokens."""
  num_heads: int
  mlp_features: int
  dropout_rate: float = 0.0
  key_chunk_size: int | None = None

  @nn.compact
  def __call__(self, tokens, mask, *, deterministic: bool = True):
    normed = nn.LayerNorm(name="norm_attention")(tokens)
    attended = MultiHeadAttention(self.num_heads, tokens.shape[-1], tokens.shape[-1],
                                  self.key_chunk_size, name="attention")(normed, normed, mask)
    tokens = tokens + nn.Dropout(self.dropout_rate)(attended, deterministic=deterministic)
    hidden = nn.LayerNorm(name="norm_mlp")(tokens)
    return tokens + MlpBlock(self.mlp_features, self.dropout_rate, name="mlp")(hidden,
                                                                               deterministic)


def lift(points: jax.Array) -> jax.Array:
  """Appends the squared norm: (..., d) -> (..., d + 1)."""
  return jnp.concatenate([points, jnp.sum(points**2, axis=-1, keepdims=True)], axis=-1)


class KDEFormer(nn.Module):
  """Amortised density-and-score estimator in whitened, padded coordinates.

  Attributes:
    width: token width.
    num_layers: number of (self-attention, cross-attention) layer pairs.
    num_heads: attention heads.
    mlp_ratio: MLP hidden width as a multiple of `width`.
    dropout_rate: dropout on attention and MLP outputs (training only).
    max_dim: largest supported d; inputs are zero-padded to it.
    key_chunk_size: optional key block size for memory-bounded attention.
  """
  width: int = 128
  num_layers: int = 4
  num_heads: int = 8
  mlp_ratio: int = 2
  dropout_rate: float = 0.0
  max_dim: int = 10
  key_chunk_size: int | None = None

  @nn.compact
  def __call__(self, samples, queries, sample_mask, dim_mask, *, deterministic: bool = True):
    """Predicts whitened log-density and score.

    Args:
      samples: (b, n, max_dim) whitened samples, zero beyond each problem's d.
      queries: (b, m, max_dim) whitened queries, zero-padded likewise.
      sample_mask: (b, n) bool, True for real samples.
      dim_mask: (b, max_dim) bool, True for real coordinates.
      deterministic: disables dropout when True.

    Returns:
      (log_density (b, m), score (b, m, max_dim)) in whitened coordinates; the
      score is zero on padded coordinates.
    """
    coordinate = dim_mask.astype(samples.dtype)
    dim = jnp.sum(dim_mask, axis=-1).astype(jnp.int32)
    count = jnp.sum(sample_mask, axis=-1).astype(samples.dtype)
    context = (nn.Embed(self.max_dim + 1, self.width, name="dim_embedding")(dim)
               + nn.Dense(self.width, name="size_embedding")(jnp.log(count)[:, None]))
    sample_tokens = nn.Dense(self.width, name="embed_samples")(lift(samples)) + context[:, None]
    query_tokens = nn.Dense(self.width, name="embed_queries")(lift(queries)) + context[:, None]
    mlp_features = self.mlp_ratio * self.width
    for layer in range(self.num_layers):
      sample_tokens = SelfAttentionBlock(
          self.num_heads, mlp_features, self.dropout_rate, self.key_chunk_size,
          name=f"self_attention_{layer}")(sample_tokens, sample_mask, deterministic=deterministic)
      query_tokens = CrossAttentionBlock(
          self.num_heads, self.width, mlp_features, self.dropout_rate,
          key_chunk_size=self.key_chunk_size, name=f"cross_attention_{layer}")(
              query_tokens, sample_tokens, sample_mask, deterministic=deterministic)
    features = nn.LayerNorm(name="norm_out")(query_tokens)
    log_density_residual = nn.Dense(1, kernel_init=nn.initializers.zeros,
                                    name="log_density_head")(features)[..., 0]
    score_residual = nn.Dense(self.max_dim, kernel_init=nn.initializers.zeros,
                              name="score_head")(features)
    gaussian_log_density = (-0.5 * jnp.sum(queries**2, axis=-1)
                            - 0.5 * dim[:, None] * jnp.log(2 * jnp.pi))
    log_density = gaussian_log_density + log_density_residual
    score = (-queries + score_residual) * coordinate[:, None, :]
    return log_density, score
