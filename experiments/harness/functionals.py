"""Normalising constant and plug-in functionals of the transformer, measured against the truth.

`python -m experiments.run --config=experiments/configs/functionals.py` runs
`run(config, output_dir, workdir)` and exits non-zero on its `failures`:

(a) `log_normalizer_rows`: for Gaussian mixtures of the training prior in d <= 2,
    the importance-sampling log Z of the model's exp(log-density)
    (`log_normalizer_lib.log_normalizer`, with its standard error) against a
    trapezoid quadrature on a grid (`quadrature.grid_log_normalizer`).
(b) `functional_rows`: cross-fitted plug-in entropy and Fisher information
    (`functionals.plug_in_functionals`) of the model, Scott's-rule KDE and
    SD-KDE driven by the model's score, against closed forms (Gaussians with a
    random covariance) and Monte Carlo truths (mixtures of the training prior),
    as relative errors. The "exact" column plugs the true density into the same
    samples: the sampling noise floor no plug-in estimator can beat on average.
"""

import math
import time

import jax
import ml_collections
import numpy as np

from experiments.harness import common
from experiments.harness.progress import Progress
from kdeformer import distributions
from kdeformer import functionals
from kdeformer import kde
from kdeformer import log_normalizer as log_normalizer_lib
from kdeformer import quadrature

METHOD_LABELS = {
  "exact": "exact density (noise floor)",
  "model": "model",
  "kde_scott": "Scott KDE",
  "sd_kde_model": "SD-KDE (model score)",
}
FAMILIES = ("gaussian", "mixture")


def prior_mixture(
  key: jax.Array, dim: int, prior: ml_collections.ConfigDict
) -> distributions.GaussianMixture:
  """One mixture of the training prior in exactly `dim` coordinates."""
  return distributions.sample_mixture_prior(key, dim, max_dim=dim, **dict(prior))


def random_covariance(
  key: jax.Array, dim: int, min_variance: float, max_variance: float
) -> np.ndarray:
  """R diag(v) R^T, v log-uniform in [min_variance, max_variance], R Haar-random."""
  rotation_key, variance_key = jax.random.split(key)
  rotation = np.asarray(distributions.random_orthogonal(rotation_key, dim, dim), np.float64)
  variances = np.exp(
    np.asarray(
      jax.random.uniform(
        variance_key, (dim,), minval=math.log(min_variance), maxval=math.log(max_variance)
      )
    )
  )
  return rotation @ np.diag(variances) @ rotation.T


def make_methods(estimator, names) -> dict:
  """name -> f(samples, queries) -> Estimate, for the names of METHOD_LABELS except "exact"."""
  available = {
    "model": estimator,
    "kde_scott": lambda samples, queries: kde.gaussian_kde(samples, queries, "scott"),
    "sd_kde_model": functionals.sd_kde_estimator(estimator),
  }
  unknown = [name for name in names if name not in available and name != "exact"]
  if unknown:
    raise ValueError(f"Unknown methods {unknown}; known: {sorted(available)} and 'exact'.")
  return {name: available[name] for name in names if name != "exact"}


def log_normalizer_rows(estimator, config: ml_collections.ConfigDict, key: jax.Array) -> list[dict]:
  """(a): one row per (d, n, mixture) with the IS and grid log Z and the error."""
  cfg = config.log_normalizer
  rows = []
  progress = Progress(
    "functionals (a) log Z", len(cfg.dims) * len(cfg.sample_sizes) * cfg.num_problems
  )
  for dim_index, dim in enumerate(cfg.dims):
    for n_index, n in enumerate(cfg.sample_sizes):
      for problem in range(cfg.num_problems):
        problem_key = jax.random.fold_in(
          jax.random.fold_in(jax.random.fold_in(key, dim_index), n_index), problem
        )
        mixture_key, sample_key, draw_key = jax.random.split(problem_key, 3)
        samples = prior_mixture(mixture_key, dim, config.prior).sample(sample_key, n)
        log_f = lambda points, samples=samples: estimator(samples, points).log_density
        start = time.time()
        estimate = log_normalizer_lib.log_normalizer(
          log_f,
          samples,
          draw_key,
          cfg.num_draws,
          num_replicates=cfg.num_replicates,
          bandwidth_factor=cfg.bandwidth_factor,
          defensive_weight=cfg.defensive_weight,
          defensive_scale=cfg.defensive_scale,
        )
        is_seconds = time.time() - start
        grid = float(
          quadrature.grid_log_normalizer(
            log_f, samples, cfg.grid_points_per_dim[dim_index], cfg.grid_padding
          )
        )
        row = {
          "dim": dim,
          "n": n,
          "problem": problem,
          "log_z_is": float(estimate.log_z),
          "standard_error": float(estimate.standard_error),
          "effective_sample_size": float(estimate.effective_sample_size),
          "log_z_grid": grid,
          "error": float(estimate.log_z) - grid,
          "num_draws": cfg.num_draws,
          "seconds_is": is_seconds,
          "seconds_total": time.time() - start,
        }
        row["within_tolerance"] = abs(row["error"]) < cfg.tolerance
        progress.done(
          f"d={dim} n={n} mixture {problem}",
          f"IS {row['log_z_is']:.5f} +- {row['standard_error']:.5f}, grid "
          f"{grid:.5f}, error {row['error']:+.5f}",
        )
        rows.append(row)
  return rows


def functional_problem(
  family: str, key: jax.Array, dim: int, config: ml_collections.ConfigDict
) -> tuple[distributions.GaussianMixture, dict]:
  """The distribution of one repeat and its truth {entropy, fisher_information, (MC errors)}."""
  cfg = config.functionals
  distribution_key, truth_key = jax.random.split(key)
  if family == "gaussian":
    covariance = random_covariance(
      distribution_key, dim, cfg.gaussian_min_variance, cfg.gaussian_max_variance
    )
    distribution = distributions.gaussian_mixture([1.0], np.zeros((1, dim)), covariance[None])
    return distribution, {
      "entropy": functionals.gaussian_entropy(covariance),
      "fisher_information": functionals.gaussian_fisher_information(covariance),
      "source": "closed form",
    }
  if family == "mixture":
    distribution = prior_mixture(distribution_key, dim, config.prior)
    truth = functionals.monte_carlo_functionals(distribution, truth_key, cfg.monte_carlo_draws)
    return distribution, {
      "entropy": truth.entropy,
      "fisher_information": truth.fisher_information,
      "entropy_standard_error": truth.entropy_standard_error,
      "fisher_standard_error": truth.fisher_standard_error,
      "source": f"Monte Carlo, {cfg.monte_carlo_draws} draws",
    }
  raise ValueError(f"family must be one of {FAMILIES}; got {family!r}.")


def functional_rows(estimator, config: ml_collections.ConfigDict, key: jax.Array) -> list[dict]:
  """(b): one row per (family, d, n) with per-method relative errors over the repeats."""
  cfg = config.functionals
  methods = make_methods(estimator, cfg.methods)
  rows = []
  progress = Progress(
    "functionals (b) plug-in", len(cfg.families) * len(cfg.dims) * len(cfg.sample_sizes)
  )
  for family_index, family in enumerate(cfg.families):
    for dim_index, dim in enumerate(cfg.dims):
      for n_index, n in enumerate(cfg.sample_sizes):
        errors = {name: {"entropy": [], "fisher_information": []} for name in cfg.methods}
        # The same, measured from the exact density's plug-in on the same samples (removes the
        # sampling noise all plug-ins share).
        excess = {name: {"entropy": [], "fisher_information": []} for name in cfg.methods}
        truths = []
        start = time.time()
        for repeat in range(cfg.repeats):
          repeat_key = jax.random.fold_in(
            key, ((family_index * 16 + dim_index) * 16 + n_index) * 1024 + repeat
          )
          problem_key, sample_key, fold_key = jax.random.split(repeat_key, 3)
          distribution, truth = functional_problem(family, problem_key, dim, config)
          truths.append(truth)
          samples = distribution.sample(sample_key, n)
          exact = distribution.log_prob_and_score(samples)
          exact = functionals.functionals_from_values(exact.log_density, exact.score)
          for name in cfg.methods:
            value = (
              exact
              if name == "exact"
              else functionals.plug_in_functionals(methods[name], samples, fold_key, cfg.num_folds)
            )
            for quantity in ("entropy", "fisher_information"):
              scale = abs(truth[quantity])
              errors[name][quantity].append((getattr(value, quantity) - truth[quantity]) / scale)
              excess[name][quantity].append(
                (getattr(value, quantity) - getattr(exact, quantity)) / scale
              )
        row = {
          "family": family,
          "dim": dim,
          "n": n,
          "repeats": cfg.repeats,
          "truth_source": truths[0]["source"],
          "mean_truth": {
            q: float(np.mean([t[q] for t in truths])) for q in ("entropy", "fisher_information")
          },
          "methods": {
            name: {q: summarize_errors(v) for q, v in per.items()} for name, per in errors.items()
          },
          "excess_over_exact": {
            name: {q: summarize_errors(v) for q, v in per.items()} for name, per in excess.items()
          },
          "seconds": time.time() - start,
        }
        progress.done(
          f"{family} d={dim} n={n}",
          "mean |relative error| "
          + str(
            {
              name: {q: round(s["mean_abs"], 4) for q, s in per.items()}
              for name, per in row["methods"].items()
            }
          ),
        )
        rows.append(row)
  return rows


def summarize_errors(relative_errors) -> dict:
  """Mean |relative error|, mean signed error and RMS over the repeats."""
  values = np.asarray(relative_errors, np.float64)
  return {
    "mean_abs": float(np.mean(np.abs(values))),
    "mean": float(np.mean(values)),
    "rms": float(np.sqrt(np.mean(values**2))),
    "values": values.tolist(),
  }


def summary(rows: list[dict], methods) -> dict:
  """Per quantity: geometric mean over the cells of model / Scott mean |relative error|."""
  out = {}
  for quantity in ("entropy", "fisher_information"):
    for name in methods:
      if name in ("kde_scott", "exact") or "kde_scott" not in methods:
        continue
      ratios = [
        row["methods"][name][quantity]["mean_abs"]
        / row["methods"]["kde_scott"][quantity]["mean_abs"]
        for row in rows
      ]
      out[f"{quantity}/{name}_over_scott"] = {
        "geometric_mean": float(np.exp(np.mean(np.log(ratios)))),
        "cells_better": int(np.sum(np.asarray(ratios) < 1)),
        "cells": len(ratios),
      }
  return out


def run(
  config: ml_collections.ConfigDict, output_dir: str, workdir: str | None = None, estimator=None
) -> dict:
  """Runs (a) and (b) and writes results.json and results.md to output_dir.

  Args:
    config: see experiments/configs/functionals.py.
    output_dir: created if missing.
    workdir: the training workdir of the model; None: the shipped model.
    estimator: a callable (samples, queries) -> Estimate to use instead of
      loading one (tests pass a small random model); workdir is then ignored.
  """
  start = time.time()
  if estimator is None:
    estimator, info = common.load_model(workdir)
    description = f"{info['source']} (checkpoint step {info['step']})"
  else:
    description = "given in-process (see caller)"
    info = common.model_info(estimator, description)
  key = jax.random.key(config.seed)
  log_z_key, functional_key = jax.random.split(key)
  results = {
    "model": description,
    "model_info": info,
    "seed": config.seed,
    "config": config.to_dict(),
  }
  results["log_normalizer"] = (
    log_normalizer_rows(estimator, config, log_z_key) if config.log_normalizer.enabled else []
  )
  results["functionals"] = (
    functional_rows(estimator, config, functional_key) if config.functionals.enabled else []
  )
  results["summary"] = summary(results["functionals"], config.functionals.methods)
  results["seconds"] = time.time() - start
  common.write_results(results, results_markdown(results), output_dir)
  return results


def failures(results: dict, config: ml_collections.ConfigDict) -> list[str]:
  """(a)'s rows whose importance-sampling log Z misses the grid quadrature by the tolerance."""
  return [
    f"log Z d={row['dim']} n={row['n']} mixture {row['problem']}: importance sampling "
    f"{row['log_z_is']:.5f} off the grid quadrature {row['log_z_grid']:.5f} by more than "
    f"{config.log_normalizer.tolerance}"
    for row in results["log_normalizer"]
    if not row["within_tolerance"]
  ]


def results_markdown(results: dict) -> str:
  """The tables of (a) and (b) as Markdown."""
  lines = [
    "# Normalising constant and plug-in functionals",
    "",
    f"Model: {results['model']}; seed {results['seed']}; wall time {results['seconds']:.0f} s.",
    "",
  ]
  rows = results["log_normalizer"]
  if rows:
    cfg = results["config"]["log_normalizer"]
    lines += [
      "## log Z of exp(model log-density): importance sampling vs grid quadrature",
      "",
      f"{cfg['num_draws']} draws ({cfg['num_replicates']} replicates, antithetic, "
      f"stratified centres) from the whitened Scott KDE x {cfg['bandwidth_factor']} "
      f"+ {cfg['defensive_weight']} N(0, {cfg['defensive_scale']}^2 I); trapezoid grid "
      f"{tuple(cfg['grid_points_per_dim'])} points per axis for d = {tuple(cfg['dims'])}, "
      f"box = sample range +- {cfg['grid_padding']} std.",
      "",
    ]
    # Signed columns keep their sign and fixed decimals: log Z ~ 0, errors ~ 1e-3.
    body = [
      [
        r["dim"],
        r["n"],
        r["problem"],
        f"{r['log_z_grid']:+.4f}",
        f"{r['log_z_is']:+.4f}",
        common.format_number(r["standard_error"]),
        f"{r['error']:+.4f}",
        f"{r['error'] / r['standard_error']:+.1f}",
        f"{r['effective_sample_size']:.0f}",
      ]
      for r in rows
    ]
    lines.append(
      common.markdown_table(
        [
          "d",
          "n",
          "mixture",
          "log Z (grid)",
          "log Z (IS)",
          "IS std. error",
          "IS - grid",
          "error / s.e.",
          "ESS",
        ],
        body,
      )
    )
    worst = max(abs(r["error"]) for r in rows)
    lines += [
      "",
      f"Largest |log Z error| {worst:.4f} (tolerance {cfg['tolerance']}); "
      f"{sum(r['within_tolerance'] for r in rows)}/{len(rows)} within it.",
      "",
    ]
  rows = results["functionals"]
  if rows:
    methods = list(results["config"]["functionals"]["methods"])
    cfg = results["config"]["functionals"]
    lines += [
      "## Plug-in functionals: relative error, mean |.| over the repeats (mean signed)",
      "",
      f"{cfg['repeats']} repeats per cell (fresh distribution and samples each); "
      f"{cfg['num_folds']}-fold cross-fitting; Gaussians: random covariance with "
      f"eigenvalues log-uniform in [{cfg['gaussian_min_variance']}, "
      f"{cfg['gaussian_max_variance']}], closed-form truth; mixtures: training prior, "
      f"Monte Carlo truth ({cfg['monte_carlo_draws']} draws).",
      "",
    ]
    for quantity, label in (
      ("entropy", "Differential entropy"),
      ("fisher_information", "Fisher information"),
    ):
      body = []
      for row in rows:
        line = [
          row["family"],
          row["dim"],
          row["n"],
          common.format_number(row["mean_truth"][quantity]),
        ]
        line += [
          f"{row['methods'][m][quantity]['mean_abs']:.3f} "
          f"({row['methods'][m][quantity]['mean']:+.3f})"
          for m in methods
        ]
        if "model" in methods and "kde_scott" in methods:
          per = row["methods"]
          ratio = per["model"][quantity]["mean_abs"] / per["kde_scott"][quantity]["mean_abs"]
          line.append(common.format_number(ratio))
        body.append(line)
      header = ["family", "d", "n", "mean truth"] + [METHOD_LABELS[m] for m in methods]
      header += ["model / Scott"] if "model" in methods and "kde_scott" in methods else []
      lines += [f"### {label}", "", common.markdown_table(header, body), ""]
    others = [m for m in methods if m != "exact"]
    lines += [
      "### Error measured from the exact density's plug-in on the same samples",
      "",
      "RMS over the repeats of (method - exact plug-in) / |truth|: the estimator's own "
      "error, without the sampling noise that every plug-in shares.",
      "",
    ]
    body = [
      [row["family"], row["dim"], row["n"]]
      + [
        common.format_number(row["excess_over_exact"][m][q]["rms"])
        for q in ("entropy", "fisher_information")
        for m in others
      ]
      for row in rows
    ]
    header = ["family", "d", "n"] + [
      f"{short} {METHOD_LABELS[m]}" for short in ("H:", "J:") for m in others
    ]
    lines += [common.markdown_table(header, body), ""]
    for name, value in results["summary"].items():
      lines.append(
        f"- {name}: geometric mean of the ratio {value['geometric_mean']:.2f}, "
        f"better in {value['cells_better']}/{value['cells']} cells."
      )
    lines.append("")
  return "\n".join(lines)
