"""Measures the training step: seconds per step and achieved GFLOP/s per n bucket."""

import time

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import ml_collections

from kdeformer.training import train


def benchmark_training_step(config: ml_collections.ConfigDict, num_steps: int = 5) -> list[dict]:
  """Compiles every bucket's step and times `num_steps` steps after one warm-up step."""
  mesh = train.make_mesh(config.get("num_devices"))
  state = jax.device_put(train.create_train_state(config, jax.random.key(0)),
                         NamedSharding(mesh, P()))
  start = time.time()
  compiled, flops = train.compile_steps(config, state, mesh)
  compile_seconds = time.time() - start
  key = jax.random.key(1)
  num_train_steps = jnp.int32(config.num_train_steps)
  rows = []
  for executable, flop, n, batch in zip(compiled, flops, config.buckets, config.batch_sizes):
    state, metrics = executable(state, key, num_train_steps)
    jax.block_until_ready(metrics)
    start = time.time()
    for _ in range(num_steps):
      state, metrics = executable(state, key, num_train_steps)
    jax.block_until_ready(metrics)
    seconds = (time.time() - start) / num_steps
    rows.append(dict(num_samples=n, batch_size=batch, seconds_per_step=seconds,
                     gflop_per_step=flop / 1e9, gflops_per_second=flop / seconds / 1e9,
                     compile_seconds_all_buckets=compile_seconds))
  return rows


def print_report(rows: list[dict]) -> None:
  print(f"{'n':>6} {'batch':>6} {'s/step':>8} {'GFLOP/step':>11} {'GFLOP/s':>8}")
  for r in rows:
    print(f"{r['num_samples']:>6} {r['batch_size']:>6} {r['seconds_per_step']:>8.3f} "
          f"{r['gflop_per_step']:>11.2f} {r['gflops_per_second']:>8.1f}")
  total_time = sum(r["seconds_per_step"] for r in rows)
  total_flop = sum(r["gflop_per_step"] for r in rows)
  print(f"mean over the bucket cycle: {total_time / len(rows):.3f} s/step, "
        f"{total_flop / total_time:.1f} GFLOP/s (compile {rows[0]['compile_seconds_all_buckets']:.0f}"
        " s for all buckets)")
