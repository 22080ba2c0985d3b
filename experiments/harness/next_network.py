"""The equivariant network measured against the general model, Scott's KDE and a Gaussian.

`python -m experiments.run --config=experiments/configs/next_network.py` runs
`run(config, output_dir, workdir)` and exits non-zero on its `failures` (the bars in config.bars).

Methods, each (samples (n, d), queries (m, d)) -> (log-density (m,), score (m, d)), float64:
`new` (config.new_model or --workdir), `general` (the shipped general network, only up to its
max_dim), `default` (what `kdeformer.load_pretrained()` answers, hand-offs included),
`scott` (Scott's-rule Gaussian KDE) and `gaussian` (one Gaussian fitted by the sample mean
and covariance).
Parts (config.<part>): `mixture`, `other_high_d`, `consistency` (errors against closed-form
truths), `smooth_1d` (ISE, total variation), `integral_1d` (far-tail integral) and `cost`.
"""

import math
import os
import statistics
import time

import jax
import ml_collections
import numpy as np
import scipy.special
import scipy.stats

from experiments.harness import common
from experiments.harness.progress import Progress
from kdeformer import kde

DENSITY_PARTS = ("mixture", "other_high_d", "consistency")
PARTS = ("mixture", "other_high_d", "smooth_1d", "integral_1d", "consistency", "cost")
# Per-problem errors against the truth; all lower is better.
ERROR_METRICS = (
  "relative_score_mse",
  "typical_relative_score_mse",
  "mean_abs_log_error",
  "typical_mean_abs_log_error",
)
METRIC_LABELS = {
  "relative_score_mse": "relative score MSE (pooled)",
  "typical_relative_score_mse": "relative score MSE (typical set)",
  "mean_abs_log_error": "mean |log f error| (pooled)",
  "typical_mean_abs_log_error": "mean |log f error| (typical set)",
  "ise": "ISE",
  "total_variation": "total variation of the curve",
  "integral": "integral of exp(log f)",
  "seconds": "seconds per call",
}
# |integral - 1| below this counts as 1 when ranking methods (the sinh grid's own error).
INTEGRAL_TIE = 1e-3
# Queries whose true log-density is above this quantile form the typical set.
TYPICAL_QUANTILE = 0.1


# --- Truths: float64 numpy, closed form. ---


class Truth:
  """A distribution with a sampler and its exact log-density and score.

  Attributes:
    dim: d.
    sample: (rng, k) -> (k, d) draws.
    log_density: (k, d) -> (k,).
    score: (k, d) -> (k, d), the gradient of the log-density.
  """

  def __init__(self, dim, sample, log_density, score):
    self.dim, self.sample, self.log_density, self.score = dim, sample, log_density, score


def diagonal_mixture(means: np.ndarray, variances: np.ndarray) -> Truth:
  """Equal-weight mixture of N(means[k], diag(variances[k])); means, variances: (K, d)."""
  num_components, dim = means.shape
  log_weight = -math.log(num_components)

  def component_log_densities(x):  # (k, K)
    diff = x[:, None, :] - means[None]
    return log_weight - 0.5 * np.sum(diff**2 / variances + np.log(2 * np.pi * variances), -1)

  def sample(rng, k):
    component = rng.integers(num_components, size=k)
    return means[component] + np.sqrt(variances[component]) * rng.standard_normal((k, dim))

  def log_density(x):
    return scipy.special.logsumexp(component_log_densities(x), axis=1)

  def score(x):
    log_c = component_log_densities(x)
    responsibility = np.exp(log_c - scipy.special.logsumexp(log_c, axis=1, keepdims=True))
    return np.einsum("kc,kcd->kd", responsibility, -(x[:, None, :] - means[None]) / variances)

  return Truth(dim, sample, log_density, score)


def paper_mixture(rng: np.random.Generator, dim: int, cfg: ml_collections.ConfigDict) -> Truth:
  """The paper's mixture: means uniform in [-r, r]^d, diagonal variances uniform."""
  shape = (cfg.num_components, dim)
  means = rng.uniform(-cfg.mean_range, cfg.mean_range, shape)
  return diagonal_mixture(means, rng.uniform(cfg.min_variance, cfg.max_variance, shape))


def gaussian(covariance: np.ndarray) -> Truth:
  """N(0, covariance)."""
  dim = covariance.shape[0]
  cholesky = np.linalg.cholesky(covariance)
  precision = np.linalg.inv(covariance)
  log_norm = -0.5 * (dim * math.log(2 * math.pi) + np.linalg.slogdet(covariance)[1])
  return Truth(
    dim,
    lambda rng, k: rng.standard_normal((k, dim)) @ cholesky.T,
    lambda x: log_norm - 0.5 * np.einsum("kd,de,ke->k", x, precision, x),
    lambda x: -x @ precision,
  )


def spiked_gaussian(rng: np.random.Generator, dim: int, spike_variances) -> Truth:
  """N(0, I + sum_j a_j u_j u_j^T), u_j random orthonormal."""
  directions, _ = np.linalg.qr(rng.standard_normal((dim, len(spike_variances))))
  covariance = np.eye(dim) + (directions * np.asarray(spike_variances)) @ directions.T
  return gaussian(covariance)


def student_t(dim: int, dof: float) -> Truth:
  """Multivariate Student-t with dof degrees of freedom, zero location, identity scale."""
  log_norm = (
    scipy.special.gammaln((dof + dim) / 2)
    - scipy.special.gammaln(dof / 2)
    - dim / 2 * math.log(dof * math.pi)
  )

  def sample(rng, k):
    return rng.standard_normal((k, dim)) / np.sqrt(rng.chisquare(dof, (k, 1)) / dof)

  def log_density(x):
    return log_norm - (dof + dim) / 2 * np.log1p(np.sum(x**2, -1) / dof)

  def score(x):
    return -(dof + dim) / (dof + np.sum(x**2, -1, keepdims=True)) * x

  return Truth(dim, sample, log_density, score)


def standard_gamma(shape: float) -> Truth:
  """Gamma(shape, 1) standardised to mean 0, variance 1 (1-D, support x > -sqrt(shape))."""
  scale = math.sqrt(shape)
  distribution = scipy.stats.gamma(shape)

  def log_density(x):
    return distribution.logpdf(x[:, 0] * scale + shape) + math.log(scale)

  def score(x):
    y = np.maximum(x * scale + shape, 1e-300)
    return scale * ((shape - 1) / y - 1)

  return Truth(
    1, lambda rng, k: (rng.gamma(shape, size=(k, 1)) - shape) / scale, log_density, score
  )


# --- Methods. ---


def fitted_gaussian(samples, queries) -> tuple[np.ndarray, np.ndarray]:
  """One Gaussian fitted by the sample mean and (unbiased) covariance, in closed form.

  Args:
    samples: (n, d); queries: (m, d).

  Returns:
    (log-density (m,), score (m, d)).
  """
  samples, queries = np.asarray(samples, np.float64), np.asarray(queries, np.float64)
  fitted = gaussian(np.atleast_2d(np.cov(samples, rowvar=False)))
  centred = queries - samples.mean(0)
  return fitted.log_density(centred), fitted.score(centred)


def scott_kde(samples, queries):
  out = kde.gaussian_kde(samples, queries, bandwidth="scott")
  return out.log_density, out.score


class Method:
  """A named estimator (samples, queries) -> (log-density (m,), score (m, d)), float64 numpy.

  Attributes:
    max_dim: the largest d it answers (0: any); larger d are skipped, not handed on.
  """

  def __init__(self, name: str, function, max_dim: int = 0):
    self.name, self.function, self.max_dim = name, function, int(max_dim or 0)

  def answers(self, dim: int) -> bool:
    return not self.max_dim or dim <= self.max_dim

  def __call__(self, samples, queries) -> tuple[np.ndarray, np.ndarray]:
    log_density, score = self.function(samples, queries)
    return (
      np.asarray(log_density, np.float64),
      np.asarray(score, np.float64).reshape(np.shape(queries)),
    )


def network_method(name: str, estimator) -> Method:
  """An Estimator as a Method, skipping d above its max_dim (not handing it to another model)."""

  def call(samples, queries):
    out = estimator(samples, queries)
    return out.log_density, out.score

  return Method(name, call, estimator.max_dim)


class MethodBank:
  """Methods by name, the networks loaded on first use (a part that needs none loads none).

  Args:
    new_model: the `new` network (a workdir or a shipped model's name).
    overrides: name -> Method or (samples, queries) -> (log-density, score), used as given
      (tests: stand-ins for the networks).
  """

  def __init__(self, new_model: str, overrides: dict | None = None):
    self.new_model = new_model
    self.methods = {
      name: m if isinstance(m, Method) else Method(name, m) for name, m in (overrides or {}).items()
    }
    self.info = {}  # name -> common.model_info of each loaded network.

  def __getitem__(self, name: str) -> Method:
    if name not in self.methods:
      if name in ("new", "general"):
        estimator, self.info[name] = common.load_model(
          self.new_model if name == "new" else "general"
        )
        self.methods[name] = network_method(name, estimator)
      elif name == "default":  # What load_pretrained() answers: hand-offs included.
        estimator, self.info[name] = common.load_model(common.DEFAULT_MODEL)
        self.methods[name] = Method(name, network_method(name, estimator).function)
      elif name == "scott":
        self.methods[name] = Method(name, scott_kde)
      elif name == "gaussian":
        self.methods[name] = Method(name, fitted_gaussian)
      else:
        raise common.ConfigError(
          f"Unknown method {name!r}; known: new, general, default, scott, "
          "gaussian (cost also: jax_kde, scipy)."
        )
    return self.methods[name]


# --- Metrics. ---


def density_errors(log_density, score, true_log_density, true_score) -> dict:
  """Pooled and typical-set errors of one problem's estimates (queries: m).

  Args:
    log_density, true_log_density: (m,); score, true_score: (m, d).

  Returns:
    ERROR_METRICS -> float: relative score MSE = sum ||s_hat - s||^2 / sum ||s||^2 and the
    mean |log f_hat - log f|, over all queries and over the typical set (true log-density
    above its TYPICAL_QUANTILE quantile over the queries).
  """
  typical = true_log_density > np.quantile(true_log_density, TYPICAL_QUANTILE)
  squared = np.sum((score - true_score) ** 2, -1)
  reference = np.sum(true_score**2, -1)
  abs_log = np.abs(log_density - true_log_density)
  return {
    "relative_score_mse": float(squared.sum() / reference.sum()),
    "typical_relative_score_mse": float(squared[typical].sum() / reference[typical].sum()),
    "mean_abs_log_error": float(abs_log.mean()),
    "typical_mean_abs_log_error": float(abs_log[typical].mean()),
  }


def summarise(values) -> dict | None:
  """{mean, min, max, values} over seeds; None where no seed gave a number."""
  values = [float(v) for v in values if v is not None]
  if not values:
    return None
  return {"mean": float(np.mean(values)), "min": min(values), "max": max(values), "values": values}


def rng_for(config: ml_collections.ConfigDict, part: str, *cell) -> np.random.Generator:
  """A Generator per (config.seed, part, cell): the same problem whatever else is enabled."""
  return np.random.default_rng([config.seed, PARTS.index(part), *[int(c) for c in cell]])


def call_method(method: Method, samples, queries, errors: list, where: str):
  """(log-density, score), or None with the error (exception or non-finite output) recorded."""
  try:
    log_density, score = method(samples, queries)
  except Exception as error:  # pylint: disable=broad-except
    # One method failing on one cell is a result, not a reason to lose a 12-minute run.
    errors.append(
      {"method": method.name, "cell": where, "error": f"{type(error).__name__}: {str(error)[:300]}"}
    )
    print(f"next_network: {method.name} failed at {where}: {errors[-1]['error']}", flush=True)
    return None
  bad = int(np.sum(~np.isfinite(log_density)) + np.sum(~np.isfinite(score)))
  if bad:
    errors.append(
      {"method": method.name, "cell": where, "error": f"{bad} non-finite output value(s)"}
    )
  return log_density, score


# --- Parts. ---


def density_problems(part: str, config: ml_collections.ConfigDict):
  """(cell label dict, seed, Truth, n, m) of a density part, in run order."""
  cfg = config[part]
  if part == "mixture":
    for dim in cfg.dims:
      for seed in cfg.seeds:
        yield (
          {"dim": dim},
          seed,
          paper_mixture(rng_for(config, part, dim, seed, 1), dim, cfg),
          cfg.num_samples,
          cfg.num_queries,
        )
  elif part == "other_high_d":
    for family in cfg.families:
      for dim in cfg.dims:
        for seed in cfg.seeds:
          if family == "student_t":
            truth = student_t(dim, cfg.student_t_dof)
          elif family == "spiked":
            truth = spiked_gaussian(rng_for(config, part, dim, seed, 1), dim, cfg.spike_variances)
          else:
            raise common.ConfigError(
              f"other_high_d: unknown family {family!r} (student_t, spiked)."
            )
          yield ({"family": family, "dim": dim}, seed, truth, cfg.num_samples, cfg.num_queries)
  else:  # consistency
    for n in cfg.sample_sizes:
      for seed in cfg.seeds:
        yield ({"n": n}, seed, gaussian(np.eye(cfg.dim)), n, cfg.num_queries)


def density_part(
  part: str, config: ml_collections.ConfigDict, bank: MethodBank, errors: list
) -> list[dict]:
  """Rows of a density part: per cell and method, ERROR_METRICS summarised over seeds."""
  cfg = config[part]
  problems = list(density_problems(part, config))
  progress = Progress(f"next_network {part}", len(problems))
  cells = {}
  for label, seed, truth, n, m in problems:
    rng = rng_for(config, part, *[hash_label(v) for v in label.values()], seed, 2)
    samples, queries = truth.sample(rng, n), truth.sample(rng, m)
    true_log_density, true_score = truth.log_density(queries), truth.score(queries)
    cell = cells.setdefault(tuple(label.items()), {name: [] for name in cfg.methods})
    details = []
    for name in cfg.methods:
      method = bank[name]
      if not method.answers(truth.dim):
        continue
      where = ", ".join(f"{k}={v}" for k, v in label.items()) + f", seed {seed}"
      out = call_method(method, samples, queries, errors, f"{part}: {where}")
      if out is not None:
        cell[name].append(density_errors(*out, true_log_density, true_score))
        details.append(f"{name} {cell[name][-1]['relative_score_mse']:.3g}")
    progress.done(
      ", ".join(f"{k}={v}" for k, v in label.items()) + f" seed {seed}",
      "rel. score MSE: " + ", ".join(details),
    )
  rows = []
  for label, per_method in cells.items():
    metrics = {}
    for name, runs in per_method.items():
      metrics[name] = (
        {metric: summarise([r[metric] for r in runs]) for metric in ERROR_METRICS} if runs else None
      )
    rows.append({**dict(label), "metrics": metrics})
  return rows


def hash_label(value) -> int:
  """A stable integer for a cell label (a family name or a number) in a seed sequence."""
  if isinstance(value, str):
    return int.from_bytes(value.encode()[:8], "little")
  return int(value)


def curve_1d(method: Method, samples, grid, errors, where):
  out = call_method(method, samples, grid[:, None], errors, where)
  return None if out is None else np.exp(out[0])


def smooth_1d_part(config: ml_collections.ConfigDict, bank: MethodBank, errors: list) -> list[dict]:
  """Per (family, n) and method: ISE and total variation of the density curve on the grid."""
  cfg = config.smooth_1d
  grid = np.linspace(-cfg.grid_limit, cfg.grid_limit, cfg.grid_points)
  truths = {"normal": gaussian(np.eye(1)), "gamma": standard_gamma(cfg.gamma_shape)}
  progress = Progress(
    "next_network smooth_1d", len(cfg.families) * len(cfg.sample_sizes) * len(cfg.seeds)
  )
  rows = []
  for family in cfg.families:
    if family not in truths:
      raise common.ConfigError(f"smooth_1d: unknown family {family!r} (normal, gamma).")
    truth = truths[family]
    true_curve = np.exp(truth.log_density(grid[:, None]))
    true_tv = float(np.sum(np.abs(np.diff(true_curve))))
    for n in cfg.sample_sizes:
      runs = {name: [] for name in cfg.methods}
      for seed in cfg.seeds:
        samples = truth.sample(rng_for(config, "smooth_1d", hash_label(family), n, seed), n)
        details = []
        for name in cfg.methods:
          curve = curve_1d(
            bank[name], samples, grid, errors, f"smooth_1d: {family}, n={n}, seed {seed}"
          )
          if curve is None:
            continue
          tv = float(np.sum(np.abs(np.diff(curve))))
          runs[name].append(
            {
              "ise": float(np.trapezoid((curve - true_curve) ** 2, grid)),
              "total_variation": tv,
              # Variation beyond a unimodal curve's 2 max f: the bumps.
              "excess_variation": tv - 2 * float(curve.max()),
            }
          )
          details.append(f"{name} ISE {runs[name][-1]['ise']:.2g} TV {tv:.3f}")
        progress.done(f"{family} n={n} seed {seed}", ", ".join(details))
      metrics = {
        name: ({k: summarise([r[k] for r in rs]) for k in rs[0]} if rs else None)
        for name, rs in runs.items()
      }
      rows.append({"family": family, "n": n, "true_total_variation": true_tv, "metrics": metrics})
  return rows


def integral_1d_part(
  config: ml_collections.ConfigDict, bank: MethodBank, errors: list
) -> list[dict]:
  """Per (nu, n) and method: the trapezoid integral of exp(log f_hat) on a sinh grid.

  The grid is y = median + s sinh(t), t uniform in [-t_max, t_max], s the samples' IQR /
  1.349 (a robust scale: the standard deviation of t_2 samples is itself heavy-tailed), so
  it resolves the bulk and reaches |y| ~ s sinh(t_max) where a far spike would show.
  """
  cfg = config.integral_1d
  progress = Progress(
    "next_network integral_1d", len(cfg.dofs) * len(cfg.sample_sizes) * len(cfg.seeds)
  )
  rows = []
  for dof in cfg.dofs:
    truth = student_t(1, dof)
    for n in cfg.sample_sizes:
      runs = {name: [] for name in cfg.methods}
      grid_facts = []
      for seed in cfg.seeds:
        samples = truth.sample(rng_for(config, "integral_1d", round(dof * 100), n, seed), n)
        q25, median, q75 = np.percentile(samples[:, 0], [25, 50, 75])
        scale = (q75 - q25) / 1.349
        grid = median + scale * np.sinh(np.linspace(-cfg.t_max, cfg.t_max, cfg.grid_points))
        grid_facts.append({"scale": float(scale), "reach": float(scale * math.sinh(cfg.t_max))})
        details = []
        for name in cfg.methods:
          curve = curve_1d(
            bank[name], samples, grid, errors, f"integral_1d: nu={dof:g}, n={n}, seed {seed}"
          )
          if curve is None:
            continue
          integral = float(np.trapezoid(curve, grid))
          runs[name].append(integral)
          details.append(f"{name} {integral:.4g}")
        progress.done(f"nu={dof:g} n={n} seed {seed}", ", ".join(details))
      rows.append(
        {
          "dof": dof,
          "n": n,
          "grid": grid_facts,
          "metrics": {
            name: ({"integral": summarise(v)} if v else None) for name, v in runs.items()
          },
        }
      )
  return rows


def cost_part(config: ml_collections.ConfigDict, bank: MethodBank, errors: list) -> list[dict]:
  """Seconds per call at (n, d, m): one call to compile, then the median of `repeats`."""
  cfg = config.cost
  rng = rng_for(config, "cost", 0)
  samples = rng.standard_normal((cfg.num_samples, cfg.dim))
  queries = rng.standard_normal((cfg.num_queries, cfg.dim))

  def scipy_logpdf(samples, queries):  # Construction included; no score.
    return scipy.stats.gaussian_kde(samples.T).logpdf(queries.T)

  def jax_kde(samples, queries):
    return jax.block_until_ready(kde.gaussian_kde(samples, queries, bandwidth="scott"))

  progress = Progress("next_network cost", len(cfg.methods))
  rows = []
  for name in cfg.methods:
    if name == "scipy":
      function, what = scipy_logpdf, "log-density only (scipy gives no score)"
    elif name == "jax_kde":
      function, what = jax_kde, "log-density and score"
    else:
      method = bank[name]
      if not method.answers(cfg.dim):
        continue
      function, what = method, "log-density and score"
    where = f"cost: {name}"
    try:
      start = time.perf_counter()
      function(samples, queries)  # Compiles.
      first = time.perf_counter() - start
      times = []
      for _ in range(cfg.repeats):
        start = time.perf_counter()
        function(samples, queries)  # Methods return numpy: the work is done on return.
        times.append(time.perf_counter() - start)
    except Exception as error:  # pylint: disable=broad-except
      errors.append(
        {"method": name, "cell": where, "error": f"{type(error).__name__}: {str(error)[:300]}"}
      )
      continue
    rows.append(
      {
        "method": name,
        "seconds": statistics.median(times),
        "times": times,
        "first_call_seconds": first,
        "computes": what,
      }
    )
    progress.done(name, f"{rows[-1]['seconds']:.4f} s")
  return rows


# --- Report. ---


def cell_text(summary: dict | None, digits: int = 3) -> str:
  """'mean (min-max)' over seeds; the mean alone for one seed; '-' for no number."""
  if not summary:
    return "-"
  text = f"{summary['mean']:.{digits}g}"
  if len(summary["values"]) > 1:
    text += f" ({summary['min']:.{digits}g}-{summary['max']:.{digits}g})"
  return text


def row_label(row: dict) -> str:
  if "family" in row and "dim" in row:
    return f"{row['family']}, d={row['dim']}"
  if "family" in row:
    return f"{row['family']}, n={row['n']}"
  if "dof" in row:
    return f"nu={row['dof']:g}, n={row['n']}"
  return f"d={row['dim']}" if "dim" in row else f"n={row['n']}"


def metric_table(rows: list[dict], methods, metric: str, first_column: str) -> str:
  body = [
    [row_label(row)] + [cell_text((row["metrics"].get(name) or {}).get(metric)) for name in methods]
    for row in rows
  ]
  return common.markdown_table([first_column] + list(methods), body)


def badness(metric: str, summary: dict | None, row: dict) -> float | None:
  """The mean of a metric as a loss (lower is better): |integral - 1| (less INTEGRAL_TIE)
  for the integral, the distance to the truth's total variation for the curve's."""
  if not summary:
    return None
  value = summary["mean"]
  if metric == "integral":  # Within INTEGRAL_TIE of 1 is exact: quadrature error, not a loss.
    return max(abs(value - 1) - INTEGRAL_TIE, 0.0)
  if metric == "total_variation":
    return abs(value - row["true_total_variation"])
  return value


def losses(results: dict) -> dict[str, list[str]]:
  """Per part: '<metric>: <cell> to <methods>' where `new`'s mean is worse than theirs."""
  metrics_of = {
    "mixture": ERROR_METRICS,
    "other_high_d": ERROR_METRICS,
    "consistency": ERROR_METRICS,
    "smooth_1d": ("ise", "total_variation"),
    "integral_1d": ("integral",),
  }
  out = {}
  for part, metrics in metrics_of.items():
    if part not in results:
      continue
    lines = []
    for metric in metrics:
      cells = []
      for row in results[part]:
        new = badness(metric, (row["metrics"].get("new") or {}).get(metric), row)
        if new is None:
          continue
        winners = [
          name
          for name, m in row["metrics"].items()
          if name != "new"
          and (b := badness(metric, (m or {}).get(metric), row)) is not None
          and b < new
        ]
        if winners:
          cells.append(f"{row_label(row)} (to {', '.join(winners)})")
      if cells:
        lines.append(f"{METRIC_LABELS[metric]}: {', '.join(cells)}")
    out[part] = lines
  if "cost" in results:
    seconds = {row["method"]: row["seconds"] for row in results["cost"]}
    if "new" in seconds:
      faster = [
        f"{name} ({seconds[name]:.3g} s)"
        for name in seconds
        if name != "new" and seconds[name] < seconds["new"]
      ]
      out["cost"] = (
        [f"seconds per call ({seconds['new']:.3g} s): to {', '.join(faster)}"] if faster else []
      )
  return out


def results_markdown(results: dict) -> str:
  machine = results["machine"]
  lines = [
    "# The next network (equivariant): measurements",
    "",
    f"- Command: `{machine['command']}`",
    f"- Machine: {machine['platform']}, {machine['cpu_count']} CPUs, JAX {machine['jax']}, "
    f"devices {', '.join(machine['devices'])}, nice {machine['nice']}; load average at "
    f"start {', '.join(f'{x:.2f}' for x in machine['load_average_start'])}, at end "
    f"{', '.join(f'{x:.2f}' for x in results.get('load_average_end', []))}",
    f"- Date: {machine['date']}; wall time {results['seconds']:.0f} s",
    f"- new = {results['models'].get('new', results['new_model'])}; general = "
    f"{results['models'].get('general', 'general')}; default = "
    f"{results['models'].get('default', 'kdeformer.load_pretrained()')}. Networks skip d "
    "above their max_dim ('-'); default answers every d.",
    "- Cells: mean over seeds (min-max). Typical set: queries whose true log-density is "
    f"above its {TYPICAL_QUANTILE:.0%} quantile over the queries.",
    "",
  ]
  titles = {
    "mixture": "1. Two-component Gaussian mixture (paper prior), n = {n}, m = {m}",
    "other_high_d": "2. Student-t and spiked Gaussian, n = {n}, m = {m}",
    "consistency": "5. Consistency: N(0, I), d = {d}, m = {m}",
  }
  config = results["config"]
  for part in PARTS:
    if part not in results:
      continue
    cfg = config[part]
    if part in DENSITY_PARTS:
      lines.append(
        "## "
        + titles[part].format(n=cfg.get("num_samples"), m=cfg["num_queries"], d=cfg.get("dim"))
      )
      for metric in ERROR_METRICS:
        lines += [
          "",
          f"{METRIC_LABELS[metric]}:",
          "",
          metric_table(results[part], cfg["methods"], metric, "cell"),
        ]
    elif part == "smooth_1d":
      lines.append(
        f"## 3. Smooth 1-D densities: grid of {cfg['grid_points']} points on "
        f"[-{cfg['grid_limit']:g}, {cfg['grid_limit']:g}]"
      )
      lines += [
        "",
        "ISE = integral (f_hat - f)^2:",
        "",
        metric_table(results[part], cfg["methods"], "ise", "cell"),
        "",
        "Total variation of the curve (sum |diff f_hat|; the truth's in its column):",
        "",
      ]
      body = [
        [row_label(r), f"{r['true_total_variation']:.3f}"]
        + [
          cell_text((r["metrics"].get(name) or {}).get("total_variation"))
          for name in cfg["methods"]
        ]
        for r in results[part]
      ]
      lines.append(common.markdown_table(["cell", "truth"] + list(cfg["methods"]), body))
      lines += [
        "",
        "Excess variation (TV - 2 max f_hat: 0 for a unimodal curve, the bumps):",
        "",
        metric_table(results[part], cfg["methods"], "excess_variation", "cell"),
      ]
    elif part == "integral_1d":
      lines.append(
        f"## 4. Integral of exp(log f_hat), Student-t samples, sinh grid of "
        f"{cfg['grid_points']} points to |y| ~ s sinh({cfg['t_max']:g})"
      )
      lines += ["", metric_table(results[part], cfg["methods"], "integral", "cell")]
    elif part == "cost":
      lines.append(
        f"## 6. Cost per call: n = {cfg['num_samples']}, d = {cfg['dim']}, "
        f"m = {cfg['num_queries']} (median of {cfg['repeats']} after a compiling call)"
      )
      body = [
        [r["method"], f"{r['seconds']:.4f}", f"{r['first_call_seconds']:.2f}", r["computes"]]
        for r in results[part]
      ]
      lines += [
        "",
        common.markdown_table(["method", "seconds", "first call (s)", "computes"], body),
      ]
    lines.append("")
  lines += ["## Where `new` loses (its mean worse than the method's)", ""]
  for part, part_lines in results["losses"].items():
    lines.append(f"- {part}: " + ("; ".join(part_lines) if part_lines else "nowhere"))
  lines += ["", "## Errors and non-finite outputs", ""]
  lines += [f"- {e['method']} at {e['cell']}: {e['error']}" for e in results["errors"]] or [
    "- none"
  ]
  lines += ["", "## Bars (failures)", ""]
  lines += [f"- FAILED: {f}" for f in results["failures"]] or ["- all checked bars pass"]
  return "\n".join(lines) + "\n"


def failures(results: dict, config: ml_collections.ConfigDict) -> list[str]:
  """The bars (config.bars) that config.bars.methods miss; empty if all pass."""
  bars = config.bars
  failed = []

  def mean(row, name, metric):
    summary = (row["metrics"].get(name) or {}).get(metric)
    return None if summary is None else summary["mean"]

  for name in bars.methods:
    failed += [
      f"{name} at {e['cell']}: {e['error']}"
      for e in results.get("errors", [])
      if e["method"] == name
    ]
    low, high = bars.integral_range
    for row in results.get("integral_1d", []):
      summary = (row["metrics"].get(name) or {}).get("integral")
      if summary and not all(low <= v <= high for v in summary["values"]):
        failed.append(
          f"integral_1d: {name} integrates to {summary['values']} at "
          f"{row_label(row)}, outside [{low}, {high}]"
        )
    for row in results.get("mixture", []):
      own = mean(row, name, "relative_score_mse")
      others = [mean(row, other, "relative_score_mse") for other in ("scott", "gaussian")]
      if (
        row["dim"] >= bars.mixture_min_dim
        and own is not None
        and all(o is not None and own > o for o in others)
      ):
        failed.append(
          f"mixture: {name}'s relative score MSE {own:.3g} at d={row['dim']} is "
          f"worse than both scott's {others[0]:.3g} and gaussian's {others[1]:.3g}"
        )
      if (
        row["dim"] in tuple(bars.get("beats_gaussian_dims", ()))
        and own is not None
        and others[1] is not None
        and own >= others[1]
      ):
        failed.append(
          f"mixture: {name}'s relative score MSE {own:.3g} at d={row['dim']} is not below "
          f"gaussian's {others[1]:.3g}"
        )
    for row in results.get("smooth_1d", []):
      own, scott = mean(row, name, "ise"), mean(row, "scott", "ise")
      if own is not None and scott is not None and own >= scott:
        failed.append(
          f"smooth_1d: {name}'s ISE {own:.3g} at {row_label(row)} is not below scott's {scott:.3g}"
        )
      tv, limit = mean(row, name, "total_variation"), row["true_total_variation"]
      if tv is not None and tv > limit * (1 + bars.tv_tolerance):
        failed.append(
          f"smooth_1d: {name}'s curve has total variation {tv:.3f} at "
          f"{row_label(row)}, above the truth's {limit:.3f} (+{bars.tv_tolerance:.0%})"
        )
    rows = results.get("consistency", [])
    if len(rows) >= 2:
      first, last = rows[0], rows[-1]
      for metric in ("mean_abs_log_error", "relative_score_mse"):
        own, scott = mean(last, name, metric), mean(last, "scott", metric)
        if own is not None and scott is not None and own > scott:
          failed.append(
            f"consistency: {name}'s {METRIC_LABELS[metric]} {own:.3g} at "
            f"n={last['n']} is above scott's {scott:.3g}"
          )
        start = mean(first, name, metric)
        if own is not None and start is not None and own >= start:
          failed.append(
            f"consistency: {name}'s {METRIC_LABELS[metric]} does not fall with n "
            f"({start:.3g} at n={first['n']}, {own:.3g} at n={last['n']})"
          )
    seconds = {row["method"]: row["seconds"] for row in results.get("cost", [])}
    if (
      name in seconds
      and "general" in seconds
      and name != "general"
      and (seconds[name] > bars.cost_ratio * seconds["general"])
    ):
      failed.append(
        f"cost: {name} takes {seconds[name]:.3g} s per call, above "
        f"{bars.cost_ratio:g} x the general model's {seconds['general']:.3g} s"
      )
  return failed


def run(
  config: ml_collections.ConfigDict,
  output_dir: str,
  workdir: str | None = None,
  *,
  methods: dict | None = None,
) -> dict:
  """Runs the enabled parts, writes results.json and results.md into output_dir.

  Args:
    config: experiments/configs/next_network.py.
    output_dir: where the results go.
    workdir: the `new` network (overrides config.new_model).
    methods: optional name -> Method or callable, replacing the named methods (tests).

  Returns:
    The results: per part its rows, plus machine facts, errors, losses and failures.
  """
  start = time.time()
  bank = MethodBank(workdir or config.new_model, methods)
  results = {
    "machine": common.machine_facts(),
    "new_model": bank.new_model,
    "config": config.to_dict(),
    "models": {},
  }
  errors = results["errors"] = []
  parts = {"smooth_1d": smooth_1d_part, "integral_1d": integral_1d_part, "cost": cost_part}
  for part in PARTS:
    if not config[part].enabled:
      continue
    if part in DENSITY_PARTS:
      results[part] = density_part(part, config, bank, errors)
    else:
      results[part] = parts[part](config, bank, errors)
  results["models"] = {
    name: info["source"] + (f", step {info['step']}" if info["step"] else "")
    for name, info in bank.info.items()
  }
  results["models"].update({name: "stand-in given to run()" for name in methods or {}})
  results["model_info"] = bank.info
  results["seconds"] = time.time() - start
  results["load_average_end"] = os.getloadavg()
  results["losses"] = losses(results)
  results["failures"] = failures(results, config)
  markdown = results_markdown(results)
  common.write_results(results, markdown, output_dir)
  print(markdown, flush=True)
  return results
