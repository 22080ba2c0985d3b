"""Entropy and mutual information of samples, in nats, with standard errors.

  h = kdeformer.entropy(samples, key=key)                      # Information(estimate, se)
  mi = kdeformer.mutual_information(samples, [0], key=key)     # I(X_0; X_rest)

Both are cross-fitted plug-ins (`kdeformer.functionals`): -mean log f over the samples, each
fold's log f from the density fitted on the other folds. A plug-in is biased: E[-log f_hat(X)]
= H + KL(f || f_hat) > H, and the KL grows with d, so I(A; B) = H(A) + H(B) - H(A, B) comes
out low. The bias correction measures that KL where it is known, on a standard Gaussian of the
same n and d: the estimator whitens its input, so for Gaussian data every term sees the same
problem as the reference and the correction is exact in expectation. Mutual information is
also invariant under monotone maps of each column, so it is estimated on the columns' normal
scores: Gaussian margins leave the fits only the dependence to get right (edges, skew and heavy
tails of the margins otherwise bias the joint's fit more than the marginals').
"""

from collections.abc import Callable
import functools
import math
from typing import NamedTuple

import jax
import numpy as np
from scipy import special
from scipy import stats

from kdeformer import functionals
from kdeformer import validation
from kdeformer.estimate import Estimate

EstimatorFn = Callable[[jax.Array, jax.Array], Estimate]

# Standard-Gaussian reference sets of the bias correction (each costs one more plug-in).
DEFAULT_NUM_REFERENCES = 4


class Information(NamedTuple):
  """An information quantity in nats.

  Attributes:
    estimate: () the estimate.
    standard_error: () its standard error: the samples' part (std of the per-sample terms /
      sqrt(n)) and the bias correction's (across its references), added in quadrature.
  """

  estimate: float
  standard_error: float


@functools.lru_cache(maxsize=1)
def _default_estimator():
  from kdeformer import estimator as estimator_lib  # pylint: disable=g-import-not-at-top

  return estimator_lib.load_pretrained()


def _check_common(samples, key, num_references: int) -> np.ndarray:
  validation.check_points(samples, "samples", min_rows=4, batched_ok=False)
  validation.check_samples(samples)
  validation.check_key(key, "the cross-fitting folds and the Gaussian references are random")
  if int(num_references) < 0:
    raise ValueError(f"num_references must be >= 0; got {num_references}.")
  return np.asarray(samples, np.float64)


def _neg_log(estimator, samples, key, num_folds) -> np.ndarray:
  """Cross-fitted -log f (n,) at every sample."""
  out = functionals.cross_fitted_estimates(estimator, samples, key, num_folds)
  return -np.asarray(out.log_density, np.float64)


def _gaussian_neg_log(points: np.ndarray) -> np.ndarray:
  """-log N(x; 0, I) (n,)."""
  d = points.shape[1]
  return 0.5 * np.sum(points**2, axis=1) + 0.5 * d * math.log(2 * math.pi)


def _combine(terms: np.ndarray, corrections: list[float]) -> Information:
  """Mean of the per-sample terms minus the mean correction, and the standard error."""
  n = terms.size
  sampling_variance = np.var(terms, ddof=1) / n
  if len(corrections) == 0:
    return Information(float(np.mean(terms)), float(math.sqrt(sampling_variance)))
  corrections = np.asarray(corrections, np.float64)
  correction_variance = (
    np.var(corrections, ddof=1) / corrections.size if corrections.size > 1 else 0.0
  )
  return Information(
    float(np.mean(terms) - np.mean(corrections)),
    float(math.sqrt(sampling_variance + correction_variance)),
  )


def entropy(
  samples,
  *,
  key: jax.Array,
  estimator: EstimatorFn | None = None,
  num_folds: int = 2,
  bias_correction: bool = True,
  num_references: int = DEFAULT_NUM_REFERENCES,
) -> Information:
  """Differential entropy H = -E log f(X) (nats) of the samples' distribution.

  Args:
    samples: (n, d) i.i.d. samples.
    key: PRNG key (folds and references).
    estimator: f(samples, queries) -> Estimate; None: the shipped general model.
    num_folds: cross-fitting folds.
    bias_correction: subtract the plug-in's excess on standard Gaussian references of the
      same (n, d) (mean of -log f_hat + log phi over each reference).
    num_references: how many references (their spread enters the standard error).

  Returns:
    Information(estimate, standard_error).
  """
  samples = _check_common(samples, key, num_references)
  estimator = _default_estimator() if estimator is None else estimator
  fold_key, reference_key = jax.random.split(key)
  terms = _neg_log(estimator, samples, fold_key, num_folds)
  corrections = []
  if bias_correction:
    for index in range(int(num_references)):
      draw_key, folds = jax.random.split(jax.random.fold_in(reference_key, index))
      reference = np.asarray(jax.random.normal(draw_key, samples.shape), np.float64)
      excess = _neg_log(estimator, reference, folds, num_folds) - _gaussian_neg_log(reference)
      corrections.append(float(np.mean(excess)))
  return _combine(terms, corrections)


def normal_scores(samples) -> np.ndarray:
  """Each column (n, d) mapped to standard normal quantiles of its ranks (ties: mean rank),
  Phi^-1(rank / (n + 1)): the Gaussian-copula transform, exactly Gaussian margins."""
  ranks = stats.rankdata(samples, axis=0)
  return special.ndtri(ranks / (samples.shape[0] + 1))


def _mutual_terms(estimator, samples, columns_a, columns_b, key, num_folds) -> np.ndarray:
  """Per-sample log f_ab - log f_a - log f_b (n,), the three on the same folds."""
  joint = np.concatenate([columns_a, columns_b])
  return (
    _neg_log(estimator, samples[:, columns_a], key, num_folds)
    + _neg_log(estimator, samples[:, columns_b], key, num_folds)
    - _neg_log(estimator, samples[:, joint], key, num_folds)
  )


def mutual_information(
  samples,
  columns_a,
  columns_b=None,
  *,
  key: jax.Array,
  estimator: EstimatorFn | None = None,
  num_folds: int = 2,
  bias_correction: bool = True,
  copula: bool = True,
  num_references: int = DEFAULT_NUM_REFERENCES,
) -> Information:
  """Mutual information I(X_a; X_b) = H(X_a) + H(X_b) - H(X_a, X_b) in nats.

  Args:
    samples: (n, d) i.i.d. samples; only the columns named take part.
    columns_a: the first group of columns.
    columns_b: the second group, disjoint from the first; None: all the other columns.
    key: PRNG key (folds and references).
    estimator: f(samples, queries) -> Estimate; None: the shipped general model.
    num_folds: cross-fitting folds (the three densities share the fold split).
    bias_correction: subtract the plug-in mutual information of standard Gaussian references
      of the same n and block sizes (whose true value is 0), each on its own fold split:
      exact in expectation for Gaussian data, whatever the covariance.
    copula: estimate on the columns' normal scores (`normal_scores`): MI is invariant under
      monotone maps of each column, and Gaussian margins take the edges, skew and tails the
      fits would misjudge out of the problem (an exponential beside a uniform, independent:
      -0.11 nats without, measured in docs/results_density_queries_cpu.md).
    num_references: how many references.

  Returns:
    Information(estimate, standard_error), in nats. It may be slightly negative when the
    groups are independent.

  Raises:
    ValueError: bad samples, columns (empty, out of range, duplicated, overlapping, or none
      left for columns_b) or key.
  """
  samples = _check_common(samples, key, num_references)
  dim = samples.shape[1]
  columns_a = validation.check_columns(columns_a, dim, "columns_a")
  if columns_b is None:
    columns_b = np.setdiff1d(np.arange(dim), columns_a)
    if columns_b.size == 0:
      raise ValueError(f"columns_a holds all {dim} columns: no columns are left for columns_b.")
  columns_b = validation.check_columns(columns_b, dim, "columns_b")
  overlap = np.intersect1d(columns_a, columns_b)
  if overlap.size:
    raise ValueError(
      f"columns_a and columns_b share column(s) {overlap.tolist()}; the groups must be disjoint."
    )
  estimator = _default_estimator() if estimator is None else estimator
  if copula:
    samples = normal_scores(samples)
  fold_key, reference_key = jax.random.split(key)
  terms = _mutual_terms(estimator, samples, columns_a, columns_b, fold_key, num_folds)
  corrections = []
  if bias_correction:
    size = columns_a.size + columns_b.size
    reference_a = np.arange(columns_a.size)
    reference_b = np.arange(columns_a.size, size)
    for index in range(int(num_references)):
      draw_key, folds = jax.random.split(jax.random.fold_in(reference_key, index))
      reference = np.asarray(jax.random.normal(draw_key, (samples.shape[0], size)), np.float64)
      corrections.append(
        float(
          np.mean(_mutual_terms(estimator, reference, reference_a, reference_b, folds, num_folds))
        )
      )
  return _combine(terms, corrections)
