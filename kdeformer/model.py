"""The permutation-equivariant density-and-score transformer (Flax Linen).

Inputs are already whitened (see `kdeformer.normalization`) and zero-padded to
`max_dim` coordinates; `dim_mask` marks the real ones. Every token carries the
squared-norm lift ||z||^2 as an extra feature, which is what lets dot-product
attention express a Gaussian kernel (see `kdeformer.kde_attention`).

Architecture: sample tokens go through pre-LayerNorm self-attention blocks;
query tokens, in the same layers, cross-attend to the sample tokens. There are
no positional encodings, so outputs are invariant to the order of the samples
(exactly with full self-attention; only in distribution with
`max_self_attention_keys` below n, see KDEFormer) and follow the order of the
queries. Two zero-initialised heads predict a residual on the moment-matched
Gaussian N(0, I) of whitened space, so the untrained network already is a
sensible (Gaussian) estimator.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdeformer import attention as attention_lib


# The gates start with this logit advantage on the initial bandwidth (softmax weight ~0.99).
INITIAL_GATE_LOGIT = 6.0
# Gate logits are GATE_SCALE * Dense(features): Adam moves each parameter by about the learning
# rate per step, so without the scale a saturated gate would need ~10^4 steps to switch.
GATE_SCALE = 5.0


class MultiHeadAttention(nn.Module):
  """Multi-head dot-product attention with a key-padding mask.

  Attributes:
    num_heads: number of heads.
    qkv_features: total query/key/value width (split evenly over heads).
    out_features: width of the output projection.
    key_chunk_size: if set, keys are processed in blocks of this size (online
      softmax), so memory does not grow with m * n.
    query_chunk_size: if set, queries are processed in blocks of this size
      (for self-attention over many tokens, where m = n).
  """
  num_heads: int
  qkv_features: int
  out_features: int
  key_chunk_size: int | None = None
  query_chunk_size: int | None = None

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
        query, key, value, key_mask, key_chunk_size=self.key_chunk_size,
        query_chunk_size=self.query_chunk_size)
    if self.is_mutable_collection("intermediates"):
      # Opt-in inspection (apply(..., mutable=["intermediates"])): the softmax
      # weights (..., heads, m, n), materialised densely. No parameters involved.
      logits = jnp.einsum("...mhk,...nhk->...hmn", query, key)
      if key_mask is not None:
        logits = jnp.where(key_mask[..., None, None, :], logits, attention_lib.MASKED_LOGIT)
      self.sow("intermediates", "attention_weights", jax.nn.softmax(logits, axis=-1))
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
  """Pre-LayerNorm self-attention block over the sample tokens.

  With `max_keys` = k > 0 and more than k tokens, every token attends only to
  the first k tokens (keys and values; their padding mask still applies), so
  the cost is n * k instead of n^2. With n <= k it is exactly full
  self-attention. With more than `key_chunk_size` tokens, the tokens attend in
  blocks of `query_chunk_size` (default: key_chunk_size) as well.
  """
  num_heads: int
  mlp_features: int
  dropout_rate: float = 0.0
  key_chunk_size: int | None = None
  max_keys: int = 0
  query_chunk_size: int | None = None

  @nn.compact
  def __call__(self, tokens, mask, *, deterministic: bool = True):
    normed = nn.LayerNorm(name="norm_attention")(tokens)
    context, context_mask = normed, mask
    if self.max_keys and tokens.shape[-2] > self.max_keys:
      context, context_mask = normed[..., :self.max_keys, :], mask[..., :self.max_keys]
    query_chunk_size = None
    if self.key_chunk_size is not None and tokens.shape[-2] > self.key_chunk_size:
      query_chunk_size = self.query_chunk_size or self.key_chunk_size
    attended = MultiHeadAttention(self.num_heads, tokens.shape[-1], tokens.shape[-1],
                                  self.key_chunk_size, query_chunk_size,
                                  name="attention")(normed, context, context_mask)
    tokens = tokens + nn.Dropout(self.dropout_rate)(attended, deterministic=deterministic)
    hidden = nn.LayerNorm(name="norm_mlp")(tokens)
    return tokens + MlpBlock(self.mlp_features, self.dropout_rate, name="mlp")(hidden,
                                                                               deterministic)


def lift(points: jax.Array) -> jax.Array:
  """Appends the squared norm: (..., d) -> (..., d + 1)."""
  return jnp.concatenate([points, jnp.sum(points**2, axis=-1, keepdims=True)], axis=-1)


class KDEFormer(nn.Module):
  """Amortised density-and-score estimator in whitened, padded coordinates.

  `encode` runs the sample tokens through the self-attention stack once;
  `decode` answers any number of query chunks against those tokens;
  `__call__` does both.

  Attributes:
    width: token width.
    num_layers: number of (self-attention, cross-attention) layer pairs.
    num_heads: attention heads.
    mlp_ratio: MLP hidden width as a multiple of `width`.
    dropout_rate: dropout on attention and MLP outputs (training only).
    max_dim: largest supported d; inputs are zero-padded to it.
    key_chunk_size: optional key block size for memory-bounded attention;
      None: dense attention.
    query_chunk_size: with more than key_chunk_size samples, the sample tokens'
      self-attention runs in query blocks of this size (None: key_chunk_size).
    max_self_attention_keys: k > 0 makes sample mixing sub-quadratic: each
      sample token's self-attention uses only the first k sample tokens as keys
      and values (cost n * k, not n^2); 0 = all tokens. With n <= k (padding
      included) the network is exactly the full one. The query cross-attention
      and the kernel bank always use all n samples. For n > k the output
      depends on which samples come first: permutation invariance then holds
      only in distribution (i.i.d. samples: the first k are a random subset).
      Assumes the padding is at the end (the real samples first), as
      `kdeformer.estimator` pads.
    max_embedded_samples: if > 0, the embedding of log n (added to every
      token) sees min(n, this): beyond the n it was trained on, the network
      is told the largest trained n instead of extrapolating the linear
      embedding (the kernel bank's bandwidths still use the true n). 0: off.
    kernel_bandwidths: factors c_k of a bank of fixed Gaussian-kernel attention
      heads with bandwidths c_k * n^(-1/(d+4)) in whitened space. When set, the
      outputs are per-query gated mixtures of these KDEs plus a learned
      residual; when empty, a residual on the moment-matched Gaussian.
    initial_bandwidth_index: the bank entry the gates start on.
  """
  width: int = 128
  num_layers: int = 4
  num_heads: int = 8
  mlp_ratio: int = 2
  dropout_rate: float = 0.0
  max_dim: int = 10
  key_chunk_size: int | None = None
  query_chunk_size: int | None = None
  max_self_attention_keys: int = 0
  max_embedded_samples: int = 0
  kernel_bandwidths: tuple[float, ...] = ()
  initial_bandwidth_index: int = -1

  def setup(self):
    mlp_features = self.mlp_ratio * self.width
    self.dim_embedding = nn.Embed(self.max_dim + 1, self.width)
    self.size_embedding = nn.Dense(self.width)
    self.embed_samples = nn.Dense(self.width)
    self.embed_queries = nn.Dense(self.width)
    self.self_attention = [
        SelfAttentionBlock(self.num_heads, mlp_features, self.dropout_rate, self.key_chunk_size,
                           self.max_self_attention_keys, self.query_chunk_size)
        for _ in range(self.num_layers)]
    self.cross_attention = [
        CrossAttentionBlock(self.num_heads, self.width, mlp_features, self.dropout_rate,
                            key_chunk_size=self.key_chunk_size)
        for _ in range(self.num_layers)]
    self.norm_out = nn.LayerNorm()
    self.log_density_head = nn.Dense(1, kernel_init=nn.initializers.zeros)
    self.score_head = nn.Dense(self.max_dim, kernel_init=nn.initializers.zeros)
    if self.kernel_bandwidths:
      num_kernels = len(self.kernel_bandwidths)
      # Gates start on one bandwidth (Scott's rule by default), so the untrained
      # network is that KDE; training learns per-query bandwidth mixtures.
      def initial_gate(key, shape, dtype=jnp.float32):
        del key
        return jnp.zeros(shape, dtype).at[self.initial_bandwidth_index].set(
            INITIAL_GATE_LOGIT / GATE_SCALE)

      self.score_gate = nn.Dense(num_kernels, kernel_init=nn.initializers.zeros,
                                 bias_init=initial_gate)
      self.log_density_gate = nn.Dense(num_kernels, kernel_init=nn.initializers.zeros,
                                       bias_init=initial_gate)

  def kernel_bank(self, queries, samples, sample_mask, dim_mask):
    """Isotropic Gaussian KDEs of the whitened samples at the bank's bandwidths.

    Bandwidth k is kernel_bandwidths[k] * n^(-1/(d+4)) (factor 1 is Scott's rule
    in whitened space). Each KDE is one attention head with the squared-norm
    lift (see `kdeformer.kde_attention`), so this is attention with fixed weights.

    Returns:
      (log_density (b, m, K), score (b, m, K, max_dim), kernel_mean - query (b, m, K, max_dim)).
    """
    dim = jnp.sum(dim_mask, axis=-1).astype(jnp.float32)
    count = jnp.sum(sample_mask, axis=-1).astype(jnp.float32)
    factors = jnp.asarray(self.kernel_bandwidths, jnp.float32)
    bandwidth = factors[None, :] * count[:, None] ** (-1.0 / (dim[:, None] + 4.0))  # (b, K)
    inv_h2 = 1.0 / bandwidth**2
    num_kernels = factors.shape[0]
    query = jnp.concatenate([queries, jnp.ones_like(queries[..., :1])], axis=-1)
    query = query[:, :, None, :] * inv_h2[:, None, :, None]
    key = jnp.concatenate([samples, -0.5 * jnp.sum(samples**2, axis=-1, keepdims=True)], -1)
    key = jnp.broadcast_to(key[:, :, None, :], key.shape[:2] + (num_kernels, key.shape[-1]))
    value = jnp.broadcast_to(samples[:, :, None, :], samples.shape[:2] + (num_kernels,
                                                                          samples.shape[-1]))
    kernel_mean, log_normalizer = attention_lib.attention(
        query, key, value, sample_mask, key_chunk_size=self.key_chunk_size)
    displacement = (kernel_mean - queries[:, :, None, :]) * dim_mask[:, None, None, :]
    log_density = (log_normalizer - 0.5 * jnp.sum(queries**2, -1)[..., None] * inv_h2[:, None]
                   - jnp.log(count)[:, None, None]
                   - 0.5 * dim[:, None, None] * jnp.log(2 * jnp.pi / inv_h2[:, None]))
    return log_density, displacement * inv_h2[:, None, :, None], displacement

  def _context(self, sample_mask, dim_mask):
    """Embedding of the problem's d and log n, added to every token: (b, width)."""
    dim = jnp.sum(dim_mask, axis=-1).astype(jnp.int32)
    count = jnp.sum(sample_mask, axis=-1).astype(jnp.float32)
    if self.max_embedded_samples:
      count = jnp.minimum(count, float(self.max_embedded_samples))
    return self.dim_embedding(dim) + self.size_embedding(jnp.log(count)[:, None])

  def encode(self, samples, sample_mask, dim_mask, *, deterministic: bool = True):
    """Sample tokens after each self-attention layer: a list of num_layers (b, n, width)."""
    tokens = self.embed_samples(lift(samples)) + self._context(sample_mask, dim_mask)[:, None]
    layers = []
    for block in self.self_attention:
      tokens = block(tokens, sample_mask, deterministic=deterministic)
      layers.append(tokens)
    return layers

  def decode(self, queries, samples, sample_layers, sample_mask, dim_mask, *,
             deterministic: bool = True):
    """Whitened (log_density (b, m), score (b, m, max_dim)) from encoded samples."""
    dim = jnp.sum(dim_mask, axis=-1)
    gaussian_log_density = (-0.5 * jnp.sum(queries**2, axis=-1)
                            - 0.5 * dim[:, None] * jnp.log(2 * jnp.pi))
    features = lift(queries)
    if self.kernel_bandwidths:
      kernel_log_density, kernel_score, displacement = self.kernel_bank(
          queries, samples, sample_mask, dim_mask)
      relative = jnp.clip(kernel_log_density - gaussian_log_density[..., None], -30.0, 30.0)
      features = jnp.concatenate(
          [features, displacement.reshape(displacement.shape[:2] + (-1,)), relative / 10.0], -1)
    tokens = self.embed_queries(features) + self._context(sample_mask, dim_mask)[:, None]
    for block, sample_tokens in zip(self.cross_attention, sample_layers):
      tokens = block(tokens, sample_tokens, sample_mask, deterministic=deterministic)
    features = self.norm_out(tokens)
    if self.kernel_bandwidths:
      score_weights = jax.nn.softmax(GATE_SCALE * self.score_gate(features), axis=-1)
      log_density_weights = jax.nn.softmax(GATE_SCALE * self.log_density_gate(features), axis=-1)
      base_score = jnp.einsum("bmk,bmkd->bmd", score_weights, kernel_score)
      base_log_density = jnp.sum(log_density_weights * kernel_log_density, axis=-1)
    else:
      base_score, base_log_density = -queries, gaussian_log_density
    log_density = base_log_density + self.log_density_head(features)[..., 0]
    score = (base_score + self.score_head(features)) * dim_mask[:, None, :]
    return log_density, score

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
    layers = self.encode(samples, sample_mask, dim_mask, deterministic=deterministic)
    return self.decode(queries, samples, layers, sample_mask, dim_mask,
                       deterministic=deterministic)
