"""A density fitted once: samples encoded by the network, then any number of queries.

`Estimator.fit(samples)` returns a `FittedDensity`; queries, sampling and log Z reuse one encoding.
The estimator is passed in, not imported: this module sits below `kdeformer.estimator`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from kdeformer import conditional
from kdeformer import inference
from kdeformer import log_normalizer as log_normalizer_lib
from kdeformer import probability as probability_lib
from kdeformer import sampling
from kdeformer import support
from kdeformer import validation
from kdeformer import whitening
from kdeformer.estimate import Estimate


class FittedDensity:
  """The estimated density of one sample set (n, d), encoded once.

  Attributes:
    estimator: the `kdeformer.Estimator` that encoded the samples.
    dim: d.
    num_samples: n.
    bounds: the validated `kdeformer.support.Bounds`, or None.
    samples: (n, d) float64, the samples as given (original coordinates and order).
    weights: (n,) the weights normalised to sum 1, or None.
  """

  def __init__(self, estimator, samples, *, weights=None, bounds=None):
    """Checks and encodes the samples (see `kdeformer.Estimator.fit`).

    Raises:
      ValueError: as `Estimator.__call__` for bad samples, weights or bounds.
    """
    self.estimator = estimator
    self.bounds = None
    given_samples, given_weights = samples, weights
    self._dtype = np.result_type(np.asarray(samples).dtype, np.float32)
    if bounds is not None:
      samples, self.bounds = support.map_samples(samples, bounds)
    validation.check_points(samples, "samples", min_rows=inference.MIN_SAMPLES,
                            batched_ok=False)
    estimator.check_sample_count(samples)
    if weights is not None:
      weights = validation.check_weights(weights, np.shape(samples))
    validation.check_samples(samples, min_samples=estimator.min_samples,
                             max_dim=estimator.max_dim, weights=weights)
    self.num_samples, self.dim = np.shape(samples)
    estimator.warn_below_trained_sizes(self.num_samples)
    samples, weights = estimator.in_canonical_order(samples, weights)
    self._whitening = whitening.fit_host_whitening(samples, weights)
    self._whitened_samples = self._whitening.whiten_samples(samples, weights)
    self._weights = weights
    self._encoded = estimator.encode(self._whitened_samples[None],
                                     None if weights is None else weights[None])
    self._log_z = {}
    # The data as given (float64) and their normalised weights: what conditionals and
    # probabilities build their proposals and grids from.
    self.samples = np.asarray(given_samples, np.float64)
    self.weights = (None if given_weights is None
                    else validation.check_weights(given_weights, self.samples.shape))

  def __call__(self, queries, *, normalize: bool = False, key: jax.Array | None = None
               ) -> Estimate:
    """Log-density (m,) and score (m, d) at queries (m, d), as `Estimator.__call__`.

    normalize=True subtracts log Z, estimated at the first call with this key and kept
    (the key split of `Estimator.__call__(..., normalize=True, key=key)`, so both give the
    same log Z).
    """
    if normalize:
      validation.check_key(key, "normalize=True estimates log Z by importance sampling")
    validation.check_points(queries, "queries", dim=self.dim, batched_ok=False)
    if self.bounds is None:
      return self._estimate(queries, normalize, key)
    mapped, _ = support.map_queries(queries, self.bounds)
    return support.pull_back(self._estimate(mapped, normalize, key), queries, self.bounds)

  def _estimate(self, queries, normalize: bool, key) -> Estimate:
    whitened_queries = self._whitening.whiten(queries)
    validation.check_query_distance(whitened_queries)
    out = self._whitened_call(whitened_queries)
    if normalize:  # log Z is the same in whitened and data coordinates.
      out = Estimate(out.log_density - self.log_normalizer(key), out.score)
    return self._whitening.unwhiten_estimate(out)

  def _whitened_call(self, whitened_queries) -> Estimate:
    out = self.estimator.decode(self._encoded, jnp.asarray(whitened_queries, jnp.float32)[None])
    return Estimate(out.log_density[0], out.score[0])

  def log_normalizer(self, key: jax.Array) -> float:
    """log Z of the network's density (importance sampling, computed once per key)."""
    cache_key = bytes(np.asarray(jax.random.key_data(key)).tobytes())
    if cache_key not in self._log_z:
      sampler_key, _ = jax.random.split(key)
      proposal = self._whitened_samples
      if self._weights is not None:  # Samples of weight zero take no part.
        proposal = proposal[self._weights > 0]
      normalizer = log_normalizer_lib.log_normalizer(
          lambda points: self._whitened_call(points).log_density, proposal, sampler_key)
      self._log_z[cache_key] = float(normalizer.log_z)
    return self._log_z[cache_key]

  def sample(self, num_samples: int, *, key: jax.Array, num_steps: int | None = None,
             step_size: float | None = None) -> sampling.SampleResult:
    """Draws points from the density (MALA chains on the encoding; `Estimator.sample`).

    Returns:
      `sampling.SampleResult` with points (num_samples, d) in the samples' float dtype.
    """
    result = self.estimator.draw(self._encoded, num_samples, key=key, num_steps=num_steps,
                                 step_size=step_size)
    points = self._whitening.unwhiten(np.asarray(result.points, np.float64))
    if self.bounds is not None:
      points = self.bounds.inverse(points)
    return result._replace(points=points.astype(self._dtype))

  # What users ask of a density (kdeformer.conditional, kdeformer.probability).

  def log_conditional(self, queries, given, *, normalize: bool = False,
                      key: jax.Array | None = None,
                      num_draws: int = conditional.DEFAULT_NUM_DRAWS) -> Estimate:
    """log f(x_rest | x_given) (m,) at full rows (m, d) and its score (m, d - g) over the rest
    (`kdeformer.conditional.log_conditional`; normalize=True integrates to 1 over the rest)."""
    return conditional.log_conditional(self, queries, given, normalize=normalize, key=key,
                                       num_draws=num_draws)

  def sample_conditional(self, given, values, num_samples: int, *, key: jax.Array,
                         num_steps: int = conditional.DEFAULT_NUM_STEPS
                         ) -> conditional.ConditionalSample:
    """Draws (num_samples, d) from f(rest | x_given = values (g,))
    (`kdeformer.conditional.sample_conditional`)."""
    return conditional.sample_conditional(self, given, values, num_samples, key=key,
                                          num_steps=num_steps)

  def cdf(self, points) -> np.ndarray:
    """P(X <= x) (m,) at points (m,) or (m, 1), d = 1 (`kdeformer.probability.cdf`)."""
    return probability_lib.cdf(self, points)

  def quantile(self, probabilities) -> np.ndarray:
    """x(p) (m,) for p (m,) in (0, 1), d = 1 (`kdeformer.probability.quantile`)."""
    return probability_lib.quantile(self, probabilities)

  def probability(self, lower, upper) -> float:
    """P(lower < X < upper) for a box (d,), d <= 3 (`kdeformer.probability.probability`)."""
    return probability_lib.probability(self, lower, upper)
