"""Exact affine normalisation around the network (whitening and its inverse).

Row-vector convention: a point x (d,) maps to z = (x - mean) @ whitening, with
whitening = (Cov + eps I)^{-1/2}, the *symmetric* inverse square root. For
data transformed as x -> x R + c with R orthogonal, the whitened points rotate
by R as well, so after whitening only an orthogonal transform of the inputs
remains (exact for translations and isotropic scalings).

Outputs computed in whitened coordinates map back exactly:
  log f(x)  = log f_w(z) + log|det whitening|
  score(x)  = score_w(z) @ whitening.T

Coordinates can be padded (a `dim_mask` marks the real ones): padded
coordinates are left at zero and contribute nothing to the log-determinant,
so one (b, n, d_max) array can hold problems of different dimensions.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

# eps in (Cov + eps I) is this fraction of the mean variance, so data in any
# unit (1e-6 or 1e6) is whitened identically.
DEFAULT_RELATIVE_EPS = 1e-6


class AffineNormalizer(NamedTuple):
  """The whitening map fitted on samples; leading batch axes allowed.

  Attributes:
    mean: (..., d) sample mean.
    whitening: (..., d, d) symmetric (Cov + eps I)^{-1/2}.
    unwhitening: (..., d, d) its inverse (Cov + eps I)^{1/2}.
    log_det: (...,) log|det whitening| over the real coordinates.
  """
  mean: jax.Array
  whitening: jax.Array
  unwhitening: jax.Array
  log_det: jax.Array


def fit_normalizer(samples: jax.Array, sample_mask: jax.Array | None = None,
                   dim_mask: jax.Array | None = None,
                   relative_eps: float = DEFAULT_RELATIVE_EPS,
                   sample_weights: jax.Array | None = None) -> AffineNormalizer:
  """Fits the whitening map on samples.

  Args:
    samples: (..., n, d) samples.
    sample_mask: optional (..., n) bool, True for real samples (padding is ignored).
    dim_mask: optional (..., d) bool, True for real coordinates.
    relative_eps: eps as a fraction of the mean variance of the real coordinates.
    sample_weights: optional (..., n) non-negative weights summing to 1 over the real samples:
      then the weighted mean and the weighted covariance sum w (x - mean)^T (x - mean) /
      (1 - sum w^2) (numpy's `aweights`, scipy's weighted KDE; the unbiased covariance for
      equal weights).

  Returns:
    The `AffineNormalizer` (mean, whitening, unwhitening, log_det).
  """
  samples = jnp.asarray(samples)
  n, d = samples.shape[-2:]
  if sample_mask is None:
    sample_mask = jnp.ones(samples.shape[:-1], dtype=bool)
  if dim_mask is None:
    dim_mask = jnp.ones(samples.shape[:-2] + (d,), dtype=bool)
  if sample_weights is None:
    weights = sample_mask.astype(samples.dtype)[..., None]
    count = jnp.sum(weights, axis=-2)
    mean = jnp.sum(samples * weights, axis=-2) / count
    centred = (samples - mean[..., None, :]) * weights
    covariance = jnp.einsum("...ni,...nj->...ij", centred, centred) / (count[..., None] - 1.0)
  else:
    weights = (sample_weights * sample_mask).astype(samples.dtype)[..., None]
    mean = jnp.sum(samples * weights, axis=-2)
    centred = samples - mean[..., None, :]
    covariance = (jnp.einsum("...ni,...n,...nj->...ij", centred, weights[..., 0], centred)
                  / (1.0 - jnp.sum(weights[..., 0]**2, axis=-1))[..., None, None])
  coordinate = dim_mask.astype(samples.dtype)
  real_dims = jnp.sum(coordinate, axis=-1)
  mean_variance = jnp.trace(covariance, axis1=-2, axis2=-1) / real_dims
  eps = relative_eps * mean_variance
  real_block = coordinate[..., :, None] * coordinate[..., None, :]
  eye = jnp.eye(d, dtype=samples.dtype)
  # Padded coordinates get an identity block: whitening leaves their zeros alone.
  regularised = covariance * real_block + eye * (eps[..., None, None] * coordinate[..., None, :]
                                                  + (1.0 - coordinate[..., None, :]))
  eigenvalues, eigenvectors = jnp.linalg.eigh(regularised)
  inv_sqrt = jax.lax.rsqrt(eigenvalues)
  whitening = jnp.einsum("...ik,...k,...jk->...ij", eigenvectors, inv_sqrt, eigenvectors)
  unwhitening = jnp.einsum("...ik,...k,...jk->...ij", eigenvectors, 1.0 / inv_sqrt, eigenvectors)
  log_det = -0.5 * jnp.sum(jnp.log(eigenvalues), axis=-1)
  return AffineNormalizer(mean * coordinate, whitening, unwhitening, log_det)


def whiten(points: jax.Array, normalizer: AffineNormalizer) -> jax.Array:
  """Maps points (..., m, d) to whitened coordinates (..., m, d)."""
  return jnp.einsum("...mi,...ij->...mj", points - normalizer.mean[..., None, :],
                    normalizer.whitening)


def unwhiten_estimate(log_density: jax.Array, score: jax.Array,
                      normalizer: AffineNormalizer) -> tuple[jax.Array, jax.Array]:
  """Maps whitened log-density (..., m) and score (..., m, d) back to data coordinates."""
  log_density = log_density + normalizer.log_det[..., None]
  score = jnp.einsum("...mi,...ji->...mj", score, normalizer.whitening)
  return log_density, score


def whiten_estimate(log_density: jax.Array, score: jax.Array,
                    normalizer: AffineNormalizer) -> tuple[jax.Array, jax.Array]:
  """Inverse of `unwhiten_estimate`: data-coordinate targets to whitened ones."""
  log_density = log_density - normalizer.log_det[..., None]
  score = jnp.einsum("...mi,...ji->...mj", score, normalizer.unwhitening)
  return log_density, score
