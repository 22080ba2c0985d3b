"""Plug-in entropy H(f) = -E log f(X) (nats) and Fisher information J(f) = E ||grad log f(X)||^2.

Any `estimator(samples (n, d), queries (m, d)) -> Estimate` is the oracle. The samples are
cross-fitted (each fold evaluated by the estimator fitted on the others): an estimator evaluated
at its own samples is biased. Truths: closed forms (Gaussian) and Monte Carlo (mixtures).
"""

from collections.abc import Callable
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from kdeformer import kde
from kdeformer import validation
from kdeformer.estimate import Estimate

EstimatorFn = Callable[[jax.Array, jax.Array], Estimate]


class Functionals(NamedTuple):
  """Entropy and Fisher information with the standard errors of the sample means.

  Attributes:
    entropy: () -mean log f (nats).
    fisher_information: () mean ||score||^2.
    entropy_standard_error: () std of -log f over the points / sqrt(count).
    fisher_standard_error: () std of ||score||^2 / sqrt(count).
  """

  entropy: float
  fisher_information: float
  entropy_standard_error: float
  fisher_standard_error: float


def functionals_from_values(log_density, score) -> Functionals:
  """Sample means (and their standard errors) of -log f (m,) and ||score||^2 from (m, d)."""
  neg_log = -np.asarray(log_density, np.float64)
  squared = np.sum(np.asarray(score, np.float64) ** 2, axis=-1)
  root = math.sqrt(neg_log.size)
  return Functionals(
    float(neg_log.mean()),
    float(squared.mean()),
    float(neg_log.std(ddof=1) / root),
    float(squared.std(ddof=1) / root),
  )


def cross_fitted_estimates(
  estimator: EstimatorFn, samples, key: jax.Array, num_folds: int = 2
) -> Estimate:
  """Every sample's log-density and score from the estimator fitted on the other folds.

  Args:
    estimator: f(samples, queries) -> Estimate.
    samples: (n, d).
    key: PRNG key of the random fold assignment.
    num_folds: K >= 2; each fit uses about n (K - 1) / K samples.

  Returns:
    Estimate(log_density (n,), score (n, d)) in the order of `samples`.
  """
  validation.check_points(samples, "samples", batched_ok=False)
  if not 2 <= num_folds <= np.shape(samples)[0] // 2:
    raise ValueError(
      f"num_folds must be at least 2 (cross-fitting) and leave every fold 2 "
      f"samples or more, at most n // 2 = {np.shape(samples)[0] // 2}; got "
      f"{num_folds}."
    )
  # Not rounded to float32 here: the estimator whitens the data as given (offsets, units).
  samples = np.asarray(samples)
  n, d = samples.shape
  order = np.asarray(jax.random.permutation(key, n))
  log_density = np.zeros(n, np.float32)
  score = np.zeros((n, d), np.float32)
  for held_out in np.array_split(order, num_folds):
    fit = np.setdiff1d(order, held_out)
    out = estimator(samples[fit], samples[held_out])
    log_density[held_out] = np.asarray(out.log_density)
    score[held_out] = np.asarray(out.score)
  return Estimate(jnp.asarray(log_density), jnp.asarray(score))


def plug_in_functionals(
  estimator: EstimatorFn, samples, key: jax.Array, num_folds: int = 2
) -> Functionals:
  """Cross-fitted plug-in entropy and Fisher information of the samples' density.

  Args:
    estimator: f(samples, queries) -> Estimate (the oracle).
    samples: (n, d) i.i.d. samples.
    key: PRNG key of the fold assignment.
    num_folds: cross-fitting folds (2 = sample splitting with the halves swapped).

  Returns:
    Functionals(entropy, fisher_information, and the standard errors of the means).
  """
  out = cross_fitted_estimates(estimator, samples, key, num_folds)
  return functionals_from_values(out.log_density, out.score)


def sd_kde_estimator(score_estimator: EstimatorFn, **sd_kde_kwargs) -> EstimatorFn:
  """SD-KDE whose one score step uses `score_estimator`'s score, fitted on the same samples.

  Returns f(samples, queries) -> Estimate: each sample moves by (H/2) s(x) with
  s = score_estimator(samples, samples).score, then `kde.sd_kde`'s KDE.
  """

  def estimator(samples, queries=None) -> Estimate:
    return kde.sd_kde(
      samples,
      queries,
      score_fn=lambda points: score_estimator(samples, points).score,
      **sd_kde_kwargs,
    )

  return estimator


def gaussian_entropy(covariance) -> float:
  """0.5 log det(2 pi e Sigma) for Sigma (d, d)."""
  covariance = np.asarray(covariance, np.float64)
  d = covariance.shape[0]
  return float(0.5 * (d * math.log(2 * math.pi * math.e) + np.linalg.slogdet(covariance)[1]))


def gaussian_fisher_information(covariance) -> float:
  """trace(Sigma^-1) for Sigma (d, d)."""
  return float(np.trace(np.linalg.inv(np.asarray(covariance, np.float64))))


def monte_carlo_functionals(
  distribution, key: jax.Array, num_draws: int, chunk_size: int = 16384
) -> Functionals:
  """Entropy and Fisher information of a distribution with exact log-density and score.

  Args:
    distribution: has sample(key, num) -> (num, d) and log_prob_and_score(points)
      -> Estimate (e.g. `distributions.GaussianMixture`).
    key: PRNG key of the fresh draws.
    num_draws: Monte Carlo draws (a multiple of chunk_size, or fewer than it).
    chunk_size: draws evaluated per block (bounds memory).

  Returns:
    Functionals with the Monte Carlo standard errors.
  """
  chunk = min(chunk_size, num_draws)
  if num_draws % chunk:
    raise ValueError(f"num_draws ({num_draws}) must be a multiple of chunk_size ({chunk}).")

  @jax.jit
  def block(k):
    out = distribution.log_prob_and_score(distribution.sample(k, chunk))
    return out.log_density, out.score

  log_density, score = jax.lax.map(block, jax.random.split(key, num_draws // chunk))
  return functionals_from_values(log_density.reshape(-1), score.reshape(num_draws, -1))
