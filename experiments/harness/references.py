"""What the benchmark harnesses measure against: prior mixtures with their truth, and scipy's KDE.

  samples, queries, truth = references.sliced_prior_problem(key, dim, n, m, config.prior)
  score = references.central_difference_score(
      lambda points: scipy_kde.logpdf(points.T), queries, step)

Shared by runtime_benchmark.py (wall time and memory against scipy) and
kde_equivalence.py (the attention construction against scipy).
"""

from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from kdeformer import distributions
from kdeformer.estimate import Estimate

# Mixtures are drawn zero-padded to this many coordinates (the training data's
# layout), so one compiled sampler serves every d <= MAX_DRAW_DIM; slicing to d
# gives the same distribution as drawing in d coordinates.
MAX_DRAW_DIM = 10


def sliced_prior_problem(
  key: jax.Array, dim: int, num_samples: int, num_queries: int, prior: ml_collections.ConfigDict
) -> tuple[jax.Array, jax.Array, Estimate]:
  """One Gaussian mixture of the training prior in d = dim, and its truth at the queries.

  Args:
    key: PRNG key of the mixture, its samples and its queries.
    dim: d.
    num_samples: n.
    num_queries: m, drawn from the same mixture.
    prior: the prior config (experiments/configs/prior.py).

  Returns:
    (samples (n, d), queries (m, d), the exact log-density (m,) and score (m, d)
    at the queries).
  """
  samples, queries, truth = distributions.draw_prior_problem(
    key,
    dim,
    max_dim=max(dim, MAX_DRAW_DIM),
    num_samples=num_samples,
    num_queries=num_queries,
    prior=distributions.prior_fields(prior),
  )
  return samples[:, :dim], queries[:, :dim], Estimate(truth.log_density, truth.score[:, :dim])


def central_difference_score(
  log_density: Callable[[np.ndarray], np.ndarray], queries: np.ndarray, step: float
) -> np.ndarray:
  """The score of a density known only by its log values (scipy's KDE has no score).

  Args:
    log_density: points (k, d) -> log-density (k,), float64.
    queries: (m, d).
    step: the central differences' step along each axis.

  Returns:
    (m, d) float64: (log f(y + step e_i) - log f(y - step e_i)) / (2 step); 2d
    calls of log_density.
  """
  queries = np.asarray(queries, np.float64)
  dim = queries.shape[1]
  score = np.empty_like(queries)
  for axis in range(dim):
    shift = np.zeros(dim)
    shift[axis] = step
    score[:, axis] = (log_density(queries + shift) - log_density(queries - shift)) / (2 * step)
  return score
