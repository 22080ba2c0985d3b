"""Densities on a bounded support by an exact change of variables (no retraining).

Each bounded coordinate maps to the real line (log(x - l), log(u - x), or logit with both
bounds); the estimator runs on the mapped problem and its output is mapped back exactly, in
float64 on the host. The support is the open box l < x < u: outside it, log-density -inf, score 0.
"""

from collections.abc import Callable
import dataclasses

import jax
import numpy as np

from kdeformer import validation
from kdeformer.estimate import Estimate


@dataclasses.dataclass(frozen=True, eq=False)
class Bounds:
  """A validated box support: lower (d,) and upper (d,) float64, -inf / +inf where unbounded.

  Build it with `make_bounds`. Every method takes points (..., d) and acts on the last axis.
  """

  lower: np.ndarray
  upper: np.ndarray

  @property
  def dim(self) -> int:
    return self.lower.shape[0]

  @property
  def has_lower(self) -> np.ndarray:
    """(d,) True where the coordinate has a finite lower bound."""
    return np.isfinite(self.lower)

  @property
  def has_upper(self) -> np.ndarray:
    """(d,) True where the coordinate has a finite upper bound."""
    return np.isfinite(self.upper)

  @property
  def is_unbounded(self) -> bool:
    """True when no coordinate has a bound (the map is the identity)."""
    return not (np.any(self.has_lower) or np.any(self.has_upper))

  def contains(self, points) -> np.ndarray:
    """(...,) True where every coordinate lies strictly inside its bounds."""
    x = np.asarray(points, np.float64)
    return np.all((x > self.lower) & (x < self.upper), axis=-1)

  def inside_or_placeholder(self, points) -> tuple[np.ndarray, np.ndarray]:
    """(points (..., d) float64 with those outside the open support replaced by t^{-1}(0),
    inside (...,) bool): a finite stand-in where the answer is replaced by -inf, 0 anyway."""
    x = np.asarray(points, np.float64)
    inside = self.contains(x)
    return np.where(inside[..., None], x, self.inverse(np.zeros(self.dim))), inside

  def _gaps(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x - l and u - x where the bound exists, 1 elsewhere (so logs and ratios vanish there)."""
    below = np.where(self.has_lower, x - np.where(self.has_lower, self.lower, 0.0), 1.0)
    above = np.where(self.has_upper, np.where(self.has_upper, self.upper, 0.0) - x, 1.0)
    return below, above

  def forward(self, points) -> np.ndarray:
    """t(x) (..., d) float64 for points (..., d) strictly inside the support."""
    x = np.asarray(points, np.float64)
    below, above = self._gaps(x)
    # Both bounds: log(x - l) - log(u - x); one bound: the log of its gap; neither: x.
    mapped = np.where(self.has_lower, np.log(below), 0.0) - np.where(
      self.has_upper, np.log(above), 0.0
    )
    only_upper = self.has_upper & ~self.has_lower
    # log(u - x), not its negative: the map for an upper bound alone is decreasing.
    mapped = np.where(only_upper, -mapped, mapped)
    return np.where(self.has_lower | self.has_upper, mapped, x)

  def inverse(self, mapped) -> np.ndarray:
    """x = t^{-1}(z) (..., d) float64, kept strictly inside the support."""
    z = np.asarray(mapped, np.float64)
    lower = np.where(self.has_lower, self.lower, 0.0)
    upper = np.where(self.has_upper, self.upper, 0.0)
    with np.errstate(over="ignore"):
      # expit(z) = 1 / (1 + exp(-z)): overflow gives 0, the right limit.
      both = lower + (upper - lower) / (1.0 + np.exp(-z))
      x = np.where(
        self.has_lower & self.has_upper,
        both,
        np.where(self.has_lower, lower + np.exp(z), np.where(self.has_upper, upper - np.exp(z), z)),
      )
    # Extreme z rounds onto a bound in float64: keep the points in the open support.
    return np.clip(x, np.nextafter(self.lower, np.inf), np.nextafter(self.upper, -np.inf))

  def jacobian(self, points) -> np.ndarray:
    """t'(x) (..., d): the diagonal of the map's Jacobian (negative for an upper bound alone)."""
    below, above = self._gaps(np.asarray(points, np.float64))
    derivative = np.where(self.has_lower, 1.0 / below, 0.0) + np.where(
      self.has_upper, 1.0 / above, 0.0
    )
    only_upper = self.has_upper & ~self.has_lower
    return np.where(
      self.has_lower | self.has_upper, np.where(only_upper, -derivative, derivative), 1.0
    )

  def log_abs_jacobian(self, points) -> np.ndarray:
    """log|t'(x)| (..., d) per coordinate (0 where unbounded)."""
    below, above = self._gaps(np.asarray(points, np.float64))
    # Both bounds: log(u - l) - log(x - l) - log(u - x), written so as not to cancel.
    width = np.where(self.has_lower & self.has_upper, self.upper - self.lower, 1.0)
    return np.log(width) - np.log(below) - np.log(above)

  def log_abs_jacobian_gradient(self, points) -> np.ndarray:
    """d/dx_i log|t_i'(x_i)| (..., d): -1 / (x - l) + 1 / (u - x) over the bounds present."""
    below, above = self._gaps(np.asarray(points, np.float64))
    return np.where(self.has_lower, -1.0 / below, 0.0) + np.where(self.has_upper, 1.0 / above, 0.0)


def _as_bound(value, dim: int, name: str, default: float) -> np.ndarray:
  """One side of a bounds pair as (d,) float64 (None: unbounded; scalars broadcast)."""
  if value is None:
    return np.full(dim, default)
  array = np.asarray(value, np.float64)
  if array.ndim == 0:
    return np.full(dim, float(array))
  if array.shape != (dim,):
    raise ValueError(
      f"bounds' {name} has shape {array.shape}; expected a scalar or shape "
      f"(d,) = ({dim},), one bound per coordinate (-inf / +inf or None where "
      "unbounded)."
    )
  return array


def make_bounds(bounds, dim: int) -> Bounds:
  """Validates bounds=(lower, upper) for d = dim coordinates and broadcasts them to (d,).

  Args:
    bounds: a `Bounds` of dimension d, or a pair (lower, upper) of scalars or (d,) arrays;
      -inf / +inf (or None) where a coordinate is unbounded on that side.
    dim: d.

  Raises:
    ValueError: not a pair, a wrong shape, NaN, or lower >= upper in some coordinate.
  """
  if isinstance(bounds, Bounds):
    if bounds.dim != dim:
      raise ValueError(f"bounds are for d = {bounds.dim} coordinates but the data have d = {dim}.")
    return bounds
  if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__") or len(bounds) != 2:
    raise ValueError(
      f"bounds must be a pair (lower, upper) of scalars or (d,) arrays, e.g. "
      f"bounds=(0, np.inf) for positive data; got {bounds!r}."
    )
  lower = _as_bound(bounds[0], dim, "lower", -np.inf)
  upper = _as_bound(bounds[1], dim, "upper", np.inf)
  if np.any(np.isnan(lower)) or np.any(np.isnan(upper)):
    raise ValueError("bounds contain NaN; use -inf / +inf (or None) for an unbounded side.")
  bad = np.flatnonzero(lower >= upper)
  if bad.size:
    i = int(bad[0])
    raise ValueError(
      f"bounds need lower < upper in every coordinate; coordinate {i} has "
      f"lower = {lower[i]:g} >= upper = {upper[i]:g}."
    )
  # Own read-only copies: a frozen description the caller's arrays cannot change later.
  lower, upper = np.array(lower), np.array(upper)
  lower.setflags(write=False)
  upper.setflags(write=False)
  return Bounds(lower=lower, upper=upper)


def check_samples_inside(samples, bounds: Bounds) -> None:
  """Raises a ValueError naming the coordinate and the bound when a sample is not inside."""
  x = np.asarray(samples, np.float64)
  for side, outside, bound in (
    ("lower", x <= bounds.lower, bounds.lower),
    ("upper", x >= bounds.upper, bounds.upper),
  ):
    counts = np.sum(outside.reshape(-1, bounds.dim), axis=0)
    if not np.any(counts):
      continue
    i = int(np.flatnonzero(counts)[0])
    values = x[..., i][outside[..., i]]
    extreme = values.min() if side == "lower" else values.max()
    on_bound = bool(np.all(values == bound[i]))
    where = "exactly on" if on_bound else "on or beyond"
    hint = (
      " The map to the real line sends a point on its bound to infinity: shift the bound "
      "slightly past the data (e.g. lower = -1e-3 times the data's scale for durations "
      "recorded as 0), or add that offset to the samples."
      if on_bound
      else ""
    )
    raise ValueError(
      f"{int(counts[i])} sample(s) lie {where} the {side} bound {bound[i]:g} of "
      f"coordinate {i} (the most extreme: {extreme:g}); samples must lie strictly "
      f"inside the support lower < x < upper.{hint}"
    )


def map_samples(samples, bounds) -> tuple[np.ndarray, Bounds]:
  """Checks samples (..., n, d) against bounds and returns (t(samples) float64, Bounds)."""
  validation.check_points(samples, "samples")
  bounds = make_bounds(bounds, np.shape(samples)[-1])
  check_samples_inside(samples, bounds)
  return bounds.forward(samples), bounds


def map_queries(queries, bounds: Bounds) -> tuple[np.ndarray, np.ndarray]:
  """(t(queries) (..., m, d) float64, inside (..., m) bool); queries outside map to 0 (finite)."""
  safe, inside = bounds.inside_or_placeholder(queries)
  return bounds.forward(safe), inside


def pull_back(mapped: Estimate, queries, bounds: Bounds) -> Estimate:
  """The Estimate at queries (..., m, d) of X, from the Estimate at t(queries) of Z = t(X).

  Computed in float64 and returned in the mapped estimate's dtype (jax arrays if it held
  jax arrays). Queries outside the open support get log-density -inf and score 0.

  Args:
    mapped: Estimate of Z at t(queries): log_density (..., m), score (..., m, d).
    queries: (..., m, d) in the original coordinates.
    bounds: the support.
  """
  x, inside = bounds.inside_or_placeholder(queries)
  log_density = np.asarray(mapped.log_density, np.float64)
  score = np.asarray(mapped.score, np.float64)
  log_density = np.where(inside, log_density + np.sum(bounds.log_abs_jacobian(x), axis=-1), -np.inf)
  score = np.where(
    inside[..., None], bounds.jacobian(x) * score + bounds.log_abs_jacobian_gradient(x), 0.0
  )
  dtype = np.asarray(mapped.log_density).dtype
  # device_put, not jnp.asarray: that compiles a program for every new shape.
  wrap = jax.device_put if isinstance(mapped.log_density, jax.Array) else np.asarray
  with np.errstate(over="ignore"):  # A score beyond float32's range (x - l ~ 1e-300) is +-inf.
    return Estimate(wrap(log_density.astype(dtype)), wrap(score.astype(dtype)))


def estimate_with_bounds(
  estimate_fn: Callable[..., Estimate], samples, queries, bounds, **options
) -> Estimate:
  """`estimate_fn(samples, queries, **options)` on the support `bounds`, by change of variables.

  Args:
    estimate_fn: any estimator of the package's call shape (the transformer, a KDE), called
      once on the mapped samples and queries; options such as weights, rotations or
      normalize=True act on the mapped problem (its log Z is the original's: the change of
      variables preserves the integral).
    samples: (n, d) or (b, n, d), strictly inside the support.
    queries: (m, d) or (b, m, d); None: the samples.
    bounds: (lower, upper), see `make_bounds`.

  Returns:
    Estimate of X at the queries: log-density (..., m) (-inf outside the support) and score
    (..., m, d) (0 outside).
  """
  mapped_samples, bounds = map_samples(samples, bounds)
  queries = samples if queries is None else queries
  validation.check_points(queries, "queries", dim=bounds.dim)
  mapped_queries, _ = map_queries(queries, bounds)
  # float64 in: the estimator rounds to its own precision once (float32 for the model).
  mapped = estimate_fn(mapped_samples, mapped_queries, **options)
  return pull_back(mapped, queries, bounds)
