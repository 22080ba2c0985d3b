"""Tests of kdeformer.training.train: smoke, resume after SIGKILL, schedule, guards.

Multi-device training (a mesh of four CPU devices on two processes) is tested in
test_multihost.py.

The checkpoint layout and its readers are tested in test_checkpoints.py (writing, resuming,
export) and tests/test_checkpoints.py (reading for inference).

Nearly all of a tiny run's time is compiling its train step, so the runs here share programs
(tiny_shared.py): every one-device, one-bucket run, in this process or a subprocess, trains
the same compiled step, loaded from the suite's persistent compilation cache after the first
compilation. Runs go through subprocesses only where the property needs a process of its own
(a SIGKILL, the entry point); the rest run in this process.
"""

import functools
import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
from jax.experimental.compilation_cache import compilation_cache
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import tiny
from kdeformer import checkpoints
from kdeformer import estimator as estimator_lib
from kdeformer.training import train
from tests.training import tiny_shared

REPO = str(pathlib.Path(__file__).resolve().parents[2])
ONE_BUCKET = tiny_shared.ONE_BUCKET
# The uninterrupted one-bucket run that the SIGKILL and steps-per-dispatch tests
# compare with: long enough for a run to be killed between its checkpoints.
REFERENCE_STEPS = 42


def run_training(workdir, *overrides, env=None, log_file=None):
  """Runs a tiny training to completion; with log_file, starts it and returns the Popen.

  A started run writes its output to log_file (a pipe nobody reads could fill and stall it).
  """
  command = [
    sys.executable,
    "-m",
    "experiments.train",
    f"--config={tiny_shared.CONFIG_FILE}",
    f"--workdir={workdir}",
    *overrides,
  ]
  full_env = dict(os.environ, **(env or {}))
  if log_file is None:
    return subprocess.run(
      command, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=600
    )
  return subprocess.Popen(
    command, cwd=REPO, env=full_env, stdout=log_file, stderr=subprocess.STDOUT
  )


def read_records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def assert_trees_close(actual, expected, rtol=1e-6, atol=1e-6):
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol),
    actual,
    expected,
  )


def replicated_train_state(config, mesh):
  """create_train_state placed as train places it: compile_steps then lowers the
  very program a run compiles (an uncommitted state lowers to another)."""
  state = train.create_train_state(config, jax.random.key(0))
  return jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


def assert_trees_equal(actual, expected):
  jax.tree.map(
    lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), actual, expected
  )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """One uninterrupted run of the tiny config (both buckets, cycled step by step)."""
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  state = train.train(tiny_shared.get_config(), workdir)
  return workdir, state


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """One uninterrupted one-bucket run of REFERENCE_STEPS steps, a record per step."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  config = tiny_shared.one_bucket_config()
  config.num_train_steps = REFERENCE_STEPS
  config.checkpoint_every_steps = 1000  # Only the final state is compared.
  state = train.train(config, workdir)
  return read_records(workdir), jax.device_get(state)


# The smoke run's per-step losses (tiny_shared.get_config(), seed 0), measured 2026-12-05.
PINNED_SMOKE_LOSSES = [0.6029218, 0.6781909, 1.0616860, 0.5895171, 2.0152147, 0.4696959]


def test_smoke_run_writes_checkpoint_metrics_and_config(trained):
  workdir, state = trained
  config = tiny_shared.get_config()
  assert int(state.step) == config.num_train_steps
  records = read_records(workdir)
  assert [r["step"] for r in records] == list(range(1, config.num_train_steps + 1))
  # Each record is its step's loss, and the loss is its two parts weighted by alpha.
  for record in records:
    np.testing.assert_allclose(
      record["loss"],
      config.loss.alpha * record["log_density_mse"]
      + (1 - config.loss.alpha) * record["relative_score_mse"],
      rtol=1e-5,
    )
    assert record["num_skipped"] == 0
  # The run's trajectory, pinned (measured 2026-12-05, CPU, both XLA optimisation levels):
  # a change of the data, the model, the loss or the loop's bookkeeping moves these by far
  # more than round-off.
  np.testing.assert_allclose([r["loss"] for r in records], PINNED_SMOKE_LOSSES, rtol=1e-3)
  np.testing.assert_allclose(
    [r["learning_rate"] for r in records],
    [
      float(train.learning_rate(s, config.num_train_steps, config.optim))
      for s in range(config.num_train_steps)
    ],
    rtol=1e-6,
  )
  assert checkpoints.latest_step(workdir) == config.num_train_steps
  assert checkpoints.load_config(workdir).to_json_best_effort(sort_keys=True) == (
    config.to_json_best_effort(sort_keys=True)
  )
  # Parameters and the rest of the train state are separate items.
  step_dir = os.path.join(workdir, "checkpoints", str(config.num_train_steps))
  assert sorted(n for n in os.listdir(step_dir) if not n.startswith("_") and "." not in n) == [
    "params",
    "training",
  ]


def test_restore_for_inference_matches_in_memory_params(trained):
  workdir, state = trained
  restored = estimator_lib.Estimator.restore(workdir)
  assert_trees_equal(restored.params, state.params)
  in_memory = estimator_lib.Estimator(state.params, tiny_shared.get_config())
  rng = np.random.default_rng(0)
  samples, queries = rng.normal(size=(50, 2)), rng.normal(size=(7, 2))
  a, b = restored(samples, queries), in_memory(samples, queries)
  np.testing.assert_array_equal(np.asarray(a.log_density), np.asarray(b.log_density))
  np.testing.assert_array_equal(np.asarray(a.score), np.asarray(b.score))


def test_rerun_of_finished_workdir_resumes_without_training(trained):
  workdir, state = trained
  again = train.train(tiny_shared.get_config(), workdir)
  assert int(again.step) == int(state.step)
  assert_trees_equal(again.params, state.params)


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, reference, caplog):
  """A run killed (SIGKILL, a real process) after its first checkpoint, resumed, ends where the
  uninterrupted run does."""
  _, expected = reference
  steps = [
    f"--config.num_train_steps={REFERENCE_STEPS}",
    "--config.checkpoint_every_steps=10",
    "--config.log_every_steps=10",
    *ONE_BUCKET,
  ]
  interrupted = str(tmp_path / "interrupted")
  with open(tmp_path / "interrupted.log", "w") as log_file:
    process = run_training(interrupted, *steps, log_file=log_file)
    first_checkpoint = os.path.join(interrupted, "checkpoints", "10")
    deadline = time.time() + 300
    try:
      while (
        not os.path.isdir(first_checkpoint) and process.poll() is None and time.time() < deadline
      ):
        time.sleep(0.02)
    finally:
      process.send_signal(signal.SIGKILL)
      process.wait()
  assert process.returncode == -signal.SIGKILL, (
    "the run ended before it could be killed:\n"
    + (tmp_path / "interrupted.log").read_text()[-3000:]
  )
  killed_at = checkpoints.latest_step(interrupted)
  assert killed_at is not None and 10 <= killed_at < REFERENCE_STEPS
  # The resume runs here: what it reads was written by the killed process.
  config = tiny_shared.one_bucket_config()
  config.num_train_steps, config.checkpoint_every_steps = REFERENCE_STEPS, 10
  config.log_every_steps = 10  # The command's settings (`steps`).
  caplog.set_level(logging.INFO)
  logged_before = len(read_records(interrupted))
  resumed = train.train(config, interrupted)
  assert f"Resumed from checkpoint step {killed_at}" in caplog.text
  # It trained only the steps after the checkpoint (one record every 10 steps, and the last).
  assert [r["step"] for r in read_records(interrupted)[logged_before:]] == [
    *range(killed_at + 10, REFERENCE_STEPS, 10),
    REFERENCE_STEPS,
  ]
  assert int(resumed.step) == REFERENCE_STEPS
  assert_trees_close(resumed.params, expected.params)
  assert_trees_close(estimator_lib.Estimator.restore(interrupted).params, expected.params)


def test_non_finite_step_is_skipped_and_counted():
  """The train step as training compiles it (compile_steps: sharded, state donated)."""
  config, mesh = tiny_shared.one_bucket_config(), train.make_mesh(1)
  state = replicated_train_state(config, mesh)
  poisoned = jax.tree.map(lambda x: x, state.params)
  poisoned["score_head"]["bias"] = poisoned["score_head"]["bias"].at[0].set(jnp.nan)
  state = state._replace(params=poisoned)
  (step,), _ = train.compile_steps(config, state, mesh)
  before = jax.device_get(state)  # The step donates its input state.
  new_state, metrics = step(state, jax.random.key(1), jnp.int32(config.num_train_steps))
  assert float(metrics["finite"]) == 0.0
  assert not np.isfinite(float(metrics["loss"]))
  assert int(new_state.num_skipped) == 1
  assert int(new_state.step) == 1
  assert_trees_equal(new_state.params, before.params)
  assert_trees_equal(new_state.opt_state, before.opt_state)


def test_one_compilation_per_bucket(trained):
  """One executable per bucket, each the bucket's (the larger n costs more flops); the same
  programs the smoke run compiled (so loaded from the persistent cache)."""
  del trained  # Compiled these programs first.
  config = tiny_shared.get_config()
  mesh = train.make_mesh(1)
  state = replicated_train_state(config, mesh)
  compiled, flops = train.compile_steps(config, state, mesh)
  assert len(compiled) == len(config.buckets) == 2
  assert 0 < flops[0] < flops[1]  # n = 16, then n = 32.
  # An AOT-compiled step cannot retrace: a batch of another shape is an error, not a recompile.
  with pytest.raises(
    TypeError, match="Argument types differ from the types for which this computation was compiled"
  ):
    compiled[0](
      state._replace(params=jax.tree.map(lambda x: x[None], state.params)),
      jax.random.key(0),
      jnp.int32(1),
    )


def test_learning_rate_matches_optax_warmup_cosine():
  config = tiny.get_config().optim
  config.warmup_steps, total = 10, 50
  reference = optax.warmup_cosine_decay_schedule(
    0.0,
    config.learning_rate,
    config.warmup_steps,
    total,
    config.learning_rate * config.end_lr_fraction,
  )
  steps = np.arange(0, 60)
  ours = jax.vmap(lambda s: train.learning_rate(s, jnp.int32(total), config))(steps)
  np.testing.assert_allclose(ours, [reference(s) for s in steps], rtol=1e-5, atol=1e-9)


def test_budgeted_length_fits_the_time_left_and_the_cap():
  config = tiny.get_config()
  config.num_train_steps = 1000
  assert train.resolve_budgeted_steps(config, 30, 0.5, 100.0) == 230
  assert train.resolve_budgeted_steps(config, 30, 0.01, 100.0) == 1000  # Capped.
  assert train.resolve_budgeted_steps(config, 30, 0.5, -5.0) == 31  # Overdrawn: stop next step.


def budget_config(time_budget_s, num_train_steps):
  config = tiny_shared.one_bucket_config()
  config.calibration_steps = 1
  config.time_budget_s, config.num_train_steps = time_budget_s, num_train_steps
  return config


def test_time_budget_decides_the_length_once_and_resume_keeps_it(tmp_path, caplog):
  caplog.set_level(logging.INFO)
  workdir = str(tmp_path / "budget")
  state = train.train(budget_config(1e6, 12), workdir)
  assert "Time budget" in caplog.text and "-> 12 steps" in caplog.text  # Capped by the max.
  saved = checkpoints.load_config(workdir)
  assert saved.budget_resolved and saved.num_train_steps == 12
  assert int(state.step) == checkpoints.latest_step(workdir) == 12
  # The learning rate of every step, the decay after the warm-up included, is the schedule's.
  records = read_records(workdir)
  assert [r["step"] for r in records] == list(range(1, 13))
  np.testing.assert_allclose(
    [r["learning_rate"] for r in records],
    [float(train.learning_rate(s, 12, saved.optim)) for s in range(12)],
    rtol=1e-6,
  )
  # A spent budget ends the run at once; the learning rate follows the length it chose.
  tight = str(tmp_path / "tight")
  caplog.clear()
  train.train(budget_config(0.001, 1000), tight)
  saved = checkpoints.load_config(tight)
  assert saved.num_train_steps == 3  # 1 (compile) + 1 (calibration) + 1: the budget was spent.
  assert "-> 3 steps" in caplog.text
  records = read_records(tight)
  assert [r["step"] for r in records] == [1, 2, 3]
  np.testing.assert_allclose(
    records[-1]["learning_rate"], float(train.learning_rate(2, 3, saved.optim)), rtol=1e-6
  )
  # A rerun with another budget keeps the decided length: nothing left to train.
  caplog.clear()
  again = train.train(budget_config(1e6, 1000), tight)
  assert "fixed at 3 steps" in caplog.text and "nothing to train" in caplog.text
  assert int(again.step) == 3 and checkpoints.load_config(tight).num_train_steps == 3
  assert len(read_records(tight)) == 3


def test_time_budget_calibration_must_end_in_the_warmup():
  config = tiny.get_config()
  config.time_budget_s = 10.0
  with pytest.raises(ValueError, match="warm-up"):
    train.train(config, "/nonexistent/never/written")


def test_estimated_log_normalizer_is_the_log_ratio_mean_over_drawn_queries():
  """Exact log f gives log Z_hat = 0; log f + c gives c; pushed-out queries are left out."""
  truth = jnp.asarray([[-1.0, -2.0, -3.0, -50.0]])
  in_tail = jnp.asarray([[False, False, False, True]])
  batch = train.data_lib.Batch(None, None, None, None, truth, None, in_tail)
  np.testing.assert_allclose(train.estimated_log_normalizer(truth, batch), [0.0], atol=1e-6)
  shifted = truth + jnp.asarray([[0.3, 0.3, 0.3, 40.0]])
  np.testing.assert_allclose(train.estimated_log_normalizer(shifted, batch), [0.3], atol=1e-6)
  mixed = truth + jnp.asarray([[0.0, np.log(2.0), np.log(3.0), 0.0]])
  np.testing.assert_allclose(train.estimated_log_normalizer(mixed, batch), [np.log(2.0)], atol=1e-6)


def gaussian_batch(key, batch_size=2, num_samples=16, num_queries=8, dim=2, max_dim=10):
  """A batch of standard-normal problems in d = dim with their exact targets (no sampler)."""
  sample_key, query_key = jax.random.split(key)
  dim_mask = jnp.broadcast_to(jnp.arange(max_dim) < dim, (batch_size, max_dim))
  samples = jax.random.normal(sample_key, (batch_size, num_samples, max_dim)) * dim_mask[:, None]
  queries = jax.random.normal(query_key, (batch_size, num_queries, max_dim)) * dim_mask[:, None]
  log_density = -0.5 * jnp.sum(queries**2, axis=-1) - 0.5 * dim * np.log(2 * np.pi)
  return train.data_lib.Batch(
    samples=samples,
    queries=queries,
    sample_mask=jnp.ones((batch_size, num_samples), bool),
    dim_mask=dim_mask,
    log_density=log_density,
    score=-queries,
    in_tail=jnp.zeros((batch_size, num_queries), bool),
  )


def test_pseudo_huber_loss_tempers_far_tail_errors():
  config = tiny.get_config()
  config.model.tail_base_dofs = (3.0,)
  model = train.training_model(config)
  params = train.networks.init_params(config, jax.random.key(0))
  batch = gaussian_batch(jax.random.key(0))
  batch = batch._replace(log_density=batch.log_density.at[0, 0].add(-1e4))
  loss = functools.partial(train.loss_fn, model=model, alpha=1.0)
  # Both losses in one program: one compilation.
  (plain, plain_metrics), (huber, huber_metrics) = jax.jit(
    lambda params, batch, key: (
      loss(params, batch, key),
      loss(params, batch, key, huber_delta=2.0, normalization_weight=0.1),
    )
  )(params, batch, jax.random.key(0))
  assert plain_metrics["log_density_mse"] == huber_metrics["log_density_mse"] > 1e5
  # Measured 2026-12-05: 6251261 = (1e8 + the other errors) / 16, and 1253.24 = the outlier's
  # pseudo-Huber term 2^2 (sqrt(1 + (1e4 / 2)^2) - 1) / 16 = 1249.75 (about delta |error| / (b m),
  # linear in the error), the other 15 queries' 0.35 and 0.1 * log_normalizer_sq = 3.14.
  np.testing.assert_allclose(float(plain), 6251261.0, rtol=1e-3)
  np.testing.assert_allclose(float(huber), 1253.24, rtol=1e-3)
  np.testing.assert_allclose(float(huber_metrics["log_normalizer_sq"]), 31.436, rtol=1e-3)
  assert "log_normalizer_sq" in huber_metrics and "log_normalizer_sq" not in plain_metrics


@pytest.fixture(scope="module")
def dispatched(tmp_path_factory):
  """The reference run's length in calls of 4 steps (the last call half idle), saving by time,
  with a persistent compilation cache of its own: (workdir, cache, final state).

  In this process: train points JAX's cache at the run's directory, and the
  suite's cache is restored afterwards.
  """
  workdir = str(tmp_path_factory.mktemp("dispatched"))
  cache = str(tmp_path_factory.mktemp("cache"))
  config = tiny_shared.one_bucket_config()
  config.num_train_steps = REFERENCE_STEPS
  config.steps_per_dispatch = 4
  config.checkpoint_every_steps = 1000
  config.checkpoint_every_seconds = 1e-6
  config.compilation_cache_dir = cache
  settings = [
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
  ]
  saved = {name: getattr(jax.config, name) for name in settings}
  try:
    state = train.train(config, workdir)
  finally:
    for name, value in saved.items():
      jax.config.update(name, value)
    compilation_cache.reset_cache()
  return workdir, cache, jax.device_get(state)


def test_several_steps_per_dispatch_equal_single_steps(dispatched, reference):
  """A lax.scan of k steps is k calls of the step (same data: fold_in(key, step)); steps
  beyond num_train_steps change nothing and report zeros (42 = 10 calls of 4 + 2 steps)."""
  workdir, _, state = dispatched
  reference_records, expected = reference
  assert int(state.step) == REFERENCE_STEPS
  # Adam turns round-off-sized gradients into lr-sized steps, so near-zero leaves differ by
  # up to 1.4e-6 (measured) between the scanned and the single-step programs; a step on other
  # data would move them by about the learning rate (2e-4).
  assert_trees_close(state.params, expected.params, rtol=1e-5, atol=2e-5)
  assert_trees_close(state.opt_state, expected.opt_state, rtol=1e-5, atol=1e-6)
  # One record per call: the means of its steps' metrics (idle steps would pull them down).
  records = read_records(workdir)
  assert [r["step"] for r in records] == list(range(4, 41, 4)) + [42]
  reference_losses = np.asarray([r["loss"] for r in reference_records])
  windows = [reference_losses[s - 4 : s] for s in range(4, 41, 4)] + [reference_losses[40:]]
  np.testing.assert_allclose([r["loss"] for r in records], [w.mean() for w in windows], rtol=1e-5)
  assert train.bucket_for_step(7, 2, 3) == 0 and train.bucket_for_step(3, 2, 3) == 1


def test_steps_per_dispatch_checkpoints_by_time_and_compilation_cache(dispatched):
  """Every call saves (by time), not only at checkpoint_every_steps or at the end; the run fills
  its persistent compilation cache."""
  workdir, cache, _ = dispatched
  steps = sorted(int(p) for p in os.listdir(os.path.join(workdir, "checkpoints")) if p.isdigit())
  assert steps == [36, 40, 42]  # The last three calls' (keep_checkpoints = 3).
  assert any(name.startswith("jit_") for name in os.listdir(cache))
