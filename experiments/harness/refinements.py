"""Measures the inference-time refinements: test-time training and rotation averaging.

  python -m experiments.run --config=experiments/configs/refinements.py   # calls `run`
  results = refinements.evaluate(estimator, config)                        # any estimator

For every cell - the out-of-family rows (2-D Laplace and Student-t, drawn by
`experiments.harness.evaluation.problems` exactly as in the evaluation suite) and a few
Gaussian mixture cells (d, n) of the training prior - the estimator is run plainly, with
test-time training for each step count of `config.ttt.steps`
(`kdeformer.adaptation`), and with rotation averaging for each count of
`config.rotations.counts` (`kdeformer.rotation_averaging`), on the same problems.
Each variant reports the pooled relative score MSE and the log-density MSE
(`pooling.ErrorSums`) and its ratio to the plain model (< 1: better).
For rotation averaging it also reports the rotation-equivariance error
(`equivariance.transform_errors`, relative MSE between the outputs on a rotated
problem and the exactly rotated outputs) on prior mixtures.
"""

from collections.abc import Callable
import functools
import time

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.harness import common
from experiments.harness import equivariance
from experiments.harness.evaluation import methods as methods_lib
from experiments.harness.evaluation import pooling
from experiments.harness.evaluation import problems as problems_lib
from experiments.harness.evaluation import suite

PLAIN = "plain"
RATIO_METRICS = ("relative_score_mse", "log_density_mse")


def ttt_name(steps: int) -> str:
  return f"ttt_{steps}"


def rotation_name(count: int) -> str:
  return f"rotations_{count}"


def variants(estimator: Callable, config: ml_collections.ConfigDict) -> dict[str, Callable]:
  """{name: batched estimator}: plain, TTT per step count, rotation averaging per count."""
  out = {PLAIN: estimator}
  for steps in config.ttt.steps:
    if steps:
      out[ttt_name(steps)] = functools.partial(
        estimator, ttt_steps=int(steps), ttt_learning_rate=float(config.ttt.learning_rate)
      )
  rotation_key = jax.random.fold_in(jax.random.key(config.seed), 3)
  for count in config.rotations.counts:
    out[rotation_name(count)] = functools.partial(
      estimator, rotations=int(count), key=jax.random.fold_in(rotation_key, count)
    )
  return out


def score_cell(
  methods: dict[str, Callable], problems: problems_lib.Problems, batch_size: int
) -> dict:
  """{name: {metric: value, "seconds": s}} of every method on one cell's problems."""
  num, _, dim = problems.samples.shape
  row = {}
  for name, method in methods.items():
    sums = pooling.ErrorSums()
    start = time.time()
    for first in range(0, num, batch_size):
      batch = problems_lib.take(problems, np.arange(first, min(first + batch_size, num)))
      out = method(batch.samples, batch.queries)
      b = batch.samples.shape[0]
      output = methods_lib.MethodOutput(
        np.asarray(out.log_density),
        np.asarray(out.score),
        np.zeros((b, 0), np.float32),
        np.zeros((b, 0, dim), np.float32),
      )
      sums.add(output, batch, 0.0)
    result = sums.result()
    row[name] = {metric: result[metric] for metric in RATIO_METRICS + ("score_mse",)}
    row[name]["seconds"] = time.time() - start
  for values in row.values():
    for metric in RATIO_METRICS:
      values[f"{metric}_over_plain"] = values[metric] / row[PLAIN][metric]
  return row


def cells(config: ml_collections.ConfigDict) -> list[tuple[str, int, int, problems_lib.Problems]]:
  """[(family, d, n, problems)]: the out-of-family rows, then the mixture cells."""
  out = []
  # The evaluation suite's streams: the same problems as its rows and cells.
  for row, problems in problems_lib.draw_out_of_family_sets(
    config, suite.OUT_OF_FAMILY_STREAM, with_grid=False
  ):
    for n in config.out_of_family.sample_sizes:
      out.append((row.name, row.dim, n, problems_lib.with_sample_size(problems, n)))
  mixtures = config.mixtures
  base = jax.random.fold_in(jax.random.key(config.seed), suite.BENCHMARK_STREAM)
  for dim in mixtures.dims:
    keys = jax.random.split(jax.random.fold_in(base, dim), mixtures.mixtures_per_cell)
    problems, _ = problems_lib.draw_mixture_problems(
      keys,
      dim,
      jnp.zeros((0, dim)),
      prior=problems_lib.mixture_prior(config),
      max_dim=mixtures.max_dim,
      num_samples=max(mixtures.sample_sizes),
      num_queries=mixtures.num_queries,
    )
    for n in mixtures.sample_sizes:
      out.append(("gmm", dim, n, problems_lib.with_sample_size(problems, n)))
  return out


def rotation_equivariance(
  methods: dict[str, Callable], config: ml_collections.ConfigDict
) -> list[dict]:
  """Rotation-equivariance error of the plain model and of each rotation count, per d."""
  eq = config.rotations.equivariance
  rows = []
  base = jax.random.fold_in(jax.random.key(config.seed), suite.EQUIVARIANCE_STREAM)
  for dim in eq.dims:
    keys = jax.random.split(jax.random.fold_in(base, dim), eq.num_trials)
    problems, _ = problems_lib.draw_mixture_problems(
      keys,
      dim,
      jnp.zeros((0, dim)),
      prior=problems_lib.mixture_prior(config),
      max_dim=config.mixtures.max_dim,
      num_samples=eq.num_samples,
      num_queries=eq.num_queries,
    )
    for name, method in methods.items():
      start = time.time()
      errors = equivariance.transform_errors(
        method,
        problems.samples,
        problems.queries,
        np.random.default_rng([config.seed, dim]),
        kinds=tuple(eq.kinds),
      )
      for summary in equivariance.summary_rows(errors, dim):
        rows.append(dict(summary, method=name, seconds=time.time() - start))
      logging.info(
        "Equivariance d=%d %s: %s",
        dim,
        name,
        ", ".join(f"{r['transform']} score {r['score_mean']:.2e}" for r in rows[-len(eq.kinds) :]),
      )
  return rows


def run(config: ml_collections.ConfigDict, output_dir: str, workdir: str | None = None) -> dict:
  """Loads --workdir's model (None: the shipped one), runs `evaluate`, writes its results.

  results.json and results.md go into output_dir; the tables are printed.
  """
  # The TTT loss's points: a cost knob of the estimator.
  estimator, info = common.load_model(workdir, ttt_num_points=config.ttt.num_points)
  results = evaluate(estimator, config)
  results["model"] = info
  markdown = results_markdown(results)
  common.write_results(results, markdown, output_dir)
  print(markdown)
  logging.info("Refinements done in %.0f s.", results["seconds"])
  return results


def evaluate(estimator: Callable, config: ml_collections.ConfigDict) -> dict:
  """Runs every cell and the equivariance check; returns {"cells": [...], "equivariance": [...]}.

  Args:
    estimator: a `kdeformer.Estimator` (it must accept ttt_steps, ttt_learning_rate,
      rotations and key).
    config: experiments/configs/refinements.py.
  """
  start = time.time()
  methods = variants(estimator, config)
  rows = []
  for family, dim, n, problems in cells(config):
    cell_start = time.time()
    row = {
      "family": family,
      "dim": int(dim),
      "n": int(n),
      "num_problems": int(problems.samples.shape[0]),
      "num_queries": int(problems.queries.shape[1]),
      "methods": score_cell(methods, problems, config.batch_size),
    }
    rows.append(row)
    logging.info(
      "%s d=%d n=%d (%.0f s): %s",
      family,
      dim,
      n,
      time.time() - cell_start,
      ", ".join(
        f"{k} {v['relative_score_mse']:.4f}/{v['log_density_mse']:.4f}"
        for k, v in row["methods"].items()
      ),
    )
  rotation_methods = {k: v for k, v in methods.items() if k == PLAIN or k.startswith("rotations_")}
  equivariance_rows = (
    rotation_equivariance(rotation_methods, config)
    if config.rotations.equivariance.num_trials
    else []
  )
  return {
    "config": config.to_dict(),
    "cells": rows,
    "equivariance": equivariance_rows,
    "seconds": time.time() - start,
  }


def results_markdown(results: dict) -> str:
  """Accuracy tables (value and ratio to plain), seconds per cell and the equivariance table."""
  rows = results["cells"]
  if not rows:
    return ""
  names = list(rows[0]["methods"])
  lines = []
  for metric, label in (
    ("relative_score_mse", "relative score MSE"),
    ("log_density_mse", "log-density MSE"),
  ):
    body = []
    for row in rows:
      cells_text = []
      for name in names:
        values = row["methods"][name]
        text = common.format_number(values[metric])
        if name != PLAIN:
          text += f" ({values[metric + '_over_plain']:.3f})"
        cells_text.append(text)
      body.append([row["family"], row["dim"], row["n"], row["num_problems"]] + cells_text)
    lines += [
      f"\n{label} (in brackets: / plain)\n",
      common.markdown_table(["family", "d", "n", "problems"] + names, body),
    ]
  lines += [
    "\nseconds per cell (all problems)\n",
    common.markdown_table(
      ["family", "d", "n"] + names,
      [
        [row["family"], row["dim"], row["n"]]
        + [f"{row['methods'][name]['seconds']:.1f}" for name in names]
        for row in rows
      ],
    ),
  ]
  if results["equivariance"]:
    lines += [
      "\nequivariance error (relative MSE, mean over trials; max in brackets)\n",
      common.markdown_table(
        ["d", "transform", "method", "log-density", "score"],
        [
          [
            row["dim"],
            row["transform"],
            row["method"],
            f"{row['log_density_mean']:.2e} ({row['log_density_max']:.1e})",
            f"{row['score_mean']:.2e} ({row['score_max']:.1e})",
          ]
          for row in results["equivariance"]
        ],
      ),
    ]
  return "\n".join(lines) + "\n"
