"""Test-time training: label-free adaptation of the network to one problem's samples.

A few Adam steps on a copy of the parameters minimise mean_j ||S(x_j) - grad_z T(x_j)||^2 (score
head vs. gradient of the log-density head) at the whitened samples; each problem adapts on its
own. Pure functions: the caller's parameters are never modified.
"""

from collections.abc import Callable
import functools
import math

import jax
import jax.numpy as jnp
import optax

from kdeformer import model as model_lib

# A whitened-space network: (params, whitened_samples (b, n, D), whitened_queries (b, m, D),
# sample_mask (b, n), dim_mask (b, D)) -> (log_density (b, m), score (b, m, D)).
Network = Callable[..., tuple[jax.Array, jax.Array]]


def check_options(steps, learning_rate, *, weighted: bool = False) -> tuple[int, float]:
  """A call's (steps, learning_rate), checked: steps >= 0, a positive finite learning rate
  when steps > 0, and no sample weights (the TTT loss treats every sample alike)."""
  steps, learning_rate = int(steps), float(learning_rate)
  if steps < 0:
    raise ValueError(f"ttt_steps={steps}: the number of TTT steps must be >= 0.")
  if steps > 0 and not 0 < learning_rate < math.inf:  # NaN: a NaN estimate.
    raise ValueError(
      f"ttt_learning_rate={learning_rate}: a positive finite learning rate "
      "is needed for test-time training."
    )
  if weighted and steps > 0:
    raise ValueError(
      "weights and test-time training (ttt_steps > 0) cannot be combined: "
      "the TTT loss treats every sample alike."
    )
  return steps, learning_rate


def consistency_loss(
  model: model_lib.KDEFormer,
  params,
  whitened_samples: jax.Array,
  sample_mask: jax.Array,
  dim_mask: jax.Array,
  num_points: int | None = None,
) -> jax.Array:
  """Mean over problems of the mean over samples of ||score head - grad_z log-density head||^2.

  Args:
    model: the network.
    params: its parameters.
    whitened_samples: (b, n, max_dim) whitened, zero-padded samples; padded rows are zero.
    sample_mask: (b, n) True for real samples.
    dim_mask: (b, max_dim) True for real coordinates.
    num_points: if set, the loss is evaluated at the first num_points samples only
      (they are i.i.d., so a random subset; all n samples stay the context). Cost knob.

  Returns:
    Scalar loss (whitened units: squared score).
  """
  points = whitened_samples[:, :num_points]
  point_mask = sample_mask[:, :num_points].astype(whitened_samples.dtype)
  variables = {"params": params}
  layers = model.apply(variables, whitened_samples, sample_mask, dim_mask, method="encode")

  def summed_log_density(queries):
    # Queries do not interact in decode, so the gradient of the sum is each query's own gradient.
    log_density, score = model.apply(
      variables, queries, whitened_samples, layers, sample_mask, dim_mask, method="decode"
    )
    return jnp.sum(log_density * point_mask), score

  log_density_gradient, score = jax.grad(summed_log_density, has_aux=True)(points)
  residual = (score - log_density_gradient) * dim_mask[:, None, :]
  per_point = jnp.sum(residual**2, axis=-1)
  per_problem = jnp.sum(per_point * point_mask, axis=-1) / jnp.sum(point_mask, axis=-1)
  return jnp.mean(per_problem)


def adapt(
  model: model_lib.KDEFormer,
  params,
  whitened_samples: jax.Array,
  sample_mask: jax.Array,
  dim_mask: jax.Array,
  *,
  steps: int | jax.Array,
  learning_rate: float | jax.Array,
  num_points: int | None = None,
):
  """`steps` Adam steps on a copy of params minimising `consistency_loss` on these samples.

  Args:
    model, params, whitened_samples, sample_mask, dim_mask, num_points: as in
      `consistency_loss` (the loss is pooled over the b problems given; call it
      with b = 1 to adapt per problem).
    steps: number of gradient steps; may be traced (a `fori_loop` with a dynamic
      trip count), so one compiled program serves every step count.
    learning_rate: Adam's learning rate (may be traced).

  Returns:
    The adapted params (a new pytree; `params` is not modified).
  """
  optimizer = optax.adam(learning_rate)
  loss_fn = functools.partial(
    consistency_loss,
    model,
    whitened_samples=whitened_samples,
    sample_mask=sample_mask,
    dim_mask=dim_mask,
    num_points=num_points,
  )

  def step(_, carry):
    current, optimizer_state = carry
    grads = jax.grad(loss_fn)(current)
    updates, optimizer_state = optimizer.update(grads, optimizer_state, current)
    return optax.apply_updates(current, updates), optimizer_state

  adapted, _ = jax.lax.fori_loop(0, steps, step, (params, optimizer.init(params)))
  return adapted


def with_test_time_training(
  network: Network,
  model: model_lib.KDEFormer,
  *,
  steps: int | jax.Array | None,
  learning_rate: float | jax.Array,
  num_points: int | None = None,
) -> Network:
  """Wraps a whitened-space network: each problem is answered with its own adapted parameters.

  Problems are processed one at a time (`lax.map`), so memory is that of one
  problem's second-order gradient whatever the batch size.

  Args:
    network: see `Network`.
    model: the network's module (for the loss).
    steps: TTT steps; None or a Python int <= 0 returns `network` itself (no
      adaptation is traced); a traced int serves every step count with one program.
    learning_rate: Adam's learning rate.
    num_points: see `consistency_loss`.
  """
  if steps is None or (isinstance(steps, int) and steps <= 0):
    return network

  def adapted_network(params, whitened_samples, whitened_queries, sample_mask, dim_mask):
    def one_problem(problem):
      problem = jax.tree.map(lambda x: x[None], problem)
      adapted = adapt(
        model,
        params,
        problem[0],
        problem[2],
        problem[3],
        steps=steps,
        learning_rate=learning_rate,
        num_points=num_points,
      )
      return jax.tree.map(lambda x: x[0], network(adapted, *problem))

    return jax.lax.map(one_problem, (whitened_samples, whitened_queries, sample_mask, dim_mask))

  return adapted_network
