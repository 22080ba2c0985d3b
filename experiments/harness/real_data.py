"""Held-out log-likelihood of the models and the KDE baselines on real tabular data.

`python -m experiments.run --config=experiments/configs/real_data.py` runs
`run(config, output_dir, workdir)`: the data sets that ship inside scikit-learn and statsmodels
(`load_table`), cleaned and cut into problems (`make_problems`), split train/test per seed
(`split`), every method fitted on the train rows and scored by the mean log-density of the
test rows on the data's original scale (`evaluate_problem`), then per method the problems
where it beats the cross-validated KDE and its mean rank (`summary`). A method that declines
the input (a ValueError of its checks: d above a model's max_dim, too few rows, a singular
covariance) is recorded as refused, any other exception as failed; non-finite test
log-densities are counted, never clipped or dropped (one -inf makes the mean -inf).
"""

from collections.abc import Callable
import dataclasses
import functools
import importlib
import math
import os
import time
import warnings
import zlib

import jax
import ml_collections
import numpy as np

from experiments.harness import common
from experiments.harness.progress import Progress
from kdeformer import checkpoints

SKLEARN_DATASETS = ("iris", "wine", "breast_cancer", "diabetes", "linnerud")
BASELINES = ("scott", "cv_kde", "gaussian")
BASELINE_LABELS = {"scott": "Scott KDE", "cv_kde": "CV KDE", "gaussian": "Gaussian"}
REFERENCE = "cv_kde"  # The method every other one is counted against.


# --- Data. ---


@dataclasses.dataclass
class Table:
  """One cleaned data set: data (n, D) float64, column names, where from, what was dropped."""

  name: str
  source: str
  data: np.ndarray
  columns: list
  raw_shape: tuple
  dropped: dict


@dataclasses.dataclass
class Problem:
  """A column subset of a Table: data (n, d), its column names and the discreteness facts."""

  index: int
  dataset: str
  source: str
  data: np.ndarray
  columns: list
  discrete_columns: list
  duplicate_row_fraction: float

  dim = property(lambda self: self.data.shape[1])
  num_rows = property(lambda self: self.data.shape[0])


def raw_frame(name: str):
  """The data set as a pandas DataFrame, and a line on where it comes from."""
  import pandas as pd  # pylint: disable=g-import-not-at-top

  if name in SKLEARN_DATASETS:
    from sklearn import datasets  # pylint: disable=g-import-not-at-top

    options = {"scaled": False} if name == "diabetes" else {}  # The original units.
    bunch = getattr(datasets, f"load_{name}")(**options)
    frame = pd.DataFrame(bunch.data, columns=list(bunch.feature_names))
    if name in ("diabetes", "linnerud"):  # Continuous targets are data too; class labels not.
      target = np.asarray(bunch.target, np.float64).reshape(len(frame), -1)
      names = list(getattr(bunch, "target_names", None) or ["target"])
      if len(names) != target.shape[1]:
        names = [f"target{i}" for i in range(target.shape[1])]
      for column, values in zip(names, target.T):
        frame[column] = values
    return frame, f"sklearn.datasets.load_{name}"
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    module = importlib.import_module(f"statsmodels.datasets.{name}")
    return module.load_pandas().data, f"statsmodels.datasets.{name}"


def clean(
  frame, config: ml_collections.ConfigDict, rng: np.random.Generator
) -> tuple[np.ndarray, list, dict]:
  """Numeric columns, index columns out, mostly-missing columns out, rows with a NaN out, at most
  max_rows rows (a seeded subsample), then constant, duplicate and collinear columns out.

  Returns:
    (data (n, D) float64, column names, {reason: [dropped column names]}).
  """
  dropped = {}
  numeric = frame.select_dtypes(include=[np.number]).select_dtypes(exclude=["bool"])
  dropped["not numeric"] = [str(c) for c in frame.columns if c not in numeric.columns]
  index_names = {name.lower() for name in config.drop_columns}
  dropped["index column"] = [str(c) for c in numeric.columns if str(c).lower() in index_names]
  numeric = numeric.drop(columns=[c for c in numeric.columns if str(c).lower() in index_names])
  missing = numeric.isna().mean(axis=0)
  dropped["mostly missing"] = [
    str(c) for c in numeric.columns if missing[c] > config.max_nan_fraction
  ]
  numeric = numeric.loc[:, missing <= config.max_nan_fraction].dropna(axis=0, how="any")
  data = numeric.to_numpy(np.float64)
  names = [str(c) for c in numeric.columns]
  if data.shape[0] > config.max_rows:
    data = data[np.sort(rng.choice(data.shape[0], config.max_rows, replace=False))]
  keep, reasons = [], {"constant": [], "duplicate": [], "collinear": []}
  for j in range(data.shape[1]):
    column = data[:, j]
    if np.ptp(column) == 0:
      reasons["constant"].append(names[j])
    elif any(np.array_equal(column, data[:, k]) for k in keep):
      reasons["duplicate"].append(names[j])
    elif keep and collinear(data[:, keep + [j]], config.collinear_rtol):
      reasons["collinear"].append(names[j])
    else:
      keep.append(j)
  dropped.update(reasons)
  return data[:, keep], [names[j] for j in keep], {k: v for k, v in dropped.items() if v}


def collinear(data: np.ndarray, rtol: float) -> bool:
  """The correlation matrix of data (n, k) has eigenvalue ratio below rtol."""
  centred = data - data.mean(axis=0)
  standardized = centred / np.sqrt(np.mean(centred**2, axis=0))
  eigenvalues = np.linalg.eigvalsh(standardized.T @ standardized / data.shape[0])
  return bool(eigenvalues[0] <= rtol * eigenvalues[-1])


def load_table(name: str, config: ml_collections.ConfigDict) -> Table:
  frame, source = raw_frame(name)
  rng = np.random.default_rng([config.seed, zlib.crc32(name.encode())])
  data, columns, dropped = clean(frame, config, rng)
  return Table(name, source, data, columns, tuple(frame.shape), dropped)


def make_problems(tables: list, config: ml_collections.ConfigDict) -> tuple[list, list]:
  """The problems (the first k columns for each k in prefix_sizes up to D; all of them, at most
  max_columns, when D > all_columns_above or D is below every k), and the ones skipped (too
  few train rows for their d) as (dataset, d, reason)."""
  problems, skipped = [], []
  for table in tables:
    num_columns = table.data.shape[1]
    sizes = {k for k in config.prefix_sizes if k <= num_columns}
    if num_columns > config.all_columns_above or not sizes:
      sizes.add(min(num_columns, config.max_columns))
    sizes = sorted(k for k in sizes if k > 0)
    for k in sizes:
      data = table.data[:, :k]
      num_train = train_size(data.shape[0], config)
      if num_train < max(config.min_train, 2 * (k + 1)):
        skipped.append(
          (table.name, k, f"n_train = {num_train} < max({config.min_train}, 2 (d + 1))")
        )
        continue
      unique = [len(np.unique(column)) for column in data.T]
      discrete = [table.columns[j] for j in range(k) if unique[j] <= config.discrete_max_unique]
      duplicates = 1.0 - len(np.unique(data, axis=0)) / data.shape[0]
      problems.append(
        Problem(
          len(problems),
          table.name,
          table.source,
          data,
          table.columns[:k],
          discrete,
          float(duplicates),
        )
      )
  return problems, skipped


def train_size(num_rows: int, config: ml_collections.ConfigDict) -> int:
  return int(round(config.train_fraction * num_rows))


def split(
  problem: Problem, seed: int, config: ml_collections.ConfigDict
) -> tuple[np.ndarray, np.ndarray]:
  """(train rows, test rows) of one seeded random split."""
  rng = np.random.default_rng(
    [config.seed, 1, zlib.crc32(problem.dataset.encode()), problem.dim, seed]
  )
  order = rng.permutation(problem.num_rows)
  num_train = train_size(problem.num_rows, config)
  return problem.data[order[:num_train]], problem.data[order[num_train:]]


# --- Methods: each (train (n, d), test (m, d)) -> test log-densities (m,). ---


def scott_kde(train, test):
  """Scott's rule, scipy's convention (kernel covariance Cov * n^(-2/(d+4))), the same estimate
  as `kdeformer.kde.gaussian_kde(train, test)`, without a compilation per problem shape."""
  from scipy import stats  # pylint: disable=g-import-not-at-top

  try:
    return stats.gaussian_kde(train.T, bw_method="scott").logpdf(test.T)
  except np.linalg.LinAlgError as error:
    raise ValueError(f"singular sample covariance: {error}") from error


def fitted_gaussian(train, test):
  """The Gaussian of the sample mean and (unbiased) covariance; ValueError if singular.

  Computed in standardised units (`whitening`) and mapped back by its log-Jacobian: the same
  density, without scipy's scale-dependent positive-definiteness check, which refuses
  well-posed data whose columns differ in scale by 1e4 (breast_cancer).
  """
  mean, inverse_root, log_det = whitening(train)
  z = (test - mean) @ inverse_root
  d = train.shape[1]
  return -0.5 * np.sum(z**2, axis=1) - 0.5 * d * np.log(2 * np.pi) + log_det


def whitening(train) -> tuple[np.ndarray, np.ndarray, float]:
  """(mean (d,), A (d, d), log|det A|) with A = S^-1 R^{-1/2}: S the columns' standard
  deviations, R their correlation matrix (so A (x - mean) has identity covariance); the
  singularity check is on R, so it does not depend on the columns' units."""
  mean = train.mean(axis=0)
  scale = np.std(train, axis=0, ddof=1)
  if np.any(scale == 0):
    raise ValueError(f"constant column(s) {np.flatnonzero(scale == 0).tolist()} in the train rows")
  correlation = np.atleast_2d(np.cov(train / scale, rowvar=False))
  eigenvalues, vectors = np.linalg.eigh(correlation)
  if eigenvalues[0] <= 1e-12 * eigenvalues[-1]:
    raise ValueError(
      f"singular sample correlation (eigenvalue ratio {eigenvalues[0] / eigenvalues[-1]:.2e})"
    )
  inverse_root = ((vectors / np.sqrt(eigenvalues)) @ vectors.T) / scale[:, None]
  log_det = float(-0.5 * np.sum(np.log(eigenvalues)) - np.sum(np.log(scale)))
  return mean, inverse_root, log_det


def cv_kde(train, test, cfg: ml_collections.ConfigDict, seed: int) -> tuple[np.ndarray, dict]:
  """scikit-learn's Gaussian KernelDensity on the whitened train rows, its bandwidth chosen by
  GridSearchCV (K-fold held-out log-likelihood) over Scott's factor times a geometric grid;
  log f(x) = log f_z(A (x - mean)) + log|det A|. Returns (log-densities, {factor, at_edge})."""
  from sklearn.model_selection import GridSearchCV  # pylint: disable=g-import-not-at-top
  from sklearn.model_selection import KFold  # pylint: disable=g-import-not-at-top
  from sklearn.neighbors import KernelDensity  # pylint: disable=g-import-not-at-top

  mean, inverse_root, log_det = whitening(train)
  z_train, z_test = (train - mean) @ inverse_root, (test - mean) @ inverse_root
  n, d = train.shape
  factors = np.geomspace(cfg.min_factor, cfg.max_factor, cfg.num_bandwidths)
  scott = n ** (-1.0 / (d + 4))
  search = GridSearchCV(
    KernelDensity(kernel="gaussian"),
    {"bandwidth": scott * factors},
    cv=KFold(min(cfg.folds, n), shuffle=True, random_state=seed),
  )
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Folds scoring -inf at tiny bandwidths: they just lose.
    search.fit(z_train)
  factor = search.best_params_["bandwidth"] / scott
  at_edge = bool(np.isclose(factor, factors[0]) or np.isclose(factor, factors[-1]))
  log_density = search.best_estimator_.score_samples(z_test) + log_det
  return log_density, {"bandwidth_factor": float(factor), "at_grid_edge": at_edge}


@dataclasses.dataclass
class Method:
  """A method of the run. kind: "model" (shipped name), "workdir" or "baseline"."""

  label: str
  kind: str
  source: str


def method_list(config: ml_collections.ConfigDict, workdir: str | None) -> list[Method]:
  methods = [Method(name, "model", name) for name in config.models]
  workdirs = list(config.workdirs) + ([workdir] if workdir else [])
  for path in workdirs:
    if path in checkpoints.PRETRAINED_MODELS:
      if path not in config.models:
        methods.append(Method(path, "model", path))
      continue
    label = "workdir:" + os.path.basename(os.path.normpath(path))
    methods.append(Method(label, "workdir", path))
  for name in config.baselines:
    if name not in BASELINES:
      raise common.ConfigError(f"Unknown baseline {name!r}; known: {', '.join(BASELINES)}.")
    methods.append(Method(name, "baseline", name))
  if REFERENCE not in config.baselines:
    raise common.ConfigError(
      f"baselines must include {REFERENCE!r}: the summary counts every method against it."
    )
  if len({m.label for m in methods}) != len(methods):
    raise common.ConfigError(f"Two methods share a label: {[m.label for m in methods]}.")
  return methods


class Networks:
  """The networks by source (shipped name or workdir), loaded on first use.

  overrides: source -> an estimator-like object (tests: stand-ins), used as given.
  """

  def __init__(self, overrides: dict | None = None):
    self.loaded = dict(overrides or {})
    self.info = {source: {"source": "stand-in given to run()"} for source in self.loaded}

  def __getitem__(self, source: str):
    if source not in self.loaded:
      self.loaded[source], self.info[source] = common.load_model(source)
    return self.loaded[source]


def answering_source(networks: Networks, source: str, dim: int, num_samples: int) -> str:
  """The source whose network answers (n, d): itself, or the shipped model its hand-off names
  (`Estimator.handoff`: "general" hands d > 10 to "equivariant"; the default also d = 1,
  d >= 9 and n > 16,384). A network without one is called as is, and refuses what it can't."""
  handoff = getattr(networks[source], "handoff", None)
  if handoff is not None and handoff.hands_off(dim, num_samples):
    return handoff.to
  return source


def network_log_density(
  networks: Networks, source: str, train, test, config: ml_collections.ConfigDict, seed: int
):
  estimator = networks[source]
  if config.normalize:
    key = jax.random.fold_in(jax.random.key(config.normalize_draws_seed), seed)
    return estimator.fit(train)(test, normalize=True, key=key).log_density
  return estimator(train, test).log_density


def outcome(function: Callable) -> dict:
  """Runs function() -> log-densities (m,) (and optionally extra facts); the mean over all test
  points (any -inf makes it -inf: nothing dropped or clipped), the count of non-finite ones, or
  the refusal (ValueError) or failure (any other exception)."""
  start = time.time()
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # "n below the trained sizes": the table says n.
      value = function()
  except ValueError as error:
    return {"status": "refused", "reason": f"{str(error)[:300]}", "seconds": time.time() - start}
  except Exception as error:  # pylint: disable=broad-except
    # One method failing on one problem is a result, not a reason to lose the run.
    return {
      "status": "failed",
      "reason": f"{type(error).__name__}: {str(error)[:300]}",
      "seconds": time.time() - start,
    }
  extra = {}
  if isinstance(value, tuple):
    value, extra = value
  log_density = np.asarray(value, np.float64).reshape(-1)
  finite = np.isfinite(log_density)
  with np.errstate(invalid="ignore"):
    mean = float(np.mean(log_density))
  out = {
    "status": "ok",
    "log_likelihood": mean,
    "finite_mean": float(np.mean(log_density[finite])) if finite.any() else None,
    "non_finite": int(np.sum(~finite)),
    "num_neg_inf": int(np.sum(log_density == -np.inf)),
    "num_pos_inf": int(np.sum(log_density == np.inf)),
    "num_nan": int(np.sum(np.isnan(log_density))),
    "seconds": time.time() - start,
  }
  out.update(extra)
  return out


def baseline_log_density(name: str, train, test, config: ml_collections.ConfigDict, seed: int):
  if name == "scott":
    return scott_kde(train, test)
  if name == "gaussian":
    return fitted_gaussian(train, test)
  return cv_kde(train, test, config.cv_kde, seed)


def evaluate_problem(
  problem: Problem, methods: list, networks: Networks, config: ml_collections.ConfigDict
) -> dict:
  """Every method on every split of one problem: label -> list of split outcomes."""
  results = {m.label: [] for m in methods}
  for seed in config.splits:
    train, test = split(problem, seed, config)
    cache = {}  # answering source -> outcome: a hand-off reuses the answering model's result.
    for method in methods:
      if method.kind == "baseline":
        result = outcome(
          functools.partial(baseline_log_density, method.source, train, test, config, seed)
        )
      else:
        try:
          source = answering_source(networks, method.source, problem.dim, len(train))
        except Exception as error:  # pylint: disable=broad-except
          result = {
            "status": "failed",
            "reason": f"loading {method.source}: {type(error).__name__}: {str(error)[:300]}",
            "seconds": 0.0,
          }
        else:
          if source not in cache:
            cache[source] = outcome(
              functools.partial(network_log_density, networks, source, train, test, config, seed)
            )
          result = dict(cache[source])
          if source != method.source:
            result["answered_by"] = source
      result.update(split=seed, num_train=len(train), num_test=len(test))
      results[method.label].append(result)
  return results


# --- Summary. ---


def problem_summary(outcomes: list) -> dict:
  """A method's outcomes over the splits -> status, mean +- std of the held-out LL, counts."""
  statuses = [o["status"] for o in outcomes]
  summary = {
    "splits": len(outcomes),
    "answered": statuses.count("ok"),
    "non_finite": int(sum(o.get("non_finite", 0) for o in outcomes)),
    "seconds": float(sum(o["seconds"] for o in outcomes)),
  }
  handed = {o["answered_by"] for o in outcomes if "answered_by" in o}
  if handed:
    summary["answered_by"] = sorted(handed)[0]
  if "failed" in statuses:
    summary["status"] = "failed"
  elif "refused" in statuses:
    summary["status"] = "refused"
  else:
    summary["status"] = "ok"
  reasons = [o["reason"] for o in outcomes if "reason" in o]
  if reasons:
    summary["reason"] = reasons[0]
  values = [o["log_likelihood"] for o in outcomes if o["status"] == "ok"]
  if values and summary["status"] == "ok":
    with np.errstate(invalid="ignore"):
      summary["mean"] = float(np.mean(values))
      summary["std"] = float(np.std(values)) if all(map(math.isfinite, values)) else None
  return summary


def ranks(values: dict) -> dict:
  """label -> rank (1 = highest LL; ties share the mean rank; NaN ranks last)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top

  labels = list(values)
  keyed = np.array([-np.inf if math.isnan(values[k]) else values[k] for k in labels])
  return dict(zip(labels, (stats.rankdata(-keyed, method="average")).tolist()))


def counted(summary: dict) -> bool:
  """The method's own answer on every split (not a hand-off): it enters ranks and counts."""
  return summary["status"] == "ok" and "answered_by" not in summary and "mean" in summary


def summary(rows: list, labels: list) -> dict:
  """Per group ("d <= 10", "d > 10") and method: problems answered, beats the CV KDE on, mean
  rank among the methods that answered the problem themselves, hand-offs and refusals."""
  groups = {"d <= 10": lambda d: d <= 10, "d > 10": lambda d: d > 10}
  out = {}
  for group, member in groups.items():
    chosen = [row for row in rows if member(row["d"])]
    stats = {
      label: {
        "problems": len(chosen),
        "answered": 0,
        "beats_cv_kde": 0,
        "compared_with_cv_kde": 0,
        # The answers the method returns, hand-offs included (what its user gets).
        "beats_cv_kde_as_called": 0,
        "compared_as_called": 0,
        "ranks": [],
        "handed_off": 0,
        "refused": 0,
        "failed": 0,
        "non_finite_problems": 0,
      }
      for label in labels
    }
    for row in chosen:
      own = {
        label: row["methods"][label]["mean"] for label in labels if counted(row["methods"][label])
      }
      row_ranks = ranks(own) if own else {}
      reference = own.get(REFERENCE)
      for label in labels:
        s, entry = row["methods"][label], stats[label]
        entry["handed_off"] += "answered_by" in s
        entry["refused"] += s["status"] == "refused"
        entry["failed"] += s["status"] == "failed"
        entry["non_finite_problems"] += s["non_finite"] > 0
        if label != REFERENCE and reference is not None and s["status"] == "ok" and "mean" in s:
          entry["compared_as_called"] += 1
          entry["beats_cv_kde_as_called"] += bool(s["mean"] > reference)
        if label not in own:
          continue
        entry["answered"] += 1
        entry["ranks"].append(row_ranks[label])
        if label != REFERENCE and reference is not None:
          entry["compared_with_cv_kde"] += 1
          entry["beats_cv_kde"] += bool(own[label] > reference)
    for entry in stats.values():
      entry["mean_rank"] = float(np.mean(entry["ranks"])) if entry["ranks"] else None
    out[group] = stats
  return out


# --- Report. ---


def cell(s: dict) -> str:
  """A table cell: mean +- std; '(-> name)' for a hand-off; the non-finite count; refusals."""
  if s["status"] == "refused":
    return "refused"
  if s["status"] == "failed":
    return "FAILED"
  text = common.format_number(s.get("mean"))
  if s.get("mean") is not None and math.isinf(s["mean"]):
    text = "-inf" if s["mean"] < 0 else "+inf"
  if s.get("std") is not None:
    text += f" ± {s['std']:.2g}"
  if s["non_finite"]:
    text += f" ({s['non_finite']} non-finite)"
  if "answered_by" in s:
    text += f" (→ {s['answered_by']})"
  return text


def column_text(columns: list) -> str:
  if len(columns) <= 3:
    return ", ".join(columns)
  return f"{columns[0]} … {columns[-1]}"


def flags_text(row: dict) -> str:
  flags = []
  if row["discrete_columns"]:
    flags.append(f"discrete {len(row['discrete_columns'])}/{row['d']}")
  if row["duplicate_row_fraction"] > 0:
    flags.append(f"dup rows {100 * row['duplicate_row_fraction']:.0f}%")
  if row.get("cv_kde_at_grid_edge"):
    flags.append("CV h at grid edge")
  return ", ".join(flags) or "-"


def results_markdown(results: dict) -> str:
  machine, config = results["machine"], results["config"]
  labels = results["methods"]
  names = results["method_names"]
  lines = [
    "# Real data: held-out log-likelihood (nats per test point, higher is better)",
    "",
    f"Command: `{machine['command']}` (nice {machine['nice']})",
    "",
    f"Machine: {machine['cpu_count']}-core CPU ({machine['platform']}, Python "
    f"{machine['python']}, JAX {machine['jax']}); date "
    f"{machine['date']}; wall time {results['seconds']:.0f} s; load average "
    f"{machine['load_average_start'][0]:.1f} at the start, "
    f"{results['load_average_end'][0]:.1f} at the end.",
    "",
    "Models: " + "; ".join(f"{k}: {v}" for k, v in results["models"].items()) + ".",
    "",
    f"Data: {len(results['tables'])} data sets shipped in scikit-learn and statsmodels, "
    f"{len(results['problems'])} problems (the first k columns for k in "
    f"{tuple(config['prefix_sizes'])}, and all columns up to {config['max_columns']}); rows "
    f"subsampled to at most {config['max_rows']}; {100 * config['train_fraction']:.0f}/"
    f"{100 - 100 * config['train_fraction']:.0f} train/test splits, seeds "
    f"{tuple(config['splits'])}. Each cell: the mean over the splits of the mean test "
    "log-density ± its standard deviation over the splits, on the data's original scale. "
    "'(k non-finite)': test points with a non-finite log-density (summed over the splits; "
    "one -inf makes the mean -inf: nothing is clipped); 'refused': the method declined the "
    "input (its message is below); '(→ equivariant)': the model handed d > its max_dim to "
    "that shipped model, whose number it is (not counted for the model in the summary).",
    "",
    "Flags: 'discrete k/d': k columns with at most "
    f"{config['discrete_max_unique']} distinct values (a density of such data is not "
    "bounded: kernel methods gain by shrinking onto the ties); 'dup rows': share of repeated "
    f"rows; 'CV h at grid edge': the CV KDE's bandwidth hit the end of its grid (Scott's "
    f"factor × [{config['cv_kde']['min_factor']}, {config['cv_kde']['max_factor']}]) on a "
    "split.",
    "",
  ]
  if config["normalize"]:
    lines += [
      "The networks' log-densities are normalised (normalize=True: log Z by importance sampling).",
      "",
    ]
  else:
    lines += [
      "The networks' log-densities are as returned (normalize=False): not exactly "
      "normalised, so their held-out log-likelihood includes -log Z of the estimate "
      "(WORKSPACE.md, 'is exp(log f) a density': Z = 1.006 at n = 16 and 1.028 at 512 "
      "on N(0, 1) for the general model; the equivariant model is a normalised mixture "
      "by construction). --config.normalize=True subtracts an importance-sampled "
      "log Z.",
      "",
    ]
  header = ["#", "data set", "columns", "n_train", "n_test", "d", "flags"] + [
    names[label] for label in labels
  ]
  body = []
  for row in results["problems"]:
    body.append(
      [
        row["index"],
        row["dataset"],
        column_text(row["columns"]),
        row["num_train"],
        row["num_test"],
        row["d"],
        flags_text(row),
      ]
      + [cell(row["methods"][label]) for label in labels]
    )
  lines += ["## Per problem", "", common.markdown_table(header, body), ""]
  lines += [
    "## Summary",
    "",
    "Per method and group: the problems where its mean held-out log-likelihood beats "
    "the CV KDE's (of those both answered themselves; 'as called': the answers it returns, "
    "hand-offs included), its mean rank among the methods "
    "that answered the problem themselves (1 = best, ties share), and the problems it "
    "answered, handed off, refused or failed, and with non-finite test values.",
    "",
  ]
  header = [
    "method",
    "group",
    "beats CV KDE",
    "as called (hand-offs included)",
    "mean rank",
    "answered",
    "handed off",
    "refused",
    "failed",
    "problems with non-finite",
  ]
  body = []
  for label in labels:
    for group, stats in results["summary"].items():
      entry = stats[label]
      body.append(
        [
          names[label],
          group,
          "-"
          if label == REFERENCE
          else f"{entry['beats_cv_kde']} / {entry['compared_with_cv_kde']}",
          "-"
          if label == REFERENCE
          else f"{entry['beats_cv_kde_as_called']} / {entry['compared_as_called']}",
          common.format_number(entry["mean_rank"]),
          f"{entry['answered']} / {entry['problems']}",
          entry["handed_off"],
          entry["refused"],
          entry["failed"],
          entry["non_finite_problems"],
        ]
      )
  lines += [common.markdown_table(header, body), ""]
  totals = {
    label: sum(row["methods"][label]["non_finite"] for row in results["problems"])
    for label in labels
  }
  lines += [
    "Non-finite test log-densities, all problems and splits: "
    + ", ".join(f"{names[label]} {count}" for label, count in totals.items())
    + ".",
    "",
  ]
  notes = []
  for row in results["problems"]:
    for label in labels:
      s = row["methods"][label]
      if s["status"] != "ok":
        notes.append(
          f"- #{row['index']} {row['dataset']} d = {row['d']}, {names[label]} "
          f"{s['status']}: {s.get('reason', '')}"
        )
  if notes:
    lines += ["## Refusals and failures", ""] + notes + [""]
  lines += [
    "## Data sets",
    "",
    common.markdown_table(
      ["data set", "source", "raw shape", "cleaned (n, D)", "dropped"],
      [
        [
          t["name"],
          t["source"],
          t["raw_shape"],
          t["shape"],
          "; ".join(f"{k}: {', '.join(v)}" for k, v in t["dropped"].items()) or "-",
        ]
        for t in results["tables"]
      ],
    ),
    "",
  ]
  if results["skipped"]:
    lines += [
      "Skipped problems (too few train rows): "
      + "; ".join(f"{name} d = {d}" for name, d, _ in results["skipped"])
      + ".",
      "",
    ]
  if results["load_errors"]:
    lines += [
      "Data sets that did not load: "
      + "; ".join(f"{k}: {v}" for k, v in results["load_errors"].items())
      + ".",
      "",
    ]
  return "\n".join(lines)


def run(
  config: ml_collections.ConfigDict,
  output_dir: str,
  workdir: str | None = None,
  *,
  estimators: dict | None = None,
) -> dict:
  """Runs every method on every problem and split; writes results.json and results.md.

  Args:
    config: experiments/configs/real_data.py.
    output_dir: where the results go.
    workdir: one more training workdir (appended to config.workdirs).
    estimators: optional source (shipped name or workdir) -> estimator-like stand-in (tests).

  Returns:
    The results: machine facts, tables, problems with per-method summaries and split
    outcomes, the summary per group.
  """
  start = time.time()
  machine = common.machine_facts()
  methods = method_list(config, workdir)
  tables, load_errors = [], {}
  for name in config.datasets:
    try:
      tables.append(load_table(name, config))
    except Exception as error:  # pylint: disable=broad-except
      load_errors[name] = f"{type(error).__name__}: {str(error)[:200]}"
  problems, skipped = make_problems(tables, config)
  networks = Networks(estimators)
  progress = Progress("real_data", len(problems))
  rows = []
  for problem in problems:
    outcomes = evaluate_problem(problem, methods, networks, config)
    cv_outcomes = [o for o in outcomes[REFERENCE] if o["status"] == "ok"]
    rows.append(
      {
        "index": problem.index,
        "dataset": problem.dataset,
        "source": problem.source,
        "columns": problem.columns,
        "d": problem.dim,
        "num_rows": problem.num_rows,
        "num_train": train_size(problem.num_rows, config),
        "num_test": problem.num_rows - train_size(problem.num_rows, config),
        "discrete_columns": problem.discrete_columns,
        "duplicate_row_fraction": problem.duplicate_row_fraction,
        "cv_kde_bandwidth_factors": [o["bandwidth_factor"] for o in cv_outcomes],
        "cv_kde_at_grid_edge": any(o["at_grid_edge"] for o in cv_outcomes),
        "methods": {
          label: problem_summary(split_outcomes) for label, split_outcomes in outcomes.items()
        },
        "splits": outcomes,
      }
    )
    progress.done(
      f"{problem.dataset} d={problem.dim}",
      ", ".join(f"{label} {cell(rows[-1]['methods'][label])}" for label in outcomes),
    )
  labels = [m.label for m in methods]
  results = {
    "machine": machine,
    "config": config.to_dict(),
    "methods": labels,
    "method_names": {m.label: BASELINE_LABELS.get(m.label, m.label) for m in methods},
    "method_sources": {m.label: m.source for m in methods},
    "models": {
      source: info["source"] + (f", step {info['step']}" if info.get("step") else "")
      for source, info in networks.info.items()
    },
    "model_info": networks.info,
    "tables": [
      {
        "name": t.name,
        "source": t.source,
        "raw_shape": list(t.raw_shape),
        "shape": list(t.data.shape),
        "columns": t.columns,
        "dropped": t.dropped,
      }
      for t in tables
    ],
    "load_errors": load_errors,
    "skipped": skipped,
    "problems": rows,
    "summary": summary(rows, labels),
  }
  results["seconds"] = time.time() - start
  results["load_average_end"] = os.getloadavg()
  markdown = results_markdown(results)
  common.write_results(results, markdown, output_dir)
  print(markdown, flush=True)
  return results
