"""The normalising constant log Z = log int exp(log f) of an estimated log-density.

`log_normalizer`: importance sampling from q = (1 - a) KDE_h + a N(mean, s^2 Cov) of the samples
(stratified, antithetic draws; standard error from independent replicates). The trapezoid-rule
references for d <= 2 are in `kdeformer.quadrature`. docs/DESIGN.md has the details.
"""

from collections.abc import Callable
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from kdeformer import kde
from kdeformer import kernels
from kdeformer import problem as problem_lib
from kdeformer.estimate import Estimate

LogDensityFn = Callable[[jax.Array], jax.Array]
EstimatorFn = Callable[[jax.Array, jax.Array], Estimate]

# Defaults of the importance sampler (see `log_normalizer`).
DEFAULT_NUM_DRAWS = 16384
DEFAULT_NUM_REPLICATES = 16
DEFAULT_DEFENSIVE_WEIGHT = 0.05
DEFAULT_DEFENSIVE_SCALE = 2.0


class LogNormalizer(NamedTuple):
  """An importance-sampling estimate of log Z.

  Attributes:
    log_z: () the estimate of log int exp(log f).
    standard_error: () its standard error (delta method over the replicates).
    effective_sample_size: () (sum w)^2 / sum w^2 over all draws, a weight diagnostic.
    num_draws: () the number of evaluations of log f.
  """

  log_z: jax.Array
  standard_error: jax.Array
  effective_sample_size: jax.Array
  num_draws: int


def defensive_share(num_draws: int, defensive_weight: float) -> float:
  """The share of draws actually given to the broad Gaussian (a rounded to whole pairs)."""
  half = num_draws // 2
  return int(round(defensive_weight * half)) / half


def proposal_draws(
  key: jax.Array,
  whitened_samples: jax.Array,
  num_draws: int,
  bandwidth: float,
  defensive_weight: float,
  defensive_scale: float,
) -> jax.Array:
  """One replicate of stratified, antithetic draws (num_draws, d) from the whitened proposal.

  Layout: kernel draws, defensive draws, then the antithetic mirror of both.
  Their density is `proposal_log_density` with weight `defensive_share(num_draws,
  defensive_weight)` for the broad Gaussian.

  Args:
    key: PRNG key.
    whitened_samples: (n, d) kernel centres (whitened samples).
    num_draws: even number of draws.
    bandwidth: kernel standard deviation h (whitened units).
    defensive_weight: share a of the draws from N(0, defensive_scale^2 I).
    defensive_scale: s.
  """
  n, d = whitened_samples.shape
  half = num_draws // 2
  num_kernel = half - int(round(defensive_share(num_draws, defensive_weight) * half))
  perm_key, offset_key, noise_key = jax.random.split(key, 3)
  offset = jax.random.uniform(offset_key)
  positions = jnp.floor((jnp.arange(num_kernel) + offset) * n / num_kernel).astype(jnp.int32)
  centres = whitened_samples[jax.random.permutation(perm_key, n)[jnp.minimum(positions, n - 1)]]
  noise = jax.random.normal(noise_key, (half, d))
  kernel_noise, defensive_noise = noise[:num_kernel], noise[num_kernel:]
  return jnp.concatenate(
    [
      centres + bandwidth * kernel_noise,
      defensive_scale * defensive_noise,
      centres - bandwidth * kernel_noise,
      -defensive_scale * defensive_noise,
    ]
  )


def proposal_log_density(
  points: jax.Array,
  whitened_samples: jax.Array,
  bandwidth: float,
  defensive_weight: float,
  defensive_scale: float,
) -> jax.Array:
  """log q (m,) at whitened points (m, d): (1 - a) KDE_h + a N(0, s^2 I)."""
  d = points.shape[-1]
  kernel = kde.kde_with_covariance(whitened_samples, points, bandwidth**2 * jnp.eye(d)).log_density
  if defensive_weight == 0:
    return kernel
  broad = (
    -0.5 * jnp.sum(points**2, axis=-1) / defensive_scale**2
    - d * math.log(defensive_scale)
    - 0.5 * d * math.log(2 * math.pi)
  )
  return jnp.logaddexp(math.log1p(-defensive_weight) + kernel, math.log(defensive_weight) + broad)


def log_normalizer(
  log_density_fn: LogDensityFn,
  samples,
  key: jax.Array,
  num_draws: int = DEFAULT_NUM_DRAWS,
  *,
  num_replicates: int = DEFAULT_NUM_REPLICATES,
  bandwidth_factor: float = 1.0,
  defensive_weight: float = DEFAULT_DEFENSIVE_WEIGHT,
  defensive_scale: float = DEFAULT_DEFENSIVE_SCALE,
) -> LogNormalizer:
  """Importance-sampling estimate of log Z = log int exp(log_density_fn(x)) dx.

  Args:
    log_density_fn: maps points (m, d) to log f (m,) (unnormalised), called once
      on all num_draws points (a float64 numpy array, in the samples' coordinates).
    samples: (n, d) samples of the density f estimates; the proposal is their KDE.
    key: PRNG key.
    num_draws: total evaluations of log f; a multiple of 2 * num_replicates.
    num_replicates: independently randomised replicates (standard error from them).
    bandwidth_factor: kernel bandwidth in whitened units = factor * n^(-1/(d+4)).
    defensive_weight: share of draws from the broad Gaussian (0 disables it).
    defensive_scale: its standard deviation in whitened units.

  Returns:
    LogNormalizer(log_z, standard_error, effective_sample_size, num_draws).
  """
  problem = problem_lib.prepare(samples)
  if num_replicates < 2 or num_draws % (2 * num_replicates):
    raise ValueError(
      f"num_draws must be a multiple of 2 * num_replicates with num_replicates "
      f">= 2; got num_draws={num_draws}, num_replicates={num_replicates}."
    )
  if not 0 <= defensive_weight < 1:
    raise ValueError(f"defensive_weight must be in [0, 1); got {defensive_weight}.")
  n, d = problem.num_samples, problem.dim
  # Whitened in float64, and the draws mapped back in float64: offsets and units (a
  # timestamp column) must not move the points at which log f is evaluated.
  whitened = jnp.asarray(problem.samples, jnp.float32)
  bandwidth = bandwidth_factor * kde.scott_factor(n, d)
  per_replicate = num_draws // num_replicates
  draws, log_q = _replicate_draws(
    jax.random.split(key, num_replicates),
    whitened,
    per_replicate,
    bandwidth,
    defensive_weight,
    defensive_scale,
  )
  points = problem.points_back(np.asarray(draws).reshape(num_draws, d))
  # Density of the data-space draws: q_x(x) = q_z(z) |det whitening|.
  log_q = np.asarray(log_q, np.float64).reshape(num_draws) + problem.whitening.log_det
  log_f = np.asarray(log_density_fn(points), np.float64).reshape(num_draws)
  if np.any(np.isnan(log_f) | (log_f == np.inf)):
    raise ValueError(
      f"log_density_fn returned NaN or +inf at {np.sum(~(log_f < np.inf))} of "
      f"{num_draws} importance draws near the samples; log Z needs finite "
      "values (or -inf where the density is zero)."
    )
  if not np.any(np.isfinite(log_f)):
    raise ValueError(
      f"log_density_fn is -inf (zero density) at all {num_draws} importance "
      "draws near the samples: it has no mass where the samples are."
    )
  return summarize_log_weights((log_f - log_q).reshape(num_replicates, per_replicate))


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _replicate_draws(
  keys, whitened_samples, per_replicate, bandwidth, defensive_weight, defensive_scale
):
  """Draws (R * per_replicate, d) of R replicates and their log q, in one program."""
  draws = jax.vmap(
    lambda k: proposal_draws(
      k, whitened_samples, per_replicate, bandwidth, defensive_weight, defensive_scale
    )
  )(keys)
  draws = draws.reshape(-1, whitened_samples.shape[1])
  share = defensive_share(per_replicate, defensive_weight)
  return draws, proposal_log_density(draws, whitened_samples, bandwidth, share, defensive_scale)


def summarize_log_weights(log_w: jax.Array) -> LogNormalizer:
  """log Z, its standard error and the ESS from log-weights (R replicates, draws per replicate)."""
  log_w = np.asarray(log_w, np.float64)
  shift = np.max(log_w)
  weights = np.exp(log_w - shift)
  replicate_means = weights.mean(axis=1)
  mean = replicate_means.mean()
  standard_error = replicate_means.std(ddof=1) / math.sqrt(len(replicate_means)) / mean
  ess = kernels.effective_sample_size(weights.reshape(-1), normalized=False)
  return LogNormalizer(
    jnp.asarray(shift + math.log(mean)),
    jnp.asarray(standard_error),
    jnp.asarray(ess),
    int(log_w.size),
  )


def split_key(key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(sampler key, rotation key) of a normalize=True call's key: the one convention, so that
  `Estimator.__call__`, `FittedDensity` and the scikit-learn estimators give the same log Z."""
  sampler_key, rotation_key = jax.random.split(key)
  return sampler_key, rotation_key


def log_normalizer_of_fit(
  log_density_fn: LogDensityFn, samples, sampler_key: jax.Array, weights=None
) -> float:
  """log Z of a density estimated from samples (n, d) with optional weights (n,).

  The proposal is the KDE of the samples of positive weight (weight-zero samples take no
  part); `log_density_fn` and the samples share their coordinates (whitened, for the model).
  """
  proposal = samples if weights is None else samples[np.asarray(weights) > 0]
  return float(log_normalizer(log_density_fn, proposal, sampler_key).log_z)


def normalized_log_density(
  estimator: EstimatorFn,
  samples,
  queries,
  key: jax.Array,
  num_draws: int = DEFAULT_NUM_DRAWS,
  *,
  proposal_samples=None,
  **kwargs,
) -> tuple[Estimate, LogNormalizer]:
  """The estimator's output at the queries with log Z subtracted from the log-density.

  Args:
    estimator: f(samples (n, d), queries (m, d)) -> Estimate, e.g. `kdeformer.load_pretrained()`.
    samples: (n, d).
    queries: (m, d).
    key: PRNG key of the importance sampler.
    num_draws: importance-sampling draws (evaluations of the estimator).
    proposal_samples: the samples whose KDE is the proposal (default: `samples`; weighted
      problems pass those of positive weight).
    **kwargs: passed to `log_normalizer` (num_replicates, bandwidth_factor, ...).

  Returns:
    (Estimate(log_density - log Z (m,), score (m, d) unchanged), the LogNormalizer).
  """
  proposal_samples = samples if proposal_samples is None else proposal_samples
  normalizer = log_normalizer(
    lambda points: estimator(samples, points).log_density,
    proposal_samples,
    key,
    num_draws,
    **kwargs,
  )
  out = estimator(samples, queries)
  return Estimate(out.log_density - normalizer.log_z, out.score), normalizer


def normalized_estimator(
  estimator: EstimatorFn, key: jax.Array, num_draws: int = DEFAULT_NUM_DRAWS, **kwargs
) -> EstimatorFn:
  """Wraps an estimator so that its exp(log-density) integrates to 1 (up to the IS error).

  The returned f(samples, queries=None) -> Estimate has the estimator's call
  shape (unbatched); each call estimates log Z afresh with the same `key`, so
  repeated calls on the same samples agree exactly.
  """

  def normalized(samples, queries=None) -> Estimate:
    queries = samples if queries is None else queries
    return normalized_log_density(estimator, samples, queries, key, num_draws, **kwargs)[0]

  return normalized
