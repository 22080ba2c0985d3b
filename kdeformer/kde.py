"""Kernel density baselines with closed-form scores: KDE, oracle KDE, SD-KDE.

All take the transformer's call shape `f(samples (n, d), queries (m, d) = samples, ...)` and
return a `kdeformer.Estimate`; scipy.stats.gaussian_kde's convention H = Cov(samples) * factor^2.
The sum over samples is the transformer's own attention primitive (`gaussian_kernel_attention`).
"""

from collections.abc import Callable
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from kdeformer import attention as attention_lib
from kdeformer import kernels
from kdeformer import linalg
from kdeformer import problem as problem_lib
from kdeformer import sampling
from kdeformer import validation
from kdeformer.estimate import Estimate

# Public names of the KDE module (`kdeformer.kde.scott_factor`, ...); they live below it.
from kdeformer.kernels import gaussian_kernel_attention  # noqa: F401
from kdeformer.kernels import masked_log_weights
from kdeformer.kernels import scott_factor

DEFAULT_QUERY_CHUNK = attention_lib.KDE_QUERY_CHUNK
DEFAULT_KEY_CHUNK = attention_lib.KDE_KEY_CHUNK

Bandwidth = str | float


def silverman_factor(num_samples, dim):
  """Silverman's (n (d + 2) / 4)^(-1/(d+4))."""
  return scott_factor(num_samples * (dim + 2) / 4.0, dim)


def sd_kde_factor(num_samples: int, dim: int, scale: float = 0.4) -> float:
  """SD-KDE's bandwidth rate n^(-1/(d+8)); scale 0.4 as in Epstein et al.'s 1-D code."""
  return scale * num_samples ** (-1.0 / (dim + 8))


_BANDWIDTH_RULES = {"scott": scott_factor, "silverman": silverman_factor}


def check_bandwidth(bandwidth: Bandwidth) -> None:
  """Refuses anything but "scott", "silverman" or a positive finite factor (traced: unchecked)."""
  if isinstance(bandwidth, str):
    if bandwidth not in _BANDWIDTH_RULES:
      raise ValueError(
        f"bandwidth must be 'scott', 'silverman' or a positive float; got {bandwidth!r}."
      )
  elif not validation.is_traced(bandwidth) and not 0 < bandwidth < math.inf:
    raise ValueError(f"bandwidth factor must be a positive finite number; got {bandwidth}.")


def bandwidth_factor(bandwidth: Bandwidth, num_samples: int, dim: int) -> float:
  """Resolves "scott", "silverman" or a positive float to a factor."""
  check_bandwidth(bandwidth)
  if isinstance(bandwidth, str):
    return _BANDWIDTH_RULES[bandwidth](num_samples, dim)
  return bandwidth


def sample_covariance(samples: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """(d, d) unbiased covariance of samples (n, d); with weights (n,) summing to 1, numpy's
  aweights convention sum w (x - mean)^T (x - mean) / (1 - sum w^2), as scipy's weighted KDE.

  `whitening.fit_affine_map` computes the same moments (batched, masked) with other float32
  operations: merging the two would change the bits of one or the other."""
  if weights is None:
    centred = samples - jnp.mean(samples, axis=0)
    return centred.T @ centred / (samples.shape[0] - 1)
  centred = samples - weights @ samples
  return (centred.T * weights) @ centred / (1.0 - jnp.sum(weights**2))


def kde_with_covariance(
  samples: jax.Array,
  queries: jax.Array,
  kernel_covariance: jax.Array,
  *,
  query_chunk_size: int = DEFAULT_QUERY_CHUNK,
  key_chunk_size: int = DEFAULT_KEY_CHUNK,
) -> Estimate:
  """Gaussian KDE with kernel covariance H (d, d): (1/n) sum_j N(y; x_j, H).

  Args:
    samples: (n, d).
    queries: (m, d).
    kernel_covariance: (d, d) symmetric positive definite H.

  Returns:
    Estimate with log_density (m,) and score (m, d).
  """
  return kde_with_cholesky(
    samples,
    queries,
    linalg.cholesky(kernel_covariance),
    query_chunk_size=query_chunk_size,
    key_chunk_size=key_chunk_size,
  )


def kde_with_cholesky(
  samples: jax.Array,
  queries: jax.Array,
  cholesky: jax.Array,
  *,
  scale: float | jax.Array = 1.0,
  weights: jax.Array | None = None,
  query_chunk_size: int = DEFAULT_QUERY_CHUNK,
  key_chunk_size: int = DEFAULT_KEY_CHUNK,
) -> Estimate:
  """`kde_with_covariance` with H = scale^2 L L^T given its lower Cholesky factor L (d, d).

  Bandwidth searches factor the sample covariance once and vary `scale`. With `weights`
  (n,), non-negative and summing to 1, the estimate is sum_j w_j N(y; x_j, H); samples of
  weight zero take no part.
  """
  n, d = samples.shape
  # The inverse once, outside the query loop, without LAPACK (see kdeformer.linalg).
  inverse_cholesky = linalg.lower_triangular_inverse(cholesky) / scale
  # Row convention: z = x L^{-T}, so ||z_y - z_x||^2 = (y - x) H^{-1} (y - x)^T.
  whiten = lambda x: x @ inverse_cholesky.T
  log_det = jnp.sum(jnp.log(jnp.diagonal(cholesky))) + d * jnp.log(scale)
  constant = -0.5 * d * math.log(2 * math.pi) - log_det
  sample_mask = None
  if weights is None:
    constant = constant - math.log(n)
    anchor = jnp.mean(samples, axis=0)  # Centring keeps the logits small.
  else:
    sample_mask = weights > 0
    # The weighted mean, and samples of weight zero moved onto it: a far outlier weighted out
    # must not reach the float32 logits (at 1e6 standard deviations it set every estimate to
    # one wrong value).
    anchor = weights @ samples / jnp.sum(weights)
    samples = jnp.where(sample_mask[:, None], samples, anchor)
  keys = whiten(samples - anchor)
  log_weights = masked_log_weights(weights, sample_mask)
  runtime = attention_lib.AttentionRuntime(key_chunk_size=key_chunk_size)

  def block(query_block):
    z = whiten(query_block - anchor)
    log_kernel_sum, kernel_mean = gaussian_kernel_attention(
      z,
      keys,
      jnp.ones((1,)),
      sample_mask=sample_mask,
      sample_log_weights=log_weights,
      runtime=runtime,
    )
    score = (kernel_mean[:, 0] - z) @ inverse_cholesky  # grad_y = grad_z L^{-1}.
    return log_kernel_sum[:, 0] + constant, score

  log_density, score = map_in_chunks(block, queries, query_chunk_size)
  return Estimate(log_density, score)


def map_in_chunks(fn: Callable, points: jax.Array, chunk_size: int):
  """Applies fn to row blocks of points (m, ...) sequentially and concatenates the results."""
  m = points.shape[0]
  if m <= chunk_size:
    return fn(points)
  chunks = -(-m // chunk_size)
  padded = jnp.pad(
    points, [(0, chunks * chunk_size - m)] + [(0, 0)] * (points.ndim - 1), mode="edge"
  )
  out = jax.lax.map(fn, padded.reshape((chunks, chunk_size) + points.shape[1:]))
  return jax.tree.map(lambda x: x.reshape((chunks * chunk_size,) + x.shape[2:])[:m], out)


@functools.partial(jax.jit, static_argnames=("factor_rule", "query_chunk_size", "key_chunk_size"))
def _gaussian_kde(
  samples, queries, factor, factor_rule, query_chunk_size, key_chunk_size, weights=None
):
  n, d = samples.shape
  if factor_rule is not None:
    # scipy's convention: the rules use the effective sample size 1 / sum w^2.
    size = n if weights is None else kernels.effective_sample_size(weights)
    factor = bandwidth_factor(factor_rule, size, d)
  cholesky = linalg.cholesky(sample_covariance(samples, weights))
  return kde_with_cholesky(
    samples,
    queries,
    cholesky,
    scale=factor,
    weights=weights,
    query_chunk_size=query_chunk_size,
    key_chunk_size=key_chunk_size,
  )


def gaussian_kde(
  samples,
  queries=None,
  bandwidth: Bandwidth = "scott",
  *,
  weights=None,
  bounds=None,
  query_chunk_size: int = DEFAULT_QUERY_CHUNK,
  key_chunk_size: int = DEFAULT_KEY_CHUNK,
) -> Estimate:
  """Gaussian KDE, scipy.stats.gaussian_kde's convention, with its closed-form score.

  Args:
    samples: (n, d) i.i.d. samples.
    queries: (m, d) evaluation points; defaults to the samples.
    bandwidth: "scott", "silverman" or a positive float factor; the kernel
      covariance is Cov(samples) * factor^2.
    weights: optional (n,) non-negative sample weights, scipy's convention: normalised to
      sum 1, the weighted covariance, and the effective sample size 1 / sum w^2 in the
      Scott/Silverman factors. Samples of weight zero take no part.
    bounds: optional support (lower, upper), as in `kdeformer.Estimator.__call__`: the KDE
      of the mapped samples (log / logit per bounded coordinate, bandwidth from their
      covariance) mapped back exactly (`kdeformer.support`); -inf and a zero score outside.

  Returns:
    Estimate(log_density (m,), score (m, d)).
  """
  check_bandwidth(bandwidth)
  validation.check_chunk_sizes(query_chunk_size=query_chunk_size, key_chunk_size=key_chunk_size)
  problem = problem_lib.prepare(samples, weights=weights, bounds=bounds)
  rule = bandwidth if isinstance(bandwidth, str) else None
  factor = 1.0 if rule else bandwidth

  def estimate(samples, queries, weights):  # The KDE is affine equivariant: exact whitened.
    return _gaussian_kde(
      validation.as_float32(samples),
      validation.as_float32(queries),
      factor,
      rule,
      query_chunk_size,
      key_chunk_size,
      None if weights is None else validation.as_float32(weights),
    )

  return problem.run(estimate, queries)


def resample(
  samples,
  num_samples: int,
  *,
  key: jax.Array,
  bandwidth: Bandwidth = "scott",
  weights=None,
  bounds=None,
) -> jax.Array:
  """Draws (num_samples, d) points from the Gaussian KDE of samples (scipy's `resample`).

  A sample is picked (by weight) and Gaussian noise of the kernel covariance Cov * factor^2
  is added, with `gaussian_kde`'s bandwidth and weight conventions. With `bounds`, the draws
  come from `gaussian_kde(..., bounds=bounds)`: resampled in the mapped space, mapped back.

  Returns:
    (num_samples, d) draws: float64 numpy for concrete samples (as the model's
    `Estimator.sample`), a float32 jax array under tracing.
  """
  problem = problem_lib.prepare(samples, weights=weights, bounds=bounds)
  sampling.check_draw_arguments(num_samples, key, caller="resample()")
  samples, weights = validation.as_float32(problem.samples), problem.weights
  n, d = samples.shape
  size = n if weights is None else float(kernels.effective_sample_size(weights))
  factor = bandwidth_factor(bandwidth, size, d)
  weights = None if weights is None else validation.as_float32(weights)
  draws = _smoothed_bootstrap(samples, weights, factor, key, int(num_samples))
  # Mapped back in float64, like the model's draws: at a timestamp offset float32 points
  # would be 128 apart.
  return draws if problem.whitening is None else problem.points_back(draws)


@functools.partial(jax.jit, static_argnums=4)
def _smoothed_bootstrap(samples, weights, factor, key, num_samples: int) -> jax.Array:
  """resample's draws, in one program (eagerly the unrolled Cholesky compiles op by op)."""
  cholesky = linalg.cholesky(sample_covariance(samples, weights)) * factor
  pick_key, noise_key = jax.random.split(key)
  logits = jnp.zeros(samples.shape[0]) if weights is None else jnp.log(weights)
  picks = jax.random.categorical(pick_key, logits, shape=(num_samples,))
  noise = jax.random.normal(noise_key, (num_samples, samples.shape[1]))
  return samples[picks] + noise @ cholesky.T


def shift_samples(samples: jax.Array, scores: jax.Array, kernel_covariance: jax.Array) -> jax.Array:
  """SD-KDE's one score step: x + (H / 2) s(x) (row convention, H symmetric)."""
  return samples + 0.5 * scores @ kernel_covariance


def sd_kde(
  samples,
  queries=None,
  score_fn: Callable[[jax.Array], jax.Array] | None = None,
  *,
  bandwidth_scale: float = 0.4,
  pilot_bandwidth: Bandwidth = "silverman",
  query_chunk_size: int = DEFAULT_QUERY_CHUNK,
) -> Estimate:
  """Score-debiased KDE (Epstein et al., arXiv 2504.19084).

  Each sample moves once along a score, x + (H/2) s(x), then a plain KDE with
  H = Cov * (bandwidth_scale * n^(-1/(d+8)))^2 is evaluated on the moved samples.

  Args:
    samples: (n, d).
    queries: (m, d); defaults to the (unshifted) samples.
    score_fn: maps the (n, d) samples, as given, to their (n, d) scores (the exact score,
      or a model's). None gives Emp-SD-KDE: the score of a KDE with `pilot_bandwidth`.
    bandwidth_scale: constant in front of n^(-1/(d+8)).
    pilot_bandwidth: bandwidth of the pilot KDE used when score_fn is None.

  Returns:
    Estimate(log_density (m,), score (m, d)).
  """
  problem = problem_lib.prepare(samples)
  validation.check_chunk_sizes(query_chunk_size=query_chunk_size)
  # The score step is affine equivariant (x = z A + mu: H_x = A H_z A, s_x = s_z A^-1), so
  # concrete data are moved to float64-whitened coordinates, where offsets and units cost
  # float32 nothing, and the estimate is mapped back.
  scores = None if score_fn is None else score_fn(samples)
  if scores is not None and not validation.is_traced(scores):
    validation.check_array(scores, "score_fn(samples)", np.shape(samples))
  if any(validation.is_traced(x) for x in (scores, queries)):
    problem = problem.without_whitening()
  if problem.whitening is not None and scores is not None:
    scores = np.asarray(scores, np.float64) @ problem.whitening.unwhitening

  def estimate(samples, queries, _):
    samples = jnp.asarray(samples, jnp.float32)
    n, d = samples.shape
    shift = scores
    if shift is None:
      shift = gaussian_kde(
        samples, samples, pilot_bandwidth, query_chunk_size=query_chunk_size
      ).score
    covariance = sample_covariance(samples) * sd_kde_factor(n, d, bandwidth_scale) ** 2
    shifted = shift_samples(samples, jnp.asarray(shift, jnp.float32), covariance)
    return kde_with_covariance(
      shifted, jnp.asarray(queries, jnp.float32), covariance, query_chunk_size=query_chunk_size
    )

  return problem.run(estimate, queries)


def default_factor_grid(num: int = 25) -> jax.Array:
  """Log-spaced bandwidth factors from 0.02 to 2."""
  return jnp.geomspace(0.02, 2.0, num)


def oracle_kde(
  samples,
  queries,
  true_log_density=None,
  true_score=None,
  *,
  factors: jax.Array | None = None,
  criterion: str = "score",
  query_chunk_size: int = DEFAULT_QUERY_CHUNK,
) -> tuple[Estimate, jax.Array]:
  """KDE with the best factor on a log grid, chosen with the true density or score.

  Args:
    samples: (n, d).
    queries: (m, d) where the truth is known.
    true_log_density: (m,) needed for criterion="log_density".
    true_score: (m, d) needed for criterion="score".
    factors: candidate factors (default: `default_factor_grid()`).
    criterion: "score" (relative score MSE) or "log_density" (log-density MSE).

  Returns:
    (Estimate at the best factor, the best factor).
  """
  problem = problem_lib.prepare(samples)
  validation.check_points(queries, "queries", dim=problem.dim, batched_ok=False)
  validation.check_chunk_sizes(query_chunk_size=query_chunk_size)
  if criterion not in ("score", "log_density"):
    raise ValueError(f"criterion must be 'score' or 'log_density'; got {criterion!r}.")
  truth = true_score if criterion == "score" else true_log_density
  if truth is None:
    raise ValueError(f"criterion={criterion!r} needs true_{criterion}.")
  if not validation.is_traced(truth):
    expected_shape = np.shape(queries) if criterion == "score" else np.shape(queries)[:1]
    validation.check_array(truth, f"true_{criterion}", expected_shape)
  # Fitted in float64-whitened coordinates (exact: the factor multiplies Cov, and a KDE is
  # affine equivariant), so offsets and units cost float32 nothing; the errors are measured
  # in data coordinates, as the truth is given.
  if any(validation.is_traced(x) for x in (truth, queries)):
    problem = problem.without_whitening()
  score_to_data = jnp.eye(problem.dim)
  if problem.whitening is not None:
    score_to_data = jnp.asarray(problem.whitening.whitening, jnp.float32)
    if criterion == "log_density":
      truth = np.asarray(truth, np.float64) - problem.whitening.log_det
  truth = jnp.asarray(truth, jnp.float32)
  factors = default_factor_grid() if factors is None else jnp.asarray(factors, jnp.float32)
  best = []

  def estimate(samples, queries, _):
    samples, queries = jnp.asarray(samples, jnp.float32), jnp.asarray(queries, jnp.float32)
    cholesky = linalg.cholesky(sample_covariance(samples))

    def error(factor):
      estimate = kde_with_cholesky(
        samples, queries, cholesky, scale=factor, query_chunk_size=query_chunk_size
      )
      if criterion == "score":
        return jnp.sum((estimate.score @ score_to_data - truth) ** 2)
      return jnp.mean((estimate.log_density - truth) ** 2)

    best.append(factors[jnp.argmin(jax.lax.map(error, factors))])
    return kde_with_cholesky(
      samples, queries, cholesky, scale=best[0], query_chunk_size=query_chunk_size
    )

  return problem.run(estimate, queries), best[0]
