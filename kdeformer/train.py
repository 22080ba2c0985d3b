"""Training library: state, loss, a sharded jitted step, and the resumable loop.

`train_and_evaluate(config, workdir)` is the one function the entry point calls.
Parallelism is declared once: a 1-D mesh over all devices named 'data'; the
batch (generated inside the step) is constrained to P('data') and the state is
replicated, so `jax.jit` partitions the step and all-reduces the gradients.
This is data parallelism as `jax.pmap` used to express it, without pmap.
"""

import json
import math
import os
import time
from typing import Any, NamedTuple

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from kdeformer import checkpointing
from kdeformer import data as data_lib
from kdeformer.estimator import build_model
from kdeformer import model as model_lib
from kdeformer import plotting


class TrainState(NamedTuple):
  """Everything a step needs and a checkpoint stores (a plain pytree)."""
  step: jax.Array
  params: Any
  opt_state: Any
  num_skipped: jax.Array




def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  optim = config.optim
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=optim.learning_rate, warmup_steps=optim.warmup_steps,
      decay_steps=config.num_train_steps, end_value=optim.learning_rate * optim.end_lr_fraction)


def build_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  optim = config.optim
  return optax.chain(
      optax.clip_by_global_norm(optim.grad_clip_norm),
      optax.adamw(learning_rate_schedule(config), b1=optim.b1, b2=optim.b2,
                  weight_decay=optim.weight_decay))


def init_params(config: ml_collections.ConfigDict, key: jax.Array):
  """Model parameters from `key`, for a tiny dummy input (shapes do not depend on n or m)."""
  max_dim = config.model.max_dim
  samples = jnp.zeros((1, 4, max_dim))
  return build_model(config).init(key, samples, samples[:, :2], jnp.ones((1, 4), bool),
                                  jnp.ones((1, max_dim), bool))["params"]


def create_train_state(config: ml_collections.ConfigDict, key: jax.Array) -> TrainState:
  params = init_params(config, key)
  # Distinct buffers for every leaf: the step donates the state, and XLA refuses a
  # buffer donated twice (initialisers may return shared constants).
  params = jax.tree.map(jnp.array, params)
  return TrainState(step=jnp.asarray(0, jnp.int32), params=params,
                    opt_state=build_optimizer(config).init(params),
                    num_skipped=jnp.asarray(0, jnp.int32))


def loss_fn(params, batch: data_lib.Batch, dropout_key: jax.Array, *,
            model: model_lib.KDEFormer, alpha: float, deterministic: bool = False):
  """alpha * MSE(log-density) + (1 - alpha) * relative score MSE, both in whitened space.

  The score term is normalised per problem (sum ||s_hat - s||^2 / sum ||s||^2),
  the metric the paper reports, so sharp and flat mixtures weigh alike.
  """
  log_density, score = model.apply(
      {"params": params}, batch.samples, batch.queries, batch.sample_mask, batch.dim_mask,
      deterministic=deterministic, rngs={"dropout": dropout_key})
  log_density_mse = jnp.mean((log_density - batch.log_density)**2)
  score_error = jnp.sum((score - batch.score)**2, axis=(1, 2))
  relative_score_mse = jnp.mean(score_error / (jnp.sum(batch.score**2, axis=(1, 2)) + 1e-6))
  loss = alpha * log_density_mse + (1.0 - alpha) * relative_score_mse
  return loss, {"loss": loss, "log_density_mse": log_density_mse,
                "relative_score_mse": relative_score_mse}


def make_train_step(config: ml_collections.ConfigDict, num_samples: int, batch_size: int,
                    mesh: jax.sharding.Mesh):
  """Returns step(state, key) -> (state, metrics) for one n bucket (not yet jitted)."""
  model = build_model(config)
  optimizer = build_optimizer(config)
  schedule = learning_rate_schedule(config)
  batch_sharding = NamedSharding(mesh, P("data"))

  def step(state: TrainState, key: jax.Array):
    step_key = jax.random.fold_in(key, state.step)
    data_key, dropout_key = jax.random.split(step_key)
    batch = data_lib.make_batch(data_key, config.data, config.model.max_dim, batch_size,
                                num_samples, config.data.num_queries)
    batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, metrics), grads = grad_fn(state.params, batch, dropout_key, model=model,
                                  alpha=config.loss.alpha)
    finite = jnp.isfinite(metrics["loss"]) & jnp.all(
        jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    updates, new_opt_state = optimizer.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    metrics = dict(metrics, grad_norm=optax.global_norm(grads),
                   learning_rate=schedule(state.step),
                   finite=finite.astype(jnp.float32))
    new_state = TrainState(step=state.step + 1, params=keep(new_params, state.params),
                           opt_state=keep(new_opt_state, state.opt_state),
                           num_skipped=state.num_skipped + (1 - finite.astype(jnp.int32)))
    return new_state, metrics

  return step


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """A 1-D 'data' mesh over all (or the first `num_devices`) devices of all hosts."""
  devices = jax.devices()
  if num_devices:
    devices = devices[:num_devices]
  return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def compile_steps(config, state: TrainState, mesh: jax.sharding.Mesh):
  """AOT-compiles one step per n bucket; returns ([compiled], [flops per step])."""
  replicated = NamedSharding(mesh, P())
  compiled, flops = [], []
  for num_samples, batch_size in zip(config.buckets, config.batch_sizes):
    if batch_size % mesh.size:
      raise ValueError(f"batch size {batch_size} (bucket n={num_samples}) is not divisible by "
                       f"the {mesh.size} devices of the mesh.")
    step = make_train_step(config, num_samples, batch_size, mesh)
    jitted = jax.jit(step, in_shardings=(replicated, replicated),
                     out_shardings=(replicated, replicated), donate_argnums=0)
    executable = jitted.lower(state, jax.random.key(0)).compile()
    cost = executable.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    compiled.append(executable)
    flops.append(float(cost.get("flops", float("nan"))) if cost else float("nan"))
  return compiled, flops


def bucket_for_step(step: int, num_buckets: int) -> int:
  """Buckets cycle with the step, so a resumed run sees the same shapes."""
  return step % num_buckets


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains (resuming from the latest checkpoint in workdir) and writes curves.

  Returns:
    The final TrainState.
  """
  if config.get("multihost", False):
    jax.distributed.initialize()
  if len(config.buckets) != len(config.batch_sizes):
    raise ValueError(f"config.buckets {list(config.buckets)} and config.batch_sizes "
                     f"{list(config.batch_sizes)} must have the same length.")
  is_chief = jax.process_index() == 0
  if is_chief:
    checkpointing.save_config(config, workdir)
  mesh = make_mesh(config.get("num_devices"))
  logging.info("Mesh: %d device(s) %s on %d host(s).", mesh.size, jax.devices()[0].platform,
               jax.process_count())
  init_key, data_key = jax.random.split(jax.random.key(config.seed))
  state = jax.device_put(create_train_state(config, init_key), NamedSharding(mesh, P()))
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  manager = checkpointing.checkpoint_manager(
      workdir, save_every_steps=config.checkpoint_every_steps, keep=config.keep_checkpoints)
  if manager.latest_step() is not None:
    state = checkpointing.restore_latest(manager, state)
    logging.info("Resumed from checkpoint step %d in %s.", int(state.step), workdir)
  if int(state.step) >= config.num_train_steps:
    logging.info("Workdir %s already holds the final step %d; nothing to train.", workdir,
                 int(state.step))
    manager.close()
    return state
  compiled, flops = compile_steps(config, state, mesh)
  for n, b, f in zip(config.buckets, config.batch_sizes, flops):
    logging.info("Bucket n=%d batch=%d: %.2f GFLOP per step (XLA cost analysis).", n, b, f / 1e9)
  logging.info("Model: %d parameters.", num_params)

  metrics_path = os.path.join(workdir, "metrics.jsonl")
  start_step = int(state.step)
  window_start, window_flops, window_steps, window_sums = time.time(), 0.0, 0, None
  with open(metrics_path, "a") as metrics_file:
    for step in range(start_step, config.num_train_steps):
      bucket = bucket_for_step(step, len(compiled))
      state, metrics = compiled[bucket](state, data_key)
      # Summed on the device (no host sync); logged as means over the window.
      window_sums = metrics if window_sums is None else jax.tree.map(jnp.add, window_sums,
                                                                     metrics)
      window_flops += flops[bucket]
      window_steps += 1
      done = step + 1
      if done % config.log_every_steps == 0 or done == config.num_train_steps:
        means = jax.device_get(window_sums)
        elapsed = time.time() - window_start
        steps_per_second = window_steps / elapsed
        record = {k: float(v) / window_steps for k, v in means.items()}
        record["learning_rate"] = float(metrics["learning_rate"])
        record.update(step=done, steps_per_second=steps_per_second,
                      gflops_per_second=window_flops / elapsed / 1e9,
                      num_skipped=int(state.num_skipped), wall_time=time.time())
        eta = (config.num_train_steps - done) / max(steps_per_second, 1e-9)
        logging.info(
            "step %d/%d | %.2f steps/s, ETA %.0f min | loss %.4f (log-density MSE %.4f, "
            "relative score MSE %.4f) | lr %.2e | %.1f GFLOP/s | skipped %d", done,
            config.num_train_steps, steps_per_second, eta / 60, record["loss"],
            record["log_density_mse"], record["relative_score_mse"], record["learning_rate"],
            record["gflops_per_second"], record["num_skipped"])
        if is_chief:
          metrics_file.write(json.dumps(record) + "\n")
          metrics_file.flush()
        window_start, window_flops, window_steps, window_sums = time.time(), 0.0, 0, None
      manager.save(done, args=checkpointing.ocp.args.StandardSave(state),
                   force=done == config.num_train_steps)
  manager.wait_until_finished()
  manager.close()
  if is_chief:
    plotting.plot_training_curves(metrics_path, os.path.join(workdir, "training_curves.png"))
  return state
