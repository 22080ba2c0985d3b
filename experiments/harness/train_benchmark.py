"""Measures the training step: seconds per step and achieved GFLOP/s per n bucket.

  python -m experiments.run --config=experiments/configs/train_benchmark.py[:TRAIN_CONFIG]

FLOPs come from XLA's cost analysis of the compiled step; GFLOP/s = FLOPs / step time.
"""

import time

from absl import logging
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections

from experiments.harness import common
from experiments.harness.progress import Progress
from kdeformer.training import train


def benchmark_training_step(config: ml_collections.ConfigDict, num_steps: int = 5) -> list[dict]:
  """Compiles every bucket's step and times `num_steps` steps after one warm-up step.

  Returns:
    One row per n bucket: num_samples, batch_size, seconds_per_step,
    gflop_per_step (XLA's cost analysis), gflops_per_second and
    compile_seconds_all_buckets (the buckets compile together).
  """
  mesh = train.make_mesh(config.get("num_devices"))
  state = jax.device_put(
    train.create_train_state(config, jax.random.key(0)), NamedSharding(mesh, P())
  )
  start = time.time()
  logging.info("Compiling the training step of %d buckets", len(config.buckets))
  compiled, flops = train.compile_steps(config, state, mesh)
  compile_seconds = time.time() - start
  logging.info("Compiled in %.0f s", compile_seconds)
  key = jax.random.key(1)
  num_train_steps = jnp.int32(config.num_train_steps)
  rows = []
  progress = Progress("training step benchmark", len(config.buckets))
  for executable, flop, n, batch in zip(compiled, flops, config.buckets, config.batch_sizes):
    state, metrics = executable(state, key, num_train_steps)
    jax.block_until_ready(metrics)
    start = time.time()
    for _ in range(num_steps):
      state, metrics = executable(state, key, num_train_steps)
    jax.block_until_ready(metrics)
    seconds = (time.time() - start) / num_steps
    rows.append(
      dict(
        num_samples=n,
        batch_size=batch,
        seconds_per_step=seconds,
        gflop_per_step=flop / 1e9,
        gflops_per_second=flop / seconds / 1e9,
        compile_seconds_all_buckets=compile_seconds,
      )
    )
    progress.done(f"n={n} batch={batch}", f"{seconds:.3f} s/step")
  return rows


def run(config: ml_collections.ConfigDict, output_dir: str, workdir: str | None = None) -> dict:
  """Times config.steps steps of config.train's training step per bucket; prints the table.

  Also writes results.json and results.md to output_dir.

  Raises:
    common.ConfigError: a --workdir (the step runs on a fresh initialisation of config.train).
  """
  if workdir:
    raise common.ConfigError(
      "times a fresh training state of config.train and loads no "
      "model: no --workdir (pick the training config with "
      "--config=experiments/configs/train_benchmark.py:<name>)."
    )
  rows = benchmark_training_step(config.train.copy_and_resolve_references(), config.steps)
  markdown = report_markdown(rows)
  results = {"config": config.to_dict(), "rows": rows}
  common.write_results(results, markdown, output_dir)
  print(markdown)
  return results


def report_markdown(rows: list[dict]) -> str:
  """The rows of `benchmark_training_step` as a Markdown table and a line on the whole cycle.

  The cycle line weighs every bucket once (training visits them in turn), so its
  GFLOP/s is total FLOPs over total time, not the mean of the per-bucket rates.
  """
  table = common.markdown_table(
    ["n", "batch", "s/step", "GFLOP/step", "GFLOP/s"],
    [
      [
        r["num_samples"],
        r["batch_size"],
        common.format_number(r["seconds_per_step"]),
        common.format_number(r["gflop_per_step"]),
        common.format_number(r["gflops_per_second"]),
      ]
      for r in rows
    ],
  )
  total_time = sum(r["seconds_per_step"] for r in rows)
  total_flop = sum(r["gflop_per_step"] for r in rows)
  return (
    f"{table}\n\nMean over the bucket cycle: {total_time / len(rows):.3f} s/step, "
    f"{total_flop / total_time:.1f} GFLOP/s (compile "
    f"{rows[0]['compile_seconds_all_buckets']:.0f} s for all buckets).\n"
  )
