"""Drawing new points from an estimated density: Metropolis-adjusted Langevin (MALA) chains.

Needs only the log-density (unnormalised is fine) and score. The step size adapts during the
first half of the steps (burn-in) and is then held; each chain contributes its last state.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from kdeformer import validation

# Roberts & Rosenthal (1998): the acceptance rate of an optimally scaled MALA chain.
TARGET_ACCEPTANCE = 0.574
# Robbins-Monro gain of the log step size per burn-in step.
ADAPTATION_RATE = 0.1
DEFAULT_NUM_STEPS = 100

# (chains, D) points -> (log-density (chains,), score (chains, D)).
Target = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


class SampleResult(NamedTuple):
  """Points drawn from an estimated density.

  Attributes:
    points: (num_samples, d) the chains' last states, in data coordinates.
    acceptance_rate: () mean MALA acceptance over the chains after burn-in.
    step_size: () the adapted step size (in the coordinates the chains ran in).
    num_steps: total MALA steps per chain (half of them burn-in).
  """

  points: jax.Array
  acceptance_rate: jax.Array
  step_size: jax.Array
  num_steps: int


def _log_proposal(to, frm, frm_score, step_size):
  """log q(to | frm) up to a constant: Gaussian around frm + (eps^2 / 2) score(frm)."""
  mean = frm + 0.5 * step_size**2 * frm_score
  return -jnp.sum((to - mean) ** 2, axis=-1) / (2.0 * step_size**2)


def mala(
  target: Target,
  initial: jax.Array,
  key: jax.Array,
  *,
  num_steps: int,
  step_size: float | jax.Array,
  coordinate_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Runs independent MALA chains from `initial` (chains, D).

  Args:
    target: log-density and score of the target at a (chains, D) batch of points.
    initial: (chains, D) starting points.
    key: PRNG key of the proposals and acceptances.
    num_steps: steps per chain; the first num_steps // 2 adapt the step size.
    step_size: initial step size eps.
    coordinate_mask: optional (D,) 1 for coordinates that move (padded ones stay put).

  Returns:
    (final states (chains, D), acceptance rate after burn-in (), final step size ()).
  """
  burn_in = num_steps // 2
  mask = jnp.ones(initial.shape[-1]) if coordinate_mask is None else coordinate_mask
  log_density, score = target(initial)

  def step(index, carry):
    points, log_density, score, log_step, accepted = carry
    step_size = jnp.exp(log_step)
    noise_key, accept_key = jax.random.split(jax.random.fold_in(key, index))
    noise = jax.random.normal(noise_key, points.shape) * mask
    proposal = points + 0.5 * step_size**2 * score + step_size * noise
    proposal_log_density, proposal_score = target(proposal)
    log_ratio = (
      proposal_log_density
      - log_density
      + _log_proposal(points, proposal, proposal_score, step_size)
      - _log_proposal(proposal, points, score, step_size)
    )
    log_ratio = jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)
    accept = jnp.log(jax.random.uniform(accept_key, log_density.shape)) < log_ratio
    points = jnp.where(accept[:, None], proposal, points)
    log_density = jnp.where(accept, proposal_log_density, log_density)
    score = jnp.where(accept[:, None], proposal_score, score)
    rate = jnp.mean(accept.astype(jnp.float32))
    in_burn_in = index < burn_in
    log_step = jnp.where(
      in_burn_in, log_step + ADAPTATION_RATE * (rate - TARGET_ACCEPTANCE), log_step
    )
    accepted = accepted + jnp.where(in_burn_in, 0.0, rate)
    return points, log_density, score, log_step, accepted

  carry = (
    initial,
    log_density,
    score,
    jnp.log(jnp.asarray(step_size, jnp.float32)),
    jnp.float32(0.0),
  )
  points, _, _, log_step, accepted = jax.lax.fori_loop(0, num_steps, step, carry)
  return points, accepted / max(num_steps - burn_in, 1), jnp.exp(log_step)


def check_draw_arguments(
  num_samples, key, num_steps=None, step_size=None, *, caller: str = "sample()"
) -> None:
  """Raises a ValueError for a sampling call's bad arguments (see `Estimator.sample`)."""
  if int(num_samples) < 1:
    raise ValueError(f"num_samples={num_samples}: draw at least one point.")
  if num_steps is not None and int(num_steps) < 2:
    raise ValueError(f"num_steps={num_steps}: at least 2 (half of them burn-in).")
  if step_size is not None and not step_size > 0:
    raise ValueError(f"step_size={step_size}: the step size must be positive.")
  validation.check_key(key, f"{caller} draws random points")
