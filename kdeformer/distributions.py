"""Densities with exact log-density and score, in JAX.

Each distribution is a NamedTuple (so a pytree that passes through `jit` and
`vmap`) with `sample(key, num)` -> (num, d) and `log_prob_and_score(points)`
-> `Estimate`. Gaussian mixtures may be zero-padded: coordinates beyond `dim`
are exactly zero in samples and scores and do not enter the density, so
mixtures of different dimension share one static shape.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp

from kdeformer import linalg
from kdeformer.estimate import Estimate


class GaussianMixture(NamedTuple):
  """Gaussian mixture with full covariances Sigma_k = scales_k scales_k^T.

  Attributes:
    log_weights: (K,) log mixture weights (-inf for unused components).
    means: (K, D) component means.
    scales: (K, D, D) square roots of the covariances.
    inv_scales: (K, D, D) inverses of `scales`.
    log_det_scales: (K,) log|det scales_k| over the real coordinates.
    dim: () number of real coordinates d <= D.
  """
  log_weights: jax.Array
  means: jax.Array
  scales: jax.Array
  inv_scales: jax.Array
  log_det_scales: jax.Array
  dim: jax.Array

  def sample(self, key: jax.Array, num: int) -> jax.Array:
    """Draws (num, D) points."""
    component_key, noise_key = jax.random.split(key)
    components = jax.random.categorical(component_key, self.log_weights, shape=(num,))
    noise = jax.random.normal(noise_key, (num, self.means.shape[-1]), self.means.dtype)
    noise = noise * (jnp.arange(self.means.shape[-1]) < self.dim)
    return self.means[components] + jnp.einsum("nj,nij->ni", noise, self.scales[components])

  def log_prob_and_score(self, points: jax.Array) -> Estimate:
    """Exact log-density (m,) and score (m, D) at points (m, D)."""
    diff = points[:, None, :] - self.means[None]
    standardised = jnp.einsum("mkj,kij->mki", diff, self.inv_scales)
    component_log_prob = (-0.5 * jnp.sum(standardised**2, axis=-1) - self.log_det_scales
                          - 0.5 * self.dim * jnp.log(2 * jnp.pi) + self.log_weights)
    log_density = jax.nn.logsumexp(component_log_prob, axis=-1)
    responsibilities = jnp.exp(component_log_prob - log_density[:, None])
    component_scores = -jnp.einsum("mki,kij->mkj", standardised, self.inv_scales)
    score = jnp.einsum("mk,mkj->mj", responsibilities, component_scores)
    return Estimate(log_density, score)


def gaussian_mixture(weights, means, covariances) -> GaussianMixture:
  """Builds a mixture from weights (K,), means (K, d) and covariances (K, d, d)."""
  means = jnp.asarray(means, jnp.float32)
  scales = linalg.cholesky(jnp.asarray(covariances, jnp.float32))
  inv_scales = linalg.lower_triangular_inverse(scales)
  log_det = jnp.sum(jnp.log(jnp.diagonal(scales, axis1=-2, axis2=-1)), axis=-1)
  return GaussianMixture(jnp.log(jnp.asarray(weights, jnp.float32)), means, scales, inv_scales,
                         log_det, jnp.asarray(means.shape[-1]))


def random_orthogonal(key: jax.Array, dim: jax.Array, max_dim: int) -> jax.Array:
  """Haar-random orthogonal (max_dim, max_dim) acting on the first `dim` coordinates only."""
  real = jnp.arange(max_dim) < dim
  block = real[:, None] & real[None, :]
  gaussian = jnp.where(block, jax.random.normal(key, (max_dim, max_dim)), jnp.eye(max_dim))
  q, r = jnp.linalg.qr(gaussian)
  q = q * jnp.sign(jnp.diagonal(r))[None, :]
  return jnp.where(block, q, jnp.eye(max_dim))


def sample_mixture_prior(key: jax.Array, dim: jax.Array, *, max_dim: int, min_modes: int,
                         max_modes: int, mean_range: float, min_variance: float,
                         max_variance: float, weight_concentration: float) -> GaussianMixture:
  """Draws one mixture from the training prior, zero-padded to max_dim.

  Modes: uniform in [min_modes, max_modes]; weights: Dirichlet(concentration);
  means: uniform in [-mean_range, mean_range]^d; each component's covariance is
  R diag(v) R^T with v uniform in [min_variance, max_variance] and R Haar-random.
  """
  keys = jax.random.split(key, 5)
  real = (jnp.arange(max_dim) < dim).astype(jnp.float32)
  num_modes = jax.random.randint(keys[0], (), min_modes, max_modes + 1)
  active = jnp.arange(max_modes) < num_modes
  weights = jax.random.dirichlet(keys[1], jnp.full((max_modes,), weight_concentration))
  weights = jnp.where(active, weights, 0.0)
  log_weights = jnp.where(active, jnp.log(weights / jnp.sum(weights)), -jnp.inf)
  means = jax.random.uniform(keys[2], (max_modes, max_dim), minval=-mean_range,
                             maxval=mean_range) * real
  variances = jax.random.uniform(keys[3], (max_modes, max_dim), minval=min_variance,
                                 maxval=max_variance)
  variances = jnp.where(real > 0, variances, 1.0)
  rotations = jax.vmap(random_orthogonal, in_axes=(0, None, None))(
      jax.random.split(keys[4], max_modes), dim, max_dim)
  scales = rotations * jnp.sqrt(variances)[:, None, :]
  inv_scales = jnp.swapaxes(rotations, -1, -2) / jnp.sqrt(variances)[:, :, None]
  log_det = 0.5 * jnp.sum(jnp.log(variances), axis=-1)
  return GaussianMixture(log_weights, means, scales, inv_scales, log_det, jnp.asarray(dim))


def prior_fields(prior) -> tuple:
  """A config's prior knobs (min_modes .. weight_concentration) as a hashable tuple."""
  return (prior.min_modes, prior.max_modes, prior.mean_range, prior.min_variance,
          prior.max_variance, prior.weight_concentration)


@functools.partial(jax.jit, static_argnames=("max_dim", "num_samples", "num_queries", "prior"))
def draw_prior_problem(key: jax.Array, dim, *, max_dim: int, num_samples: int, num_queries: int,
                       prior: tuple) -> tuple[jax.Array, jax.Array, Estimate]:
  """One prior mixture zero-padded to max_dim: samples (n, max_dim), queries (m, max_dim), truth.

  `prior` is `prior_fields(config)`; keys: split(key, 3) -> mixture, samples, queries.
  """
  min_modes, max_modes, mean_range, min_variance, max_variance, concentration = prior
  mixture_key, sample_key, query_key = jax.random.split(key, 3)
  mixture = sample_mixture_prior(
      mixture_key, dim, max_dim=max_dim, min_modes=min_modes, max_modes=max_modes,
      mean_range=mean_range, min_variance=min_variance, max_variance=max_variance,
      weight_concentration=concentration)
  queries = mixture.sample(query_key, num_queries)
  return mixture.sample(sample_key, num_samples), queries, mixture.log_prob_and_score(queries)


class Laplace(NamedTuple):
  """Product of independent Laplace densities: f(x) = prod_i exp(-|x_i - loc_i| / b) / (2b)."""
  loc: jax.Array
  scale: jax.Array

  def sample(self, key: jax.Array, num: int) -> jax.Array:
    return self.loc + self.scale * jax.random.laplace(key, (num, self.loc.shape[-1]))

  def log_prob_and_score(self, points: jax.Array) -> Estimate:
    diff = points - self.loc
    dim = self.loc.shape[-1]
    log_density = -jnp.sum(jnp.abs(diff), axis=-1) / self.scale - dim * jnp.log(2 * self.scale)
    return Estimate(log_density, -jnp.sign(diff) / self.scale)


def laplace(dim: int, scale: float = 1.0) -> Laplace:
  return Laplace(jnp.zeros(dim), jnp.asarray(scale, jnp.float32))


class StudentT(NamedTuple):
  """Multivariate Student-t with location, scale matrix L L^T and degrees of freedom."""
  loc: jax.Array
  scale_tril: jax.Array
  dof: jax.Array

  def sample(self, key: jax.Array, num: int) -> jax.Array:
    normal_key, chi2_key = jax.random.split(key)
    dim = self.loc.shape[-1]
    normal = jax.random.normal(normal_key, (num, dim))
    chi2 = 2.0 * jax.random.gamma(chi2_key, self.dof / 2.0, (num,))
    return self.loc + (normal @ self.scale_tril.T) / jnp.sqrt(chi2 / self.dof)[:, None]

  def log_prob_and_score(self, points: jax.Array) -> Estimate:
    dim = self.loc.shape[-1]
    diff = points - self.loc
    inverse_scale = linalg.lower_triangular_inverse(self.scale_tril)  # No LAPACK: see linalg.
    standardised = diff @ inverse_scale.T
    quad = jnp.sum(standardised**2, axis=-1)
    log_det = jnp.sum(jnp.log(jnp.diagonal(self.scale_tril)))
    log_density = (jsp.gammaln((self.dof + dim) / 2) - jsp.gammaln(self.dof / 2)
                   - 0.5 * dim * jnp.log(self.dof * jnp.pi) - log_det
                   - 0.5 * (self.dof + dim) * jnp.log1p(quad / self.dof))
    precision_diff = standardised @ inverse_scale
    score = -((self.dof + dim) / (self.dof + quad))[:, None] * precision_diff
    return Estimate(log_density, score)


def student_t(dim: int, dof: float = 3.0) -> StudentT:
  return StudentT(jnp.zeros(dim), jnp.eye(dim), jnp.asarray(dof, jnp.float32))
