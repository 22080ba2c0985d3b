"""Densities with exact log-density and score, in JAX.

Each is a NamedTuple (a pytree) with `sample(key, num)` -> (num, d) and
`log_prob_and_score(points)` -> `Estimate`. Mixtures may be zero-padded beyond `dim`, so
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

  # Both are single programs (jitted below): run eagerly, each of their ~15 operations
  # compiles on its own for every new shape (a second each at d = 16 on a CPU).

  def sample(self, key: jax.Array, num: int) -> jax.Array:
    """Draws (num, D) points."""
    return _sample_mixture(self, key, num)

  def log_prob_and_score(self, points: jax.Array) -> Estimate:
    """Exact log-density (m,) and score (m, D) at points (m, D)."""
    return _mixture_log_prob_and_score(self, points)


@functools.partial(jax.jit, static_argnums=2)
def _sample_mixture(mixture: GaussianMixture, key: jax.Array, num: int) -> jax.Array:
  component_key, noise_key = jax.random.split(key)
  components = jax.random.categorical(component_key, mixture.log_weights, shape=(num,))
  noise = jax.random.normal(noise_key, (num, mixture.means.shape[-1]), mixture.means.dtype)
  noise = noise * (jnp.arange(mixture.means.shape[-1]) < mixture.dim)
  return mixture.means[components] + jnp.einsum("nj,nij->ni", noise, mixture.scales[components])


@jax.jit
def _mixture_log_prob_and_score(mixture: GaussianMixture, points: jax.Array) -> Estimate:
  diff = points[:, None, :] - mixture.means[None]
  standardised = jnp.einsum("mkj,kij->mki", diff, mixture.inv_scales)
  component_log_prob = (
    -0.5 * jnp.sum(standardised**2, axis=-1)
    - mixture.log_det_scales
    - 0.5 * mixture.dim * jnp.log(2 * jnp.pi)
    + mixture.log_weights
  )
  log_density = jax.nn.logsumexp(component_log_prob, axis=-1)
  responsibilities = jnp.exp(component_log_prob - log_density[:, None])
  component_scores = -jnp.einsum("mki,kij->mkj", standardised, mixture.inv_scales)
  score = jnp.einsum("mk,mkj->mj", responsibilities, component_scores)
  return Estimate(log_density, score)


@jax.jit
def _scale_factors(covariances: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Cholesky factors (K, d, d), their inverses and log|det| (K,) of covariances (K, d, d).

  One program: the factorisations are loops unrolled over d (see linalg), so run eagerly every
  step compiles on its own (a 16-D mixture: 8.4 s of CPU to build eagerly, 3.1 s now).
  """
  scales = linalg.cholesky(covariances)
  inv_scales = linalg.lower_triangular_inverse(scales)
  log_det = jnp.sum(jnp.log(jnp.diagonal(scales, axis1=-2, axis2=-1)), axis=-1)
  return scales, inv_scales, log_det


def gaussian_mixture(weights, means, covariances) -> GaussianMixture:
  """Builds a mixture from weights (K,), means (K, d) and covariances (K, d, d)."""
  means = jnp.asarray(means, jnp.float32)
  scales, inv_scales, log_det = _scale_factors(jnp.asarray(covariances, jnp.float32))
  return GaussianMixture(
    jnp.log(jnp.asarray(weights, jnp.float32)),
    means,
    scales,
    inv_scales,
    log_det,
    jnp.asarray(means.shape[-1]),
  )


def random_orthogonal(key: jax.Array, dim: jax.Array, max_dim: int) -> jax.Array:
  """Haar-random orthogonal (max_dim, max_dim) acting on the first `dim` coordinates only."""
  real = jnp.arange(max_dim) < dim
  block = real[:, None] & real[None, :]
  gaussian = jnp.where(block, jax.random.normal(key, (max_dim, max_dim)), jnp.eye(max_dim))
  # Gram-Schmidt, not jnp.linalg.qr: no batched LAPACK call in the training step (see linalg).
  return jnp.where(block, linalg.orthonormal_columns(gaussian), jnp.eye(max_dim))


def sample_mixture_prior(
  key: jax.Array,
  dim: jax.Array,
  *,
  max_dim: int,
  min_modes: int,
  max_modes: int,
  mean_range: float,
  min_variance: float,
  max_variance: float,
  weight_concentration: float,
  loop_free: bool = False,
) -> GaussianMixture:
  """Draws one mixture from the training prior, zero-padded to max_dim.

  Modes: uniform in [min_modes, max_modes]; weights: Dirichlet(concentration);
  means: uniform in [-mean_range, mean_range]^d; each component's covariance is
  R diag(v) R^T with v uniform in [min_variance, max_variance] and R Haar-random.
  loop_free: the Dirichlet without jax.random.gamma's while loop (`loop_free_dirichlet`):
  the same distribution from other random numbers.
  """
  keys = jax.random.split(key, 5)
  real = (jnp.arange(max_dim) < dim).astype(jnp.float32)
  num_modes = jax.random.randint(keys[0], (), min_modes, max_modes + 1)
  active = jnp.arange(max_modes) < num_modes
  if loop_free:
    weights = loop_free_dirichlet(keys[1], weight_concentration, max_modes)
  else:
    weights = jax.random.dirichlet(keys[1], jnp.full((max_modes,), weight_concentration))
  weights = jnp.where(active, weights, 0.0)
  log_weights = jnp.where(active, jnp.log(weights / jnp.sum(weights)), -jnp.inf)
  means = (
    jax.random.uniform(keys[2], (max_modes, max_dim), minval=-mean_range, maxval=mean_range) * real
  )
  variances = jax.random.uniform(
    keys[3], (max_modes, max_dim), minval=min_variance, maxval=max_variance
  )
  variances = jnp.where(real > 0, variances, 1.0)
  rotations = jax.vmap(random_orthogonal, in_axes=(0, None, None))(
    jax.random.split(keys[4], max_modes), dim, max_dim
  )
  scales = rotations * jnp.sqrt(variances)[:, None, :]
  inv_scales = jnp.swapaxes(rotations, -1, -2) / jnp.sqrt(variances)[:, :, None]
  log_det = 0.5 * jnp.sum(jnp.log(variances), axis=-1)
  return GaussianMixture(log_weights, means, scales, inv_scales, log_det, jnp.asarray(dim))


# Marsaglia-Tsang proposals per loop-free gamma draw: all fail with probability ~2e-16
# (docs/DESIGN.md).
GAMMA_PROPOSALS = 12


def loop_free_gamma(key: jax.Array, shape_parameter: jax.Array, shape=None) -> jax.Array:
  """Gamma(a, 1) draws like `jax.random.gamma`, without its data-dependent while loop.

  Marsaglia & Tsang (2000) with a fixed number of proposals per draw, all drawn at once,
  keeping the first accepted; shapes a < 1 use Gamma(a) = Gamma(a + 1) U^(1/a). Fixed
  work, so it vectorises and compiles as straight-line code on every backend.

  Args:
    key: PRNG key.
    shape_parameter: a > 0, broadcast to `shape` (default: its own shape).
  """
  shape = jnp.shape(shape_parameter) if shape is None else tuple(shape)
  a = jnp.broadcast_to(jnp.asarray(shape_parameter, jnp.float32), shape)
  normal_key, uniform_key, boost_key = jax.random.split(key, 3)
  boosted = jnp.where(a < 1.0, a + 1.0, a)
  d = boosted - 1.0 / 3.0
  c = 1.0 / jnp.sqrt(9.0 * d)
  x = jax.random.normal(normal_key, (GAMMA_PROPOSALS,) + shape)
  v = (1.0 + c * x) ** 3
  log_u = jnp.log(jax.random.uniform(uniform_key, (GAMMA_PROPOSALS,) + shape, minval=1e-37))
  safe_v = jnp.where(v > 0, v, 1.0)
  accepted = (v > 0) & (log_u < 0.5 * x**2 + d - d * safe_v + d * jnp.log(safe_v))
  first = jnp.argmax(accepted, axis=0)  # The first accepted proposal (0 if none was).
  draw = d * jnp.take_along_axis(safe_v, first[None], axis=0)[0]
  draw = jnp.where(jnp.any(accepted, axis=0), draw, boosted)  # ~2e-16: the mean instead.
  boost = jax.random.uniform(boost_key, shape, minval=1e-37) ** (1.0 / a)
  return jnp.where(a < 1.0, draw * boost, draw)


def loop_free_dirichlet(key: jax.Array, concentration: float, size: int) -> jax.Array:
  """(size,) Dirichlet(concentration, ..., concentration) as normalised gammas, no loop.

  Concentration 1 (the training prior's) takes exponentials, -log U: exact and cheapest.
  """
  if concentration == 1.0:
    gammas = -jnp.log(jax.random.uniform(key, (size,), minval=1e-37))
  else:
    gammas = loop_free_gamma(key, jnp.full((size,), concentration, jnp.float32))
  return gammas / jnp.sum(gammas)


def prior_fields(prior) -> tuple:
  """A config's prior knobs (min_modes .. weight_concentration) as a hashable tuple."""
  return (
    prior.min_modes,
    prior.max_modes,
    prior.mean_range,
    prior.min_variance,
    prior.max_variance,
    prior.weight_concentration,
  )


@functools.partial(jax.jit, static_argnames=("max_dim", "num_samples", "num_queries", "prior"))
def draw_prior_problem(
  key: jax.Array, dim, *, max_dim: int, num_samples: int, num_queries: int, prior: tuple
) -> tuple[jax.Array, jax.Array, Estimate]:
  """One prior mixture zero-padded to max_dim: samples (n, max_dim), queries (m, max_dim), truth.

  `prior` is `prior_fields(config)`; keys: split(key, 3) -> mixture, samples, queries.
  """
  min_modes, max_modes, mean_range, min_variance, max_variance, concentration = prior
  mixture_key, sample_key, query_key = jax.random.split(key, 3)
  mixture = sample_mixture_prior(
    mixture_key,
    dim,
    max_dim=max_dim,
    min_modes=min_modes,
    max_modes=max_modes,
    mean_range=mean_range,
    min_variance=min_variance,
    max_variance=max_variance,
    weight_concentration=concentration,
  )
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


def standard_student_t_log_prob(squared_norm, dof, dim):
  """log density of the standard d-dimensional Student-t at points of squared norm |z|^2.

  log Gamma((nu + d) / 2) - log Gamma(nu / 2) - (d / 2) log(nu pi)
  - ((nu + d) / 2) log(1 + |z|^2 / nu); the arguments broadcast.
  """
  return (
    jsp.gammaln((dof + dim) / 2)
    - jsp.gammaln(dof / 2)
    - 0.5 * dim * jnp.log(dof * jnp.pi)
    - 0.5 * (dof + dim) * jnp.log1p(squared_norm / dof)
  )


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
    log_density = standard_student_t_log_prob(quad, self.dof, dim) - log_det
    precision_diff = standardised @ inverse_scale
    score = -((self.dof + dim) / (self.dof + quad))[:, None] * precision_diff
    return Estimate(log_density, score)


def student_t(dim: int, dof: float = 3.0) -> StudentT:
  return StudentT(jnp.zeros(dim), jnp.eye(dim), jnp.asarray(dof, jnp.float32))


# ---------------------------------------------------------------------------------------------
# The broad training prior: heavy tails, Laplace-type peaks, skew, scales over orders of
# magnitude and whole-problem rotations, every member with an exact log-density and score.

GAUSSIAN, STUDENT_T, LAPLACE = 0, 1, 2  # Component kinds of a WarpedMixture.


def sinh_arcsinh_inverse(values: jax.Array, skew: jax.Array, tail_weight: jax.Array) -> jax.Array:
  """The monotone warp x = sinh((asinh(u) + skew) / tail_weight), elementwise.

  tail_weight < 1 makes the tails heavier (x grows like |u|^(1/tail_weight)), > 1 lighter;
  skew shifts mass to one side. skew = 0, tail_weight = 1 is the identity.
  """
  return jnp.sinh((jnp.arcsinh(values) + skew) / tail_weight)


def sinh_arcsinh_forward(
  values: jax.Array, skew: jax.Array, tail_weight: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """The inverse of `sinh_arcsinh_inverse` and the log of its derivative: (u, log du/dx)."""
  inner = tail_weight * jnp.arcsinh(values) - skew
  log_derivative = _log_cosh(inner) + jnp.log(tail_weight) - 0.5 * jnp.log1p(values**2)
  return jnp.sinh(inner), log_derivative


def _log_cosh(x: jax.Array) -> jax.Array:
  """log cosh(x) without overflow for large |x|."""
  x = jnp.abs(x)
  return x + jnp.log1p(jnp.exp(-2.0 * x)) - jnp.log(2.0)


class WarpedMixture(NamedTuple):
  """x = rotation @ warp(u): u from a mixture of Gaussian, Student-t and Laplace-type components.

  Component k maps a standard variable z_k to u = means_k + scales_k z_k, with z_k standard
  normal (GAUSSIAN), standard multivariate Student-t with dofs_k degrees of freedom
  (STUDENT_T), or a product of standard Laplace densities exp(-|z_i|) / 2 (LAPLACE: peaked
  centre, exponential tails). The warp acts per coordinate (`sinh_arcsinh_inverse`, exact
  Jacobian) and the rotation is orthogonal, so the log-density is exact and the score is its
  exact gradient (autodiff of a closed form). Zero-padded like GaussianMixture: coordinates
  beyond `dim` are zero in samples and scores (their warp is the identity, their scale 1).

  Attributes:
    log_weights: (K,) log mixture weights (-inf for unused components).
    means: (K, D).
    scales: (K, D, D) component maps (sampling).
    inv_scales: (K, D, D) their inverses (density).
    log_det_scales: (K,) log|det scales_k| over the real coordinates.
    kinds: (K,) int32 component kind (GAUSSIAN, STUDENT_T, LAPLACE).
    dofs: (K,) Student-t degrees of freedom (ignored for the other kinds).
    skew: (D,) warp skew per coordinate (0 beyond dim).
    tail_weight: (D,) warp tail weight per coordinate (1 beyond dim).
    rotation: (D, D) orthogonal, identity beyond dim.
    dim: () number of real coordinates.
  """

  log_weights: jax.Array
  means: jax.Array
  scales: jax.Array
  inv_scales: jax.Array
  log_det_scales: jax.Array
  kinds: jax.Array
  dofs: jax.Array
  skew: jax.Array
  tail_weight: jax.Array
  rotation: jax.Array
  dim: jax.Array

  def sample(self, key: jax.Array, num: int, loop_free: bool = False) -> jax.Array:
    """Draws (num, D) points; loop_free: Student-t scales from `loop_free_gamma`."""
    component_key, normal_key, chi2_key, laplace_key = jax.random.split(key, 4)
    max_dim = self.means.shape[-1]
    real = jnp.arange(max_dim) < self.dim
    components = jax.random.categorical(component_key, self.log_weights, shape=(num,))
    kinds, dofs = self.kinds[components], self.dofs[components]
    normal = jax.random.normal(normal_key, (num, max_dim))
    gamma = loop_free_gamma if loop_free else jax.random.gamma
    chi2 = 2.0 * gamma(chi2_key, dofs / 2.0)
    student = normal / jnp.sqrt(chi2 / dofs)[:, None]
    laplace_noise = jax.random.laplace(laplace_key, (num, max_dim))
    standard = (
      jnp.where(
        (kinds == STUDENT_T)[:, None],
        student,
        jnp.where((kinds == LAPLACE)[:, None], laplace_noise, normal),
      )
      * real
    )
    base = self.means[components] + jnp.einsum("nj,nij->ni", standard, self.scales[components])
    warped = sinh_arcsinh_inverse(base, self.skew, self.tail_weight) * real
    return warped @ self.rotation.T

  def log_prob(self, points: jax.Array) -> jax.Array:
    """Exact log-density (m,) at points (m, D)."""
    unrotated = points @ self.rotation
    base, log_jacobian = sinh_arcsinh_forward(unrotated, self.skew, self.tail_weight)
    real = jnp.arange(self.means.shape[-1]) < self.dim
    log_jacobian = jnp.sum(jnp.where(real, log_jacobian, 0.0), axis=-1)
    standardised = jnp.einsum("mkj,kij->mki", base[:, None, :] - self.means[None], self.inv_scales)
    dim = self.dim.astype(jnp.float32)
    squared = jnp.sum(standardised**2, axis=-1)
    gaussian = -0.5 * squared - 0.5 * dim * jnp.log(2 * jnp.pi)
    dofs = self.dofs[None, :]
    student = standard_student_t_log_prob(squared, dofs, dim)
    laplace_log_prob = -jnp.sum(jnp.abs(standardised), axis=-1) - dim * jnp.log(2.0)
    kinds = self.kinds[None, :]
    component_log_prob = jnp.where(
      kinds == STUDENT_T, student, jnp.where(kinds == LAPLACE, laplace_log_prob, gaussian)
    )
    component_log_prob = component_log_prob - self.log_det_scales + self.log_weights
    return jax.nn.logsumexp(component_log_prob, axis=-1) + log_jacobian

  def log_prob_and_score(self, points: jax.Array) -> Estimate:
    """Exact log-density (m,) and score (m, D) at points (m, D)."""
    log_density, pullback = jax.vjp(self.log_prob, points)
    (score,) = pullback(jnp.ones_like(log_density))
    real = jnp.arange(self.means.shape[-1]) < self.dim
    return Estimate(log_density, score * real)


def sinh_arcsinh(dim: int, skew: float = 1.0, tail_weight: float = 0.7) -> WarpedMixture:
  """A standard normal in `dim` coordinates, each warped by `sinh_arcsinh_inverse` (skewed)."""
  return warped_mixture(
    [1.0], jnp.zeros((1, dim)), jnp.eye(dim)[None], skew=skew, tail_weight=tail_weight
  )


def warped_mixture(
  weights, means, covariances, *, kinds=None, dofs=None, skew=0.0, tail_weight=1.0, rotation=None
) -> WarpedMixture:
  """Builds a WarpedMixture from weights (K,), means (K, d), component covariances (K, d, d).

  `covariances` are those of the Gaussian kind (Student-t and Laplace components use the same
  matrix as their scale, S S^T); kinds (K,) default Gaussian, dofs (K,) default 5; skew and
  tail_weight are scalars or (d,); rotation (d, d) orthogonal, default identity.
  """
  means = jnp.asarray(means, jnp.float32)
  num, dim = means.shape
  scales, inv_scales, log_det = _scale_factors(jnp.asarray(covariances, jnp.float32))
  kinds = jnp.zeros(num, jnp.int32) if kinds is None else jnp.asarray(kinds, jnp.int32)
  dofs = jnp.full(num, 5.0) if dofs is None else jnp.asarray(dofs, jnp.float32)
  rotation = jnp.eye(dim) if rotation is None else jnp.asarray(rotation, jnp.float32)
  return WarpedMixture(
    jnp.log(jnp.asarray(weights, jnp.float32)),
    means,
    scales,
    inv_scales,
    log_det,
    kinds,
    dofs,
    jnp.broadcast_to(jnp.asarray(skew, jnp.float32), (dim,)),
    jnp.broadcast_to(jnp.asarray(tail_weight, jnp.float32), (dim,)),
    rotation,
    jnp.asarray(dim),
  )


def _log_uniform(key, shape, low, high):
  return jnp.exp(jax.random.uniform(key, shape, minval=jnp.log(low), maxval=jnp.log(high)))


def _sinh_arcsinh_warp(keys, real, warp_probability, max_skew, min_tail_weight, max_tail_weight):
  """(skew, tail weight) per coordinate (max_dim,): with probability warp_probability a
  sinh-arcsinh warp of the real coordinates, else the identity (0, 1)."""
  (max_dim,) = real.shape
  warped = jax.random.uniform(keys[0]) < warp_probability
  skew = jnp.where(
    warped & real, jax.random.uniform(keys[1], (max_dim,), minval=-max_skew, maxval=max_skew), 0.0
  )
  tail_weight = jnp.where(
    warped & real, _log_uniform(keys[2], (max_dim,), min_tail_weight, max_tail_weight), 1.0
  )
  return skew, tail_weight


def sample_warped_prior(
  key: jax.Array,
  dim: jax.Array,
  *,
  max_dim: int,
  min_modes: int,
  max_modes: int,
  mean_range: float,
  min_variance: float,
  max_variance: float,
  weight_concentration: float,
  kind_probabilities: tuple[float, float, float],
  min_dof: float,
  max_dof: float,
  min_scale: float,
  max_scale: float,
  warp_probability: float,
  max_skew: float,
  min_tail_weight: float,
  max_tail_weight: float,
  rotation_probability: float,
  base: GaussianMixture | None = None,
) -> WarpedMixture:
  """Draws one WarpedMixture from the broad prior, zero-padded to max_dim.

  As `sample_mixture_prior` (modes, Dirichlet weights, uniform means, R diag(v) R^T shapes),
  and besides: each component's kind from kind_probabilities (Gaussian, Student-t, Laplace),
  Student-t dofs log-uniform in [min_dof, max_dof], an overall component scale log-uniform in
  [min_scale, max_scale] (so the covariances are scale^2 R diag(v) R^T: scales spanning
  max_scale / min_scale), with probability warp_probability a per-coordinate sinh-arcsinh
  warp (skew uniform in [-max_skew, max_skew], tail weight log-uniform in [min_tail_weight,
  max_tail_weight]), and with probability rotation_probability a Haar rotation of the whole
  problem. `base`, a draw of `sample_mixture_prior` with the same fields, replaces this
  function's own (training shares one between the two priors: a problem uses only one).
  """
  keys = jax.random.split(key, 12)
  real = jnp.arange(max_dim) < dim
  gaussian = base
  if gaussian is None:
    gaussian = sample_mixture_prior(
      keys[0],
      dim,
      max_dim=max_dim,
      min_modes=min_modes,
      max_modes=max_modes,
      mean_range=mean_range,
      min_variance=min_variance,
      max_variance=max_variance,
      weight_concentration=weight_concentration,
    )
  kinds = jax.random.categorical(
    keys[1], jnp.log(jnp.asarray(kind_probabilities)), shape=(max_modes,)
  ).astype(jnp.int32)
  dofs = _log_uniform(keys[2], (max_modes,), min_dof, max_dof)
  component_scales = _log_uniform(keys[3], (max_modes,), min_scale, max_scale)
  # The Gaussian prior's shapes, every axis of component k stretched by component_scales[k]
  # (padded axes keep scale 1: their coordinates stay exactly zero).
  stretch = jnp.where(real[None, :], component_scales[:, None], 1.0)
  scales = gaussian.scales * stretch[:, None, :]
  inv_scales = gaussian.inv_scales / stretch[:, :, None]
  log_det = gaussian.log_det_scales + jnp.sum(jnp.log(stretch), axis=-1)
  skew, tail_weight = _sinh_arcsinh_warp(
    keys[4:7], real, warp_probability, max_skew, min_tail_weight, max_tail_weight
  )
  rotated = jax.random.uniform(keys[7]) < rotation_probability
  rotation = jnp.where(rotated, random_orthogonal(keys[8], dim, max_dim), jnp.eye(max_dim))
  return WarpedMixture(
    gaussian.log_weights,
    gaussian.means,
    scales,
    inv_scales,
    log_det,
    kinds,
    dofs,
    skew,
    tail_weight,
    rotation,
    jnp.asarray(dim),
  )


def as_warped(mixture: GaussianMixture) -> WarpedMixture:
  """The same Gaussian mixture as a WarpedMixture (Gaussian kinds, no warp, no rotation)."""
  num, max_dim = mixture.means.shape
  return WarpedMixture(
    mixture.log_weights,
    mixture.means,
    mixture.scales,
    mixture.inv_scales,
    mixture.log_det_scales,
    jnp.zeros(num, jnp.int32),
    jnp.full(num, 5.0),
    jnp.zeros(max_dim),
    jnp.ones(max_dim),
    jnp.eye(max_dim),
    mixture.dim,
  )
