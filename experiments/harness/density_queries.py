"""Conditionals, CDFs and mutual information of the model, against exact values and the peers.

`python -m experiments.run --config=experiments/configs/density_queries.py` runs
`run(config, output_dir, workdir)` and exits non-zero on its `failures` (the done-bars in
the config). Parts: (a) `conditional_rows`, (b) `real_data_rows`, (c) `cdf_rows`,
(d) `mutual_information_rows`; the peers are statsmodels' KDEMultivariateConditional
(bw='cv_ml') and KDEUnivariate, scikit-learn's KSG estimator (mutual_info_regression) and
Scott KDEs. statsmodels is imported only where a method asks for it.
"""

from collections.abc import Callable
import math
import time
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from scipy import stats

from experiments.harness import common
from experiments.harness.progress import Progress
import kdeformer
from kdeformer import kde

CONDITIONAL_LABELS = {
  "model": "model (ratio)",
  "model_normalized": "model (normalize=True)",
  "kde_ratio": "Scott KDE ratio",
  "statsmodels": "statsmodels cv_ml",
  "gaussian": "Gaussian regression",
}
CDF_LABELS = {
  "model": "model",
  "statsmodels": "statsmodels KDEUnivariate",
  "empirical": "empirical CDF",
}
MI_LABELS = {
  "model": "model (default)",
  "model_reference_only": "model, reference only",
  "model_plugin": "model plug-in",
  "kde_plugin": "Scott KDE plug-in",
  "kde_corrected": "Scott KDE (default options)",
  "ksg": "KSG (k = 3)",
  "gaussian": "Gaussian (covariance)",
}
# kdeformer.mutual_information's options per method: the default (normal scores and the
# Gaussian-reference correction), the correction alone, and the naive plug-in.
PLUG_IN_OPTIONS = {
  "model": {},
  "kde_corrected": {},
  "model_reference_only": {"copula": False},
  "model_plugin": {"copula": False, "bias_correction": False},
  "kde_plugin": {"copula": False, "bias_correction": False},
}


class ConditionalCase(NamedTuple):
  """A joint distribution with its exact conditional.

  draw(rng, n) -> (n, d); log_conditional(x (m, d)) -> (m,) exact log f(rest | given).
  """

  name: str
  given: tuple
  draw: Callable
  log_conditional: Callable


def gaussian_conditional(covariance: np.ndarray, given) -> Callable:
  """Exact log f(x_rest | x_given) (m,) of N(0, covariance) at rows x (m, d)."""
  given = np.asarray(given)
  rest = np.setdiff1d(np.arange(covariance.shape[0]), given)
  regression = np.linalg.solve(covariance[np.ix_(given, given)], covariance[np.ix_(given, rest)]).T
  residual = covariance[np.ix_(rest, rest)] - regression @ covariance[np.ix_(given, rest)]

  def log_conditional(x):
    mean = x[:, given] @ regression.T
    return (
      stats.multivariate_normal(np.zeros(len(rest)), residual).logpdf(x[:, rest] - mean).reshape(-1)
    )

  return log_conditional


def block_covariance() -> np.ndarray:
  """4-D: blocks (0, 1) and (2, 3) with within-block correlation 0.5, across 0.3 and 0.4."""
  return np.array(
    [[1.0, 0.5, 0.3, 0.4], [0.5, 1.0, 0.4, 0.3], [0.3, 0.4, 1.0, 0.5], [0.4, 0.3, 0.5, 1.0]]
  )


def conditional_case(name: str, cfg: ml_collections.ConfigDict) -> ConditionalCase:
  if name == "gaussian":
    covariance = np.array([[1.0, cfg.rho], [cfg.rho, 1.0]])
    return ConditionalCase(
      name,
      (0,),
      lambda rng, n: rng.multivariate_normal(np.zeros(2), covariance, size=n),
      gaussian_conditional(covariance, [0]),
    )
  if name == "banana":
    c, s = cfg.banana_curvature, cfg.banana_noise

    def draw(rng, n):
      x1 = rng.normal(size=n)
      return np.stack([x1, c * x1**2 + s * rng.normal(size=n)], axis=1)

    return ConditionalCase(
      name, (0,), draw, lambda x: stats.norm.logpdf(x[:, 1], c * x[:, 0] ** 2, s)
    )
  if name == "gaussian4":
    covariance = block_covariance()
    return ConditionalCase(
      name,
      (0, 1),
      lambda rng, n: rng.multivariate_normal(np.zeros(4), covariance, size=n),
      gaussian_conditional(covariance, [0, 1]),
    )
  raise ValueError(f"Unknown conditional case {name!r}.")


def statsmodels_conditional(samples, queries, given) -> np.ndarray:
  """log f(rest | given) (m,) of statsmodels' KDEMultivariateConditional, bw='cv_ml'."""
  from statsmodels.nonparametric import kernel_density  # pylint: disable=g-import-not-at-top

  given = np.asarray(given)
  rest = np.setdiff1d(np.arange(samples.shape[1]), given)
  model = kernel_density.KDEMultivariateConditional(
    endog=samples[:, rest],
    exog=samples[:, given],
    dep_type="c" * len(rest),
    indep_type="c" * len(given),
    bw="cv_ml",
  )
  with np.errstate(divide="ignore"):
    return np.log(model.pdf(endog_predict=queries[:, rest], exog_predict=queries[:, given]))


def kde_ratio(samples, queries, given) -> np.ndarray:
  """log KDE(x) - log KDE(x_given), Scott's rule for each."""
  given = list(given)
  joint = kde.gaussian_kde(samples, queries, "scott").log_density
  marginal = kde.gaussian_kde(samples[:, given], queries[:, given], "scott").log_density
  return np.asarray(joint, np.float64) - np.asarray(marginal, np.float64)


def gaussian_regression(samples, queries, given) -> np.ndarray:
  """The conditional of the samples' Gaussian (mean and covariance)."""
  mean = samples.mean(axis=0)
  return gaussian_conditional(np.cov(samples, rowvar=False), given)(queries - mean)


def conditional_estimates(
  estimator, methods, samples, queries, given, key, num_draws, statsmodels_max_n: int
) -> dict:
  """method -> (log f(rest | given) (m,) or None when skipped, seconds)."""
  out = {}
  density = None
  for name in methods:
    start = time.time()
    if name in ("model", "model_normalized"):
      density = density or estimator.fit(samples)
      value = np.asarray(
        density.log_conditional(
          queries, list(given), normalize=name == "model_normalized", key=key, num_draws=num_draws
        ).log_density,
        np.float64,
      )
    elif name == "kde_ratio":
      value = kde_ratio(samples, queries, given)
    elif name == "statsmodels":
      value = (
        statsmodels_conditional(samples, queries, given)
        if samples.shape[0] <= statsmodels_max_n
        else None
      )
    elif name == "gaussian":
      value = gaussian_regression(samples, queries, given)
    else:
      raise ValueError(f"Unknown conditional method {name!r}.")
    out[name] = (value, time.time() - start)
  return out


def conditional_rows(estimator, config: ml_collections.ConfigDict, key: jax.Array) -> list[dict]:
  """(a): per (case, n), each method's mean |log f_hat - log f| over the test draws."""
  cfg = config.conditional
  rows = []
  progress = Progress(
    "density_queries (a) conditionals", len(cfg.cases) * len(cfg.sample_sizes) * config.repeats
  )
  for case_index, name in enumerate(cfg.cases):
    case = conditional_case(name, cfg)
    for n in cfg.sample_sizes:
      errors = {method: [] for method in cfg.methods}
      seconds = {method: 0.0 for method in cfg.methods}
      for repeat in range(config.repeats):
        rng = np.random.default_rng([config.seed, 1, case_index, n, repeat])
        samples, queries = case.draw(rng, n), case.draw(rng, cfg.num_test)
        truth = case.log_conditional(queries)
        estimates = conditional_estimates(
          estimator,
          cfg.methods,
          samples,
          queries,
          case.given,
          jax.random.fold_in(key, case_index * 1000 + repeat),
          cfg.num_draws,
          cfg.statsmodels_max_n,
        )
        for method, (value, spent) in estimates.items():
          seconds[method] += spent
          if value is not None:
            errors[method].append(value - truth)
        progress.done(
          f"{name} n={n} repeat {repeat}",
          ", ".join(f"{m} {np.mean(np.abs(v[-1])):.4f}" for m, v in errors.items() if v),
        )
      rows.append(
        {
          "case": name,
          "n": n,
          "given": list(case.given),
          "repeats": config.repeats,
          "num_test": cfg.num_test,
          "methods": {m: summarize(v, seconds[m]) for m, v in errors.items()},
        }
      )
  return rows


def summarize(errors: list, seconds: float) -> dict | None:
  """Mean |error| and mean error over all test points of all repeats (None: not run)."""
  if not errors:
    return None
  values = np.concatenate(errors)
  finite = np.isfinite(values)
  per_repeat = [float(np.mean(np.abs(e))) for e in errors]
  return {
    "mean_abs": float(np.mean(np.abs(values[finite]))) if finite.any() else None,
    "mean": float(np.mean(values[finite])) if finite.any() else None,
    "per_repeat_mean_abs": per_repeat,
    "non_finite": int(np.sum(~finite)),
    "seconds": seconds,
  }


def real_data(cfg: ml_collections.ConfigDict) -> tuple[np.ndarray, list[str]]:
  """The data set (n, d <= 10), standardised per column, and its column names."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top

  if cfg.dataset != "diabetes":
    raise common.ConfigError(f"real.dataset must be 'diabetes'; got {cfg.dataset!r}.")
  bunch = datasets.load_diabetes()
  data = np.column_stack([bunch.data, bunch.target]).astype(np.float64)
  names = list(bunch.feature_names) + ["target"]
  keep = [i for i in range(data.shape[1]) if i not in set(cfg.drop_columns)]
  data, names = data[:, keep], [names[i] for i in keep]
  return (data - data.mean(axis=0)) / data.std(axis=0), names


def real_data_rows(estimator, config: ml_collections.ConfigDict, key: jax.Array) -> dict:
  """(b): held-out mean log f(target | rest) per method (standardised units), K-fold."""
  cfg = config.real
  data, names = real_data(cfg)
  d = data.shape[1]
  target = cfg.target_column % d
  given = [i for i in range(d) if i != target]
  rng = np.random.default_rng([config.seed, 2])
  folds = np.array_split(rng.permutation(data.shape[0]), cfg.num_folds)
  values = {method: [] for method in cfg.methods}
  seconds = {method: 0.0 for method in cfg.methods}
  progress = Progress("density_queries (b) real data", cfg.num_folds)
  for index, test in enumerate(folds):
    train = np.setdiff1d(np.arange(data.shape[0]), test)
    estimates = conditional_estimates(
      estimator,
      cfg.methods,
      data[train],
      data[test],
      given,
      jax.random.fold_in(key, index),
      256,
      10**9,
    )
    for method, (value, spent) in estimates.items():
      values[method].append(value)
      seconds[method] += spent
    progress.done(
      f"fold {index}", ", ".join(f"{m} {np.mean(v[-1]):.4f}" for m, v in values.items())
    )
  methods = {}
  for method, parts in values.items():
    joined = np.concatenate(parts)
    methods[method] = {
      "mean_log_likelihood": float(np.mean(joined)),
      "standard_error": float(np.std(joined, ddof=1) / math.sqrt(joined.size)),
      "seconds": seconds[method],
    }
  return {
    "dataset": cfg.dataset,
    "n": int(data.shape[0]),
    "d": d,
    "target": names[target],
    "given": [names[i] for i in given],
    "num_folds": cfg.num_folds,
    "methods": methods,
  }


def cdf_case(name: str):
  """(scipy distribution-like with cdf/ppf/rvs, bounds for the model or None, grid ends)."""
  if name == "gaussian":
    return stats.norm(), None, (-3.5, 3.5)
  if name == "exponential":
    return stats.expon(), (0.0, np.inf), (0.0, 7.0)
  if name == "bimodal":
    return BimodalMixture(), None, (-4.0, 5.0)
  raise ValueError(f"Unknown CDF case {name!r}.")


class BimodalMixture:
  """0.4 N(-2, 0.5^2) + 0.6 N(1, 1): cdf, ppf (by bisection) and rvs."""

  weights, means, scales = (0.4, 0.6), (-2.0, 1.0), (0.5, 1.0)

  def cdf(self, x):
    return sum(
      w * stats.norm.cdf(x, m, s) for w, m, s in zip(self.weights, self.means, self.scales)
    )

  def ppf(self, p):
    from scipy import optimize  # pylint: disable=g-import-not-at-top

    return np.array(
      [optimize.brentq(lambda x, q=q: self.cdf(x) - q, -20, 20) for q in np.atleast_1d(p)]
    )

  def rvs(self, size, random_state):
    component = random_state.uniform(size=size) < self.weights[0]
    return np.where(
      component,
      random_state.normal(self.means[0], self.scales[0], size),
      random_state.normal(self.means[1], self.scales[1], size),
    )


def cdf_estimates(estimator, method: str, samples: np.ndarray, bounds, grid, probabilities):
  """(CDF at grid (G,), quantiles at probabilities (P,)) of one method."""
  if method == "model":
    density = estimator.fit(samples[:, None], bounds=bounds)
    return density.cdf(grid), density.quantile(probabilities)
  if method == "statsmodels":
    from statsmodels.nonparametric import kde as sm_kde  # pylint: disable=g-import-not-at-top

    fitted = sm_kde.KDEUnivariate(samples)
    fitted.fit()  # Gaussian kernel, normal-reference bandwidth, FFT grid.
    return (
      np.interp(grid, fitted.support, fitted.cdf, left=0.0, right=1.0),
      np.interp(probabilities, fitted.cdf, fitted.support),
    )
  if method == "empirical":
    ordered = np.sort(samples)
    return (
      np.searchsorted(ordered, grid, side="right") / ordered.size,
      np.quantile(samples, probabilities),
    )
  raise ValueError(f"Unknown CDF method {method!r}.")


def cdf_rows(estimator, config: ml_collections.ConfigDict) -> list[dict]:
  """(c): sup |F_hat - F| on a grid and mean |x_hat(p) - x(p)| per case and method."""
  cfg = config.cdf
  probabilities = np.asarray(cfg.probabilities, np.float64)
  rows = []
  progress = Progress("density_queries (c) CDF", len(cfg.cases) * config.repeats)
  for case_index, name in enumerate(cfg.cases):
    distribution, bounds, ends = cdf_case(name)
    grid = np.linspace(*ends, cfg.grid_points)
    exact_cdf, exact_quantiles = distribution.cdf(grid), distribution.ppf(probabilities)
    sup = {m: [] for m in cfg.methods}
    quantile_error = {m: [] for m in cfg.methods}
    below_support = {m: [] for m in cfg.methods}
    for repeat in range(config.repeats):
      rng = np.random.default_rng([config.seed, 3, case_index, repeat])
      samples = distribution.rvs(size=cfg.sample_size, random_state=rng)
      for method in cfg.methods:
        values, quantiles = cdf_estimates(estimator, method, samples, bounds, grid, probabilities)
        sup[method].append(float(np.max(np.abs(values - exact_cdf))))
        quantile_error[method].append(float(np.mean(np.abs(quantiles - exact_quantiles))))
        # Mass put below a lower bound: the CDF at the bound.
        below_support[method].append(float(values[0]) if bounds is not None else 0.0)
      progress.done(
        f"{name} repeat {repeat}", ", ".join(f"{m} {sup[m][-1]:.4f}" for m in cfg.methods)
      )
    rows.append(
      {
        "case": name,
        "n": cfg.sample_size,
        "repeats": config.repeats,
        "bounds": bounds,
        "methods": {
          m: {
            "sup_cdf_error": float(np.mean(sup[m])),
            "quantile_error": float(np.mean(quantile_error[m])),
            "cdf_at_lower_bound": float(np.mean(below_support[m])),
          }
          for m in cfg.methods
        },
      }
    )
  return rows


def banana_mutual_information(curvature: float, noise: float) -> float:
  """I(X1; X2) of X2 = c X1^2 + s eps by numerical integration: H(X2) - H(s eps)."""
  # x beyond 9 has mass ~1e-19; the y step (~0.004 s) resolves the noise's scale s.
  x = np.linspace(-9.0, 9.0, 3601)
  weights = stats.norm.pdf(x) * (x[1] - x[0])
  y = np.linspace(-8 * noise, curvature * 81 + 8 * noise, 10001)
  density = np.zeros_like(y)
  for start in range(0, x.size, 400):  # f(y) = int phi(x) N(y; c x^2, s^2) dx, in blocks.
    block = slice(start, start + 400)
    z = (y[:, None] - curvature * x[block] ** 2) / noise
    density += np.exp(-0.5 * z**2) @ weights[block] / (noise * math.sqrt(2 * math.pi))
  positive = density > 0
  integrand = np.where(positive, -density * np.log(np.where(positive, density, 1.0)), 0.0)
  entropy_y = float(np.trapezoid(integrand, y))
  return entropy_y - 0.5 * math.log(2 * math.pi * math.e * noise**2)


def mutual_information_case(name: str, config: ml_collections.ConfigDict):
  """(draw(rng, n), columns_a, columns_b, exact MI)."""
  if name == "gaussian":
    rho = config.conditional.rho
    covariance = np.array([[1.0, rho], [rho, 1.0]])
    return (
      lambda rng, n: rng.multivariate_normal(np.zeros(2), covariance, size=n),
      [0],
      [1],
      -0.5 * math.log(1 - rho**2),
    )
  if name == "blocks":
    covariance = block_covariance()
    exact = 0.5 * (
      np.linalg.slogdet(covariance[:2, :2])[1]
      + np.linalg.slogdet(covariance[2:, 2:])[1]
      - np.linalg.slogdet(covariance)[1]
    )
    return (
      lambda rng, n: rng.multivariate_normal(np.zeros(4), covariance, size=n),
      [0, 1],
      [2, 3],
      float(exact),
    )
  if name == "independent":  # Non-Gaussian margins: exponential and uniform.
    return (
      lambda rng, n: np.stack([rng.exponential(size=n), rng.uniform(size=n)], axis=1),
      [0],
      [1],
      0.0,
    )
  if name == "banana":
    case = conditional_case("banana", config.conditional)
    return (
      case.draw,
      [0],
      [1],
      banana_mutual_information(
        config.conditional.banana_curvature, config.conditional.banana_noise
      ),
    )
  raise ValueError(f"Unknown mutual information case {name!r}.")


def mutual_information_estimate(
  estimator, method: str, samples, columns_a, columns_b, key, cfg, seed: int
):
  """One method's (estimate, standard error or None); None if it does not apply."""
  scott = lambda points, queries: kde.gaussian_kde(points, queries, "scott")
  options = dict(key=key, num_references=cfg.num_references)
  if method in PLUG_IN_OPTIONS:
    out = kdeformer.mutual_information(
      samples,
      columns_a,
      columns_b,
      estimator=scott if method.startswith("kde") else estimator,
      **PLUG_IN_OPTIONS[method],
      **options,
    )
    return out.estimate, out.standard_error
  if method == "ksg":
    if len(columns_a) != 1 or len(columns_b) != 1:
      return None  # mutual_info_regression: one feature against one target.
    from sklearn import feature_selection  # pylint: disable=g-import-not-at-top

    value = feature_selection.mutual_info_regression(
      samples[:, columns_a],
      samples[:, columns_b[0]],
      n_neighbors=cfg.ksg_neighbors,
      random_state=seed,
    )[0]
    return float(value), None
  if method == "gaussian":
    covariance = np.cov(samples[:, list(columns_a) + list(columns_b)], rowvar=False)
    a = len(columns_a)
    value = 0.5 * (
      np.linalg.slogdet(covariance[:a, :a])[1]
      + np.linalg.slogdet(covariance[a:, a:])[1]
      - np.linalg.slogdet(covariance)[1]
    )
    return float(value), None
  raise ValueError(f"Unknown mutual information method {method!r}.")


def mutual_information_rows(
  estimator, config: ml_collections.ConfigDict, key: jax.Array
) -> list[dict]:
  """(d): per case, each method's mean estimate, mean |error| and mean error over repeats."""
  cfg = config.mutual_information
  rows = []
  progress = Progress("density_queries (d) mutual information", len(cfg.cases) * config.repeats)
  for case_index, name in enumerate(cfg.cases):
    draw, columns_a, columns_b, exact = mutual_information_case(name, config)
    estimates = {m: [] for m in cfg.methods}
    errors = {m: [] for m in cfg.methods}
    seconds = {m: 0.0 for m in cfg.methods}
    for repeat in range(config.repeats):
      rng = np.random.default_rng([config.seed, 4, case_index, repeat])
      samples = draw(rng, cfg.sample_size)
      repeat_key = jax.random.fold_in(key, case_index * 1000 + repeat)
      for method in cfg.methods:
        start = time.time()
        value = mutual_information_estimate(
          estimator, method, samples, columns_a, columns_b, repeat_key, cfg, seed=repeat
        )
        seconds[method] += time.time() - start
        if value is not None:
          estimates[method].append(value)
          errors[method].append(value[0] - exact)
      progress.done(
        f"{name} repeat {repeat}",
        ", ".join(f"{m} {v[-1][0]:.4f}" for m, v in estimates.items() if v)
        + f" (exact {exact:.4f})",
      )
    rows.append(
      {
        "case": name,
        "n": cfg.sample_size,
        "exact": exact,
        "repeats": config.repeats,
        "columns_a": list(columns_a),
        "columns_b": list(columns_b),
        "methods": {
          m: None
          if not estimates[m]
          else {
            "mean_estimate": float(np.mean([v[0] for v in estimates[m]])),
            "mean_abs_error": float(np.mean(np.abs(errors[m]))),
            "mean_error": float(np.mean(errors[m])),
            "mean_standard_error": (
              None if estimates[m][0][1] is None else float(np.mean([v[1] for v in estimates[m]]))
            ),
            "seconds": seconds[m],
          }
          for m in cfg.methods
        },
      }
    )
  return rows


def run(
  config: ml_collections.ConfigDict, output_dir: str, workdir: str | None = None, estimator=None
) -> dict:
  """Runs the enabled parts and writes results.json and results.md to output_dir.

  Args:
    config: see experiments/configs/density_queries.py.
    output_dir: created if missing.
    workdir: the model's training workdir or shipped name; None: the shipped general model.
    estimator: an Estimator to use instead of loading one (tests); workdir is then ignored.
  """
  start = time.time()
  if estimator is None:
    estimator, info = common.load_model(workdir)
  else:
    info = common.model_info(estimator, "given in-process (see caller)")
  key = jax.random.key(config.seed)
  keys = jax.random.split(key, 4)
  results = {
    "model": info["source"],
    "model_info": info,
    "seed": config.seed,
    "config": config.to_dict(),
  }
  results["conditional"] = (
    conditional_rows(estimator, config, keys[0]) if config.conditional.enabled else []
  )
  results["real"] = real_data_rows(estimator, config, keys[1]) if config.real.enabled else None
  results["cdf"] = cdf_rows(estimator, config) if config.cdf.enabled else []
  results["mutual_information"] = (
    mutual_information_rows(estimator, config, keys[3]) if config.mutual_information.enabled else []
  )
  results["seconds"] = time.time() - start
  markdown = results_markdown(results)
  common.write_results(results, markdown, output_dir)
  print(markdown)
  return results


def failures(results: dict, config: ml_collections.ConfigDict) -> list[str]:
  """The done-bars (WORKSPACE.md), where the results hold their cells: at the largest n, the model's
  normalised conditional beats the Scott KDE ratio on the Gaussian and the banana; the
  corrected mutual information is within the tolerance on the Gaussian."""
  out = []
  rows = results["conditional"]
  if rows:
    largest = max(row["n"] for row in rows)
    for row in rows:
      per = row["methods"]
      if (
        row["case"] in ("gaussian", "banana")
        and row["n"] == largest
        and per.get("model_normalized")
        and per.get("kde_ratio")
        and not per["model_normalized"]["mean_abs"] < per["kde_ratio"]["mean_abs"]
      ):
        out.append(
          f"conditional {row['case']} n={row['n']}: model {per['model_normalized']}"
          f" not below the KDE ratio {per['kde_ratio']['mean_abs']:.4f}"
        )
  for row in results["mutual_information"]:
    model = row["methods"].get("model")
    if (
      row["case"] == "gaussian"
      and model
      and not (abs(model["mean_estimate"] - row["exact"]) < config.mutual_information.tolerance)
    ):
      out.append(
        f"mutual information gaussian: {model['mean_estimate']:.4f} vs exact "
        f"{row['exact']:.4f}, beyond {config.mutual_information.tolerance}"
      )
  return out


def _cell(stat: dict | None, field: str, digits: int = 4) -> str:
  if stat is None or stat.get(field) is None:
    return "-"
  return f"{stat[field]:.{digits}f}"


def results_markdown(results: dict) -> str:
  """The four parts' tables as Markdown."""
  lines = [
    "# Density queries: conditionals, CDF and quantiles, mutual information",
    "",
    f"Model: {results['model']}; seed {results['seed']}; wall time {results['seconds']:.0f} s.",
    "",
  ]
  config = results["config"]
  if results["conditional"]:
    methods = list(config["conditional"]["methods"])
    lines += [
      "## (a) Conditionals: mean |log f_hat(rest | given) - log f(rest | given)|",
      "",
      f"{config['repeats']} sample sets per cell, {config['conditional']['num_test']} "
      "fresh test draws each; (mean signed error); '-' where a method was skipped.",
      "",
    ]
    body = [
      [row["case"], row["given"], row["n"]]
      + [
        (
          "-"
          if row["methods"][m] is None
          else f"{_cell(row['methods'][m], 'mean_abs')} ({_cell(row['methods'][m], 'mean')})"
        )
        for m in methods
      ]
      for row in results["conditional"]
    ]
    lines += [
      common.markdown_table(
        ["case", "given", "n"] + [CONDITIONAL_LABELS[m] for m in methods], body
      ),
      "",
    ]
    body = [
      [row["case"], row["n"]] + [_cell(row["methods"][m], "seconds", 1) for m in methods]
      for row in results["conditional"]
    ]
    lines += [
      "Seconds per cell (all repeats):",
      "",
      common.markdown_table(["case", "n"] + [CONDITIONAL_LABELS[m] for m in methods], body),
      "",
    ]
  real = results["real"]
  if real:
    lines += [
      f"## (b) Real data: {real['dataset']}, held-out mean log f({real['target']} | "
      f"the other {len(real['given'])} columns)",
      "",
      f"n = {real['n']}, d = {real['d']}, columns standardised, {real['num_folds']}-fold "
      "(fit on one fold, evaluate on the other); higher is better; +- standard error.",
      "",
    ]
    body = [
      [
        CONDITIONAL_LABELS[m],
        f"{v['mean_log_likelihood']:.4f} +- {v['standard_error']:.4f}",
        f"{v['seconds']:.1f}",
      ]
      for m, v in real["methods"].items()
    ]
    lines += [common.markdown_table(["method", "log-likelihood", "seconds"], body), ""]
  if results["cdf"]:
    methods = list(config["cdf"]["methods"])
    lines += [
      "## (c) CDF and quantiles (d = 1)",
      "",
      f"sup |F_hat - F| on {config['cdf']['grid_points']} grid points / mean |x_hat(p)"
      f" - x(p)| over p in {tuple(config['cdf']['probabilities'])}; n = "
      f"{config['cdf']['sample_size']}, {config['repeats']} sample sets. The model uses "
      "bounds=(0, inf) on the exponential; 'F(0)' is the mass put below 0.",
      "",
    ]
    body = [
      [row["case"]]
      + [
        f"{row['methods'][m]['sup_cdf_error']:.4f} / {row['methods'][m]['quantile_error']:.4f}"
        for m in methods
      ]
      + [
        " / ".join(f"{row['methods'][m]['cdf_at_lower_bound']:.3f}" for m in methods)
        if row["bounds"]
        else "-"
      ]
      for row in results["cdf"]
    ]
    lines += [
      common.markdown_table(
        ["case"] + [CDF_LABELS[m] for m in methods] + ["F(0): " + " / ".join(methods)], body
      ),
      "",
    ]
  if results["mutual_information"]:
    methods = list(config["mutual_information"]["methods"])
    lines += [
      "## (d) Mutual information (nats)",
      "",
      f"n = {config['mutual_information']['sample_size']}, {config['repeats']} sample "
      "sets; mean estimate (mean |error|); '-': the method does not apply (KSG of "
      "scikit-learn takes one feature against one target).",
      "",
    ]
    body = [
      [row["case"], f"{row['exact']:.4f}"]
      + [
        (
          "-"
          if row["methods"][m] is None
          else f"{row['methods'][m]['mean_estimate']:.4f} "
          f"({row['methods'][m]['mean_abs_error']:.4f})"
        )
        for m in methods
      ]
      for row in results["mutual_information"]
    ]
    lines += [common.markdown_table(["case", "exact"] + [MI_LABELS[m] for m in methods], body), ""]
    body = [
      [row["case"]]
      + [
        _cell(row["methods"][m], "mean_standard_error")
        for m in ("model", "model_plugin")
        if m in methods
      ]
      + [_cell(row["methods"].get("model"), "seconds", 1)]
      for row in results["mutual_information"]
    ]
    lines += [
      "Reported standard errors and the model's seconds (all repeats):",
      "",
      common.markdown_table(
        ["case", "s.e. model (default)", "s.e. model plug-in", "seconds model"][: len(body[0])],
        body,
      ),
      "",
    ]
  return "\n".join(lines)
