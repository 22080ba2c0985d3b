"""The evaluation suite: the standard benchmark, out-of-family rows, equivariance, figures.

  results = suite.evaluate(estimator, config, output_dir)

writes results.json, results.md and the PNG figures into output_dir and returns
the results dict. `config` is one of experiments/configs/evaluate_*.py.

The standard benchmark draws, for every cell (d, n), `mixtures_per_cell`
Gaussian mixtures from the training prior with a fixed seed, n samples and
`num_queries` queries from each true mixture (`problems`), runs every method on
them (`methods`) and pools their errors against the exact log-density and score
into the cell's metrics (`pooling`). The mixtures and queries depend on
(seed, d, index) only, and the sample set for n is the first n of one sample set
of the largest n: the n-columns of one d share their mixtures and their samples
are nested (paired comparisons, smoother error-versus-n curves). The
out-of-family rows (config.out_of_family.rows, named as `problems.ROW_NAME_HELP`
says) do the same with `repeats` independent sample sets of a fixed
distribution; the equivariance table runs `equivariance.transform_errors` on
prior mixtures. Above config.max_baseline_samples samples only the model runs
(the other columns say "skipped"). The figures show benchmark problems and
reuse the outputs on the MISE grid, so they cost no extra model calls.

Each stage logs a progress line per finished cell (with elapsed time and ETA),
and each problem draw logs its size and time.
"""

from collections.abc import Callable
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.harness import common
from experiments.harness import equivariance
from experiments.harness.evaluation import figures
from experiments.harness.evaluation import methods as methods_lib
from experiments.harness.evaluation import pooling
from experiments.harness.evaluation import problems as problems_lib
from experiments.harness.evaluation import reports
from experiments.harness.progress import Progress

# Streams of jax.random.fold_in(key(seed), stream): one per part, so each part's problems do not
# depend on which other parts run.
BENCHMARK_STREAM, OUT_OF_FAMILY_STREAM, EQUIVARIANCE_STREAM = 0, 1, 2


def cell_methods(
  methods, num_samples: int, config: ml_collections.ConfigDict, *, model_min_samples: int = 0
) -> tuple:
  """The methods run on a cell of n samples: the baselines only up to max_baseline_samples,
  the model's methods only from its min_samples (below, the estimator refuses)."""
  limit = config.max_baseline_samples
  if num_samples < model_min_samples:
    methods = [name for name in methods if name not in methods_lib.MODEL_METHODS]
  return tuple(name for name in methods if name == "model" or limit is None or num_samples <= limit)


def evaluate_cell(
  estimator: Callable,
  problems: problems_lib.Problems,
  grid: jax.Array,
  cell_volume: float,
  *,
  config: ml_collections.ConfigDict,
  methods,
  keep: int | None = None,
) -> tuple[dict, dict | None]:
  """Runs every method (`cell_methods` of them) on the problems of one cell; returns its row.

  Problems go in batches of config.batch_size (the last one padded by
  repetition, so all batches share one compiled shape; the repeats are not
  pooled).

  Args:
    estimator: batched estimator.
    problems: the cell's problems (leading axis = problem).
    grid: (g, d) MISE grid; cell_volume its cell volume.
    config: evaluation config.
    methods: names from methods_lib.METHODS.
    keep: index of a problem whose grid outputs are returned for the figures.

  Returns:
    (row {"dim", "n", "num_problems", "num_queries", "metrics": {method: {metric: value}},
    "oracle_factor": {criterion: median}, "seconds": {...}, "model_over_scott": {...},
    "skipped": [methods not run]}, kept {"problem": Problems, "outputs": {method:
    MethodOutput}} or None).
  """
  num, n, dim = problems.samples.shape
  run = cell_methods(methods, n, config, model_min_samples=getattr(estimator, "min_samples", 0))
  skipped = [name for name in methods if name not in run]
  methods = [name for name in methods if name not in skipped]
  batch_size = min(config.batch_size, num)
  sums = {name: pooling.ErrorSums(config.typical_quantile) for name in methods}
  factors = {"score": [], "log_density": [], "mise": []}
  seconds = {"model": 0.0, "baselines": 0.0}
  kept = None
  for start in range(0, num, batch_size):
    index = np.arange(start, start + batch_size)
    real = index < num
    batch = problems_lib.take(problems, np.minimum(index, num - 1))
    outputs, batch_factors, batch_seconds = methods_lib.run_methods(
      estimator, batch, grid, methods, config=config
    )
    real_problems = problems_lib.take(batch, real)
    for name, output in outputs.items():
      sums[name].add(problems_lib.take(output, real), real_problems, cell_volume)
    for criterion, values in batch_factors.items():
      factors[criterion].extend(np.asarray(values)[real].tolist())
    for part, value in batch_seconds.items():
      seconds[part] += value
    if keep is not None and start <= keep < start + batch_size:
      kept = {
        "problem": problems_lib.take(batch, keep - start),
        "outputs": {k: problems_lib.take(v, keep - start) for k, v in outputs.items()},
      }
  row = {
    "dim": int(dim),
    "n": int(n),
    "num_problems": int(num),
    "num_queries": int(problems.queries.shape[1]),
    "metrics": {name: sums[name].result() for name in methods},
    "oracle_factor": {k: float(np.median(v)) for k, v in factors.items() if v},
    "seconds": seconds,
    "skipped": skipped,
  }
  return pooling.add_ratios(row), kept


def log_cell(progress: Progress, row: dict, seconds: float) -> None:
  """One progress line for a finished cell, with its relative score MSE per method."""
  table = row["metrics"]
  parts = ", ".join(
    f"{methods_lib.METHOD_LABELS[k]} {v['relative_score_mse']:.4f}" for k, v in table.items()
  )
  progress.done(
    f"{row.get('family', 'gmm')} d={row['dim']} n={row['n']}",
    f"{row['num_problems']} problems, {seconds:.1f} s (model "
    f"{row['seconds']['model']:.1f} s, baselines {row['seconds']['baselines']:.1f} s); "
    f"relative score MSE: {parts}",
  )


def figure_cells(config: ml_collections.ConfigDict) -> dict[int, int]:
  """{d: n} of the benchmark cells whose problems the figures show (d = 2 field, d = 1 density).

  Raises:
    ValueError: a figure's cell is not a cell of the benchmark.
  """
  if not config.figures.enabled:
    return {}
  cells = {2: config.figures.field_num_samples, 1: config.figures.density_num_samples}
  for dim, n in cells.items():
    if dim not in config.benchmark.dims or n not in config.benchmark.sample_sizes:
      raise ValueError(
        f"The figures show the benchmark cell d={dim}, n={n}: it must be a cell of the "
        f"benchmark (dims {list(config.benchmark.dims)}, sample_sizes "
        f"{list(config.benchmark.sample_sizes)}); change config.figures or disable them."
      )
  return cells


def run_benchmark(
  estimator: Callable, config: ml_collections.ConfigDict, methods
) -> tuple[dict, dict]:
  """The standard GMM benchmark: a row per (d, n) of config.benchmark.

  Returns:
    ({"rows": a row per (d, n), "summary": geometric means of model / Scott},
     {d: kept problem and outputs for the figures}).
  """
  bench = config.benchmark
  prior = problems_lib.mixture_prior(config)
  max_dim = problems_lib.padded_dim(config)
  shown = figure_cells(config)
  rows, kept = [], {}
  base = jax.random.fold_in(jax.random.key(config.seed), BENCHMARK_STREAM)
  progress = Progress("benchmark", len(bench.dims) * len(bench.sample_sizes))
  for dim in bench.dims:
    keys = jax.random.split(jax.random.fold_in(base, dim), bench.mixtures_per_cell)
    grid, cell_volume = problems_lib.evaluation_grid(dim, config)
    problems, modes = problems_lib.draw_mixture_problems(
      keys,
      dim,
      grid,
      prior=prior,
      max_dim=max_dim,
      num_samples=max(bench.sample_sizes),
      num_queries=bench.num_queries,
    )
    # The figures show the first mixture with at least figures.min_modes modes.
    rich = np.flatnonzero(modes >= config.figures.min_modes)
    figure_index = int(rich[0]) if rich.size else 0
    for n in bench.sample_sizes:
      start = time.time()
      keep = figure_index if shown.get(dim) == n else None
      row, kept_cell = evaluate_cell(
        estimator,
        problems_lib.with_sample_size(problems, n),
        grid,
        cell_volume,
        config=config,
        methods=methods,
        keep=keep,
      )
      row["family"] = "gmm"
      rows.append(row)
      if kept_cell is not None:
        kept[dim] = dict(kept_cell, grid=np.asarray(grid), n=n)
      log_cell(progress, row, time.time() - start)
  return {"rows": rows, "summary": pooling.ratio_summary(rows)}, kept


def run_out_of_family(estimator: Callable, config: ml_collections.ConfigDict, methods) -> dict:
  """The rows of config.out_of_family.rows (heavy tails, a Laplace peak, skew, two scales).

  Returns:
    {"rows": a row per (distribution, n), with "family" its name; "distributions": {name:
    description}}.
  """
  oof = config.out_of_family
  rows = []
  sets = problems_lib.draw_out_of_family_sets(config, OUT_OF_FAMILY_STREAM, with_grid=True)
  progress = Progress("out of family", len(sets) * len(oof.sample_sizes))
  for spec, problems in sets:
    grid, cell_volume = problems_lib.evaluation_grid(spec.dim, config)
    for n in oof.sample_sizes:
      start = time.time()
      row, _ = evaluate_cell(
        estimator,
        problems_lib.with_sample_size(problems, n),
        grid,
        cell_volume,
        config=config,
        methods=methods,
      )
      row["family"] = spec.name
      rows.append(row)
      log_cell(progress, row, time.time() - start)
  return {"rows": rows, "distributions": {spec.name: spec.description for spec, _ in sets}}


def run_equivariance(estimator: Callable, config: ml_collections.ConfigDict) -> dict:
  """The paper's Table 1 on training-prior mixtures, for each d of config.equivariance.dims."""
  eq = config.equivariance
  rows = []
  base = jax.random.fold_in(jax.random.key(config.seed), EQUIVARIANCE_STREAM)
  progress = Progress("equivariance", len(eq.dims))
  for dim in eq.dims:
    keys = jax.random.split(jax.random.fold_in(base, dim), eq.num_trials)
    # Drawn with the benchmark's shapes (one compiled program for both), then cut to size.
    problems, _ = problems_lib.draw_mixture_problems(
      keys,
      dim,
      jnp.zeros((0, dim)),
      prior=problems_lib.mixture_prior(config),
      max_dim=problems_lib.padded_dim(config),
      num_samples=max(eq.num_samples, *config.benchmark.sample_sizes),
      num_queries=max(eq.num_queries, config.benchmark.num_queries),
    )
    errors = equivariance.transform_errors(
      estimator,
      problems.samples[:, : eq.num_samples],
      problems.queries[:, : eq.num_queries],
      np.random.default_rng([int(config.seed), int(dim)]),
      min_scale=eq.min_scale,
      max_scale=eq.max_scale,
      max_shift=eq.max_shift,
    )
    rows += equivariance.summary_rows(errors, dim)
    progress.done(
      f"d={dim}",
      f"{eq.num_trials} trials; score error: "
      + ", ".join(f"{r['transform']} {r['score_mean']:.1e}" for r in rows if r["dim"] == dim),
    )
  return {"rows": rows}


def bar_checks(results: dict, config: ml_collections.ConfigDict) -> list[dict]:
  """The pretrained-model issue's bars on these results (only indicative below 100 mixtures).

  A ratio below one is no win where the model is worse than predicting zero (relative score
  MSE > 1): such cells are counted by a check of their own, and fail the out-of-family ones.

  Returns:
    [{"check": what, "value": measured, "bar": threshold, "passed": bool}]; empty if the
    benchmark has no model / Scott ratios.
  """
  checks = []
  bars = config.bars
  rows = [row for row in results["benchmark"]["rows"] if "model_over_scott" in row]
  if not rows:
    return checks
  worst = max(row["model_over_scott"]["relative_score_mse"] for row in rows)
  checks.append(
    {
      "check": "relative score MSE model / Scott, worst GMM cell",
      "value": worst,
      "bar": bars.max_cell_ratio,
      "passed": worst <= bars.max_cell_ratio,
    }
  )
  geo = results["benchmark"]["summary"]["relative_score_mse"]["geometric_mean_model_over_scott"]
  checks.append(
    {
      "check": "relative score MSE model / Scott, geometric mean over GMM cells",
      "value": geo,
      "bar": bars.max_geomean_ratio,
      "passed": geo is not None and geo <= bars.max_geomean_ratio,
    }
  )
  worst_ld = max(row["model_over_scott"]["log_density_mse"] for row in rows)
  checks.append(
    {
      "check": "log-density MSE model / Scott, worst GMM cell (must be < 1)",
      "value": worst_ld,
      "bar": 1.0,
      "passed": worst_ld < 1.0,
    }
  )
  losing = sum(
    pooling.worse_than_zero("relative_score_mse", row["metrics"]["model"]["relative_score_mse"])
    for row in results["benchmark"]["rows"]
    if "model" in row["metrics"]
  )
  checks.append(
    {
      "check": "GMM cells where the model is worse than predicting zero (relative score MSE > 1)",
      "value": losing,
      "bar": 0,
      "passed": losing == 0,
    }
  )
  for row in results.get("out_of_family", {}).get("rows", []):
    if (
      row["family"] in bars.out_of_family_rows
      and row["n"] == bars.out_of_family_n
      and "model_over_scott" in row
    ):
      ratio = row["model_over_scott"]["relative_score_mse"]
      model = row["metrics"]["model"]["relative_score_mse"]
      checks.append(
        {
          "check": f"{row['family']} n={row['n']}: relative score MSE model / Scott "
          f"(model {common.format_number(model)}, must be <= 1 too)",
          "value": ratio,
          "bar": 1.0,
          "passed": ratio <= 1.0 and not pooling.worse_than_zero("relative_score_mse", model),
        }
      )
  return checks


def evaluate(
  estimator: Callable,
  config: ml_collections.ConfigDict,
  output_dir: str,
  *,
  info: dict | None = None,
  config_name: str = "",
) -> dict:
  """Runs the whole suite and writes results.json, results.md and the figures to output_dir.

  Args:
    estimator: callable (samples (b, n, d), queries (b, m, d)) -> Estimate, batched; usually a
      `kdeformer.Estimator`.
    config: an evaluate_* config.
    output_dir: created if missing.
    info: model facts for the report (see `common.model_info`); derived from the estimator if
      None.
    config_name: shown in the report.

  Returns:
    The results dict (as written to results.json).

  Raises:
    ValueError: config.methods names an unknown method, config.out_of_family.rows an unknown
      row, or the figures a cell the benchmark does not have (all before any cell runs).
  """
  methods = tuple(config.methods)
  unknown = set(methods) - set(methods_lib.METHODS)
  if unknown:
    raise ValueError(
      f"config.methods has unknown names {sorted(unknown)}; choose from {methods_lib.METHODS}."
    )
  problems_lib.out_of_family_rows(config)  # Before the benchmark's minutes, not after.
  methods = tuple(m for m in methods_lib.METHODS if m in methods)
  os.makedirs(output_dir, exist_ok=True)
  start = time.time()
  results = {
    "model": info or common.model_info(estimator, "in-memory estimator"),
    "config_name": config_name,
    "seed": int(config.seed),
    "methods": list(methods),
    "config": config.to_dict(),
    "seconds": {},
  }
  results["benchmark"], kept = run_benchmark(estimator, config, methods)
  results["seconds"]["benchmark"] = time.time() - start
  part = time.time()
  results["out_of_family"] = (
    run_out_of_family(estimator, config, methods) if config.out_of_family.rows else {"rows": []}
  )
  results["seconds"]["out_of_family"] = time.time() - part
  part = time.time()
  results["equivariance"] = (
    run_equivariance(estimator, config) if config.equivariance.num_trials else {"rows": []}
  )
  results["seconds"]["equivariance"] = time.time() - part
  results["checks"] = bar_checks(results, config)
  part = time.time()
  results["figures"] = (
    figures.make_figures(results, kept, config, output_dir, methods)
    if config.figures.enabled
    else []
  )
  results["seconds"]["figures"] = time.time() - part
  results["seconds"]["total"] = time.time() - start
  common.write_results(results, reports.results_markdown(results), output_dir)
  return results
