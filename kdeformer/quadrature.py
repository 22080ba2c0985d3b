"""Tensor grids and the trapezoid rule: reference integrals log Z = log int exp(log f) for d <= 2.

`grid_log_normalizer` integrates on a box around the samples (`grid_points`); `sinh_grid_points`
reaches heavy tails. The importance sampler for any d is `kdeformer.log_normalizer`.
"""

from collections.abc import Callable
import math

import jax
import jax.numpy as jnp
import numpy as np

from kdeformer import whitening

LogDensityFn = Callable[[jax.Array], jax.Array]


def _trapezoid_log_weights(num_points: int, spacing: float) -> np.ndarray:
  """log weights (num_points,) of the trapezoid rule on equally spaced nodes."""
  weights = np.full(num_points, spacing)
  weights[[0, -1]] *= 0.5
  return np.log(weights)


def tensor_grid(axes: list[np.ndarray]) -> np.ndarray:
  """Points (prod N_i, d) of the product of per-axis nodes axes[i] (N_i,).

  C order of the axis indices (the last axis varies fastest): values reshape to (N_1, ..., N_d).
  """
  return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))


def _tensor_grid(
  axes: list[np.ndarray], log_weights: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
  """The product rule of per-axis nodes and log weights: points (prod N_i, d), log weights."""
  return tensor_grid(axes), sum(np.meshgrid(*log_weights, indexing="ij")).reshape(-1)


def regular_grid(lower, upper, points_per_axis: int) -> tuple[jax.Array, float]:
  """A regular grid over the box [lower, upper] (d = len(lower)); returns (points, cell volume)."""
  lower, upper = (
    jnp.atleast_1d(jnp.asarray(lower, jnp.float32)),
    jnp.atleast_1d(jnp.asarray(upper, jnp.float32)),
  )
  axes = [np.asarray(jnp.linspace(lo, hi, points_per_axis)) for lo, hi in zip(lower, upper)]
  cell = jnp.prod((upper - lower) / (points_per_axis - 1))
  return jnp.asarray(tensor_grid(axes)), float(cell)


def grid_points(
  samples, points_per_dim: int, padding: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
  """A tensor grid over [min - padding * std, max + padding * std] per coordinate.

  Returns:
    (points (points_per_dim^d, d), log trapezoid weights (points_per_dim^d,)), float64 numpy
    (at a timestamp offset, float32 nodes would be 128 apart).
  """
  samples = np.asarray(samples, np.float64)
  d = samples.shape[1]
  std = samples.std(axis=0, ddof=1)
  axes, log_weights = [], []
  for i in range(d):
    axis = np.linspace(
      samples[:, i].min() - padding * std[i], samples[:, i].max() + padding * std[i], points_per_dim
    )
    axes.append(axis)
    log_weights.append(_trapezoid_log_weights(points_per_dim, axis[1] - axis[0]))
  return _tensor_grid(axes, log_weights)


def sinh_grid_points(
  samples, points_per_dim: int, halfwidth: float
) -> tuple[np.ndarray, np.ndarray]:
  """A tensor grid in the samples' whitened coordinates z, uniform in u = asinh(z) per axis.

  The trapezoid rule in u on [-asinh(halfwidth), asinh(halfwidth)] (dz = cosh(u) du),
  mapped to data space by the whitening's inverse (`whitening.fit_host_whitening`, float64):
  nodes are spaced ~du apart near the mean and reach `halfwidth` whitened standard
  deviations, so heavy tails are integrated with a truncation error of their mass beyond that.

  Args:
    samples: (n, d); their mean and covariance place and shape the grid.
    points_per_dim: nodes per axis N (odd: every other node is the rule with (N + 1) / 2).
    halfwidth: the largest |z| per axis, in whitened standard deviations.

  Returns:
    (points (N^d, d), log trapezoid weights (N^d,)), float64 numpy, the points in C order of
    the per-axis node indices (values reshape to (N,) * d).
  """
  d = np.shape(samples)[1]
  host_map = whitening.fit_host_whitening(samples)
  u = np.linspace(-math.asinh(halfwidth), math.asinh(halfwidth), points_per_dim)
  log_weights = _trapezoid_log_weights(points_per_dim, u[1] - u[0]) + np.log(np.cosh(u))
  mesh, log_w = _tensor_grid([np.sinh(u)] * d, [log_weights] * d)
  # dx = |det unwhitening| dz, and log_det is log|det whitening|.
  return host_map.unwhiten(mesh), log_w - float(host_map.log_det)


def grid_log_normalizer(
  log_density_fn: LogDensityFn, samples, points_per_dim: int, padding: float = 3.0
) -> jax.Array:
  """log int exp(log f) by the trapezoid rule on `grid_points` (for d <= 2 in practice).

  Args:
    log_density_fn: maps points (m, d) to log f (m,).
    samples: (n, d); the box is their range widened by padding standard deviations.
    points_per_dim: grid points per coordinate (the cost is points_per_dim^d calls).
    padding: box margin in standard deviations beyond the extreme samples.

  Returns:
    () log Z.
  """
  points, log_weights = grid_points(samples, points_per_dim, padding)
  log_f = np.asarray(log_density_fn(points), np.float64)
  return jax.nn.logsumexp(jnp.asarray(log_f + log_weights, jnp.float32))
