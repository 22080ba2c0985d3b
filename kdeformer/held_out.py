"""Cross-fitted log-likelihoods of the equivariant network's fitted bases: which base generalises.

In-sample likelihood favours the base with the most parameters (a 4-component mixture beats a
2-component one on any data), so a gate that reads it learns a bias instead of a choice
(measured at d = 10-32: the trained gate always picked the 4-component mixture, whose score
error was 2-6x the best base's). Here each fitted base is fitted on part of the samples and
scored on the rest, over FOLDS folds (the sample positions modulo FOLDS), like the kernel
estimate's leave-one-out likelihood. Every fit is rotation-equivariant, so the likelihoods are
rotation-invariant. No parameters and no gradients.
"""

import jax
import jax.numpy as jnp

from kdeformer import linalg
from kdeformer import mixture_fit
from kdeformer import model as model_lib

# Cross-fitting folds: 2 biased the choice toward shrunk fits at d = 100, n = 1024 (half the
# samples fit a full covariance poorly).
FOLDS = 4
# Ridge of the held-out Gaussian fit (whitened units, so relative to the total variance).
GAUSSIAN_RIDGE = 1e-3


def _folds(weights):
  """The training and test weights (K, b, n) of each fold (position mod K), each summing to 1."""
  fold = jnp.arange(weights.shape[-1]) % FOLDS
  test = jnp.stack([weights * (fold == k) for k in range(FOLDS)])
  train = weights[None] - test

  def normalise(part):
    return part / jnp.maximum(jnp.sum(part, axis=-1, keepdims=True), 1e-30)

  return normalise(train), normalise(test)


def _gaussian_fit(samples, weights, dim_mask):
  """The weighted sample mean and covariance, as a one-component mixture: the Gaussian base
  is the sample moments' Gaussian, unshrunk, so its held-out fit is too (a ridge of
  GAUSSIAN_RIDGE keeps a fold with fewer samples than dimensions finite, and poor)."""
  real = dim_mask.astype(samples.dtype)
  mean = jnp.einsum("bn,bnd->bd", weights, samples)
  centred = (samples - mean[:, None]) * real[:, None]
  eye = jnp.eye(samples.shape[-1], dtype=samples.dtype)
  covariance = (
    jnp.einsum("bn,bnd,bne->bde", weights, centred, centred)
    + eye * (GAUSSIAN_RIDGE * real + 1 - real)[:, None]
  )  # Identity on padding.
  factor = linalg.cholesky_loop(covariance)
  log_determinant = 2 * jnp.sum(jnp.log(jnp.diagonal(factor, axis1=-2, axis2=-1)), axis=-1)
  return mixture_fit.GaussianMixture(
    jnp.zeros_like(weights[:, :1]),
    mean[:, None],
    linalg.lower_triangular_inverse_loop(factor)[:, None],
    log_determinant[:, None],
  )


def log_likelihoods(
  samples, weights, dim_mask, local_means, mixture_components, em_steps, tail_base_dofs
):
  """(b, B) held-out mean log-likelihoods of [Gaussian, each mixture, each Student-t base].

  The Student-t bases are the unit-scale ones of the whitened problem, so each is refitted as
  the affine image under the training part's Gaussian fit.

  Args:
    samples: (b, n, D) whitened samples, zero on padded rows and coordinates.
    weights: (b, n) sample weights summing to 1 (zero on padded rows).
    dim_mask: (b, D) True for real coordinates.
    local_means: (b, n, D) the samples' kernel-smoothed positions (the mixtures' initial split).
    mixture_components: components of each mixture base.
    em_steps: EM steps of each mixture fit.
    tail_base_dofs: degrees of freedom of the Student-t bases.
  """
  samples, weights, local_means = jax.lax.stop_gradient((samples, weights, local_means))
  dim = jnp.sum(dim_mask, axis=-1).astype(samples.dtype)

  def fold_log_likelihoods(train, test):
    gaussian = _gaussian_fit(samples, train, dim_mask)
    scores = [mixture_fit.component_log_densities(samples, gaussian, dim)[..., 0]]
    for components in mixture_components:
      mixture = mixture_fit.fit(samples, train, dim_mask, local_means, components, em_steps)
      scores.append(
        jax.nn.logsumexp(mixture_fit.component_log_densities(samples, mixture, dim), axis=-1)
      )
    if tail_base_dofs:
      standardised = jnp.einsum(
        "bde,bne->bnd", gaussian.precision_factors[:, 0], samples - gaussian.means[:, :1]
      )
      tails = model_lib.tail_bases(standardised, dim_mask, tail_base_dofs)[0]
      scores += list(jnp.moveaxis(tails - 0.5 * gaussian.log_determinants[:, None, :1], -1, 0))
    return jnp.stack([jnp.sum(test * score, axis=-1) for score in scores], axis=-1)

  # One traced fold, mapped: the program stays the size of one fit.
  return jnp.mean(jax.lax.map(lambda fold: fold_log_likelihoods(*fold), _folds(weights)), axis=0)
