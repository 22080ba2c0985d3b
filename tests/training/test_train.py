"""Tests of kdeformer.training.train: smoke, resume after SIGKILL, multi-device, schedule, guards.

The checkpoint layout and its readers are tested in test_checkpointing.py (writing, resuming,
export) and tests/test_checkpoints.py (reading for inference).
"""

import functools
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import tiny
from kdeformer import estimator as estimator_lib
from kdeformer.training import checkpointing
from kdeformer.training import train

REPO = str(pathlib.Path(__file__).resolve().parents[2])
# Subprocess runs compile one bucket instead of two: compilation dominates their time.
ONE_BUCKET = ["--config.buckets=(16,)", "--config.batch_sizes=(4,)"]


def run_training(workdir, *overrides, env=None, log_file=None):
  """Runs a tiny training to completion; with log_file, starts it and returns the Popen.

  A started run writes its output to log_file (a pipe nobody reads could fill and stall it).
  """
  command = [sys.executable, "-m", "experiments.train", "--config=experiments/configs/tiny.py",
             f"--workdir={workdir}", *overrides]
  full_env = dict(os.environ, **(env or {}))
  if log_file is None:
    return subprocess.run(command, cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=600)
  return subprocess.Popen(command, cwd=REPO, env=full_env, stdout=log_file,
                          stderr=subprocess.STDOUT)


def read_losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line)["loss"] for line in f]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """One uninterrupted tiny run, shared by the tests below."""
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  state = train.train_and_evaluate(tiny.get_config(), workdir)
  return workdir, state


def test_smoke_run_writes_checkpoint_metrics_and_config(trained):
  workdir, state = trained
  config = tiny.get_config()
  assert int(state.step) == config.num_train_steps
  losses = read_losses(workdir)
  assert len(losses) == config.num_train_steps
  assert np.all(np.isfinite(losses))
  assert checkpointing.latest_step(workdir) == config.num_train_steps
  assert os.path.isfile(os.path.join(workdir, "config.json"))
  # Parameters and the rest of the train state are separate items.
  step_dir = os.path.join(workdir, "checkpoints", str(config.num_train_steps))
  assert sorted(n for n in os.listdir(step_dir) if not n.startswith("_") and "." not in n) == [
      "params", "training"]


def test_restore_for_inference_matches_in_memory_params(trained):
  workdir, state = trained
  restored = estimator_lib.Estimator.restore(workdir)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               restored.params, state.params)
  in_memory = estimator_lib.Estimator(state.params, tiny.get_config())
  rng = np.random.default_rng(0)
  samples, queries = rng.normal(size=(50, 2)), rng.normal(size=(7, 2))
  a, b = restored(samples, queries), in_memory(samples, queries)
  np.testing.assert_array_equal(np.asarray(a.log_density), np.asarray(b.log_density))
  np.testing.assert_array_equal(np.asarray(a.score), np.asarray(b.score))


def test_rerun_of_finished_workdir_resumes_without_training(trained):
  workdir, state = trained
  again = train.train_and_evaluate(tiny.get_config(), workdir)
  assert int(again.step) == int(state.step)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               again.params, state.params)


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path):
  steps = ["--config.num_train_steps=40", "--config.checkpoint_every_steps=10",
           "--config.log_every_steps=10", *ONE_BUCKET]
  reference = str(tmp_path / "reference")
  result = run_training(reference, *steps)
  assert result.returncode == 0, result.stderr[-3000:]

  interrupted = str(tmp_path / "interrupted")
  with open(tmp_path / "interrupted.log", "w") as log_file:
    process = run_training(interrupted, *steps, log_file=log_file)
    first_checkpoint = os.path.join(interrupted, "checkpoints", "10")
    deadline = time.time() + 300
    while (not os.path.isdir(first_checkpoint) and process.poll() is None
           and time.time() < deadline):
      time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
  assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
  killed_at = checkpointing.latest_step(interrupted)
  assert killed_at is not None and killed_at < 40
  result = run_training(interrupted, *steps)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"Resumed from checkpoint step {killed_at}" in result.stderr

  final = [estimator_lib.Estimator.restore(path).params for path in (reference, interrupted)]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6,
                                                       rtol=1e-6), *final)


def test_four_devices_follow_one_device(tmp_path):
  steps = ["--config.num_train_steps=3", "--config.checkpoint_every_steps=100", *ONE_BUCKET]
  losses = {}
  for devices in (1, 4):
    workdir = str(tmp_path / f"devices{devices}")
    # Appended, so the test-wide flags of conftest.py still apply.
    env = {"XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
                        + f" --xla_force_host_platform_device_count={devices}"}
    result = run_training(workdir, *steps, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Mesh: {devices} device(s)" in result.stderr
    losses[devices] = read_losses(workdir)
  np.testing.assert_allclose(losses[4], losses[1], rtol=1e-4, atol=1e-4)


def test_non_finite_step_is_skipped_and_counted():
  config = tiny.get_config()
  state = train.create_train_state(config, jax.random.key(0))
  poisoned = jax.tree.map(lambda x: x, state.params)
  poisoned["score_head"]["bias"] = poisoned["score_head"]["bias"].at[0].set(jnp.nan)
  state = state._replace(params=poisoned)
  step = jax.jit(train.make_train_step(config, config.buckets[0], config.batch_sizes[0],
                                       train.make_mesh(1)))
  new_state, metrics = step(state, jax.random.key(1), jnp.int32(config.num_train_steps))
  assert float(metrics["finite"]) == 0.0
  assert int(new_state.num_skipped) == 1
  assert int(new_state.step) == 1
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               new_state.params, state.params)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               new_state.opt_state, state.opt_state)


def test_one_compilation_per_bucket():
  config = tiny.get_config()
  mesh = train.make_mesh(1)
  state = train.create_train_state(config, jax.random.key(0))
  compiled, flops = train.compile_steps(config, state, mesh)
  assert len(compiled) == len(config.buckets)
  assert all(f > 0 for f in flops)
  # An AOT-compiled step cannot retrace: a batch of another shape is an error, not a recompile.
  with pytest.raises(Exception):
    compiled[0](state._replace(params=jax.tree.map(lambda x: x[None], state.params)),
                jax.random.key(0), jnp.int32(1))


def test_learning_rate_matches_optax_warmup_cosine():
  config = tiny.get_config().optim
  config.warmup_steps, total = 10, 50
  reference = optax.warmup_cosine_decay_schedule(
      0.0, config.learning_rate, config.warmup_steps, total,
      config.learning_rate * config.end_lr_fraction)
  steps = np.arange(0, 60)
  ours = jax.vmap(lambda s: train.learning_rate(s, jnp.int32(total), config))(steps)
  np.testing.assert_allclose(ours, [reference(s) for s in steps], rtol=1e-5, atol=1e-9)


def test_budgeted_length_fits_the_time_left_and_the_cap():
  config = tiny.get_config()
  config.num_train_steps = 1000
  assert train.resolve_budgeted_steps(config, 30, 0.5, 100.0) == 230
  assert train.resolve_budgeted_steps(config, 30, 0.01, 100.0) == 1000  # Capped.
  assert train.resolve_budgeted_steps(config, 30, 0.5, -5.0) == 31  # Overdrawn: stop next step.


def test_time_budget_decides_the_length_once_and_resume_keeps_it(tmp_path):
  workdir = str(tmp_path / "budget")
  common = ["--config.calibration_steps=2", "--config.optim.warmup_steps=10", *ONE_BUCKET]
  result = run_training(workdir, *common, "--config.time_budget_s=1e6",
                        "--config.num_train_steps=12")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Time budget" in result.stderr and "-> 12 steps" in result.stderr  # Capped by the max.
  saved = checkpointing.load_config(workdir)
  assert saved.budget_resolved and saved.num_train_steps == 12
  assert checkpointing.latest_step(workdir) == 12
  assert os.path.getsize(os.path.join(workdir, "training_curves.png")) > 1000  # The entry point's.
  # A spent budget ends the run at once; the learning rate follows the length it chose.
  tight = str(tmp_path / "tight")
  result = run_training(tight, *common, "--config.time_budget_s=0.001",
                        "--config.num_train_steps=1000")
  assert result.returncode == 0, result.stderr[-3000:]
  saved = checkpointing.load_config(tight)
  assert saved.num_train_steps == 4  # 1 (compile) + 2 (calibration) + 1: the budget was spent.
  with open(os.path.join(tight, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert records[-1]["step"] == 4
  np.testing.assert_allclose(records[-1]["learning_rate"],
                             float(train.learning_rate(3, 4, saved.optim)), rtol=1e-6)
  # A rerun with another budget keeps the decided length: nothing left to train.
  result = run_training(tight, *common, "--config.time_budget_s=1e6",
                        "--config.num_train_steps=1000")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "fixed at 4 steps" in result.stderr and "nothing to train" in result.stderr


def test_time_budget_calibration_must_end_in_the_warmup():
  config = tiny.get_config()
  config.time_budget_s = 10.0
  with pytest.raises(ValueError, match="warm-up"):
    train.train_and_evaluate(config, "/nonexistent/never/written")



def test_estimated_log_normalizer_is_the_log_ratio_mean_over_drawn_queries():
  """Exact log f gives log Z_hat = 0; log f + c gives c; pushed-out queries are left out."""
  truth = jnp.asarray([[-1.0, -2.0, -3.0, -50.0]])
  in_tail = jnp.asarray([[False, False, False, True]])
  batch = train.data_lib.Batch(None, None, None, None, truth, None, in_tail)
  np.testing.assert_allclose(train.estimated_log_normalizer(truth, batch), [0.0], atol=1e-6)
  shifted = truth + jnp.asarray([[0.3, 0.3, 0.3, 40.0]])
  np.testing.assert_allclose(train.estimated_log_normalizer(shifted, batch), [0.3], atol=1e-6)
  mixed = truth + jnp.asarray([[0.0, np.log(2.0), np.log(3.0), 0.0]])
  np.testing.assert_allclose(train.estimated_log_normalizer(mixed, batch), [np.log(2.0)],
                             atol=1e-6)


def test_pseudo_huber_loss_tempers_far_tail_errors():
  config = tiny.get_config()
  config.model.tail_base_dofs = (3.0,)
  model = train.training_model(config)
  params = train.model_lib.init_params(config, jax.random.key(0))
  batch = jax.jit(lambda key: train.data_lib.make_batch(key, config.data, 10, 2, 16, 8))(
      jax.random.key(0))
  batch = batch._replace(log_density=batch.log_density.at[0, 0].add(-1e4))
  loss = jax.jit(functools.partial(train.loss_fn, model=model, alpha=1.0),
                 static_argnames=("huber_delta", "normalization_weight"))
  plain, plain_metrics = loss(params, batch, jax.random.key(0))
  huber, huber_metrics = loss(params, batch, jax.random.key(0), huber_delta=2.0,
                              normalization_weight=0.1)
  assert plain_metrics["log_density_mse"] == huber_metrics["log_density_mse"] > 1e5
  # The outlier's pseudo-Huber term is about delta * |error| / m = 2 * 1e4 / 16.
  assert float(huber) < 2e3 < float(plain)
  assert "log_normalizer_sq" in huber_metrics


def test_several_steps_per_dispatch_equal_single_steps():
  """A lax.scan of k steps is k calls of the step (same data: fold_in(key, step)); steps
  beyond num_train_steps change nothing."""
  config = tiny.get_config()
  state = train.create_train_state(config, jax.random.key(0))
  step = train.make_train_step(config, config.buckets[0], config.batch_sizes[0],
                               train.make_mesh(1))
  single = jax.jit(step)
  expected, losses = state, []
  for _ in range(2):
    expected, metrics = single(expected, jax.random.key(1), jnp.int32(2))
    losses.append(float(metrics["loss"]))
  multi = jax.jit(train.make_multi_step(step, 3))
  actual, metrics = multi(state, jax.random.key(1), jnp.int32(2))  # The third step is past the end.
  assert int(actual.step) == 2
  np.testing.assert_allclose(np.asarray(metrics["loss"]), losses + [0.0], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               actual.params, expected.params)
  assert train.bucket_for_step(7, 2, 3) == 0 and train.bucket_for_step(3, 2, 3) == 1


def test_steps_per_dispatch_checkpoints_by_time_and_compilation_cache(tmp_path):
  """A run of 6 steps in calls of 4 ends at step 6 (the last call partly idle), saves by time
  as well as at the end, and fills the persistent compilation cache."""
  workdir, cache = str(tmp_path / "run"), str(tmp_path / "cache")
  result = run_training(workdir, *ONE_BUCKET, "--config.steps_per_dispatch=4",
                        "--config.checkpoint_every_steps=1000",
                        "--config.checkpoint_every_seconds=1e-6",
                        f"--config.compilation_cache_dir={cache}")
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert [r["step"] for r in records] == [4, 6]
  assert all(np.isfinite(r["loss"]) for r in records)
  steps = sorted(int(p) for p in os.listdir(os.path.join(workdir, "checkpoints"))
                 if p.isdigit())
  assert steps == [4, 6]  # Every call saved (by time), the last at the end.
  assert os.listdir(cache)
