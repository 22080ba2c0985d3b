"""The rotation-equivariant density network: a learned sample-point estimator, any dimension.

In whitened coordinates only rotations are left to learn, so the learned parts see only
rotation-invariant quantities: each sample's leave-one-out kernel log-densities at a bank of
bandwidths, its squared norm, its mean-shift lengths, d and log n. They set, per sample, a
bandwidth factor and a shrink toward the sample's local mean (equivariant vectors), and per
problem the weights of a mixture of normalised bases: that sample-point kernel estimate, the
moment-matched Gaussian, Gaussian mixtures fitted by EM, and Student-t tails. The output is a
mixture of densities, so it integrates to 1 by construction, is smooth in the query (no
per-query gates), and has no `max_dim`. Untrained, it is Scott's KDE (the other bases start at
weight ~e^-6 each, the tails at ~e^-18).
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdeformer import attention as attention_lib
from kdeformer import held_out
from kdeformer import kernel_bank as kernel_bank_lib
from kdeformer import kernels
from kdeformer import mixture_fit
from kdeformer import model as model_lib
from kdeformer import validation

# Bank log-densities relative to the Gaussian's, clipped and scaled to the other features.
RELATIVE_CLIP = 30.0
RELATIVE_SCALE = 10.0
# Per-sample bandwidth factors stay within exp(+-MAX_LOG_BANDWIDTH) of the bank's reference.
MAX_LOG_BANDWIDTH = 2.0
# Shrink toward the local mean stays within +-MAX_SHRINK (negative: away from it).
MAX_SHRINK = 0.95
# Base log-likelihood features (per dimension) are clipped to this.
LIKELIHOOD_FEATURE_CLIP = 10.0
# Rows of the sample-feature pass at once beyond this many samples (memory linear in n).
FEATURE_ROW_BLOCK = 4096
# 1-D (one_dim_gaussian_start): this share of the kernel base's weight goes to the tail base
# of ONE_DIM_TAIL_DOF degrees of freedom (the nearest one shipped; the Gaussian without tail
# bases), in the estimate and in its leave-one-out likelihood. Without it one isolated sample of
# a skewed 1-D data set (LOO log-density -40 to -540 on Gamma(4) at n = 256-4096) made the
# evidence pick the Gaussian or a Student-t base, whose ISE is 10-20x the kernel estimate's
# (docs/results_default_routing_cpu.md).
ONE_DIM_TAIL_WEIGHT = 0.01
ONE_DIM_TAIL_DOF = 3.0
# The Gaussian start's reach (whitened units): beyond it a sample pulls like one at this norm.
GAUSSIAN_START_REACH = 3.0
MASKED = -1e30


def _normalised_weights(sample_mask, sample_log_weights):
  """(b, n) weights summing to 1 over real samples, and their logs (MASKED elsewhere)."""
  if sample_log_weights is None:
    weights = sample_mask / jnp.sum(sample_mask, axis=-1, keepdims=True)
  else:
    weights = jnp.where(sample_mask, jnp.exp(sample_log_weights), 0.0)
    weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
  log_weights = jnp.where(sample_mask, jnp.log(jnp.where(sample_mask, weights, 1.0)), MASKED)
  return weights, log_weights


def _squared_distances(rows, keys):
  """(b, r, k) squared distances, clipped at zero against cancellation."""
  dots = jnp.einsum("brd,bkd->brk", rows, keys)
  squared = jnp.sum(rows**2, -1)[..., None] + jnp.sum(keys**2, -1)[:, None, :] - 2 * dots
  return jnp.maximum(squared, 0.0)


def leave_one_out_bank(samples, log_weights, dim, bandwidths, num_keys, key_points=None):
  """Leave-one-out kernel log-densities and local means of every sample at every bandwidth.

  The first `num_keys` samples are the keys (all of them when n <= num_keys); key_points
  (b, n, D), if given, are the kernels' centres instead of the samples (key j is still left
  out of row j).

  Args:
    samples: (b, n, D) whitened samples.
    log_weights: (b, n) log weights (MASKED on padding).
    dim: (b,) real dimensions.
    bandwidths: (b, K) bandwidths.
    num_keys: keys used.

  Returns:
    (log_density (b, n, K), local_mean (b, n, K, D)).
  """
  b, n, _ = samples.shape
  keys = (samples if key_points is None else key_points)[:, :num_keys]
  key_log_weights = log_weights[:, :num_keys]
  inverse_h2 = 1.0 / bandwidths**2  # (b, K)

  def rows_pass(rows, offset):
    squared = _squared_distances(rows, keys)  # (b, r, k)
    itself = (jnp.arange(rows.shape[1])[:, None] + offset) == jnp.arange(num_keys)[None]
    logits = jnp.where(itself[None], MASKED, key_log_weights[:, None])  # (b, r, k)
    normaliser = jax.nn.logsumexp(logits, axis=-1)  # Weight of the other keys.
    scaled = logits[..., None] - 0.5 * squared[..., None] * inverse_h2[:, None, None]
    log_sum = jax.nn.logsumexp(scaled, axis=2)  # (b, r, K)
    mean = jnp.einsum("brkK,bkd->brKd", jax.nn.softmax(scaled, axis=2), keys)
    log_density = (
      log_sum
      - normaliser[..., None]
      - 0.5 * dim[:, None, None] * jnp.log(2 * jnp.pi / inverse_h2[:, None])
    )
    return log_density, mean

  if n <= FEATURE_ROW_BLOCK:
    return rows_pass(samples, 0)
  blocks = samples.reshape(b, n // FEATURE_ROW_BLOCK, FEATURE_ROW_BLOCK, -1).swapaxes(0, 1)
  offsets = jnp.arange(n // FEATURE_ROW_BLOCK) * FEATURE_ROW_BLOCK
  log_density, mean = jax.lax.map(lambda args: rows_pass(*args), (blocks, offsets))
  return (
    log_density.swapaxes(0, 1).reshape(b, n, -1),
    mean.swapaxes(0, 1).reshape(b, n, mean.shape[-2], mean.shape[-1]),
  )


def gaussian_start(samples, log_weights, bandwidth):
  """Hjort and Glad's (1995) kernel estimate with a Gaussian start, as a sample-point mixture.

  N(y; 0, I) (1/n) sum_i N(y; x_i, h^2 I) / N(x_i; 0, I), normalised, in whitened coordinates:
  each product of Gaussians is one Gaussian, so the estimate is sum_i a_i N(y; x_i - r x_i,
  r I) with r = h^2 / (1 + h^2) and a_i proportional to w_i exp(r |x_i|^2 / 2). The kernel
  corrects the Gaussian instead of replacing it: less bias where the truth is near-Gaussian.
  The start's pull is bounded: x_i enters the shift and the tilt clipped to norm
  GAUSSIAN_START_REACH, so one far sample (Student-t, nu = 2: |x| ~ 100 whitened units, a tilt
  of e^140 unclipped) cannot take the mass.

  Args:
    samples: (b, n, D) whitened samples (zero on padding). log_weights: (b, n) log weights
      (MASKED on padded rows). bandwidth: (b,) h.

  Returns:
    centres (b, n, D), inverse squared bandwidths (b, n) and log weights (b, n) summing to 1.
  """
  shrink = (bandwidth**2 / (1 + bandwidth**2))[:, None]  # (b, 1)
  norms = jnp.sqrt(jnp.sum(samples**2, -1))
  clipped = samples * jnp.minimum(1.0, GAUSSIAN_START_REACH / jnp.maximum(norms, 1e-30))[..., None]
  tilt = 0.5 * shrink * jnp.sum(clipped**2, -1)
  log_weights = jax.nn.log_softmax(log_weights + tilt, axis=-1)
  inverse_h2 = jnp.broadcast_to(1.0 / (bandwidth[:, None] ** 2 * (1 - shrink)), log_weights.shape)
  return samples - shrink[..., None] * clipped, inverse_h2, log_weights


def gaussian_start_leave_one_out(samples, log_weights, dim, bandwidth, num_keys):
  """(b, n) leave-one-out log-density of the Gaussian-start estimate at each sample: its
  mixture without sample i's term, renormalised (the first num_keys terms are the keys, as in
  `leave_one_out_bank`).

  Args:
    samples: (b, n, D) whitened samples. log_weights: (b, n) log weights (MASKED on padding).
    dim: (b,) real dimensions. bandwidth: (b,) h. num_keys: keys used.
  """
  centres, inverse_h2, mixture_log_weights = gaussian_start(samples, log_weights, bandwidth)
  log_density, _ = leave_one_out_bank(
    samples,
    mixture_log_weights,
    dim,
    inverse_h2[:, :1] ** -0.5,
    num_keys,
    key_points=centres,
  )
  return log_density[..., 0]


def gaussian_log_density(points, dim):
  """(b, m) log N(p; 0, I) over the real coordinates (padded ones are zero)."""
  return -0.5 * jnp.sum(points**2, axis=-1) - 0.5 * dim[:, None] * jnp.log(2 * jnp.pi)


class _Problem(NamedTuple):
  """The whitened problem's parameter-free quantities, computed once per encode."""

  dim: jax.Array  # (b,) real dimensions.
  weights: jax.Array  # (b, n) summing to 1.
  log_weights: jax.Array  # (b, n), MASKED on padding.
  count: jax.Array  # (b,) (effective) sample count.
  bandwidths: jax.Array  # (b, K) the bank's bandwidths.
  reference: int  # The bank entry of Scott's bandwidth.
  loo_log_density: jax.Array  # (b, n, K) leave-one-out bank log-densities.
  local_means: jax.Array  # (b, n, K, D) the samples' kernel-smoothed positions.
  own_gaussian: jax.Array  # (b, n) log N(x; 0, I).
  damp: jax.Array  # (b,) the per-sample corrections' fade beyond the trained n.
  global_features: jax.Array  # (b, 3) log n, log d, 1 / d.
  token_features: jax.Array  # (b, n, F) the sample tokens' invariant inputs.


def _problem_features(
  cfg, samples, sample_mask, dim_mask, sample_log_weights, num_keys
) -> _Problem:
  """The invariants the learned parts read, and what the bases and kernels reuse."""
  dim = jnp.sum(dim_mask, axis=-1).astype(jnp.float32)
  weights, log_weights = _normalised_weights(sample_mask, sample_log_weights)
  count = kernel_bank_lib.sample_count(sample_mask, sample_log_weights)
  scott = kernels.scott_factor(count, dim)  # (b,)
  bandwidths = jnp.asarray(cfg.kernel_bandwidths, jnp.float32)[None] * scott[:, None]
  loo_log_density, local_means = leave_one_out_bank(samples, log_weights, dim, bandwidths, num_keys)
  own_gaussian = gaussian_log_density(samples, dim)  # (b, n)
  shifts = jnp.sum((local_means - samples[:, :, None]) ** 2, -1) / (
    bandwidths[:, None] ** 2 * dim[:, None, None]
  )
  # Beyond the largest training n the network sees that n, and its per-sample corrections
  # fade like sqrt(trained n / n): the estimate tends to the Scott-bandwidth kernel estimate
  # (consistent) instead of extrapolating (measured: docs/results_next_network_cpu.md).
  seen, damp = count, jnp.ones_like(count)
  if cfg.max_embedded_samples:
    seen = jnp.minimum(count, float(cfg.max_embedded_samples))
    damp = jnp.minimum(1.0, cfg.max_embedded_samples / count) ** 0.5
  global_features = jnp.stack([jnp.log(seen) / 10, jnp.log(dim) / 3, 1.0 / dim], -1)
  token_features = jnp.concatenate(
    [
      jnp.clip(loo_log_density - own_gaussian[..., None], -RELATIVE_CLIP, RELATIVE_CLIP)
      / RELATIVE_SCALE,
      jnp.log1p(shifts),
      (jnp.sum(samples**2, -1) / dim[:, None])[..., None],
      jnp.broadcast_to(global_features[:, None], samples.shape[:2] + (3,)),
    ],
    axis=-1,
  )
  return _Problem(
    dim,
    weights,
    log_weights,
    count,
    bandwidths,
    cfg.initial_bandwidth_index % len(cfg.kernel_bandwidths),
    loo_log_density,
    local_means,
    own_gaussian,
    damp,
    global_features,
    token_features,
  )


def _sample_kernels(cfg, problem: _Problem, samples, dim_mask, per_sample):
  """Centres (b, n, D), inverse squared bandwidths (b, n) and log weights (b, n) of the kernel
  estimate: the learned per-sample kernels, or in 1-D (one_dim_gaussian_start) the Gaussian
  start."""
  log_bandwidth = MAX_LOG_BANDWIDTH * jnp.tanh(per_sample[..., 0] / MAX_LOG_BANDWIDTH)
  shrink = MAX_SHRINK * jnp.tanh(per_sample[..., 1])
  damp = problem.damp[:, None]
  log_bandwidth, shrink = log_bandwidth * damp, shrink * damp
  reference = problem.bandwidths[:, problem.reference]
  shift = problem.local_means[:, :, problem.reference] - samples
  centres = (samples + shrink[..., None] * shift) * dim_mask[:, None, :]
  inverse_h2 = jnp.exp(-2 * log_bandwidth) / reference[:, None] ** 2  # (b, n)
  if not cfg.one_dim_gaussian_start:
    return centres, inverse_h2, problem.log_weights
  one_dim = (problem.dim == 1)[:, None]  # (b, 1)
  start = gaussian_start(samples, problem.log_weights, reference)
  return tuple(
    jnp.where(one_dim[..., None] if ours.ndim == 3 else one_dim, theirs, ours)
    for ours, theirs in zip((centres, inverse_h2, problem.log_weights), start)
  )


def _base_gate_inputs(cfg, problem: _Problem, samples, dim_mask, mixtures, tokens, num_keys, tail):
  """The base gate's features (b, F) and the held-out evidence (b, B) added to its logits.

  Each base's likelihood is compared with the kernel estimate's leave-one-out one (in 1-D with
  one_dim_gaussian_start: the Gaussian start's, with ONE_DIM_TAIL_WEIGHT on base `tail`)."""
  dim, weights, count = problem.dim, problem.weights, problem.count
  base_log_likelihoods = [problem.own_gaussian] + [
    jax.nn.logsumexp(mixture_fit.component_log_densities(samples, mixture, dim), -1)
    for mixture in mixtures
  ]
  if cfg.tail_base_dofs:
    base_log_likelihoods += list(
      jnp.moveaxis(model_lib.tail_bases(samples, dim_mask, cfg.tail_base_dofs)[0], -1, 0)
    )
  kde_likelihood = jnp.sum(weights * problem.loo_log_density[..., problem.reference], -1)
  if cfg.one_dim_gaussian_start:  # The 1-D kernel base's own leave-one-out likelihood.

    def one_dim_likelihood():
      leave_one_out = gaussian_start_leave_one_out(
        samples, problem.log_weights, dim, problem.bandwidths[:, problem.reference], num_keys
      )
      leave_one_out = jnp.logaddexp(
        jnp.log1p(-ONE_DIM_TAIL_WEIGHT) + leave_one_out,
        jnp.log(ONE_DIM_TAIL_WEIGHT) + base_log_likelihoods[tail - 1],
      )
      return jnp.where(dim == 1, jnp.sum(weights * leave_one_out, -1), kde_likelihood)

    # Its leave-one-out pass costs a quarter of a d = 2 call (n = 4,096): only run it when
    # the batch has a 1-D problem.
    kde_likelihood = jax.lax.cond(jnp.any(dim == 1), one_dim_likelihood, lambda: kde_likelihood)
  likelihood_gaps = (
    jnp.stack(
      [
        jnp.sum(weights * jax.lax.stop_gradient(ll), -1) - kde_likelihood
        for ll in base_log_likelihoods
      ],
      -1,
    )
    / (dim[:, None])
  )
  parameter_counts = (
    jnp.asarray(
      [0.0] + [c * (1 + 0.5 * 1) for c in cfg.mixture_components] + [0.0] * len(cfg.tail_base_dofs)
    )[None]
    * (dim[:, None] + 1) ** 2
    / (2 * count[:, None])
  )
  gate_features = [
    jnp.sum(weights[..., None] * tokens, axis=1),
    jnp.clip(likelihood_gaps, -LIKELIHOOD_FEATURE_CLIP, LIKELIHOOD_FEATURE_CLIP),
    jnp.log1p(parameter_counts),
    problem.global_features,
  ]
  evidence = 0.0
  if cfg.held_out_evidence:
    # In-sample likelihood favours the base with the most parameters; held-out likelihood
    # picks the one that generalises (docs/results_next_network_cpu.md). Appended last, so a
    # network without them warm-starts into one with them.
    held_out_gaps = (
      held_out.log_likelihoods(
        samples,
        weights,
        dim_mask,
        problem.local_means[:, :, -1],
        cfg.mixture_components,
        cfg.em_steps,
        cfg.tail_base_dofs,
      )
      - kde_likelihood[:, None]
    )
    gate_features.append(
      jnp.clip(held_out_gaps / dim[:, None], -LIKELIHOOD_FEATURE_CLIP, LIKELIHOOD_FEATURE_CLIP)
    )
    evidence = (
      cfg.held_out_evidence
      * count[:, None]
      * jnp.concatenate([jnp.zeros_like(held_out_gaps[:, :1]), held_out_gaps], axis=-1)
    )
  return jnp.concatenate(gate_features, axis=-1), evidence


def _initial_gate(cfg):
  """The base gate's bias initialiser: without evidence the kernel estimate starts alone
  (untrained = Scott's KDE); with it, the non-tail bases start level and the evidence
  chooses. The Student-t bases start gated off."""
  num_tails = len(cfg.tail_base_dofs)

  def init(key, shape, dtype=jnp.float32):
    del key
    logits = (
      jnp.zeros(shape, dtype)
      .at[0]
      .set(0.0 if cfg.held_out_evidence else model_lib.INITIAL_GATE_LOGIT)
    )
    if num_tails:
      logits = logits.at[-num_tails:].set(model_lib.INITIAL_TAIL_GATE_LOGIT)
    return logits / model_lib.GATE_SCALE

  return init


def _base_log_weights(cfg, base_logits, dim, num_bases, tail):
  """(b, B) log weights of the bases; in 1-D (one_dim_gaussian_start) the mixture bases are
  off and ONE_DIM_TAIL_WEIGHT of the kernel base's weight sits on base `tail`."""
  base_log_weights = jax.nn.log_softmax(base_logits, axis=-1)
  if not cfg.one_dim_gaussian_start:
    return base_log_weights
  one_dim = (dim == 1)[:, None]
  is_mixture = jnp.arange(num_bases) - 2
  is_mixture = (is_mixture >= 0) & (is_mixture < len(cfg.mixture_components))
  one_dim_weights = jax.nn.log_softmax(
    jnp.where(one_dim & is_mixture[None], MASKED, base_logits), -1
  )
  kernel_share = one_dim_weights[:, 0]
  one_dim_weights = (
    one_dim_weights.at[:, 0]
    .add(jnp.log1p(-ONE_DIM_TAIL_WEIGHT))
    .at[:, tail]
    .set(jnp.logaddexp(one_dim_weights[:, tail], kernel_share + jnp.log(ONE_DIM_TAIL_WEIGHT)))
  )
  return jnp.where(one_dim, one_dim_weights, base_log_weights)


class EquivariantDensityNet(nn.Module):
  """Sample-point kernel estimate and fitted bases, mixed by weights learned from invariants.

  Same interface as `kdeformer.model.KDEFormer` (encode once, decode query blocks), in
  whitened coordinates padded to any width (padding is zero and changes no invariant).

  Attributes:
    config: the hyperparameters (`kdeformer.model.ModelConfig`, architecture "equivariant"):
      kernel_bandwidths are the feature bank's factors of Scott's bandwidth, the one at
      initial_bandwidth_index is the estimate's reference bandwidth; mixture_components the
      Gaussian-mixture bases (components each, powers of two); em_steps their EM steps;
      tail_base_dofs the Student-t bases; max_self_attention_keys the key budget of the
      sample features and the self-attention.
    runtime: attention block sizes (memory and speed only).
  """

  config: model_lib.ModelConfig
  runtime: attention_lib.AttentionRuntime = attention_lib.DENSE
  dtype: Any = jnp.float32

  @property
  def max_dim(self) -> int:
    return 0

  @property
  def num_bases(self) -> int:
    return 2 + len(self.config.mixture_components) + len(self.config.tail_base_dofs)

  @property
  def _one_dim_tail_base(self) -> int:
    """The base that takes ONE_DIM_TAIL_WEIGHT of the 1-D kernel base's weight."""
    dofs = self.config.tail_base_dofs
    if not dofs:
      return 1  # The Gaussian.
    nearest = min(range(len(dofs)), key=lambda i: abs(dofs[i] - ONE_DIM_TAIL_DOF))
    return 2 + len(self.config.mixture_components) + nearest

  def _num_keys(self, n):
    budget = self.config.max_self_attention_keys
    return min(n, budget) if budget else n

  @nn.compact
  def encode(
    self, samples, sample_mask, dim_mask, *, deterministic: bool = True, sample_log_weights=None
  ):
    """The problem's mixture: a dict of per-sample kernels, fitted bases and base weights."""
    cfg = self.config
    num_keys = self._num_keys(samples.shape[1])
    problem = _problem_features(cfg, samples, sample_mask, dim_mask, sample_log_weights, num_keys)
    tokens = nn.Dense(cfg.width, name="embed_samples")(problem.token_features)
    for index in range(cfg.num_layers):
      tokens = model_lib.SelfAttentionBlock(
        cfg.num_heads,
        cfg.mlp_ratio * cfg.width,
        cfg.dropout_rate,
        cfg.max_self_attention_keys,
        self.runtime,
        dtype=self.dtype,
        name=f"self_attention_{index}",
      )(
        tokens,
        sample_mask,
        deterministic=deterministic,
        key_bias=jnp.where(sample_mask, problem.log_weights, 0.0),
      )
    tokens = nn.LayerNorm(name="norm_out")(tokens).astype(jnp.float32)
    per_sample = nn.Dense(2, kernel_init=nn.initializers.zeros, name="sample_head")(tokens)
    centres, inverse_h2, kernel_log_weights = _sample_kernels(
      cfg, problem, samples, dim_mask, per_sample
    )
    mixtures = [
      mixture_fit.fit(
        samples, problem.weights, dim_mask, problem.local_means[:, :, -1], components, cfg.em_steps
      )
      for components in cfg.mixture_components
    ]
    gate_features, evidence = _base_gate_inputs(
      cfg, problem, samples, dim_mask, mixtures, tokens, num_keys, self._one_dim_tail_base
    )
    base_logits = (
      model_lib.GATE_SCALE
      * nn.Dense(
        self.num_bases,
        kernel_init=nn.initializers.zeros,
        bias_init=_initial_gate(cfg),
        name="base_gate",
      )(gate_features)
      + evidence
    )
    return {
      "centres": centres,
      "inverse_h2": inverse_h2,
      "kernel_bias": (
        kernel_log_weights
        + 0.5 * problem.dim[:, None] * jnp.log(inverse_h2 / (2 * jnp.pi))
        - 0.5 * inverse_h2 * jnp.sum(centres**2, -1)
      ),
      "mixtures": mixtures,
      "base_log_weights": _base_log_weights(
        cfg, base_logits, problem.dim, self.num_bases, self._one_dim_tail_base
      ),
    }

  def decode(
    self,
    queries,
    samples,
    encoded,
    sample_mask,
    dim_mask,
    *,
    deterministic: bool = True,
    sample_log_weights=None,
  ):
    """(log_density (b, m), score (b, m, D)) of the encoded mixture at whitened queries."""
    del samples, deterministic, sample_log_weights  # All of it is in `encoded`.
    cfg = self.config
    dim = jnp.sum(dim_mask, axis=-1).astype(jnp.float32)
    real = dim_mask.astype(jnp.float32)
    # The sample-point kernel estimate as attention: logit_j = kernel_bias_j + y.(c_j / h_j^2)
    # - |y|^2 / (2 h_j^2) is the log of w_j N(y; c_j, h_j^2 I).
    inverse_h2 = encoded["inverse_h2"]
    kernel_keys = jnp.concatenate(
      [encoded["centres"] * inverse_h2[..., None], inverse_h2[..., None]], -1
    )[:, :, None]  # (b, n, 1, D+1)
    lifted = jnp.concatenate([queries, -0.5 * jnp.sum(queries**2, -1, keepdims=True)], -1)[
      :, :, None
    ]
    out, log_kernel = attention_lib.attention(
      lifted,
      kernel_keys,
      kernel_keys,
      sample_mask,
      encoded["kernel_bias"],
      key_chunk_size=self.runtime.key_chunk_size,
    )
    out, log_kernel = out[:, :, 0], log_kernel[:, :, 0]
    kernel_score = out[..., :-1] - out[..., -1:] * queries
    log_densities = [log_kernel, gaussian_log_density(queries, dim)]
    scores = [kernel_score, -queries]
    for mixture in encoded["mixtures"]:
      component = mixture_fit.component_log_densities(queries, mixture, dim)  # (b, m, C)
      centred = queries[:, :, None] - mixture.means[:, None]
      precision = jnp.einsum(
        "bcfd,bcfe->bcde", mixture.precision_factors, mixture.precision_factors
      )
      component_scores = -jnp.einsum("bcde,bmce->bmcd", precision, centred)
      log_densities.append(jax.nn.logsumexp(component, -1))
      scores.append(jnp.einsum("bmc,bmcd->bmd", jax.nn.softmax(component, -1), component_scores))
    if cfg.tail_base_dofs:
      tail_log_density, tail_score = model_lib.tail_bases(queries, dim_mask, cfg.tail_base_dofs)
      log_densities += list(jnp.moveaxis(tail_log_density, -1, 0))
      scores += list(jnp.moveaxis(tail_score, -2, 0))
    joint = jnp.stack(log_densities, -1) + encoded["base_log_weights"][:, None]  # (b, m, B)
    log_density = jax.nn.logsumexp(joint, -1)
    posterior = jax.nn.softmax(joint, -1)
    score = jnp.einsum("bmB,Bbmd->bmd", posterior, jnp.stack(scores)) * real[:, None]
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
    """Whitened (log_density (b, m), score (b, m, D)); see `kdeformer.model.KDEFormer`."""
    encoded = self.encode(
      samples,
      sample_mask,
      dim_mask,
      deterministic=deterministic,
      sample_log_weights=sample_log_weights,
    )
    return self.decode(queries, samples, encoded, sample_mask, dim_mask)


def check_memory(config: model_lib.ModelConfig, num_samples: int, dim: int) -> None:
  """For this network (any d): a clear error where memory, not d, is the limit."""
  if config.architecture != "equivariant":
    return
  validation.check_equivariant_memory(
    num_samples,
    dim,
    num_keys=config.max_self_attention_keys or num_samples,
    num_bandwidths=len(config.kernel_bandwidths),
    num_components=sum(config.mixture_components),
    row_block=FEATURE_ROW_BLOCK,
  )
