"""Exact affine normalisation around the network (whitening and its inverse).

Row vectors: z = (x - mean) @ W with W = (Cov + eps I)^{-1/2} symmetric; outputs map back as
log f(x) = log f_w(z) + log|det W| and score(x) = score_w(z) @ W.T. Padded coordinates
(`dim_mask` False) stay zero and add nothing to the log-determinant.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from kdeformer.estimate import Estimate

# eps in (Cov + eps I) is this fraction of the mean variance, so data in any
# unit (1e-6 or 1e6) is whitened identically.
DEFAULT_RELATIVE_EPS = 1e-6


class AffineMap(NamedTuple):
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


def fit_affine_map(
  samples: jax.Array,
  sample_mask: jax.Array | None = None,
  dim_mask: jax.Array | None = None,
  relative_eps: float = DEFAULT_RELATIVE_EPS,
  sample_weights: jax.Array | None = None,
) -> AffineMap:
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
    The `AffineMap` (mean, whitening, unwhitening, log_det).
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
    covariance = (
      jnp.einsum("...ni,...n,...nj->...ij", centred, weights[..., 0], centred)
      / (1.0 - jnp.sum(weights[..., 0] ** 2, axis=-1))[..., None, None]
    )
  coordinate = dim_mask.astype(samples.dtype)
  real_dims = jnp.sum(coordinate, axis=-1)
  mean_variance = jnp.trace(covariance, axis1=-2, axis2=-1) / real_dims
  eps = relative_eps * mean_variance
  real_block = coordinate[..., :, None] * coordinate[..., None, :]
  eye = jnp.eye(d, dtype=samples.dtype)
  # Padded coordinates get an identity block: whitening leaves their zeros alone.
  regularised = covariance * real_block + eye * (
    eps[..., None, None] * coordinate[..., None, :] + (1.0 - coordinate[..., None, :])
  )
  eigenvalues, eigenvectors = jnp.linalg.eigh(regularised)
  inv_sqrt = jax.lax.rsqrt(eigenvalues)
  whitening = jnp.einsum("...ik,...k,...jk->...ij", eigenvectors, inv_sqrt, eigenvectors)
  unwhitening = jnp.einsum("...ik,...k,...jk->...ij", eigenvectors, 1.0 / inv_sqrt, eigenvectors)
  log_det = -0.5 * jnp.sum(jnp.log(eigenvalues), axis=-1)
  return AffineMap(mean * coordinate, whitening, unwhitening, log_det)


def whiten(points: jax.Array, affine_map: AffineMap) -> jax.Array:
  """Maps points (..., m, d) to whitened coordinates (..., m, d)."""
  return jnp.einsum(
    "...mi,...ij->...mj", points - affine_map.mean[..., None, :], affine_map.whitening
  )


def unwhiten_estimate(
  log_density: jax.Array, score: jax.Array, affine_map: AffineMap
) -> tuple[jax.Array, jax.Array]:
  """Maps whitened log-density (..., m) and score (..., m, d) back to data coordinates."""
  log_density = log_density + affine_map.log_det[..., None]
  score = jnp.einsum("...mi,...ji->...mj", score, affine_map.whitening)
  return log_density, score


def whiten_estimate(
  log_density: jax.Array, score: jax.Array, affine_map: AffineMap
) -> tuple[jax.Array, jax.Array]:
  """Inverse of `unwhiten_estimate`: data-coordinate targets to whitened ones."""
  log_density = log_density - affine_map.log_det[..., None]
  score = jnp.einsum("...mi,...ji->...mj", score, affine_map.unwhitening)
  return log_density, score


class HostWhitening(NamedTuple):
  """The same symmetric whitening map, fitted in float64 on the host (numpy arrays).

  Applied before the float32 pipeline so that units and offsets cannot cost precision; the
  network's own float32 whitening then sees mean ~0 and covariance ~I. Leading batch axes allowed.

  Attributes:
    mean: (..., d) sample mean.
    whitening: (..., d, d) symmetric Cov^{-1/2}.
    unwhitening: (..., d, d) its inverse.
    log_det: (...,) log|det whitening|.
  """

  mean: np.ndarray
  whitening: np.ndarray
  unwhitening: np.ndarray
  log_det: np.ndarray

  def whiten(self, points) -> np.ndarray:
    """(..., m, d) points -> float64 whitened points."""
    centred = np.asarray(points, np.float64) - self.mean[..., None, :]
    return np.einsum("...mi,...ij->...mj", centred, self.whitening)

  def whiten_samples(self, samples, sample_weights=None) -> np.ndarray:
    """`whiten` for the samples the map was fitted on, with those of weight zero (they take
    no part) put at the weighted mean, 0: a far outlier weighted out must not reach the
    float32 pipeline (at 1e100 it overflowed to inf and every estimate became NaN)."""
    whitened = self.whiten(samples)
    if sample_weights is None:
      return whitened
    return np.where(np.asarray(sample_weights)[..., None] > 0, whitened, 0.0)

  def unwhiten(self, whitened) -> np.ndarray:
    """Inverse of `whiten` (float64)."""
    return (
      np.einsum("...mi,...ij->...mj", np.asarray(whitened, np.float64), self.unwhitening)
      + self.mean[..., None, :]
    )

  def unwhiten_estimate(self, estimate: Estimate) -> Estimate:
    """A whitened Estimate (log-density (..., m), score (..., m, d)) in data coordinates,
    mapped in float64 and returned as float32 jax arrays (the estimators' output type)."""
    log_density = np.asarray(estimate.log_density, np.float64) + self.log_det[..., None]
    score = np.einsum("...mi,...ji->...mj", np.asarray(estimate.score, np.float64), self.whitening)
    # Cast on the host and put: jnp.asarray compiles a program for every new shape.
    return Estimate(*(jax.device_put(x.astype(np.float32)) for x in (log_density, score)))


def fit_host_whitening(samples, sample_weights=None) -> HostWhitening:
  """Fits the symmetric whitening Cov^{-1/2} of samples (..., n, d) in float64.

  The covariance is decomposed as D R D (D the standard deviations, R the correlation), so
  coordinates in units 1e12 apart lose nothing: W0 = D^{-1} R^{-1/2} whitens, and the
  symmetric whitening is its polar factor (W0 = U S V^T -> U S U^T), the map the network's
  own whitening would compute in exact arithmetic, so outputs do not change for data that
  float32 handles well.

  Args:
    samples: (..., n, d) samples with a full-rank covariance (`validation.check_samples`).
    sample_weights: optional (..., n) non-negative weights summing to 1 (the weighted mean
      and covariance of `fit_affine_map`).
  """
  samples = np.asarray(samples, np.float64)
  if sample_weights is None:
    mean = samples.mean(axis=-2)
    centred = samples - mean[..., None, :]
    covariance = np.einsum("...ni,...nj->...ij", centred, centred) / (samples.shape[-2] - 1)
  else:
    weights = np.asarray(sample_weights, np.float64)
    mean = np.einsum("...n,...ni->...i", weights, samples)
    centred = samples - mean[..., None, :]
    covariance = (
      np.einsum("...ni,...n,...nj->...ij", centred, weights, centred)
      / (1.0 - np.sum(weights**2, axis=-1))[..., None, None]
    )
  deviation = np.sqrt(np.diagonal(covariance, axis1=-2, axis2=-1))
  correlation = covariance / (deviation[..., :, None] * deviation[..., None, :])
  eigenvalues, eigenvectors = np.linalg.eigh(correlation)
  correlation_inv_sqrt = np.einsum(
    "...ik,...k,...jk->...ij", eigenvectors, eigenvalues**-0.5, eigenvectors
  )
  left, singular, _ = np.linalg.svd(correlation_inv_sqrt / deviation[..., :, None])
  whitening = np.einsum("...ik,...k,...jk->...ij", left, singular, left)
  unwhitening = np.einsum("...ik,...k,...jk->...ij", left, 1.0 / singular, left)
  return HostWhitening(mean, whitening, unwhitening, np.sum(np.log(singular), axis=-1))
