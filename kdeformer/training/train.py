"""Training library: state, loss, a sharded jitted step, and the resumable loop.

`train(config, workdir)` is the one function the entry point calls. Data
parallelism on a 1-D 'data' mesh: the batch is sharded P('data'), the state replicated.
"""

import concurrent.futures
import contextlib
import copy
import functools
import json
import os
import time
from typing import Any, NamedTuple

from absl import logging
import jax
from jax.experimental import multihost_utils
from jax.experimental.compilation_cache import compilation_cache
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
import optax

from kdeformer import attention as attention_lib
from kdeformer import checkpoints
from kdeformer import model as model_lib
from kdeformer import networks
from kdeformer.training import data as data_lib
from kdeformer.training import warm_start


class TrainState(NamedTuple):
  """Everything a step needs and a checkpoint stores (a plain pytree)."""

  step: jax.Array
  params: Any
  opt_state: Any
  num_skipped: jax.Array


def learning_rate(
  step: jax.Array, num_train_steps: jax.Array, optim: ml_collections.ConfigDict
) -> jax.Array:
  """Linear warm-up to the peak, then cosine decay to end_lr_fraction * peak at the last step.

  Traceable in `num_train_steps`, so a run whose length is decided after compilation
  (config.time_budget_s) needs no recompilation.
  """
  step = jnp.asarray(step, jnp.float32)
  warmup = float(max(optim.warmup_steps, 1))
  peak = optim.learning_rate
  end = peak * optim.end_lr_fraction
  decay_steps = jnp.maximum(jnp.asarray(num_train_steps, jnp.float32) - warmup, 1.0)
  progress = jnp.clip((step - warmup) / decay_steps, 0.0, 1.0)
  cosine = end + (peak - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
  return jnp.where(step < warmup, peak * step / warmup, cosine)


def build_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Clipped AdamW at unit learning rate; the step multiplies by `learning_rate(...)`.

  A unit schedule, not a float, so older checkpoints' optimiser state still restores.
  """
  optim = config.optim
  return optax.chain(
    optax.clip_by_global_norm(optim.grad_clip_norm),
    optax.adamw(
      lambda count: jnp.ones([], jnp.float32),
      b1=optim.b1,
      b2=optim.b2,
      weight_decay=optim.weight_decay,
    ),
  )


def create_train_state(config: ml_collections.ConfigDict, key: jax.Array) -> TrainState:
  params = networks.init_params(config, key)
  # Distinct buffers for every leaf: the step donates the state, and XLA refuses a
  # buffer donated twice (initialisers may return shared constants).
  params = jax.tree.map(jnp.array, params)
  return TrainState(
    step=jnp.asarray(0, jnp.int32),
    params=params,
    opt_state=build_optimizer(config).init(params),
    num_skipped=jnp.asarray(0, jnp.int32),
  )


def loss_fn(
  params,
  batch: data_lib.Batch,
  dropout_key: jax.Array,
  *,
  model: model_lib.KDEFormer,
  alpha: float,
  deterministic: bool = False,
  huber_delta: float = 0.0,
  normalization_weight: float = 0.0,
):
  """alpha * log-density error + (1 - alpha) * relative score MSE (+ normalisation), whitened.

  The score term is normalised per problem (sum ||s_hat - s||^2 / sum ||s||^2), so sharp and
  flat mixtures weigh alike. The log-density term is the MSE, or with huber_delta > 0 the
  pseudo-Huber loss of that width (far-tail errors would swamp the MSE). normalization_weight
  > 0 adds (log Z_hat)^2, Z_hat = mean of exp(log f_hat - log f) over the queries drawn from
  the truth (not pushed into the tails), so the output learns to integrate to 1.
  """
  log_density, score = model.apply(
    {"params": params},
    batch.samples,
    batch.queries,
    batch.sample_mask,
    batch.dim_mask,
    deterministic=deterministic,
    rngs={"dropout": dropout_key},
  )
  log_density_error = log_density - batch.log_density
  log_density_mse = jnp.mean(log_density_error**2)
  if huber_delta > 0:
    log_density_loss = jnp.mean(
      huber_delta**2 * (jnp.sqrt(1.0 + (log_density_error / huber_delta) ** 2) - 1.0)
    )
  else:
    log_density_loss = log_density_mse
  score_error = jnp.sum((score - batch.score) ** 2, axis=(1, 2))
  relative_score_mse = jnp.mean(score_error / (jnp.sum(batch.score**2, axis=(1, 2)) + 1e-6))
  loss = alpha * log_density_loss + (1.0 - alpha) * relative_score_mse
  metrics = {"log_density_mse": log_density_mse, "relative_score_mse": relative_score_mse}
  if normalization_weight > 0:
    log_z = estimated_log_normalizer(log_density, batch)
    metrics["log_normalizer_sq"] = jnp.mean(log_z**2)
    loss = loss + normalization_weight * metrics["log_normalizer_sq"]
  metrics["loss"] = loss
  return loss, metrics


# Log-ratios log f_hat - log f are clipped here before exponentiating: one wild query must
# not dominate the estimate (or overflow) early in training.
MAX_LOG_RATIO = 10.0


def estimated_log_normalizer(log_density: jax.Array, batch: data_lib.Batch) -> jax.Array:
  """(b,) log of the mean of exp(log f_hat - log f) over each problem's untouched queries."""
  drawn = jnp.ones_like(batch.log_density, bool) if batch.in_tail is None else ~batch.in_tail
  log_ratio = jnp.clip(log_density - batch.log_density, -MAX_LOG_RATIO, MAX_LOG_RATIO)
  log_ratio = jnp.where(drawn, log_ratio, -jnp.inf)
  count = jnp.maximum(jnp.sum(drawn, axis=-1), 1)
  return jax.nn.logsumexp(log_ratio, axis=-1) - jnp.log(count)


def training_model(config: ml_collections.ConfigDict) -> model_lib.KDEFormer:
  """The network of the config with the training-only speed settings (same parameters).

  config.mixed_precision: bfloat16 matmuls in the trunk (the kernel bank, the bases, the
  gates and the heads stay float32); config.fused_attention: the trunk's attention through
  `jax.nn.dot_product_attention`, which picks cuDNN's fused kernel on a GPU where it
  applies. Inference builds the float32 network of the same parameters.
  """
  model = networks.build_model(config)
  if config.get("mixed_precision", False):
    model = model.clone(dtype=jnp.bfloat16)
  if config.get("fused_attention", False):
    model = model.clone(runtime=attention_lib.AttentionRuntime(fused=True))
  return model


def training_width(config: ml_collections.ConfigDict) -> int:
  """The coordinate width of training batches: max_dim, or (equivariant, max_dim 0) the
  largest training d."""
  return int(config.model.max_dim) or max(config.data.dims)


def make_train_step(
  config: ml_collections.ConfigDict, num_samples: int, batch_size: int, mesh: jax.sharding.Mesh
):
  """Returns step(state, key, num_train_steps) -> (state, metrics) for one n bucket (not jitted).

  num_train_steps is the run's length (an int32 scalar; it shapes the learning-rate decay).
  """
  model = training_model(config)
  optimizer = build_optimizer(config)
  batch_sharding = NamedSharding(mesh, P("data"))

  def step(state: TrainState, key: jax.Array, num_train_steps: jax.Array):
    step_key = jax.random.fold_in(key, state.step)
    data_key, dropout_key = jax.random.split(step_key)
    batch = data_lib.make_batch(
      data_key,
      config.data,
      training_width(config),
      batch_size,
      num_samples,
      config.data.num_queries,
    )
    batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, metrics), grads = grad_fn(
      state.params,
      batch,
      dropout_key,
      model=model,
      alpha=config.loss.alpha,
      huber_delta=config.loss.get("huber_delta", 0.0),
      normalization_weight=config.loss.get("normalization_weight", 0.0),
    )
    finite = jnp.isfinite(metrics["loss"]) & jnp.all(
      jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
    )
    updates, new_opt_state = optimizer.update(grads, state.opt_state, state.params)
    rate = learning_rate(state.step, num_train_steps, config.optim)
    updates = jax.tree.map(lambda update: rate * update, updates)
    new_params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    metrics = dict(
      metrics,
      grad_norm=optax.global_norm(grads),
      learning_rate=rate,
      finite=finite.astype(jnp.float32),
    )
    new_state = TrainState(
      step=state.step + 1,
      params=keep(new_params, state.params),
      opt_state=keep(new_opt_state, state.opt_state),
      num_skipped=state.num_skipped + (1 - finite.astype(jnp.int32)),
    )
    return new_state, metrics

  return step


def make_multi_step(step, steps_per_dispatch: int):
  """`steps_per_dispatch` consecutive steps of `step` in one call (a lax.scan).

  Steps at or beyond num_train_steps leave the state as it is and report zero metrics, so a
  run whose length is no multiple of the dispatch ends exactly where a one-step run does.

  Returns:
    multi_step(state, key, num_train_steps) -> (state, metrics), each metric stacked (k,).
  """

  def multi_step(state: TrainState, key: jax.Array, num_train_steps: jax.Array):
    def body(state, _):
      new_state, metrics = step(state, key, num_train_steps)
      active = state.step < num_train_steps
      new_state = jax.tree.map(lambda new, old: jnp.where(active, new, old), new_state, state)
      return new_state, jax.tree.map(lambda m: jnp.where(active, m, 0.0), metrics)

    return jax.lax.scan(body, state, length=steps_per_dispatch)

  return multi_step


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """A 1-D 'data' mesh over all (or the first `num_devices`) devices of all hosts."""
  devices = jax.devices()
  if num_devices:
    devices = devices[:num_devices]
  return jax.make_mesh(
    (len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
  )


def compile_steps(config, state: TrainState, mesh: jax.sharding.Mesh):
  """AOT-compiles one step per n bucket; returns ([compiled], [flops per step]).

  Tracing is sequential; XLA compiles the buckets in parallel threads (it releases the GIL).
  """
  replicated = NamedSharding(mesh, P())
  lowered = []
  for num_samples, batch_size in zip(config.buckets, config.batch_sizes):
    if batch_size % mesh.size:
      raise ValueError(
        f"batch size {batch_size} (bucket n={num_samples}) is not divisible by "
        f"the {mesh.size} devices of the mesh."
      )
    step = make_train_step(config, num_samples, batch_size, mesh)
    if steps_per_dispatch(config) > 1:
      step = make_multi_step(step, steps_per_dispatch(config))
    jitted = jax.jit(
      step,
      in_shardings=(replicated, replicated, replicated),
      out_shardings=(replicated, replicated),
      donate_argnums=0,
    )
    lowered.append(jitted.lower(state, jax.random.key(0), jnp.int32(0)))
  with concurrent.futures.ThreadPoolExecutor(len(lowered)) as pool:
    compiled = list(pool.map(lambda computation: computation.compile(), lowered))
  flops = []
  for executable in compiled:
    cost = executable.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops.append(float(cost.get("flops", float("nan"))) if cost else float("nan"))
  return compiled, flops


def steps_per_dispatch(config: ml_collections.ConfigDict) -> int:
  return max(int(config.get("steps_per_dispatch", 1)), 1)


def bucket_for_step(step: int, num_buckets: int, steps_per_call: int = 1) -> int:
  """Buckets cycle with the step (every steps_per_call steps), so a resumed run sees the same
  shapes."""
  return (step // steps_per_call) % num_buckets


def enable_compilation_cache(config: ml_collections.ConfigDict) -> None:
  """Points JAX's persistent compilation cache at config.compilation_cache_dir (if set).

  Every program is cached (not only those compiling for over a second): the next start on
  the same machine and software loads the train steps instead of compiling them.
  """
  directory = config.get("compilation_cache_dir", "")
  if not directory:
    return
  os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  # A process that compiled before (tests, notebooks) has initialised the cache without it.
  compilation_cache.reset_cache()


def resolve_budgeted_steps(
  config: ml_collections.ConfigDict, done: int, seconds_per_step: float, seconds_left: float
) -> int:
  """The run's length when it must end within the time budget: at most config.num_train_steps."""
  affordable = done + int(max(seconds_left, 0.0) / max(seconds_per_step, 1e-9))
  return int(min(config.num_train_steps, max(affordable, done + 1)))


def initialize_distributed(config: ml_collections.ConfigDict) -> None:
  """Joins this process to a multi-process run when config.multihost is set; otherwise a no-op.

  Must run before anything touches a device (jax.devices(), jax.process_index(), ...).
  config.distributed's coordinator_address, num_processes and process_id go to
  `jax.distributed.initialize`; None leaves one to JAX's cluster detection. A second
  call is a no-op, so the entry point can call it before logging device facts.

  Raises:
    ValueError: config.distributed sets a field but config.multihost is False (each
      process would train alone and all of them would write the same workdir).
  """
  distributed = config.get("distributed") or ml_collections.ConfigDict()
  coordinator_address = distributed.get("coordinator_address")
  num_processes = distributed.get("num_processes")
  process_id = distributed.get("process_id")
  if not config.get("multihost", False):
    if (coordinator_address, num_processes, process_id) != (None, None, None):
      raise ValueError(
        "config.distributed is set but config.multihost is False; add "
        "--config.multihost=True to train with several processes."
      )
    return
  if jax.distributed.is_initialized():
    return
  jax.distributed.initialize(
    coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
  )


def train(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains (resuming from the latest checkpoint in workdir) and writes curves.

  With config.time_budget_s > 0 the run's length is decided once, after
  `calibration_steps` timed steps: as many steps as fit in the budget (counted from
  this call's start, compilation included), at most config.num_train_steps, with the
  learning rate decaying to its end at that step. The decision is written to the
  workdir's config.json, so a resumed run keeps it.

  Returns:
    The final TrainState.
  """
  run_start = time.time()
  config = prepare_run_config(config, workdir)
  is_chief = jax.process_index() == 0
  if is_chief:
    checkpoints.save_config(config, workdir)
  mesh = make_mesh(config.get("num_devices"))
  logging.info(
    "Mesh: %d device(s) %s on %d host(s).",
    mesh.size,
    jax.devices()[0].platform,
    jax.process_count(),
  )
  init_key, data_key = jax.random.split(jax.random.key(config.seed))
  state, manager = restore_or_initialize(config, workdir, mesh, init_key)
  if int(state.step) >= config.num_train_steps:
    logging.info(
      "Workdir %s already holds the final step %d; nothing to train.", workdir, int(state.step)
    )
    manager.close()
    return state
  compiled, flops = compile_steps(config, state, mesh)
  for n, b, f in zip(config.buckets, config.batch_sizes, flops):
    logging.info("Bucket n=%d batch=%d: %.2f GFLOP per step (XLA cost analysis).", n, b, f / 1e9)
  logging.info("Model: %d parameters.", sum(x.size for x in jax.tree.leaves(state.params)))
  with (
    open(os.path.join(workdir, "metrics.jsonl"), "a") if is_chief else contextlib.nullcontext()
  ) as metrics_file:
    state = run_steps(
      config,
      workdir,
      state,
      manager,
      compiled,
      flops,
      data_key,
      Budget(config, run_start, len(compiled)),
      metrics_file,
    )
  manager.wait_until_finished()
  manager.close()
  return state


def prepare_run_config(
  config: ml_collections.ConfigDict, workdir: str
) -> ml_collections.ConfigDict:
  """A checked copy of the config (the budget's decision is written into it), with JAX's
  distributed runtime and compilation cache set up and a resumed budgeted run's length."""
  config = copy.deepcopy(config)
  initialize_distributed(config)
  enable_compilation_cache(config)
  if len(config.buckets) != len(config.batch_sizes):
    raise ValueError(
      f"config.buckets {list(config.buckets)} and config.batch_sizes "
      f"{list(config.batch_sizes)} must have the same length."
    )
  config = resolve_length_from_workdir(config, workdir)
  budgeted = config.get("time_budget_s", 0) > 0 and not config.get("budget_resolved", False)
  calibration_steps = int(config.get("calibration_steps", 20))
  per_call = steps_per_dispatch(config)
  # Calibration: one call per bucket (compilation, first runs), then whole calls.
  calibration_calls = -(-calibration_steps // per_call)
  if budgeted and per_call * (calibration_calls + len(config.buckets)) >= config.optim.warmup_steps:
    raise ValueError(
      f"time_budget_s needs the calibration ({calibration_steps} steps after one call per "
      f"bucket, {per_call} steps per call) to end inside the warm-up "
      f"({config.optim.warmup_steps} steps), where the learning rate does not depend on the "
      "run's length; raise optim.warmup_steps."
    )
  return config


def restore_or_initialize(
  config: ml_collections.ConfigDict, workdir: str, mesh: jax.sharding.Mesh, init_key: jax.Array
):
  """(the replicated train state: restored, warm-started or fresh; its checkpoint manager)."""
  state = jax.device_put(create_train_state(config, init_key), NamedSharding(mesh, P()))
  manager = checkpoints.checkpoint_manager(
    workdir, save_every_steps=config.checkpoint_every_steps, keep=config.keep_checkpoints
  )
  if manager.latest_step() is not None:
    state = checkpoints.restore_train_state(manager, state)
    logging.info("Resumed from checkpoint step %d in %s.", int(state.step), workdir)
  elif config.get("init_from"):  # A fresh run: warm-start the parameters, fresh optimiser.
    state = state._replace(
      params=jax.device_put(warm_start.warm_start(config, state.params), NamedSharding(mesh, P()))
    )
    logging.info("Warm-started from %s (parameters only; fresh optimiser).", config.init_from)
  return state, manager


class Budget:
  """A time-budgeted run's length, decided once after the calibration calls (see `train`)."""

  def __init__(self, config: ml_collections.ConfigDict, run_start: float, num_buckets: int):
    self.config, self.run_start = config, run_start
    self.active = config.get("time_budget_s", 0) > 0 and not config.get("budget_resolved", False)
    per_call = steps_per_dispatch(config)
    self.calibration_calls = -(-int(config.get("calibration_steps", 20)) // per_call)
    self.calls_done = -num_buckets  # Timed after one call per bucket.
    self.start = self.start_step = None

  def before_call(self, state: TrainState, step: int, num_train_steps: int, workdir: str) -> int:
    """The run's length, decided here once the calibration calls are done."""
    if self.active and self.calls_done == 0:
      jax.block_until_ready(state.step)
      self.start, self.start_step = time.time(), step
    if self.active and self.calls_done == self.calibration_calls:
      jax.block_until_ready(state.step)
      seconds_per_step = (time.time() - self.start) / (step - self.start_step)
      seconds_left = self.config.time_budget_s - (time.time() - self.run_start)
      num_train_steps = resolve_budgeted_steps(self.config, step, seconds_per_step, seconds_left)
      # Each process timed its own steps; all must stop where the chief does, or the others
      # would wait forever in the all-reduce of a step the chief never runs.
      num_train_steps = int(multihost_utils.broadcast_one_to_all(num_train_steps))
      logging.info(
        "Time budget %.0f s: %.1f ms/step measured, %.0f s left -> %d steps.",
        self.config.time_budget_s,
        1e3 * seconds_per_step,
        seconds_left,
        num_train_steps,
      )
      with self.config.unlocked():
        self.config.num_train_steps = num_train_steps
        self.config.budget_resolved = True
      if jax.process_index() == 0:
        checkpoints.save_config(self.config, workdir)
      self.active = False
    self.calls_done += 1
    return num_train_steps


class MetricsWindow:
  """Per-step metrics summed on the device (no host sync), logged as means over a window."""

  def __init__(self):
    self.start, self.flops, self.steps, self.sums = time.time(), 0.0, 0, None

  def add(self, metrics: dict, flops: float, steps: int) -> None:
    self.sums = metrics if self.sums is None else jax.tree.map(jnp.add, self.sums, metrics)
    self.flops += flops
    self.steps += steps

  def write(
    self, step: int, num_train_steps: int, learning_rate, num_skipped: int, metrics_file
  ) -> None:
    """Logs the window's means (and appends them to metrics.jsonl), then starts a new one."""
    means = jax.device_get(self.sums)
    elapsed = time.time() - self.start
    steps_per_second = self.steps / elapsed
    record = {k: float(v) / self.steps for k, v in means.items()}
    record["learning_rate"] = float(learning_rate)
    record.update(
      step=step,
      steps_per_second=steps_per_second,
      gflops_per_second=self.flops / elapsed / 1e9,
      num_skipped=num_skipped,
      wall_time=time.time(),
    )
    eta = (num_train_steps - step) / max(steps_per_second, 1e-9)
    logging.info(
      "step %d/%d | %.2f steps/s, ETA %.1f min | loss %.4f (log-density MSE %.4f, "
      "relative score MSE %.4f) | lr %.2e | %.1f GFLOP/s | skipped %d",
      step,
      num_train_steps,
      steps_per_second,
      eta / 60,
      record["loss"],
      record["log_density_mse"],
      record["relative_score_mse"],
      record["learning_rate"],
      record["gflops_per_second"],
      record["num_skipped"],
    )
    if metrics_file is not None:
      metrics_file.write(json.dumps(record) + "\n")
      metrics_file.flush()
    self.__init__()


def crossed_multiple(previous: int, step: int, every: int) -> bool:
  """Whether going from step `previous` to `step` crossed a multiple of `every`."""
  return step // every > previous // every


def run_steps(
  config: ml_collections.ConfigDict,
  workdir: str,
  state: TrainState,
  manager,
  compiled,
  flops,
  data_key: jax.Array,
  budget: Budget,
  metrics_file,
) -> TrainState:
  """The loop: compiled steps over the buckets in turn, metrics and checkpoints on schedule."""
  num_train_steps = config.num_train_steps
  per_call = steps_per_dispatch(config)
  every_seconds = float(config.get("checkpoint_every_seconds", 0.0))
  last_save, window, step = time.time(), MetricsWindow(), int(state.step)
  while step < num_train_steps:
    num_train_steps = budget.before_call(state, step, num_train_steps, workdir)
    bucket = bucket_for_step(step, len(compiled), per_call)
    state, metrics = compiled[bucket](state, data_key, jnp.int32(num_train_steps))
    done = min(per_call, num_train_steps - step)
    if per_call > 1:  # Stacked (k,): inactive steps report zeros.
      last_rate = metrics["learning_rate"][done - 1]
      metrics = jax.tree.map(lambda m: jnp.sum(m, axis=0), metrics)
      metrics["learning_rate"] = last_rate
    window.add(metrics, flops[bucket] * done / per_call, done)
    previous, step = step, step + done
    last = step == num_train_steps
    crossed = functools.partial(crossed_multiple, previous, step)
    if crossed(config.log_every_steps) or last:
      window.write(
        step, num_train_steps, metrics["learning_rate"], int(state.num_skipped), metrics_file
      )
    if (
      last
      or crossed(config.checkpoint_every_steps)
      or (every_seconds > 0 and time.time() - last_save >= every_seconds)
    ):
      checkpoints.save_train_state(manager, step, state, force=True)
      last_save = time.time()
  return state


def resolve_length_from_workdir(
  config: ml_collections.ConfigDict, workdir: str
) -> ml_collections.ConfigDict:
  """A resumed time-budgeted run keeps the length its first start decided (see config.json)."""
  if not config.get("time_budget_s", 0):
    return config
  try:
    previous = checkpoints.load_config(workdir)
  except FileNotFoundError:
    return config
  if not previous.get("budget_resolved", False):
    return config
  config = ml_collections.ConfigDict(config.to_dict())
  config.num_train_steps = int(previous.num_train_steps)
  config.budget_resolved = True
  logging.info(
    "Resuming a time-budgeted run: its length was fixed at %d steps.", config.num_train_steps
  )
  return config
