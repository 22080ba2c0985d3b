"""Probabilities of a fitted density: the CDF and quantiles in d = 1, box probabilities in d <= 3.

The density is integrated on a grid in the mapped coordinate z = t(x) of `kdeformer.support`
(x itself without bounds), stretched as z = mean + std sinh(u) with u uniform: nodes are dense
where the samples are and reach `HALFWIDTH` standard deviations. d = 1: the cumulative
trapezoid rule in u, divided by its last value (so the CDF rises from 0 to exactly 1 and is
monotone); d = 2, 3: Gauss-Legendre in u per axis, over the box and over the whole space.
"""

import math

import numpy as np

# Nodes of the 1-D cumulative grid (spacing in u ~ 2 asinh(HALFWIDTH) / NODES).
DEFAULT_CDF_NODES = 4097
# Extent of the grids, in the samples' (mapped) standard deviations from their mean.
HALFWIDTH = 1e4
# Gauss-Legendre nodes per axis of a box probability, by d (the cost is nodes^d queries).
BOX_NODES = {2: 64, 3: 24}
# The box grids reach fewer standard deviations: their nodes are fewer.
BOX_HALFWIDTH = 100.0
MAX_BOX_DIM = 3


def _mapped_moments(density) -> tuple[np.ndarray, np.ndarray]:
  """Mean and standard deviation (d,) of the samples in mapped coordinates (weighted)."""
  samples = density.samples
  if density.bounds is not None:
    samples = density.bounds.forward(samples)
  weights = density.weights
  if weights is None:
    weights = np.full(samples.shape[0], 1.0 / samples.shape[0])
  mean = weights @ samples
  variance = weights @ (samples - mean) ** 2 / (1.0 - np.sum(weights**2))
  return mean, np.sqrt(variance)


def _log_density_in_mapped(density, z: np.ndarray) -> np.ndarray:
  """log f_Z(z) (m,) of Z = t(X) at mapped points z (m, d): log f_X(x) - log|t'(x)|."""
  if density.bounds is None:
    return np.asarray(density(z).log_density, np.float64)
  # The grid's ends map onto the bounds (log f = -inf there): no warnings, no NaN.
  with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
    x = density.bounds.inverse(z)
    log_f = np.asarray(density(x).log_density, np.float64)
    log_f = log_f - np.sum(density.bounds.log_abs_jacobian(x), axis=-1)
  return np.where(np.isnan(log_f), -np.inf, log_f)


def _check_one_dim(density, what: str) -> None:
  if density.dim != 1:
    raise ValueError(
      f"{what} is defined for d = 1; this density has d = {density.dim} (use "
      "probability(lower, upper) for a box in d <= 3, or a conditional)."
    )


def _cdf_table(density) -> tuple[np.ndarray, np.ndarray]:
  """(x nodes (N,) increasing, the CDF at them (N,)), computed once per density."""
  if not hasattr(density, "_cdf_table"):
    mean, std = _mapped_moments(density)
    u = np.linspace(-math.asinh(HALFWIDTH), math.asinh(HALFWIDTH), DEFAULT_CDF_NODES)
    z = mean[0] + std[0] * np.sinh(u)
    log_g = _log_density_in_mapped(density, z[:, None]) + np.log(std[0] * np.cosh(u))
    g = np.exp(log_g - np.max(log_g))
    x = z if density.bounds is None else density.bounds.inverse(z[:, None])[:, 0]
    if x[0] > x[-1]:  # An upper bound alone: t is decreasing; accumulate in x's order.
      x, g = x[::-1], g[::-1]
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (g[1:] + g[:-1]) * (u[1] - u[0]))])
    density._cdf_table = (x, cumulative / cumulative[-1])  # pylint: disable=protected-access
  return density._cdf_table  # pylint: disable=protected-access


def _as_column(points, name: str) -> np.ndarray:
  """(m,) float64 from points (m,) or (m, 1); refuses other shapes and NaN."""
  array = np.asarray(points)
  if array.ndim == 2 and array.shape[1] == 1:
    array = array[:, 0]
  if array.ndim == 0:
    array = array[None]
  if array.ndim != 1 or array.size == 0:
    raise ValueError(f"{name} must have shape (m,) or (m, 1) with m >= 1; got {array.shape}.")
  if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
    raise ValueError(f"{name} must hold real numbers; got dtype {array.dtype}.")
  if np.any(np.isnan(array)):
    raise ValueError(f"{name} contains {int(np.sum(np.isnan(array)))} NaN value(s).")
  return array.astype(np.float64)


def cdf(density, points) -> np.ndarray:
  """P(X <= x) (m,) of a 1-D density at points (m,) or (m, 1); +-inf allowed.

  Monotone, 0 at and below a lower bound (and far below the samples), 1 at and above an upper
  bound (and far above them).
  """
  _check_one_dim(density, "cdf")
  x = _as_column(points, "points")
  nodes, table = _cdf_table(density)
  values = np.interp(x, nodes, table, left=0.0, right=1.0)
  if density.bounds is not None:
    values = np.where(
      x <= density.bounds.lower[0], 0.0, np.where(x >= density.bounds.upper[0], 1.0, values)
    )
  return values


def quantile(density, probabilities) -> np.ndarray:
  """The quantile function x(p) (m,) of a 1-D density at probabilities (m,) in (0, 1).

  The inverse of `cdf` by linear interpolation on its grid; quantiles lie strictly inside
  the support (between two grid nodes inside it).
  """
  _check_one_dim(density, "quantile")
  p = _as_column(probabilities, "probabilities")
  if np.any((p <= 0) | (p >= 1)):
    raise ValueError(
      f"probabilities must lie strictly between 0 and 1 (the quantiles at 0 and "
      f"1 are the ends of the support); got values in [{p.min():g}, "
      f"{p.max():g}]."
    )
  nodes, table = _cdf_table(density)
  # The table is flat where the density underflows: interpolate on its strict increases.
  rising = np.concatenate([[True], np.diff(table) > 0])
  return np.interp(p, table[rising], nodes[rising])


def _axis_rule(
  mean: float, std: float, z_low: float, z_high: float, nodes: int
) -> tuple[np.ndarray, np.ndarray]:
  """Gauss-Legendre nodes z (N,) and log weights (N,) for int_{z_low}^{z_high} dz, in u."""
  limit = math.asinh(BOX_HALFWIDTH)
  with np.errstate(over="ignore", invalid="ignore"):
    u_low = np.clip(np.arcsinh((z_low - mean) / std), -limit, limit)
    u_high = np.clip(np.arcsinh((z_high - mean) / std), -limit, limit)
  x, w = np.polynomial.legendre.leggauss(nodes)
  half = 0.5 * (u_high - u_low)
  u = u_low + half * (x + 1.0)
  return mean + std * np.sinh(u), np.log(w * half * std * np.cosh(u))


def _box_log_integral(density, z_low: np.ndarray, z_high: np.ndarray) -> float:
  """log int over the mapped box [z_low, z_high] (d,) of f_Z, tensor Gauss-Legendre in u."""
  mean, std = _mapped_moments(density)
  nodes = BOX_NODES[density.dim]
  axes, log_weights = zip(
    *[_axis_rule(mean[i], std[i], z_low[i], z_high[i], nodes) for i in range(density.dim)]
  )
  points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, density.dim)
  log_w = sum(np.meshgrid(*log_weights, indexing="ij")).reshape(-1)
  values = _log_density_in_mapped(density, points) + log_w
  top = np.max(values)
  return float(top + math.log(np.sum(np.exp(values - top))))


def _mapped_box(
  density, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
  """The box's ends in mapped coordinates (d,) each, sorted; None if it misses the support."""
  if density.bounds is None:
    return lower, upper
  bounds = density.bounds
  low = np.maximum(lower, bounds.lower)
  high = np.minimum(upper, bounds.upper)
  if np.any(low >= high):
    return None
  ends = []
  for value in (low, high):
    inside = (value > bounds.lower) & (value < bounds.upper)
    safe = np.where(inside, value, bounds.inverse(np.zeros(bounds.dim)))
    mapped = np.where(inside, bounds.forward(safe), 0.0)
    # At a bound (or infinite), the mapped end is infinite, with the map's direction.
    direction = np.sign(bounds.jacobian(bounds.inverse(np.zeros(bounds.dim))))
    at_low_end = (value <= bounds.lower) | (value == -np.inf)
    at_high_end = (value >= bounds.upper) | (value == np.inf)
    mapped = np.where(at_low_end, -np.inf * direction, mapped)
    mapped = np.where(at_high_end, np.inf * direction, mapped)
    ends.append(mapped)
  return np.minimum(*ends), np.maximum(*ends)


def probability(density, lower, upper) -> float:
  """P(lower < X < upper) for a box (d,) each (-inf / +inf allowed), d <= 3.

  d = 1: the difference of `cdf`; d = 2, 3: Gauss-Legendre quadrature over the box divided by
  the same rule over the whole space (BOX_NODES[d]^d queries each).

  Raises:
    ValueError: d > 3 (a tensor grid costs nodes^d queries: sample the density and count
      instead), wrong shapes, NaN, or lower > upper.
  """
  d = density.dim
  if d > MAX_BOX_DIM:
    raise ValueError(
      f"probability() integrates on a tensor grid of nodes^d queries, so it supports d <= "
      f"{MAX_BOX_DIM}; this density has d = {d}. Estimate it by sampling instead: "
      "np.mean(np.all((lo < x) & (x < hi), axis=1)) for x = density.sample(k, key=key).points."
    )
  bounds = []
  for name, value in (("lower", lower), ("upper", upper)):
    array = np.asarray(value, np.float64) if np.ndim(value) else np.full(d, float(value))
    if array.shape != (d,):
      raise ValueError(f"{name} must have shape ({d},), one per coordinate; got {array.shape}.")
    if np.any(np.isnan(array)):
      raise ValueError(f"{name} contains NaN.")
    bounds.append(array)
  lower, upper = bounds
  if np.any(lower > upper):
    raise ValueError(
      f"lower must not exceed upper; got lower {lower.tolist()}, upper {upper.tolist()}."
    )
  if np.any(lower == upper):
    return 0.0
  if d == 1:
    low, high = cdf(density, np.stack([lower, upper]))
    return float(max(high - low, 0.0))
  box = _mapped_box(density, lower, upper)
  if box is None:
    return 0.0
  if not hasattr(density, "_box_log_total"):
    density._box_log_total = _box_log_integral(  # pylint: disable=protected-access
      density, np.full(d, -np.inf), np.full(d, np.inf)
    )
  log_box = _box_log_integral(density, *box)
  log_total = density._box_log_total  # pylint: disable=protected-access
  return float(min(math.exp(log_box - log_total), 1.0))
