"""The evaluation suite: the standard benchmark, out-of-family rows, equivariance, figures.

  results = evaluation.evaluate(estimator, config, output_dir)

writes results.json, results.md and the PNG figures into output_dir and returns
the results dict. `config` is one of experiments/configs/evaluate_*.py.

The standard benchmark draws, for every cell (d, n), `mixtures_per_cell`
Gaussian mixtures from the training prior with a fixed seed, n samples and
`num_queries` queries from each true mixture, and scores every method at the
queries against the exact log-density and score:

  relative score MSE  sum ||s_hat - s||^2 / sum ||s||^2, pooled over all
                      mixtures and queries of the cell (zero predictor = 1)
  score MSE           mean over queries of ||s_hat - s||^2
  log-density MSE     mean over queries of (log f_hat - log f)^2
  MISE                (d <= 2) integral of (f_hat - f)^2 on a regular grid over
                      [-limit, limit]^d, averaged over the mixtures.

The mixtures and queries depend on (seed, d, index) only, and the sample set
for n is the first n of one sample set of the largest n: the n-columns of one
d share their mixtures and their samples are nested (paired comparisons,
smoother error-versus-n curves). The out-of-family rows do the same with
`repeats` independent sample sets of a fixed distribution.

Methods: the estimator; Gaussian KDE with Scott's and Silverman's factors and
with the oracle factor (chosen per problem and per metric with the truth: by
the score error at the queries for the score metrics, by the log-density error
at the queries for the log-density MSE, by the grid error for the MISE);
SD-KDE with the exact score, Emp-SD-KDE (the pilot KDE's score) and SD-KDE
with the estimator's own score at the samples as the plug-in.

The figures show benchmark problems and reuse the outputs on the MISE grid, so
they cost no extra model calls.
"""

import functools
import json
import math
import os
import time
from typing import Callable, NamedTuple

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kdeformer import checkpoints
from kdeformer import distributions
from experiments.harness import equivariance
from kdeformer import estimator as estimator_lib
from experiments.harness import figures
from kdeformer import kde
from kdeformer import linalg
from kdeformer import metrics
from kdeformer.estimate import Estimate
from experiments.harness.progress import Progress

# Columns of the tables, in order, with their labels.
METHODS = ("model", "kde_scott", "kde_silverman", "kde_oracle", "sd_kde_exact", "emp_sd_kde",
           "sd_kde_model")
METHOD_LABELS = {
    "model": "model",
    "kde_scott": "KDE Scott",
    "kde_silverman": "KDE Silverman",
    "kde_oracle": "KDE oracle h",
    "sd_kde_exact": "SD-KDE exact score",
    "emp_sd_kde": "Emp-SD-KDE",
    "sd_kde_model": "SD-KDE model score",
}
METRICS = ("relative_score_mse", "score_mse", "log_density_mse", "mise")
METRIC_LABELS = {
    "relative_score_mse": "relative score MSE (pooled: sum ||s_hat - s||^2 / sum ||s||^2)",
    "score_mse": "score MSE (mean over queries of ||s_hat - s||^2)",
    "log_density_mse": "log-density MSE (mean over queries)",
    "mise": "MISE on the grid (mean over problems of the integral of (f_hat - f)^2)",
}
ORACLE_NOTE = ("KDE oracle h: the factor of Cov(X) on a 25-point log grid in [0.02, 2], chosen per "
               "problem and per metric with the truth: by the score error at the queries "
               "(kde.oracle_kde criterion='score') for the score metrics, by the log-density "
               "error at the queries (criterion='log_density') for the log-density MSE, and by "
               "the squared density error on the grid for the MISE.")
BASELINES = METHODS[1:]
MODEL_METHODS = ("model", "sd_kde_model")
Distribution = distributions.GaussianMixture | distributions.Laplace | distributions.StudentT


class Problems(NamedTuple):
  """Estimation problems with the truth (numpy; a leading batch axis b when stacked).

  Attributes:
    samples: (b, n, d).
    queries: (b, m, d) drawn from the true distributions.
    true_log_density: (b, m) at the queries.
    true_score: (b, m, d) at the queries.
    true_sample_score: (b, n, d) exact score at the samples (SD-KDE's plug-in).
    true_grid_log_density: (b, g) on the MISE grid (g = 0 for d > 2).
    true_grid_score: (b, g, d) on the grid.
  """
  samples: np.ndarray
  queries: np.ndarray
  true_log_density: np.ndarray
  true_score: np.ndarray
  true_sample_score: np.ndarray
  true_grid_log_density: np.ndarray
  true_grid_score: np.ndarray


class MethodOutput(NamedTuple):
  """One method's estimates for a batch of problems (numpy)."""
  log_density: np.ndarray  # (b, m) at the queries.
  score: np.ndarray  # (b, m, d) at the queries.
  grid_log_density: np.ndarray  # (b, g) on the grid.
  grid_score: np.ndarray  # (b, g, d) on the grid.


# ---------------------------------------------------------------------------------------------
# Problems. Each problem is drawn by one jitted, unbatched call with shapes padded to a common
# max_dim, so the whole benchmark compiles a handful of programs whatever its size: the
# mixtures of every d share one program per (n, m) shape. These programs run once per problem
# and take milliseconds, while XLA's optimising compile of the prior's samplers takes seconds,
# so they are compiled without backend optimisation (about 3x faster to compile on a CPU).
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def mixture_prior(config: ml_collections.ConfigDict) -> tuple:
  """Keyword arguments of `distributions.sample_mixture_prior` (less max_dim), hashable."""
  prior = config.prior
  return (("min_modes", int(prior.min_modes)), ("max_modes", int(prior.max_modes)),
          ("mean_range", float(prior.mean_range)), ("min_variance", float(prior.min_variance)),
          ("max_variance", float(prior.max_variance)),
          ("weight_concentration", float(prior.weight_concentration)))


def padded_dim(config: ml_collections.ConfigDict) -> int:
  """The common padded dimension of every mixture problem of the suite."""
  return max(list(config.benchmark.dims) + list(config.equivariance.dims) + [1])


def _problem(distribution, key, num_samples: int, num_queries: int) -> Problems:
  """Queries from fold_in(key, 1), samples from fold_in(key, 2), with the truth (no grid yet)."""
  queries = distribution.sample(jax.random.fold_in(key, 1), num_queries)
  samples = distribution.sample(jax.random.fold_in(key, 2), num_samples)
  truth = distribution.log_prob_and_score(queries)
  dim = queries.shape[-1]
  return Problems(samples, queries, truth.log_density, truth.score,
                  distribution.log_prob_and_score(samples).score, jnp.zeros((0,)),
                  jnp.zeros((0, dim)))


@functools.partial(jax.jit, static_argnames=("prior", "max_dim", "num_samples", "num_queries"),
                   compiler_options=FAST_COMPILE)
def _mixture_problem(key, dim, *, prior: tuple, max_dim: int, num_samples: int,
                     num_queries: int) -> tuple[Problems, distributions.GaussianMixture]:
  """A prior mixture (from fold_in(key, 0)) zero-padded to max_dim, and its problem."""
  mixture = distributions.sample_mixture_prior(jax.random.fold_in(key, 0), dim, max_dim=max_dim,
                                               **dict(prior))
  return _problem(mixture, key, num_samples, num_queries), mixture


@functools.partial(jax.jit, static_argnames=("num_samples", "num_queries"),
                   compiler_options=FAST_COMPILE)
def _fixed_problem(distribution, key, *, num_samples: int, num_queries: int) -> Problems:
  return _problem(distribution, key, num_samples, num_queries)


@functools.partial(jax.jit, compiler_options=FAST_COMPILE)
def _batched_truth(distribution, points: jax.Array) -> Estimate:
  """Truth at the same points (g, D) for a batch of distributions: ((b, g), (b, g, D))."""
  return jax.vmap(lambda dist: dist.log_prob_and_score(points))(distribution)


def stack(trees: list):
  return jax.tree.map(lambda *x: np.stack(x), *trees)


def _with_grid_truth(problems: Problems, distribution, grid: jax.Array) -> Problems:
  if not grid.shape[0]:
    b = problems.samples.shape[0]
    return problems._replace(true_grid_log_density=np.zeros((b, 0), np.float32),
                             true_grid_score=np.zeros((b, 0, grid.shape[1]), np.float32))
  truth = jax.device_get(_batched_truth(distribution, grid))
  return problems._replace(true_grid_log_density=truth.log_density, true_grid_score=truth.score)


def draw_mixture_problems(keys: jax.Array, dim: int, grid: jax.Array, *, prior: tuple,
                          max_dim: int, num_samples: int, num_queries: int
                          ) -> tuple[Problems, np.ndarray]:
  """One training-prior mixture per key, d-dimensional.

  The mixtures are drawn zero-padded to max_dim, so every d shares one
  compiled program; the results are sliced back to d.

  Args:
    keys: (b,) problem keys.
    dim: d <= max_dim.
    grid: (g, d) points for the grid truth.
    prior: `mixture_prior(config)`.
    max_dim: padded dimension of the computation.
    num_samples: n.
    num_queries: m.

  Returns:
    (Problems with a leading axis b, the number of modes of each mixture (b,)).
  """
  drawn = [_mixture_problem(key, jnp.asarray(dim), prior=prior, max_dim=max_dim,
                            num_samples=num_samples, num_queries=num_queries) for key in keys]
  problems, mixtures = stack(jax.device_get(drawn))
  problems = _with_grid_truth(problems, mixtures, jnp.pad(grid, [(0, 0), (0, max_dim - dim)]))
  problems = problems._replace(**{
      name: getattr(problems, name)[..., :dim]
      for name in ("samples", "queries", "true_score", "true_sample_score", "true_grid_score")})
  return problems, np.sum(np.isfinite(mixtures.log_weights), axis=-1)


def draw_fixed_problems(distribution: Distribution, keys: jax.Array, grid: jax.Array, *,
                        num_samples: int, num_queries: int) -> Problems:
  """Independent sample and query sets of one distribution, one per key."""
  problems = stack(jax.device_get([_fixed_problem(distribution, key, num_samples=num_samples,
                                                  num_queries=num_queries) for key in keys]))
  batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(keys),) + jnp.shape(x)),
                         distribution)
  return _with_grid_truth(problems, batched, grid)


def with_sample_size(problems: Problems, num_samples: int) -> Problems:
  """The first n samples of every problem (sample sets for smaller n are nested in larger ones)."""
  return problems._replace(samples=problems.samples[:, :num_samples],
                           true_sample_score=problems.true_sample_score[:, :num_samples])


def evaluation_grid(dim: int, config: ml_collections.ConfigDict) -> tuple[jax.Array, float]:
  """The MISE grid: (g, d) points over [-limit, limit]^d and the cell volume; g = 0 for d > 2."""
  points = {1: config.grid.points_1d, 2: config.grid.points_2d}.get(dim)
  if points is None:
    return jnp.zeros((0, dim)), 0.0
  limit = config.grid.limit
  return metrics.regular_grid([-limit] * dim, [limit] * dim, points)


# ---------------------------------------------------------------------------------------------
# Methods.


def run_model(estimator: Callable, problems: Problems, grid: jax.Array
              ) -> tuple[MethodOutput, jax.Array]:
  """The estimator at the queries, the grid and the samples, in one batched call.

  Returns:
    (its MethodOutput, its score at the samples (b, n, d) for SD-KDE's plug-in).
  """
  b, _, d = problems.samples.shape
  m, g = problems.queries.shape[1], grid.shape[0]
  points = np.concatenate(
      [problems.queries, np.broadcast_to(np.asarray(grid), (b, g, d)), problems.samples], axis=1)
  out = estimator(problems.samples, points)
  log_density, score = np.asarray(out.log_density), np.asarray(out.score)
  return (MethodOutput(log_density[:, :m], score[:, :m], log_density[:, m:m + g],
                       score[:, m:m + g]), jnp.asarray(score[:, m + g:]))


@functools.partial(jax.jit, static_argnames=("methods", "bandwidth_scale", "pilot_bandwidth"))
def _baselines(problems: Problems, grid: jax.Array, model_sample_score: jax.Array, *,
               methods: tuple[str, ...], bandwidth_scale: float, pilot_bandwidth: str):
  """Every KDE-type baseline on a batch, at the queries and the grid; and the oracle factors."""
  m = problems.queries.shape[1]

  def one(samples, queries, true_log_density, true_score, true_sample_score, true_grid_log_density,
          model_score):
    points = jnp.concatenate([queries, grid], axis=0)
    sd = functools.partial(kde.sd_kde, samples, points, bandwidth_scale=bandwidth_scale,
                           pilot_bandwidth=pilot_bandwidth)
    out, factors = {}, {}
    for name in methods:
      if name == "kde_scott":
        out[name] = kde.gaussian_kde(samples, points, "scott")
      elif name == "kde_silverman":
        out[name] = kde.gaussian_kde(samples, points, "silverman")
      elif name == "kde_oracle":
        _, factors["score"] = kde.oracle_kde(samples, queries, true_score=true_score,
                                             criterion="score")
        _, factors["log_density"] = kde.oracle_kde(
            samples, queries, true_log_density=true_log_density, criterion="log_density")
        by_score = kde.gaussian_kde(samples, queries, factors["score"])
        by_log_density = kde.gaussian_kde(samples, queries, factors["log_density"])
        on_grid = Estimate(jnp.zeros((0,)), jnp.zeros((0, grid.shape[1])))
        if grid.shape[0]:
          factors["mise"] = best_factor_on_grid(samples, grid, true_grid_log_density)
          on_grid = kde.gaussian_kde(samples, grid, factors["mise"])
        # Each metric from the factor chosen by that metric.
        out[name] = (by_log_density.log_density, by_score.score, on_grid.log_density,
                     on_grid.score)
        continue
      elif name == "sd_kde_exact":
        out[name] = sd(score_fn=lambda _: true_sample_score)
      elif name == "emp_sd_kde":
        out[name] = sd(score_fn=None)
      elif name == "sd_kde_model":
        out[name] = sd(score_fn=lambda _: model_score)
      out[name] = (out[name].log_density[:m], out[name].score[:m], out[name].log_density[m:],
                   out[name].score[m:])
    return out, factors

  return jax.vmap(one)(problems.samples, problems.queries, problems.true_log_density,
                       problems.true_score, problems.true_sample_score,
                       problems.true_grid_log_density, model_sample_score)


def best_factor_on_grid(samples: jax.Array, grid: jax.Array, true_grid_log_density: jax.Array
                        ) -> jax.Array:
  """The factor of `kde.default_factor_grid()` with the least squared density error on the grid.

  Args:
    samples: (n, d).
    grid: (g, d) regular grid.
    true_grid_log_density: (g,) the truth there.

  Returns:
    () the factor minimising sum (f_hat - f)^2 over the grid (the ISE up to the cell volume).
  """
  cholesky = linalg.cholesky(kde.sample_covariance(samples))
  true_density = jnp.exp(true_grid_log_density)

  def squared_error(factor):
    estimate = kde.kde_with_cholesky(samples, grid, cholesky, scale=factor)
    return jnp.sum((jnp.exp(estimate.log_density) - true_density)**2)

  factors = kde.default_factor_grid()
  return factors[jnp.argmin(jax.lax.map(squared_error, factors))]


def run_methods(estimator: Callable, problems: Problems, grid: jax.Array, methods, *,
                config: ml_collections.ConfigDict) -> tuple[dict, dict, dict]:
  """All requested methods on one batch.

  Returns:
    ({method: MethodOutput}, {criterion: (b,) oracle factors}, {"model"/"baselines": seconds}).
  """
  outputs, seconds = {}, {}
  model_sample_score = np.zeros(problems.samples.shape, np.float32)
  start = time.time()
  if any(name in methods for name in MODEL_METHODS):
    model_output, model_sample_score = run_model(estimator, problems, grid)
    if "model" in methods:
      outputs["model"] = model_output
  seconds["model"] = time.time() - start
  start = time.time()
  baselines = tuple(name for name in methods if name in BASELINES)
  factors = {}
  if baselines:
    results, factors = jax.device_get(_baselines(
        problems, grid, model_sample_score, methods=baselines,
        bandwidth_scale=config.sd_kde.bandwidth_scale,
        pilot_bandwidth=config.sd_kde.pilot_bandwidth))
    outputs.update({k: MethodOutput(*v) for k, v in results.items()})
  seconds["baselines"] = time.time() - start
  return outputs, factors, seconds


# ---------------------------------------------------------------------------------------------
# Metrics.


class ErrorSums:
  """Running sums of squared errors for one method over the problems of a cell (float64)."""

  def __init__(self):
    self.score_error = 0.0  # sum ||s_hat - s||^2
    self.score_norm = 0.0  # sum ||s||^2
    self.log_density_error = 0.0  # sum (log f_hat - log f)^2
    self.num_queries = 0
    self.integrated_error = 0.0  # sum over problems of the grid ISE
    self.num_grids = 0

  def add(self, output: MethodOutput, problems: Problems, cell_volume: float) -> None:
    f64 = lambda x: np.asarray(x, np.float64)
    self.score_error += float(np.sum((f64(output.score) - f64(problems.true_score))**2))
    self.score_norm += float(np.sum(f64(problems.true_score)**2))
    self.log_density_error += float(np.sum(
        (f64(output.log_density) - f64(problems.true_log_density))**2))
    self.num_queries += problems.true_log_density.size
    if problems.true_grid_log_density.shape[-1]:
      difference = (np.exp(f64(output.grid_log_density))
                    - np.exp(f64(problems.true_grid_log_density)))
      self.integrated_error += float(np.sum(difference**2)) * cell_volume
      self.num_grids += difference.shape[0]

  def result(self) -> dict:
    return {
        "relative_score_mse": self.score_error / self.score_norm,
        "score_mse": self.score_error / self.num_queries,
        "log_density_mse": self.log_density_error / self.num_queries,
        "mise": self.integrated_error / self.num_grids if self.num_grids else None,
    }


def take(tree, index: np.ndarray):
  return jax.tree.map(lambda x: np.asarray(x)[index], tree)


def evaluate_cell(estimator: Callable, problems: Problems, grid: jax.Array, cell_volume: float, *,
                  config: ml_collections.ConfigDict, methods, keep: int | None = None
                  ) -> tuple[dict, dict | None]:
  """Runs every method on the problems of one cell and returns its row.

  Problems go in batches of config.batch_size (the last one padded by
  repetition, so all batches share one compiled shape).

  Args:
    estimator: batched estimator.
    problems: the cell's problems (leading axis = problem).
    grid: (g, d) MISE grid; cell_volume its cell volume.
    config: evaluation config.
    methods: names from METHODS.
    keep: index of a problem whose grid outputs are returned for the figures.

  Returns:
    (row {"dim", "n", "num_problems", "num_queries", "metrics": {method: {metric: value}},
    "oracle_factor": {criterion: median}, "seconds": {...}},
    kept {"problem": Problems, "outputs": {method: MethodOutput}} or None).
  """
  num, n, dim = problems.samples.shape
  batch_size = min(config.batch_size, num)
  sums = {name: ErrorSums() for name in methods}
  factors = {"score": [], "log_density": [], "mise": []}
  seconds = {"model": 0.0, "baselines": 0.0}
  kept = None
  for start in range(0, num, batch_size):
    index = np.arange(start, start + batch_size)
    real = index < num
    batch = take(problems, np.minimum(index, num - 1))
    outputs, batch_factors, batch_seconds = run_methods(estimator, batch, grid, methods,
                                                        config=config)
    real_problems = take(batch, real)
    for name, output in outputs.items():
      sums[name].add(take(output, real), real_problems, cell_volume)
    for criterion, values in batch_factors.items():
      factors[criterion].extend(np.asarray(values)[real].tolist())
    for part, value in batch_seconds.items():
      seconds[part] += value
    if keep is not None and start <= keep < start + batch_size:
      kept = {"problem": take(batch, keep - start),
              "outputs": {k: take(v, keep - start) for k, v in outputs.items()}}
  row = {
      "dim": int(dim), "n": int(n), "num_problems": int(num),
      "num_queries": int(problems.queries.shape[1]),
      "metrics": {name: sums[name].result() for name in methods},
      "oracle_factor": {k: float(np.median(v)) for k, v in factors.items() if v},
      "seconds": seconds,
  }
  return add_ratios(row), kept


def add_ratios(row: dict) -> dict:
  """Adds row["model_over_scott"][metric] = model / KDE Scott where both are present."""
  table = row["metrics"]
  if "model" in table and "kde_scott" in table:
    row["model_over_scott"] = {
        metric: (table["model"][metric] / table["kde_scott"][metric]
                 if table["model"][metric] is not None and table["kde_scott"][metric] else None)
        for metric in METRICS}
  return row


def geometric_mean(values) -> float | None:
  values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
  return float(np.exp(np.mean(np.log(values)))) if values else None


# ---------------------------------------------------------------------------------------------
# The three parts of the suite.


def figure_cells(config: ml_collections.ConfigDict) -> dict[int, int]:
  """{d: n} of the benchmark cells whose problems the figures show (d = 2 field, d = 1 density)."""
  if not config.figures.enabled:
    return {}
  cells = {2: config.figures.field_num_samples, 1: config.figures.density_num_samples}
  for dim, n in cells.items():
    if dim not in config.benchmark.dims or n not in config.benchmark.sample_sizes:
      raise ValueError(
          f"The figures show the benchmark cell d={dim}, n={n}: it must be a cell of the "
          f"benchmark (dims {list(config.benchmark.dims)}, sample_sizes "
          f"{list(config.benchmark.sample_sizes)}); change config.figures or disable them.")
  return cells


def run_benchmark(estimator: Callable, config: ml_collections.ConfigDict, methods
                  ) -> tuple[dict, dict]:
  """The standard GMM benchmark.

  Returns:
    ({"rows": a row per (d, n), "summary": geometric means of model / Scott},
     {d: kept problem and outputs for the figures}).
  """
  bench = config.benchmark
  prior = mixture_prior(config)
  max_dim = padded_dim(config)
  shown = figure_cells(config)
  rows, kept = [], {}
  base = jax.random.fold_in(jax.random.key(config.seed), 0)
  progress = Progress("benchmark", len(bench.dims) * len(bench.sample_sizes))
  for dim in bench.dims:
    start = time.time()
    keys = jax.random.split(jax.random.fold_in(base, dim), bench.mixtures_per_cell)
    grid, cell_volume = evaluation_grid(dim, config)
    problems, modes = draw_mixture_problems(
        keys, dim, grid, prior=prior, max_dim=max_dim, num_samples=max(bench.sample_sizes),
        num_queries=bench.num_queries)
    logging.info("Drew %d mixtures in d=%d (%.1f s).", len(keys), dim, time.time() - start)
    # The figures show the first mixture with at least figures.min_modes modes.
    rich = np.flatnonzero(modes >= config.figures.min_modes)
    figure_index = int(rich[0]) if rich.size else 0
    for n in bench.sample_sizes:
      start = time.time()
      keep = figure_index if shown.get(dim) == n else None
      row, kept_cell = evaluate_cell(estimator, with_sample_size(problems, n), grid, cell_volume,
                                     config=config, methods=methods, keep=keep)
      row["family"] = "gmm"
      rows.append(row)
      if kept_cell is not None:
        kept[dim] = dict(kept_cell, grid=np.asarray(grid), n=n)
      log_cell(progress, row, time.time() - start)
  summary = {}
  if rows and "model_over_scott" in rows[0]:
    for metric in ("relative_score_mse", "log_density_mse"):
      ratios = [row["model_over_scott"][metric] for row in rows]
      summary[metric] = {"geometric_mean_model_over_scott": geometric_mean(ratios),
                         "max_model_over_scott": max(ratios)}
  return {"rows": rows, "summary": summary}, kept


def out_of_family_distribution(name: str, config: ml_collections.ConfigDict) -> Distribution:
  oof = config.out_of_family
  if name == "laplace":
    return distributions.laplace(oof.dim, oof.laplace_scale)
  if name == "student_t":
    return distributions.student_t(oof.dim, oof.student_t_dof)
  raise ValueError(f"Unknown out-of-family distribution {name!r}; use 'laplace' or 'student_t'.")


def run_out_of_family(estimator: Callable, config: ml_collections.ConfigDict, methods) -> dict:
  """2-D Laplace and Student-t rows (the paper's Tables 3 and 4): `repeats` draws per row."""
  oof = config.out_of_family
  rows = []
  base = jax.random.fold_in(jax.random.key(config.seed), 1)
  grid, cell_volume = evaluation_grid(oof.dim, config)
  progress = Progress("out of family", len(oof.distributions) * len(oof.sample_sizes))
  for index, name in enumerate(oof.distributions):
    keys = jax.random.split(jax.random.fold_in(base, index), oof.repeats)
    problems = draw_fixed_problems(out_of_family_distribution(name, config), keys, grid,
                                   num_samples=max(oof.sample_sizes),
                                   num_queries=oof.num_queries)
    for n in oof.sample_sizes:
      start = time.time()
      row, _ = evaluate_cell(estimator, with_sample_size(problems, n), grid, cell_volume,
                             config=config, methods=methods)
      row["family"] = name
      rows.append(row)
      log_cell(progress, row, time.time() - start)
  return {"rows": rows}


def run_equivariance(estimator: Callable, config: ml_collections.ConfigDict) -> dict:
  """The paper's Table 1 on training-prior mixtures, for each d of config.equivariance.dims."""
  eq = config.equivariance
  rows = []
  base = jax.random.fold_in(jax.random.key(config.seed), 2)
  progress = Progress("equivariance", len(eq.dims))
  for dim in eq.dims:
    keys = jax.random.split(jax.random.fold_in(base, dim), eq.num_trials)
    # Drawn with the benchmark's shapes (one compiled program for both), then cut to size.
    problems, _ = draw_mixture_problems(
        keys, dim, jnp.zeros((0, dim)), prior=mixture_prior(config), max_dim=padded_dim(config),
        num_samples=max(eq.num_samples, *config.benchmark.sample_sizes),
        num_queries=max(eq.num_queries, config.benchmark.num_queries))
    errors = equivariance.transform_errors(
        estimator, problems.samples[:, :eq.num_samples], problems.queries[:, :eq.num_queries],
        np.random.default_rng([int(config.seed), int(dim)]), min_scale=eq.min_scale,
        max_scale=eq.max_scale, max_shift=eq.max_shift)
    rows += equivariance.summary_rows(errors, dim)
    progress.done(f"d={dim}", f"{eq.num_trials} trials; score error: " + ", ".join(
        f"{r['transform']} {r['score_mean']:.1e}" for r in rows if r["dim"] == dim))
  return {"rows": rows}


def log_cell(progress: Progress, row: dict, seconds: float) -> None:
  """One progress line for a finished cell, with its relative score MSE per method."""
  table = row["metrics"]
  parts = ", ".join(f"{METHOD_LABELS[k]} {v['relative_score_mse']:.4f}" for k, v in table.items())
  progress.done(f"{row.get('family', 'gmm')} d={row['dim']} n={row['n']}",
                f"{row['num_problems']} problems, {seconds:.1f} s (model "
                f"{row['seconds']['model']:.1f} s, baselines {row['seconds']['baselines']:.1f} s); "
                f"relative score MSE: {parts}")


def bar_checks(results: dict, config: ml_collections.ConfigDict) -> list[dict]:
  """The pretrained-model issue's bars on these results (only indicative below 100 mixtures)."""
  checks = []
  bars = config.bars
  rows = results["benchmark"]["rows"]
  if not rows or "model_over_scott" not in rows[0]:
    return checks
  worst = max(row["model_over_scott"]["relative_score_mse"] for row in rows)
  checks.append({"check": "relative score MSE model / Scott, worst GMM cell", "value": worst,
                 "bar": bars.max_cell_ratio, "passed": worst <= bars.max_cell_ratio})
  geo = results["benchmark"]["summary"]["relative_score_mse"]["geometric_mean_model_over_scott"]
  checks.append({"check": "relative score MSE model / Scott, geometric mean over GMM cells",
                 "value": geo, "bar": bars.max_geomean_ratio,
                 "passed": geo is not None and geo <= bars.max_geomean_ratio})
  worst_ld = max(row["model_over_scott"]["log_density_mse"] for row in rows)
  checks.append({"check": "log-density MSE model / Scott, worst GMM cell (must be < 1)",
                 "value": worst_ld, "bar": 1.0, "passed": worst_ld < 1.0})
  for row in results.get("out_of_family", {}).get("rows", []):
    if row["n"] == bars.out_of_family_n and "model_over_scott" in row:
      ratio = row["model_over_scott"]["relative_score_mse"]
      checks.append({"check": f"{row['family']} n={row['n']}: relative score MSE model / Scott",
                     "value": ratio, "bar": 1.0, "passed": ratio <= 1.0})
  return checks


# ---------------------------------------------------------------------------------------------
# Figures (drawn from benchmark problems and outputs already computed: no extra model calls).


def make_figures(results: dict, kept: dict, config: ml_collections.ConfigDict, output_dir: str,
                 methods) -> list[str]:
  """Writes the PNG figures; returns their file names (relative to output_dir)."""
  written = []
  rows = results["benchmark"]["rows"]
  labels = {k: METHOD_LABELS[k] for k in methods}
  for metric, name in (("relative_score_mse", "error_vs_n_score.png"),
                       ("log_density_mse", "error_vs_n_log_density.png")):
    if rows:
      figures.plot_error_vs_n(rows, metric, labels, os.path.join(output_dir, name),
                              ylabel=METRIC_LABELS[metric].split(" (")[0])
      written.append(name)
  if 2 in kept:
    cell = kept[2]
    stride = config.figures.quiver_stride
    points = config.grid.points_2d
    arrows = np.arange(points * points).reshape(points, points)[::stride, ::stride].reshape(-1)
    problem = cell["problem"]
    panels = [("truth", problem.true_grid_log_density, problem.true_grid_score[arrows])]
    for method in ("model", "kde_scott"):
      if method in cell["outputs"]:
        out = cell["outputs"][method]
        panels.append((METHOD_LABELS[method], out.grid_log_density, out.grid_score[arrows]))
    figures.plot_score_field(cell["grid"], cell["grid"][arrows], panels, problem.samples,
                             os.path.join(output_dir, "score_field_2d.png"),
                             title=f"2-D benchmark mixture, n = {cell['n']}")
    written.append("score_field_2d.png")
  if 1 in kept:
    cell = kept[1]
    problem = cell["problem"]
    curves = {METHOD_LABELS[k]: (cell["outputs"][k].grid_log_density,
                                 cell["outputs"][k].grid_score[:, 0])
              for k in ("model", "kde_scott", "sd_kde_exact", "emp_sd_kde", "sd_kde_model")
              if k in cell["outputs"]}
    figures.plot_density_1d(cell["grid"][:, 0], (problem.true_grid_log_density,
                                                 problem.true_grid_score[:, 0]),
                            curves, problem.samples[:, 0],
                            os.path.join(output_dir, "density_1d.png"),
                            title=f"1-D benchmark mixture, n = {cell['n']}")
    written.append("density_1d.png")
  return written


# ---------------------------------------------------------------------------------------------
# Writers.


def _finite_or_none(value):
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def _clean(tree):
  if isinstance(tree, dict):
    return {k: _clean(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [_clean(v) for v in tree]
  if isinstance(tree, (np.floating, np.integer)):
    tree = tree.item()
  return _finite_or_none(tree)


def write_json(results: dict, path: str) -> str:
  """Writes results (non-finite numbers as null)."""
  with open(path, "w") as f:
    json.dump(_clean(results), f, indent=2)
  return path


def _number(value, style: str = "g") -> str:
  if value is None:
    return "-"
  if not math.isfinite(value):
    return "nan"
  return f"{value:.2e}" if style == "e" else f"{value:.4g}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


def cell_table(rows: list[dict], metric: str, methods, *, key_columns=("dim", "n")) -> str:
  """One metric: a row per cell, a column per method, plus model / Scott where available."""
  with_ratio = any("model_over_scott" in row for row in rows)
  names = {"dim": "d", "n": "n", "family": "distribution"}
  header = [names[k] for k in key_columns] + [METHOD_LABELS[m] for m in methods]
  header += ["model / Scott"] if with_ratio else []
  body = []
  for row in rows:
    line = [str(row[k]) for k in key_columns]
    line += [_number(row["metrics"][m][metric]) for m in methods]
    if with_ratio:
      line.append(_number(row.get("model_over_scott", {}).get(metric)))
    body.append(line)
  return markdown_table(header, body)


def results_markdown(results: dict) -> str:
  """The tables as Markdown (what `evaluate` prints and writes to results.md)."""
  methods = results["methods"]
  info = results["model"]
  lines = ["# kdeformer evaluation", "",
           f"Model: {info.get('source', '?')}" + (f", step {info['step']}" if info.get("step")
                                                  is not None else "")
           + f", {info['num_parameters']:,} parameters "
           f"(width {info['width']}, {info['num_layers']} layers, {info['num_heads']} heads). "
           f"Config: {results['config_name']}. Wall time {results['seconds']['total']:.0f} s.", ""]
  bench = results["benchmark"]
  if bench["rows"]:
    row0 = bench["rows"][0]
    lines += ["## Standard benchmark: Gaussian mixtures of the training prior", "",
              f"{row0['num_problems']} mixtures per cell (seed {results['seed']}), "
              f"{row0['num_queries']} queries drawn from each true mixture. {ORACLE_NOTE}", ""]
    for metric in METRICS:
      rows = [r for r in bench["rows"] if r["metrics"][methods[0]][metric] is not None]
      if not rows:
        continue
      lines += [f"### {METRIC_LABELS[metric]}", "", cell_table(rows, metric, methods), ""]
      summary = bench["summary"].get(metric)
      if summary:
        lines += [f"Geometric mean over the cells of model / Scott: "
                  f"{_number(summary['geometric_mean_model_over_scott'])}; worst cell "
                  f"{_number(summary['max_model_over_scott'])}.", ""]
  oof = results.get("out_of_family", {}).get("rows", [])
  if oof:
    row0 = oof[0]
    lines += ["## Out of family: 2-D Laplace and 2-D Student-t (the paper's Tables 3 and 4)", "",
              f"{row0['num_problems']} independent sample sets per cell, {row0['num_queries']} "
              "queries drawn from the true distribution. The oracle and SD-KDE exact use the "
              "true density and score.", ""]
    for metric in METRICS:
      lines += [f"### {METRIC_LABELS[metric]}", "",
                cell_table(oof, metric, methods, key_columns=("family", "n")), ""]
  eq = results.get("equivariance", {}).get("rows", [])
  if eq:
    lines += ["## Equivariance (the paper's Table 1)", "",
              f"Relative MSE sum ||new - expected||^2 / sum ||expected||^2 of the transformed "
              f"problem's outputs against the exactly transformed original outputs "
              f"(log f - log|det A|, score A^-T), mean and max over {eq[0]['num_trials']} trials "
              "(training-prior mixtures). The symmetric whitening makes permutations, "
              "translations and isotropic scalings exact; an anisotropic scaling, a rotation or "
              "an affine map leaves an orthogonal map in whitened coordinates, which the network "
              "respects only approximately. Rotations are proper (det +1).", "",
              markdown_table(
                  ["transform", "d", "log-density mean", "log-density max", "score mean",
                   "score max"],
                  [[r["transform"], str(r["dim"]), _number(r["log_density_mean"], "e"),
                    _number(r["log_density_max"], "e"), _number(r["score_mean"], "e"),
                    _number(r["score_max"], "e")] for r in eq]), ""]
  checks = results.get("checks", [])
  if checks:
    lines += ["## Bars of the pretrained-model issue", "",
              markdown_table(["check", "value", "bar", "passed"],
                             [[c["check"], _number(c["value"]), _number(c["bar"]),
                               "yes" if c["passed"] else "NO"] for c in checks]), ""]
  if results.get("figures"):
    lines += ["## Figures", ""] + [f"![{name}]({name})" for name in results["figures"]] + [""]
  return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Entry.


def model_info(estimator, source: str, step: int | None = None) -> dict:
  config = getattr(estimator, "config", None)
  params = getattr(estimator, "params", None)
  info = {"source": source, "step": step,
          "num_parameters": int(sum(x.size for x in jax.tree.leaves(params))) if params else 0}
  for field in ("width", "num_layers", "num_heads", "mlp_ratio"):
    info[field] = int(config.model[field]) if config is not None else None
  return info


def load_estimator(workdir: str | None) -> tuple[estimator_lib.Estimator, dict]:
  """The estimator of a training workdir (latest step), or the shipped one if workdir is None.

  Raises:
    FileNotFoundError: no such workdir or checkpoint, or no pretrained model shipped.
  """
  if workdir is None:
    est = estimator_lib.load_pretrained()
    directory, source = estimator_lib.PRETRAINED_DIR, "pretrained (kdeformer.load_pretrained())"
  else:
    est = estimator_lib.Estimator.restore(workdir)
    directory, source = workdir, f"workdir {workdir}"
  return est, model_info(est, source, checkpoints.latest_step(directory))


def evaluate(estimator: Callable, config: ml_collections.ConfigDict, output_dir: str, *,
             info: dict | None = None, config_name: str = "") -> dict:
  """Runs the whole suite and writes results.json, results.md and the figures to output_dir.

  Args:
    estimator: callable (samples (b, n, d), queries (b, m, d)) -> Estimate, batched; usually a
      `kdeformer.Estimator`.
    config: an evaluate_* config.
    output_dir: created if missing.
    info: model facts for the report (see `model_info`); derived from the estimator if None.
    config_name: shown in the report.

  Returns:
    The results dict (as written to results.json).
  """
  methods = tuple(config.methods)
  unknown = set(methods) - set(METHODS)
  if unknown:
    raise ValueError(f"config.methods has unknown names {sorted(unknown)}; choose from {METHODS}.")
  methods = tuple(m for m in METHODS if m in methods)
  os.makedirs(output_dir, exist_ok=True)
  start = time.time()
  results = {"model": info or model_info(estimator, "in-memory estimator"),
             "config_name": config_name, "seed": int(config.seed), "methods": list(methods),
             "config": config.to_dict(), "seconds": {}}
  results["benchmark"], kept = run_benchmark(estimator, config, methods)
  results["seconds"]["benchmark"] = time.time() - start
  part = time.time()
  results["out_of_family"] = (run_out_of_family(estimator, config, methods)
                              if config.out_of_family.distributions else {"rows": []})
  results["seconds"]["out_of_family"] = time.time() - part
  part = time.time()
  results["equivariance"] = (run_equivariance(estimator, config)
                             if config.equivariance.num_trials else {"rows": []})
  results["seconds"]["equivariance"] = time.time() - part
  results["checks"] = bar_checks(results, config)
  part = time.time()
  results["figures"] = (make_figures(results, kept, config, output_dir, methods)
                        if config.figures.enabled else [])
  results["seconds"]["figures"] = time.time() - part
  results["seconds"]["total"] = time.time() - start
  write_json(results, os.path.join(output_dir, "results.json"))
  with open(os.path.join(output_dir, "results.md"), "w") as f:
    f.write(results_markdown(results))
  return results
