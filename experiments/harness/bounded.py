"""The bounded-support experiment (experiments/configs/bounded.py): data with a support.

python -m experiments.run --config=experiments/configs/bounded.py   # calls `run`
results = bounded.evaluate(estimator, config, info)                  # any estimator
"""

from collections.abc import Callable
import dataclasses
import math
import os
import time

import jax
import ml_collections
import numpy as np
from scipy import special
from scipy import stats

from experiments.harness import common
from experiments.harness.progress import Progress
from kdeformer import kde

METHODS = ("model", "model_bounds", "kde", "kde_bounds", "reflection")
LABELS = {
  "model": "model",
  "model_bounds": "model, bounds",
  "kde": "Scott KDE",
  "kde_bounds": "Scott KDE, bounds",
  "reflection": "reflection KDE",
}
# normalize=True's key per cell: fold_in(seed, problem_index * _KEY_STRIDE + n), distinct for
# every (problem, n) with n below the stride.
_KEY_STRIDE = 100003
METRICS = (
  (
    "heldout_log_likelihood",
    "held-out log-likelihood (higher is better; the truth's own value is its negative entropy)",
  ),
  ("l1", "L1 distance to the true density on the grid (lower is better)"),
  ("boundary_ratio", "f_hat / f at the boundary point (1 is exact)"),
)


@dataclasses.dataclass(frozen=True)
class Problem:
  """A distribution with a support: sampler, exact log-density, bounds and an L1 grid box.

  Attributes:
    name: table name.
    label: a short description for the table.
    bounds: (lower (d,), upper (d,)).
    box: (low (d,), high (d,)) of the L1 grid: the support's bulk plus a margin outside it.
    draw: (numpy Generator, count) -> (count, d) samples.
    log_prob: (m, d) -> (m,) exact log-density (-inf outside the support).
    boundary_point: (d,) the point where the boundary density is compared.
  """

  name: str
  label: str
  bounds: tuple
  box: tuple
  draw: Callable
  log_prob: Callable
  boundary_point: np.ndarray

  @property
  def dim(self) -> int:
    return len(self.bounds[0])


def _one_dimensional(name, label, distribution, bounds, box, offset) -> Problem:
  """A 1-D problem from a frozen scipy distribution."""

  def log_prob(x):
    x = np.asarray(x, np.float64)[:, 0]
    inside = (x > bounds[0]) & (x < bounds[1])
    with np.errstate(divide="ignore", invalid="ignore"):
      return np.where(inside, distribution.logpdf(np.where(inside, x, np.mean(box))), -np.inf)

  return Problem(
    name,
    label,
    (np.array([bounds[0]], float), np.array([bounds[1]], float)),
    (np.array([box[0]], float), np.array([box[1]], float)),
    lambda rng, count: distribution.rvs(size=(count, 1), random_state=rng),
    log_prob,
    np.array([bounds[0] + offset]),
  )


def _uniform_box(offset) -> Problem:
  def log_prob(x):
    x = np.asarray(x, np.float64)
    return np.where(np.all((x > 0) & (x < 1), axis=-1), 0.0, -np.inf)

  return Problem(
    "uniform_box",
    "uniform [0, 1]^2",
    (np.zeros(2), np.ones(2)),
    (np.full(2, -0.25), np.full(2, 1.25)),
    lambda rng, count: rng.uniform(size=(count, 2)),
    log_prob,
    np.array([offset, 0.5]),
  )


# The 2-D mixture: weight, (shape, scale) of the Gamma first coordinate, (mean, std) of the
# Gaussian second one; component 0 is piled up against the bound (an exponential).
_MIXTURE = ((0.5, (1.0, 1.0), (-1.0, 0.5)), (0.5, (4.0, 0.5), (1.0, 0.5)))


def _positive_mixture(offset) -> Problem:
  def log_prob(x):
    x = np.asarray(x, np.float64)
    positive = x[:, 0] > 0
    safe = np.where(positive, x[:, 0], 1.0)
    parts = [
      math.log(w) + stats.gamma(a, scale=s).logpdf(safe) + stats.norm(m, sd).logpdf(x[:, 1])
      for w, (a, s), (m, sd) in _MIXTURE
    ]
    return np.where(positive, special.logsumexp(parts, axis=0), -np.inf)

  def draw(rng, count):
    component = rng.choice(len(_MIXTURE), size=count, p=[w for w, _, _ in _MIXTURE])
    out = np.empty((count, 2))
    for index, (_, (a, s), (m, sd)) in enumerate(_MIXTURE):
      chosen = component == index
      out[chosen, 0] = rng.gamma(a, s, size=chosen.sum())
      out[chosen, 1] = rng.normal(m, sd, size=chosen.sum())
    return out

  return Problem(
    "positive_mixture_2d",
    "2-D mixture: positive x Gaussian",
    (np.array([0.0, -np.inf]), np.array([np.inf, np.inf])),
    (np.array([-1.0, -3.5]), np.array([8.0, 3.5])),
    draw,
    log_prob,
    np.array([offset, -1.0]),
  )


def make_problem(name: str, boundary_offset: float) -> Problem:
  """The named problem (see experiments/configs/bounded.py ALL_PROBLEMS)."""
  inf = np.inf
  one_d = {
    "exponential": ("exponential(1)", stats.expon(), (0.0, inf), (-1.0, 9.0)),
    "gamma2": ("Gamma(2, 1)", stats.gamma(2.0), (0.0, inf), (-1.0, 14.0)),
    "lognormal": ("log-normal(0, 1)", stats.lognorm(1.0), (0.0, inf), (-1.0, 20.0)),
    "beta_2_5": ("Beta(2, 5)", stats.beta(2.0, 5.0), (0.0, 1.0), (-0.25, 1.25)),
    "beta_half": ("Beta(0.5, 0.5)", stats.beta(0.5, 0.5), (0.0, 1.0), (-0.25, 1.25)),
  }
  if name in one_d:
    return _one_dimensional(name, *one_d[name], boundary_offset)
  if name == "uniform_box":
    return _uniform_box(boundary_offset)
  if name == "positive_mixture_2d":
    return _positive_mixture(boundary_offset)
  raise ValueError(
    f"unknown problem {name!r}; expected one of {sorted(one_d)} or "
    "'uniform_box', 'positive_mixture_2d'."
  )


def midpoint_grid(problem: Problem, config: ml_collections.ConfigDict) -> tuple[np.ndarray, float]:
  """Cell centres (g, d) of the problem's box and the cell volume (no centre on a bound)."""
  cells = config.grid_cells_1d if problem.dim == 1 else config.grid_cells_2d
  low, high = problem.box
  widths = (high - low) / cells
  axes = [low[i] + widths[i] * (np.arange(cells) + 0.5) for i in range(problem.dim)]
  points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, problem.dim)
  return points, float(np.prod(widths))


def reflection_kde(samples: np.ndarray, queries: np.ndarray, bounds) -> np.ndarray:
  """1-D reflection KDE log-density (m,): Scott's kernel of the raw samples plus its mirror
  images at each finite bound (KDEpy's boundary correction); -inf outside the support."""
  lower, upper = float(bounds[0][0]), float(bounds[1][0])
  n = len(samples)
  variance = float(np.var(samples[:, 0], ddof=1)) * kde.scott_factor(n, 1) ** 2
  images = [samples] + [2.0 * b - samples for b in (lower, upper) if np.isfinite(b)]
  augmented = np.concatenate(images)
  # The mean over all images, times their number: (1/n) sum over samples and mirrors.
  log_density = np.asarray(
    kde.kde_with_covariance(
      augmented.astype(np.float32), queries.astype(np.float32), np.array([[variance]], np.float32)
    ).log_density,
    np.float64,
  ) + math.log(len(images))
  inside = (queries[:, 0] > lower) & (queries[:, 0] < upper)
  return np.where(inside, log_density, -np.inf)


def estimate_cell(
  estimator, problem: Problem, samples: np.ndarray, queries: np.ndarray, key
) -> dict[str, np.ndarray]:
  """Log-densities (b, m) of every method at queries (b, m, d) from samples (b, n, d)."""
  model_options = dict(normalize=key is not None, key=key)
  out = {
    "model": np.asarray(estimator(samples, queries, **model_options).log_density),
    "model_bounds": np.asarray(
      estimator(samples, queries, bounds=problem.bounds, **model_options).log_density
    ),
    "kde": np.stack(
      [np.asarray(kde.gaussian_kde(s, q).log_density) for s, q in zip(samples, queries)]
    ),
    "kde_bounds": np.stack(
      [
        np.asarray(kde.gaussian_kde(s, q, bounds=problem.bounds).log_density)
        for s, q in zip(samples, queries)
      ]
    ),
  }
  if problem.dim == 1:
    out["reflection"] = np.stack(
      [reflection_kde(s, q, problem.bounds) for s, q in zip(samples, queries)]
    )
  return out


def cell_metrics(
  log_density: np.ndarray, truth: np.ndarray, num_heldout: int, cell_volume: float
) -> dict[str, float]:
  """Mean over data sets of the three metrics, from log-densities (b, m) at the queries.

  The queries are [held-out draws (num_heldout), the grid, the boundary point].
  """
  heldout, grid, boundary = (
    log_density[:, :num_heldout],
    log_density[:, num_heldout:-1],
    log_density[:, -1],
  )
  true_grid, true_boundary = truth[:, num_heldout:-1], truth[:, -1]
  l1 = np.sum(np.abs(np.exp(grid) - np.exp(true_grid)), axis=-1) * cell_volume
  return {
    "heldout_log_likelihood": float(np.mean(heldout)),
    "l1": float(np.mean(l1)),
    "boundary_ratio": float(np.mean(np.exp(boundary - true_boundary))),
  }


def run(config: ml_collections.ConfigDict, output_dir: str, workdir: str | None = None) -> dict:
  """Loads --workdir's model (None: the shipped one), runs `evaluate`, writes its results.

  results.json, results.md and bounded.png go into output_dir; the tables are printed.
  """
  return common.run_on_model(
    evaluate, results_markdown, config, output_dir, workdir, figure_dir=output_dir
  )


def evaluate(
  estimator,
  config: ml_collections.ConfigDict,
  info: dict | None = None,
  figure_dir: str | None = None,
) -> dict:
  """Every (problem, n) cell; returns the results dict (rows of per-method metrics).

  With figure_dir, also draws the 1-D problems' estimates at n = config.figure_n there.
  """
  rows = []
  curves = {}
  progress = Progress("bounded", len(config.problems) * len(config.sample_sizes))
  for problem_index, name in enumerate(config.problems):
    problem = make_problem(name, config.boundary_offset)
    grid, cell_volume = midpoint_grid(problem, config)
    for n in config.sample_sizes:
      start = time.time()
      rng = np.random.default_rng([config.seed, problem_index, n])
      samples = np.stack([problem.draw(rng, n) for _ in range(config.num_datasets)])
      queries = np.stack(
        [
          np.concatenate(
            [problem.draw(rng, config.num_heldout), grid, problem.boundary_point[None]]
          )
          for _ in range(config.num_datasets)
        ]
      )
      truth = np.stack([problem.log_prob(q) for q in queries])
      key = (
        jax.random.fold_in(jax.random.key(config.seed), problem_index * _KEY_STRIDE + n)
        if config.normalize
        else None
      )
      estimates = estimate_cell(estimator, problem, samples, queries, key)
      metrics = {
        method: cell_metrics(log_density, truth, config.num_heldout, cell_volume)
        for method, log_density in estimates.items()
      }
      metrics["truth"] = cell_metrics(truth, truth, config.num_heldout, cell_volume)
      rows.append(
        {
          "problem": name,
          "label": problem.label,
          "dim": problem.dim,
          "n": n,
          "metrics": metrics,
          "seconds": time.time() - start,
        }
      )
      if problem.dim == 1 and n == config.figure_n:
        curves[name] = (
          problem.label,
          grid[:, 0],
          truth[0, config.num_heldout : -1],
          {m: v[0, config.num_heldout : -1] for m, v in estimates.items()},
        )
      progress.done(
        f"{name} n={n}",
        "L1 " + ", ".join(f"{LABELS[m]} {v['l1']:.3f}" for m, v in metrics.items() if m in LABELS),
      )
  results = {"config": config.to_dict(), "model": info, "rows": rows}
  if figure_dir is not None and curves:
    results["figure"] = plot_curves(curves, os.path.join(figure_dir, "bounded.png"))
  return results


def plot_curves(curves: dict, path: str) -> str:
  """One panel per 1-D problem: the truth and every method's density on the grid."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (only the figure needs it)

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.2), squeeze=False)
  for ax, (label, grid, truth, estimates) in zip(axes[0], curves.values()):
    ax.plot(grid, np.exp(truth), color="black", lw=2, label="truth")
    for method, log_density in estimates.items():
      ax.plot(grid, np.exp(log_density), lw=1, label=LABELS[method])
    peak = np.max(np.exp(truth[np.isfinite(truth)]))
    ax.set_ylim(0, 1.6 * min(peak, 4.0))  # Beta(0.5, 0.5) is unbounded at its ends.
    ax.set_title(label)
    ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def results_markdown(results: dict) -> str:
  """One table per metric: rows (problem, n), columns the methods and the truth."""
  source = results["model"]["source"] if results.get("model") else "given"
  lines = [
    "# Bounded and positive data",
    "",
    f"Model: {source}. Means over {results['config']['num_datasets']} data sets per "
    f"cell; model normalize={results['config']['normalize']}. bounds: the log / logit "
    "change of variables of `kdeformer.support`; reflection: 1-D only.",
    "",
  ]
  for metric, title in METRICS:
    header = ["problem", "n"] + [LABELS[m] for m in METHODS] + ["truth"]
    body = [
      [row["label"], row["n"]]
      + [common.format_number(row["metrics"].get(m, {}).get(metric)) for m in METHODS + ("truth",)]
      for row in results["rows"]
    ]
    lines += [f"## {title}", "", common.markdown_table(header, body), ""]
  if results.get("figure"):
    lines += [
      f"Figure: `{os.path.basename(results['figure'])}` (1-D problems, first data set "
      f"at n = {results['config']['figure_n']}).",
      "",
    ]
  return "\n".join(lines)
