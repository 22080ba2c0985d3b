"""A density fitted once: samples encoded by the network, then any number of queries.

`Estimator.fit(samples)` returns a `FittedDensity`; queries, sampling and log Z reuse one encoding,
and the Estimator's plain calls (no test-time training, no rotations) are answered by one.
The estimator is passed in, not imported: this module sits below `kdeformer.estimator`.
"""

import jax
import numpy as np

from kdeformer import conditional
from kdeformer import log_normalizer as log_normalizer_lib
from kdeformer import probability as probability_lib
from kdeformer import sampling
from kdeformer import validation
from kdeformer.estimate import Estimate


class FittedDensity:
  """The estimated density of one sample set (n, d), encoded once.

  Attributes:
    estimator: the `kdeformer.Estimator` that encoded the samples.
    problem: the prepared `kdeformer.problem.Problem` (checked, ordered, whitened samples).
    dim: d.
    num_samples: n.
    bounds: the validated `kdeformer.support.Bounds`, or None.
    samples: (n, d) float64, the samples as given (original coordinates and order).
    weights: (n,) the weights normalised to sum 1, or None.
  """

  def __init__(self, estimator, samples, *, weights=None, bounds=None, problem=None):
    """Checks and encodes the samples (see `kdeformer.Estimator.fit`).

    `problem`: an already prepared problem (the Estimator's plain call passes its own, which
    may be a batch (b, n, d)); the samples, weights and bounds are then ignored.

    Raises:
      ValueError: as `Estimator.__call__` for bad samples, weights or bounds.
    """
    self.estimator = estimator
    if problem is None:
      problem = estimator.prepare(samples, weights=weights, bounds=bounds, batched=False)
    self.problem = problem
    self.bounds = problem.bounds
    self.num_samples, self.dim = problem.num_samples, problem.dim
    batch = (lambda x: x) if problem.batched else (lambda x: None if x is None else x[None])
    self._encoded = estimator.encode(batch(problem.samples), batch(problem.weights))
    self._log_z = {}

  # The data as given (float64) and their normalised weights, in the caller's order: what
  # conditionals and probabilities build their proposals and grids from.
  samples = property(lambda self: np.asarray(self.problem.given_samples, np.float64))
  weights = property(lambda self: self.problem.unwhitened[1])

  def __call__(self, queries, *, normalize: bool = False, key: jax.Array | None = None) -> Estimate:
    """Log-density (m,) and score (m, d) at queries (m, d), as `Estimator.__call__`.

    normalize=True subtracts log Z, estimated at the first call with this key and kept
    (the key split of `Estimator.__call__(..., normalize=True, key=key)`, so both give the
    same log Z).
    """
    if normalize:
      validation.check_key(key, "normalize=True estimates log Z by importance sampling")
    prepared = self.problem.prepare_queries(queries)
    points = validation.as_float32(prepared.points)
    out = self.estimator.decode(self._encoded, points if self.problem.batched else points[None])
    if normalize:  # log Z is the same in whitened and data coordinates.
      log_normalizers = validation.as_float32(self._log_normalizers(key))
      out = Estimate(out.log_density - log_normalizers[:, None], out.score)
    if not self.problem.batched:
      out = Estimate(out.log_density[0], out.score[0])
    return self.problem.estimate_back(out, prepared)

  def _log_normalizers(self, key: jax.Array) -> list[float]:
    """log Z per problem (one for a single sample set); a batch folds the index into the
    sampler key, as `Estimator.__call__` does for every other batched call."""
    if not self.problem.batched:
      return [self.log_normalizer(key)]
    sampler_key, _ = log_normalizer_lib.split_key(key)
    return [
      self._log_normalizer(index, jax.random.fold_in(sampler_key, index))
      for index in range(len(self.problem.samples))
    ]

  def log_normalizer(self, key: jax.Array) -> float:
    """log Z of the network's density (importance sampling, computed once per key)."""
    return self._log_normalizer(0, log_normalizer_lib.split_key(key)[0])

  def _log_normalizer(self, index: int, sampler_key: jax.Array) -> float:
    cache_key = (index, bytes(np.asarray(jax.random.key_data(sampler_key)).tobytes()))
    if cache_key not in self._log_z:
      member = self.problem.member(index) if self.problem.batched else self.problem
      encoded = jax.tree.map(lambda x: x[index : index + 1], self._encoded)

      def log_density(points):
        points = validation.as_float32(points)[None]
        return self.estimator.decode(encoded, points).log_density[0]

      self._log_z[cache_key] = log_normalizer_lib.log_normalizer_of_fit(
        log_density, member.samples, sampler_key, member.weights
      )
    return self._log_z[cache_key]

  def sample(
    self,
    num_samples: int,
    *,
    key: jax.Array,
    num_steps: int | None = None,
    step_size: float | None = None,
  ) -> sampling.SampleResult:
    """Draws points from the density (MALA chains on the encoding; `Estimator.sample`).

    Returns:
      `sampling.SampleResult` with points (num_samples, d) in the samples' float dtype.
    """
    result = self.estimator.draw(
      self._encoded, num_samples, key=key, num_steps=num_steps, step_size=step_size
    )
    points = self.problem.points_back(result.points)
    return result._replace(points=points.astype(self.problem.dtype))

  # What users ask of a density (kdeformer.conditional, kdeformer.probability).

  def log_conditional(
    self,
    queries,
    given,
    *,
    normalize: bool = False,
    key: jax.Array | None = None,
    num_draws: int = conditional.DEFAULT_NUM_DRAWS,
  ) -> Estimate:
    """log f(x_rest | x_given) (m,) at full rows (m, d) and its score (m, d - g) over the rest
    (`kdeformer.conditional.log_conditional`; normalize=True integrates to 1 over the rest)."""
    return conditional.log_conditional(
      self, queries, given, normalize=normalize, key=key, num_draws=num_draws
    )

  def sample_conditional(
    self,
    given,
    values,
    num_samples: int,
    *,
    key: jax.Array,
    num_steps: int = conditional.DEFAULT_NUM_STEPS,
  ) -> conditional.ConditionalSample:
    """Draws (num_samples, d) from f(rest | x_given = values (g,))
    (`kdeformer.conditional.sample_conditional`)."""
    return conditional.sample_conditional(
      self, given, values, num_samples, key=key, num_steps=num_steps
    )

  def cdf(self, points) -> np.ndarray:
    """P(X <= x) (m,) at points (m,) or (m, 1), d = 1 (`kdeformer.probability.cdf`)."""
    return probability_lib.cdf(self, points)

  def quantile(self, probabilities) -> np.ndarray:
    """x(p) (m,) for p (m,) in (0, 1), d = 1 (`kdeformer.probability.quantile`)."""
    return probability_lib.quantile(self, probabilities)

  def probability(self, lower, upper) -> float:
    """P(lower < X < upper) for a box (d,), d <= 3 (`kdeformer.probability.probability`)."""
    return probability_lib.probability(self, lower, upper)
