"""The permutation-equivariant density-and-score transformer (Flax Linen).

Inputs are whitened and zero-padded to `max_dim` (`dim_mask` marks real coordinates); tokens
carry the lift ||z||^2, which lets attention express a Gaussian kernel. Sample tokens
self-attend, query tokens cross-attend to them; zero-initialised heads add a residual to a
Gaussian (or kernel-bank) base, so the untrained network is already a sensible estimator.
"""

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from kdeformer import attention as attention_lib
from kdeformer import distributions
from kdeformer import kernel_bank as kernel_bank_lib

# The gates start with this logit advantage on the initial bandwidth (softmax weight ~0.99).
INITIAL_GATE_LOGIT = 6.0
# Gate logits are GATE_SCALE * Dense(features): Adam moves each parameter by about the learning
# rate per step, so without the scale a saturated gate would need ~10^4 steps to switch.
GATE_SCALE = 5.0
# The tail bases' initial gate logit: far below INITIAL_GATE_LOGIT, so a trained model
# warm-started with added bases keeps its outputs.
INITIAL_TAIL_GATE_LOGIT = -12.0


class MultiHeadAttention(nn.Module):
  """Multi-head dot-product attention with a key-padding mask.

  Attributes:
    num_heads: number of heads.
    qkv_features: total query/key/value width (split evenly over heads).
    out_features: width of the output projection.
    runtime: dense or blockwise attention (memory and speed only).
    self_attention: queries and keys are the same tokens (query blocks at large n).
  """

  num_heads: int
  qkv_features: int
  out_features: int
  runtime: attention_lib.AttentionRuntime = attention_lib.DENSE
  self_attention: bool = False
  dtype: Any = jnp.float32  # Matmul dtype (bfloat16: mixed precision; parameters stay float32).

  @nn.compact
  def __call__(self, inputs_q, inputs_kv, key_mask=None, return_log_partition=False, key_bias=None):
    """inputs_q (..., m, c), inputs_kv (..., n, c), key_mask (..., n) -> (..., m, out).

    key_bias (..., n), optional, is added to every logit of a key (log sample weights).
    """
    if self.qkv_features % self.num_heads:
      raise ValueError(
        f"qkv_features={self.qkv_features} is not divisible by num_heads={self.num_heads}."
      )
    head_dim = self.qkv_features // self.num_heads
    project = lambda name: nn.DenseGeneral((self.num_heads, head_dim), dtype=self.dtype, name=name)
    query = project("query")(inputs_q) / math.sqrt(head_dim)
    key = project("key")(inputs_kv)
    value = project("value")(inputs_kv)
    out, log_partition = self.runtime.attend(
      query, key, value, key_mask, key_bias, self_attention=self.self_attention
    )
    if self.is_mutable_collection("intermediates"):
      # Opt-in inspection (apply(..., mutable=["intermediates"])): the softmax
      # weights (..., heads, m, n), materialised densely. No parameters involved.
      logits = jnp.einsum("...mhk,...nhk->...hmn", query, key)
      if key_bias is not None:
        logits = logits + key_bias[..., None, None, :]
      if key_mask is not None:
        logits = jnp.where(key_mask[..., None, None, :], logits, attention_lib.MASKED_LOGIT)
      self.sow("intermediates", "attention_weights", jax.nn.softmax(logits, axis=-1))
    out = nn.DenseGeneral(self.out_features, axis=(-2, -1), dtype=self.dtype, name="out")(out)
    return (out, log_partition) if return_log_partition else out


class MlpBlock(nn.Module):
  hidden_features: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic: bool):
    width = x.shape[-1]
    x = nn.gelu(nn.Dense(self.hidden_features, dtype=self.dtype, name="fc1")(x))
    x = nn.Dense(width, dtype=self.dtype, name="fc2")(x)
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
  runtime: attention_lib.AttentionRuntime = attention_lib.DENSE
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self,
    queries,
    context,
    context_mask=None,
    *,
    deterministic: bool = True,
    return_log_partition: bool = False,
    context_bias=None,
  ):
    normed_q, normed_kv = queries, context
    if self.use_layer_norm:
      normed_q = nn.LayerNorm(name="norm_query")(queries)
      normed_kv = nn.LayerNorm(name="norm_context")(context)
    attended, log_partition = MultiHeadAttention(
      self.num_heads,
      self.qkv_features,
      queries.shape[-1],
      self.runtime,
      dtype=self.dtype,
      name="attention",
    )(normed_q, normed_kv, context_mask, return_log_partition=True, key_bias=context_bias)
    attended = nn.Dropout(self.dropout_rate)(attended, deterministic=deterministic)
    x = queries + attended
    if self.use_mlp:
      hidden = nn.LayerNorm(name="norm_mlp")(x) if self.use_layer_norm else x
      x = x + MlpBlock(self.mlp_features, self.dropout_rate, self.dtype, name="mlp")(
        hidden, deterministic
      )
    return (x, log_partition) if return_log_partition else x


class SelfAttentionBlock(nn.Module):
  """Pre-LayerNorm self-attention block over the sample tokens.

  With `max_keys` = k > 0 and more than k tokens, every token attends only to
  the first k tokens (keys and values; their padding mask still applies), so
  the cost is n * k instead of n^2. With n <= k it is exactly full
  self-attention.
  """

  num_heads: int
  mlp_features: int
  dropout_rate: float = 0.0
  max_keys: int = 0
  runtime: attention_lib.AttentionRuntime = attention_lib.DENSE
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens, mask, *, deterministic: bool = True, key_bias=None):
    normed = nn.LayerNorm(name="norm_attention")(tokens)
    context, context_mask, context_bias = normed, mask, key_bias
    if self.max_keys and tokens.shape[-2] > self.max_keys:
      context, context_mask = normed[..., : self.max_keys, :], mask[..., : self.max_keys]
      if key_bias is not None:
        context_bias = key_bias[..., : self.max_keys]
    attended = MultiHeadAttention(
      self.num_heads,
      tokens.shape[-1],
      tokens.shape[-1],
      self.runtime,
      self_attention=True,
      dtype=self.dtype,
      name="attention",
    )(normed, context, context_mask, key_bias=context_bias)
    tokens = tokens + nn.Dropout(self.dropout_rate)(attended, deterministic=deterministic)
    hidden = nn.LayerNorm(name="norm_mlp")(tokens)
    return tokens + MlpBlock(self.mlp_features, self.dropout_rate, self.dtype, name="mlp")(
      hidden, deterministic
    )


def tail_bases(queries: jax.Array, dim_mask: jax.Array, dofs: tuple[float, ...]):
  """Unit-scale Student-t log-densities (b, m, B) and scores (b, m, B, D) in whitened space."""
  dim = jnp.sum(dim_mask, axis=-1).astype(jnp.float32)[:, None, None]
  nu = jnp.asarray(dofs, jnp.float32)
  squared = jnp.sum(queries**2, axis=-1)[..., None]
  log_density = distributions.standard_student_t_log_prob(squared, nu, dim)
  score = -((nu + dim) / (nu + squared))[..., None] * queries[:, :, None, :]
  return log_density, score


def lift(points: jax.Array) -> jax.Array:
  """Appends the squared norm: (..., d) -> (..., d + 1)."""
  return jnp.concatenate([points, jnp.sum(points**2, axis=-1, keepdims=True)], axis=-1)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The network's hyperparameters and the sample sizes it was trained at.

  All that inference needs beside the parameters: training writes it to the workdir's
  model.json (`kdeformer.checkpoints`). The defaults are the paper's model
  (experiments/configs/default.py takes them).

  Attributes:
    width: token width.
    num_layers: (self-attention over samples, cross-attention from queries) layer pairs.
    num_heads: attention heads per block.
    mlp_ratio: MLP hidden width as a multiple of `width`.
    dropout_rate: dropout on attention and MLP outputs (training only).
    max_dim: largest supported d; inputs are zero-padded to it.
    kernel_bandwidths: factors c_k of a bank of fixed Gaussian-kernel attention heads with
      bandwidths c_k * n^(-1/(d+4)) in whitened space; the outputs are then per-query gated
      mixtures of these KDEs plus a learned residual. (): a residual on the moment-matched
      Gaussian (the paper's model).
    initial_bandwidth_index: the bank entry the gates start on.
    tail_base_dofs: degrees of freedom nu of unit-scale Student-t bases gated beside the
      kernel bank (only with one), for heavy tails; they start gated off.
    architecture: "transformer" (this module's KDEFormer, d <= max_dim) or "equivariant"
      (`kdeformer.equivariant`, any d; max_dim 0); `kdeformer.networks` builds either.
    mixture_components: (equivariant) components of each Gaussian-mixture base.
    em_steps: (equivariant) EM steps of those fits.
    held_out_evidence: (equivariant) > 0: the base weights add this times n times each base's
      cross-fitted mean log-likelihood gap to the kernel estimate's leave-one-out one
      (`kdeformer.held_out`: a cross-validated model average), and the gate reads those gaps.
      0: neither (the first shipped equivariant model).
    one_dim_gaussian_start: (equivariant) in 1-D the kernel estimate is the Gaussian-start
      one of Hjort and Glad (1995) at Scott's bandwidth, without learned per-sample
      corrections, and the mixture bases are off (measured: docs/results_default_routing_cpu.md,
      where both lost to Scott's KDE on a skewed 1-D density and this beats it).
    max_self_attention_keys: k > 0: each sample token's self-attention uses only the first k
      sample tokens as keys (cost n * k; the cross-attention and the kernel bank still use all
      n). 0 or n <= k: all tokens. Assumes the padding is at the end.
    max_embedded_samples: > 0: the embedding of log n sees min(n, this). 0: the true n.
    trained_sample_sizes: the padded sample sizes (buckets) of training; () if unknown.
    smallest_trained_size: the fewest real samples a training problem had; 0 if unknown.
    min_samples: the fewest samples inference accepts: below it the model's estimate was
      measured not to be a density (set per shipped model in its model.json; README, "Small
      samples"). 0: `kdeformer.problem.MIN_MODEL_SAMPLES`.
  """

  width: int = 128
  num_layers: int = 4
  num_heads: int = 8
  mlp_ratio: int = 4
  dropout_rate: float = 0.1
  max_dim: int = 10
  kernel_bandwidths: tuple[float, ...] = ()
  initial_bandwidth_index: int = -1
  tail_base_dofs: tuple[float, ...] = ()
  architecture: str = "transformer"
  mixture_components: tuple[int, ...] = ()
  em_steps: int = 0
  held_out_evidence: float = 0.0
  one_dim_gaussian_start: bool = False
  max_self_attention_keys: int = 0
  max_embedded_samples: int = 0
  trained_sample_sizes: tuple[int, ...] = ()
  smallest_trained_size: int = 0
  min_samples: int = 0

  def __post_init__(self):
    for name in (
      "kernel_bandwidths",
      "tail_base_dofs",
      "trained_sample_sizes",
      "mixture_components",
    ):
      object.__setattr__(self, name, tuple(getattr(self, name)))

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready fields (tuples as lists)."""
    return {
      name: list(value) if isinstance(value, tuple) else value
      for name, value in dataclasses.asdict(self).items()
    }

  @classmethod
  def from_dict(cls, fields: dict[str, Any]) -> "ModelConfig":
    """The inverse of `to_dict`; unknown names are an error (a config that does not fit)."""
    unknown = sorted(set(fields) - set(MODEL_CONFIG_FIELDS))
    if unknown:
      raise ValueError(
        f"Unknown model hyperparameters {unknown}; kdeformer.model.ModelConfig "
        f"has {list(MODEL_CONFIG_FIELDS)}."
      )
    return cls(**fields)


MODEL_CONFIG_FIELDS = tuple(field.name for field in dataclasses.fields(ModelConfig))
# The fields a training config's `model` section sets (it may add the two large-n settings);
# the trained sizes come from its buckets and data.min_fill.
ARCHITECTURE_FIELDS = MODEL_CONFIG_FIELDS[: MODEL_CONFIG_FIELDS.index("max_self_attention_keys")]


class KDEFormer(nn.Module):
  """Amortised density-and-score estimator in whitened, padded coordinates.

  `encode` runs the sample tokens through the self-attention stack once;
  `decode` answers any number of query chunks against those tokens;
  `__call__` does both.

  Attributes:
    config: the hyperparameters (`ModelConfig`).
    runtime: dense or blockwise attention, and its block sizes (memory and
      speed only; see `kdeformer.attention.AttentionRuntime`).
    dtype: the trunk's matmul dtype (bfloat16 for mixed precision on accelerators); the
      kernel bank, the bases, the gates and the heads stay float32.
  """

  config: "ModelConfig" = dataclasses.field(default_factory=lambda: ModelConfig())
  runtime: attention_lib.AttentionRuntime = attention_lib.DENSE
  dtype: Any = jnp.float32

  @property
  def max_dim(self) -> int:
    return self.config.max_dim

  def setup(self):
    mlp_features = self.config.mlp_ratio * self.config.width
    if self.config.tail_base_dofs and not self.config.kernel_bandwidths:
      raise ValueError("tail_base_dofs are gated beside the kernel bank: set kernel_bandwidths.")
    self.dim_embedding = nn.Embed(self.max_dim + 1, self.config.width)
    self.size_embedding = nn.Dense(self.config.width)
    self.embed_samples = nn.Dense(self.config.width)
    self.embed_queries = nn.Dense(self.config.width)
    self.self_attention = [
      SelfAttentionBlock(
        self.config.num_heads,
        mlp_features,
        self.config.dropout_rate,
        self.config.max_self_attention_keys,
        self.runtime,
        dtype=self.dtype,
      )
      for _ in range(self.config.num_layers)
    ]
    self.cross_attention = [
      CrossAttentionBlock(
        self.config.num_heads,
        self.config.width,
        mlp_features,
        self.config.dropout_rate,
        runtime=self.runtime,
        dtype=self.dtype,
      )
      for _ in range(self.config.num_layers)
    ]
    self.norm_out = nn.LayerNorm()
    self.log_density_head = nn.Dense(1, kernel_init=nn.initializers.zeros)
    self.score_head = nn.Dense(self.max_dim, kernel_init=nn.initializers.zeros)
    if self.config.kernel_bandwidths:
      num_kernels = len(self.config.kernel_bandwidths)
      num_bases = num_kernels + len(self.config.tail_base_dofs)

      # Gates start on one bandwidth (Scott's by default): the untrained network is that KDE.
      # The tail bases (after the kernels) start far below it.
      def initial_gate(key, shape, dtype=jnp.float32):
        del key
        logits = jnp.zeros(shape, dtype).at[num_kernels:].set(INITIAL_TAIL_GATE_LOGIT / GATE_SCALE)
        return logits.at[self.config.initial_bandwidth_index % num_kernels].set(
          INITIAL_GATE_LOGIT / GATE_SCALE
        )

      self.score_gate = nn.Dense(
        num_bases, kernel_init=nn.initializers.zeros, bias_init=initial_gate
      )
      self.log_density_gate = nn.Dense(
        num_bases, kernel_init=nn.initializers.zeros, bias_init=initial_gate
      )

  def _context(self, sample_mask, dim_mask, sample_log_weights=None):
    """Embedding of the problem's d and log n (n_eff if weighted), added to every token:
    (b, width)."""
    dim = jnp.sum(dim_mask, axis=-1).astype(jnp.int32)
    count = kernel_bank_lib.sample_count(sample_mask, sample_log_weights)
    if self.config.max_embedded_samples:
      count = jnp.minimum(count, float(self.config.max_embedded_samples))
    return self.dim_embedding(dim) + self.size_embedding(jnp.log(count)[:, None])

  def encode(
    self, samples, sample_mask, dim_mask, *, deterministic: bool = True, sample_log_weights=None
  ):
    """Sample tokens after each self-attention layer: a list of num_layers (b, n, width).

    sample_log_weights: optional (b, n) log of sample weights summing to 1 over the real
    samples; they enter every attention over samples as additive logits (none: equal weights).
    """
    tokens = (
      self.embed_samples(lift(samples))
      + self._context(sample_mask, dim_mask, sample_log_weights)[:, None]
    )
    layers = []
    for block in self.self_attention:
      tokens = block(tokens, sample_mask, deterministic=deterministic, key_bias=sample_log_weights)
      layers.append(tokens)
    return layers

  def decode(
    self,
    queries,
    samples,
    sample_layers,
    sample_mask,
    dim_mask,
    *,
    deterministic: bool = True,
    sample_log_weights=None,
  ):
    """Whitened (log_density (b, m), score (b, m, max_dim)) from encoded samples (see encode)."""
    dim = jnp.sum(dim_mask, axis=-1)
    gaussian_log_density = -0.5 * jnp.sum(queries**2, axis=-1) - 0.5 * dim[:, None] * jnp.log(
      2 * jnp.pi
    )
    features = lift(queries)
    if self.config.kernel_bandwidths:
      kernel_log_density, kernel_score, displacement = kernel_bank_lib.kernel_bank(
        queries,
        samples,
        sample_mask,
        dim_mask,
        self.config.kernel_bandwidths,
        self.runtime,
        sample_log_weights,
      )
      features = jnp.concatenate(
        [
          features,
          kernel_bank_lib.query_features(kernel_log_density, gaussian_log_density, displacement),
        ],
        axis=-1,
      )
    tokens = (
      self.embed_queries(features)
      + self._context(sample_mask, dim_mask, sample_log_weights)[:, None]
    )
    for block, sample_tokens in zip(self.cross_attention, sample_layers):
      tokens = block(
        tokens,
        sample_tokens,
        sample_mask,
        deterministic=deterministic,
        context_bias=sample_log_weights,
      )
    features = self.norm_out(tokens).astype(jnp.float32)
    if self.config.tail_base_dofs:
      tail_log_density, tail_score = tail_bases(queries, dim_mask, self.config.tail_base_dofs)
      kernel_log_density = jnp.concatenate([kernel_log_density, tail_log_density], axis=-1)
      kernel_score = jnp.concatenate([kernel_score, tail_score], axis=-2)
    if self.config.kernel_bandwidths:
      score_weights = jax.nn.softmax(GATE_SCALE * self.score_gate(features), axis=-1)
      log_density_weights = jax.nn.softmax(GATE_SCALE * self.log_density_gate(features), axis=-1)
      base_score = jnp.einsum("bmk,bmkd->bmd", score_weights, kernel_score)
      base_log_density = jnp.sum(log_density_weights * kernel_log_density, axis=-1)
    else:
      base_score, base_log_density = -queries, gaussian_log_density
    log_density = base_log_density + self.log_density_head(features)[..., 0]
    score = (base_score + self.score_head(features)) * dim_mask[:, None, :]
    return log_density, score

  def __call__(
    self,
    samples,
    queries,
    sample_mask,
    dim_mask,
    *,
    deterministic: bool = True,
    sample_log_weights=None,
  ):
    """Predicts whitened log-density and score.

    Args:
      samples: (b, n, max_dim) whitened samples, zero beyond each problem's d.
      queries: (b, m, max_dim) whitened queries, zero-padded likewise.
      sample_mask: (b, n) bool, True for real samples.
      dim_mask: (b, max_dim) bool, True for real coordinates.
      deterministic: disables dropout when True.
      sample_log_weights: optional (b, n) log sample weights (see encode).

    Returns:
      (log_density (b, m), score (b, m, max_dim)) in whitened coordinates; the
      score is zero on padded coordinates.
    """
    layers = self.encode(
      samples,
      sample_mask,
      dim_mask,
      deterministic=deterministic,
      sample_log_weights=sample_log_weights,
    )
    return self.decode(
      queries,
      samples,
      layers,
      sample_mask,
      dim_mask,
      deterministic=deterministic,
      sample_log_weights=sample_log_weights,
    )


# ---------------------------------------------------------------------------------------------
# From a config to a network: the one place training and inference build it.

# Self-attention key budget when the config does not say: the shipped model's largest
# training bucket, so every n it was trained at runs the exact full network.
DEFAULT_MAX_SELF_ATTENTION_KEYS = 4096


def model_config(config: "ml_collections.ConfigDict | ModelConfig") -> ModelConfig:
  """The `ModelConfig` of a training config (or a ModelConfig, returned as it is).

  Resolves the large-n settings the training config leaves at 0: max_self_attention_keys
  to DEFAULT_MAX_SELF_ATTENTION_KEYS, max_embedded_samples to the largest training bucket
  (holding log n there helps beyond it; see docs/DESIGN.md). At the training sizes they change
  nothing.
  """
  if isinstance(config, ModelConfig):
    return config
  fields = dict(config.model.to_dict() if hasattr(config.model, "to_dict") else config.model)
  buckets = tuple(int(n) for n in config.get("buckets", ()))
  fields["max_self_attention_keys"] = (
    int(fields.get("max_self_attention_keys", 0)) or DEFAULT_MAX_SELF_ATTENTION_KEYS
  )
  fields["max_embedded_samples"] = int(fields.get("max_embedded_samples", 0)) or (
    max(buckets) if buckets else 0
  )
  fields["trained_sample_sizes"] = buckets
  min_fill = float(config.get("data", {}).get("min_fill", 1.0))
  fields["smallest_trained_size"] = int(min_fill * min(buckets)) if buckets else 0
  return ModelConfig.from_dict(fields)
