"""The boundary: a call's input checked, ordered and whitened once, as a `Problem`.

Every entry point (the Estimator, FittedDensity, the scikit-learn estimators, the KDE family,
log Z) prepares its samples here, as scikit-learn's `validate_data` does, and every estimator
below assumes valid samples in float64-whitened coordinates. `Problem.run` is the one
affine-equivariant wrapper: whiten the queries, compute, map the estimate back. Bounds
(`kdeformer.support`) are mapped on the way in and pulled back on the way out.
"""

from collections.abc import Callable
import dataclasses

import jax
import numpy as np

from kdeformer import sample_order
from kdeformer import support
from kdeformer import validation
from kdeformer import whitening
from kdeformer.estimate import Estimate

# The fewest samples the network answers for: the covariance and the attention need a few.
MIN_MODEL_SAMPLES = 4
# The fewest samples of a KDE: two points have a covariance (n > d is checked too).
MIN_KDE_SAMPLES = 2


@dataclasses.dataclass(frozen=True)
class Rules:
  """What an estimator accepts: the count rules and the shape rules, in one place.

  Attributes:
    min_samples: the fewest samples; a model's is max(MIN_MODEL_SAMPLES, its measured one).
    measured: min_samples is a model's measured minimum (below it its estimate was measured
      not to be a density), and the error says so.
    trained_from: the fewest samples the model was trained with (fewer: a warning); 0: none.
    max_dim: the largest d; 0: any d.
    batched: (b, n, d) problems are accepted beside (n, d).
    max_query_distance: queries farther (whitened norm) are refused; None: no check.
    key_budget: beyond this many samples they are put in canonical order (the first k are the
      self-attention keys, so the order must not depend on the input's); 0: never.
  """

  min_samples: int = MIN_KDE_SAMPLES
  measured: bool = False
  trained_from: int = 0
  max_dim: int = 0
  batched: bool = False
  max_query_distance: float | None = None
  key_budget: int = 0

  @classmethod
  def for_model(cls, model_config) -> "Rules":
    """The rules of a network with this `kdeformer.model.ModelConfig`."""
    min_samples = max(MIN_MODEL_SAMPLES, model_config.min_samples)
    return cls(
      min_samples=min_samples,
      measured=model_config.min_samples > MIN_MODEL_SAMPLES,
      trained_from=max(MIN_MODEL_SAMPLES, model_config.smallest_trained_size),
      max_dim=model_config.max_dim,
      batched=True,
      max_query_distance=validation.MAX_QUERY_DISTANCE,
      key_budget=model_config.max_self_attention_keys,
    )


KDE_RULES = Rules()


def check_sample_count(samples, rules: Rules) -> None:
  """Refuses samples (n, d) or (b, n, d) of the wrong rank, kind, dimension or count."""
  measured = rules.measured and not validation.is_traced(samples)
  validation.check_points(
    samples,
    "samples",
    batched_ok=rules.batched,
    max_dim=rules.max_dim or None,
    min_rows=MIN_MODEL_SAMPLES if measured else rules.min_samples,
  )
  num_samples, dim = np.shape(samples)[-2:]
  if measured and num_samples < rules.min_samples:
    hint = (
      " It has more columns than rows: did you pass a transposed (d, n) array?"
      if dim > num_samples
      else ""
    )
    raise ValueError(
      f"n = {num_samples} samples is below the {rules.min_samples} this model answers for: "
      "with fewer, its estimate was measured not to be a density (README, 'Small "
      "samples'). Pass more samples, or use kdeformer.kde.gaussian_kde, which answers "
      f"from n = d + 1.{hint}"
    )


@dataclasses.dataclass(frozen=True)
class Queries:
  """Queries prepared against a problem.

  Attributes:
    points: (m, d) or (b, m, d) in the problem's whitened coordinates (float64), or as
      given under tracing.
    given: the queries as given (data coordinates), for the pull-back of bounds.
  """

  points: np.ndarray | jax.Array
  given: np.ndarray | jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
  """Samples checked, in canonical order and whitened in float64 (build with `prepare`).

  Attributes:
    samples: (n, d) or (b, n, d) float64 whitened samples (weight-zero ones at the mean);
      under tracing, the samples as given.
    weights: (n,) or (b, n) weights normalised to sum 1, in the same order, or None.
    whitening: the float64 `whitening.HostWhitening`, or None under tracing.
    bounds: the `support.Bounds` the samples were mapped with, or None.
    rules: the `Rules` they were checked against.
    given_samples: the samples as the caller gave them: the default queries.
    unwhitened: (samples, weights) checked and mapped, in the caller's order, not whitened:
      the problem for queries traced by jax (see `run`).
    dtype: the float dtype of the given samples (float32 at least), for drawn points.
  """

  samples: np.ndarray | jax.Array
  weights: np.ndarray | None
  whitening: whitening.HostWhitening | None
  bounds: support.Bounds | None
  rules: Rules
  given_samples: np.ndarray | jax.Array
  unwhitened: tuple
  dtype: np.dtype

  @property
  def batched(self) -> bool:
    return np.ndim(self.samples) == 3

  @property
  def num_samples(self) -> int:
    return np.shape(self.samples)[-2]

  @property
  def dim(self) -> int:
    return np.shape(self.samples)[-1]

  def member(self, index: int) -> "Problem":
    """Problem `index` of a batch, as an unbatched problem."""
    take = lambda x: None if x is None else x[index]
    affine = (
      None
      if self.whitening is None
      else whitening.HostWhitening(*(x[index] for x in self.whitening))
    )
    return dataclasses.replace(
      self,
      samples=self.samples[index],
      weights=take(self.weights),
      whitening=affine,
      given_samples=self.given_samples[index],
      unwhitened=tuple(map(take, self.unwhitened)),
    )

  def without_whitening(self) -> "Problem":
    """The problem as given (checked, mapped, not ordered or whitened): for values that jax
    traces, which the float64 host whitening cannot see."""
    samples, weights = self.unwhitened
    return dataclasses.replace(self, samples=samples, weights=weights, whitening=None)

  def prepare_queries(self, queries) -> Queries:
    """Checks queries ((m, d) or (b, m, d) as the samples; None: the samples) and whitens them.

    Raises:
      ValueError: NaN/inf, a wrong rank or d, a batch that does not match the samples', or
        (for the model) queries absurdly far from the samples (`validation.MAX_QUERY_DISTANCE`).
    """
    if queries is None:
      queries = self.given_samples
    validation.check_points(queries, "queries", dim=self.dim, batched_ok=self.rules.batched)
    if np.ndim(queries) != np.ndim(self.samples):
      raise ValueError(
        f"samples have shape {np.shape(self.samples)} and queries {np.shape(queries)}: both "
        "must be unbatched (n, d), (m, d) or batched (b, n, d), (b, m, d)."
      )
    if self.batched and np.shape(self.samples)[0] != np.shape(queries)[0]:
      raise ValueError(
        f"samples hold {np.shape(self.samples)[0]} problems but queries "
        f"{np.shape(queries)[0]}; the batch sizes must match."
      )
    points = queries if self.bounds is None else support.map_queries(queries, self.bounds)[0]
    if self.whitening is None or validation.is_traced(points):
      return Queries(points, queries)
    points = self.whitening.whiten(points)
    if self.rules.max_query_distance is not None:
      validation.check_query_distance(points, self.rules.max_query_distance)
    return Queries(points, queries)

  def estimate_back(self, estimate: Estimate, queries: Queries) -> Estimate:
    """A whitened estimate at the queries in data coordinates (float32 jax arrays)."""
    if self.whitening is not None:
      estimate = self.whitening.unwhiten_estimate(estimate)
    if self.bounds is None:
      return estimate
    return support.pull_back(estimate, queries.given, self.bounds)

  def points_back(self, points) -> np.ndarray:
    """Whitened points (..., d) -> float64 points of the data (inside the bounds, if any)."""
    points = np.asarray(points, np.float64)
    if self.whitening is not None:
      points = self.whitening.unwhiten(points)
    return points if self.bounds is None else self.bounds.inverse(points)

  def run(self, estimate_fn: Callable[..., Estimate], queries) -> Estimate:
    """The affine-equivariant wrapper: estimate_fn(whitened samples, whitened queries,
    weights) -> whitened Estimate, run at `queries` (None: the samples) in data coordinates.

    Queries traced while the samples are concrete (jax.grad with respect to the queries)
    skip the whitening: the float32 computation on the problem as given.
    """
    prepared = self.prepare_queries(queries)
    if self.whitening is not None and validation.is_traced(prepared.points):
      return self.without_whitening().run(estimate_fn, queries)
    out = estimate_fn(self.samples, prepared.points, self.weights)
    return self.estimate_back(out, prepared)


def prepare(samples, *, weights=None, bounds=None, rules: Rules = KDE_RULES) -> Problem:
  """Checks samples (and weights, bounds) against the rules and whitens them in float64.

  Args:
    samples: (n, d), or (b, n, d) where the rules allow batches; numpy or jax, any float.
    weights: optional (n,) or (b, n) non-negative weights (scipy's convention: normalised to
      sum 1; weight-zero samples take no part).
    bounds: optional support (lower, upper) (`kdeformer.support.make_bounds`): the samples
      are mapped to the real line first.
    rules: what the estimator accepts (`Rules.for_model(config)` for a network).

  Raises:
    ValueError: NaN/inf, a wrong rank, d or dtype, too few samples, a degenerate covariance,
      bad weights or bad bounds, each with a message that says what is wrong.
  """
  dtype = np.result_type(
    np.asarray(samples).dtype if not validation.is_traced(samples) else samples.dtype, np.float32
  )
  given_samples = samples
  if bounds is not None:
    samples, bounds = support.map_samples(samples, bounds)
  check_sample_count(samples, rules)
  if weights is not None:
    weights = validation.check_weights(weights, np.shape(samples))
  validation.check_sample_spread(samples, weights=weights)
  unwhitened = (samples, weights)
  if validation.is_traced(samples):
    return Problem(samples, weights, None, bounds, rules, given_samples, unwhitened, dtype)
  samples = np.asarray(samples, np.float64)
  if 0 < rules.key_budget < samples.shape[-2]:
    order = sample_order.canonical_order(samples)
    samples = np.take_along_axis(samples, order[..., None], axis=-2)
    if weights is not None:
      weights = np.take_along_axis(weights, order, axis=-1)
  affine = whitening.fit_host_whitening(samples, weights)
  return Problem(
    affine.whiten_samples(samples, weights),
    weights,
    affine,
    bounds,
    rules,
    given_samples,
    unwhitened,
    dtype,
  )
