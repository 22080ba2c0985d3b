"""Error metrics between an estimate and the truth."""

import jax
import jax.numpy as jnp


def relative_score_mse(estimated: jax.Array, true: jax.Array) -> jax.Array:
  """sum ||s_hat - s||^2 / sum ||s||^2 over all leading axes (the zero predictor scores 1)."""
  return jnp.sum((estimated - true) ** 2) / jnp.sum(true**2)


def score_mse(estimated: jax.Array, true: jax.Array) -> jax.Array:
  """Mean over queries of ||s_hat - s||^2."""
  return jnp.mean(jnp.sum((estimated - true) ** 2, axis=-1))


def log_density_mse(estimated: jax.Array, true: jax.Array) -> jax.Array:
  """Mean squared error of the log-density."""
  return jnp.mean((estimated - true) ** 2)


def grid_mise(
  estimated_log_density: jax.Array, true_log_density: jax.Array, cell_volume: float
) -> jax.Array:
  """Integrated squared error of the densities on a regular grid (d <= 2): sum (f_hat - f)^2 dV.

  The grid and its cell volume dV: `quadrature.regular_grid`.
  """
  return jnp.sum((jnp.exp(estimated_log_density) - jnp.exp(true_log_density)) ** 2) * cell_volume
