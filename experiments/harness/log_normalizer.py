"""Is the model's exp(log-density) a density? (experiments/configs/log_normalizer.py.)

The log-normaliser experiment (log Z of the model's output; not the whitening of
`kdeformer.whitening`). `python -m experiments.run
--config=experiments/configs/log_normalizer.py` calls `run`, which loads the model;
`evaluate(estimator, config, info)` measures, for any estimator f(samples, queries) -> Estimate:

(1) `quadrature_rows`: the trapezoid integral of exp(log f_hat) of the raw output in
    d = 1, 2, on a grid uniform in u = asinh(z) of the samples' whitened coordinates z
    (`quadrature.sinh_grid_points`). A box a few standard deviations past the
    samples would cut off Student-t tails (~1e-3 of the mass in 1-D, more in 2-D) and with
    it the question; this grid reaches hundreds of standard deviations. Beside each
    integral: the true density's integral on the same grid (what truncation and
    discretisation cost), the same rule on every other node (resolution: if the two
    differ, the grid is too coarse for the model), the share of the model's mass outside
    the samples' bounding box beside the truth's (spurious mass away from the data), and
    the model's mass near the grid's edge (whether anything is lost beyond it).
(2) `log_z_rows`: the importance-sampled log Z of the raw output on training-prior
    mixtures in d = 5, 10, where no grid is affordable, with its standard error.
(3) `normalize_rows`: log Z as `normalize=True` estimates it (the public path: raw minus
    normalised log-density at a query) against (1)'s quadrature on the same samples.
    Its standard error comes from `log_normalizer` called with the key the Estimator
    hands its sampler (`Estimator._normalized` splits `key` into sampler and rotation
    keys), so it is the same estimate; the report shows that the two agree.

Every cell of (1) and (2) is marked PASS / FAIL against the issue's bars (every seed
inside); the marks are information, the harness asserts nothing about the model.
"""

import copy
import functools
import math
import time

from absl import logging
import jax
import ml_collections
import numpy as np
from scipy import special

from experiments.harness import common
from experiments.harness.evaluation import problems
from experiments.harness.progress import Progress
from kdeformer import distributions
from kdeformer import log_normalizer as log_normalizer_lib
from kdeformer import quadrature

SOURCES = ("gaussian", "mixture", "student_t")
SOURCE_LABELS = {
  "gaussian": "Gaussian N(0, I)",
  "mixture": "training-prior mixture",
  "student_t": "Student-t",
}


def verdict(values, low: float, high: float) -> str:
  """'PASS' if every value lies in [low, high] (NaN fails), else 'FAIL'."""
  values = np.asarray(values, np.float64)
  return "PASS" if bool(np.all((values >= low) & (values <= high))) else "FAIL"


def source_distribution(source: str, key: jax.Array, dim: int, prior: tuple, dof: float):
  """The distribution `source` (one of SOURCES) in d = dim; key draws the mixture.

  prior: `problems.mixture_prior(config)`; dof: the Student-t's degrees of freedom.
  """
  if source == "gaussian":
    return distributions.gaussian_mixture([1.0], np.zeros((1, dim)), np.eye(dim)[None])
  if source == "mixture":
    return distributions.sample_mixture_prior(key, dim, max_dim=dim, **dict(prior))
  if source == "student_t":
    return distributions.student_t(dim, dof)
  raise ValueError(f"Unknown source {source!r}; use one of {SOURCES}.")


# One program per (source, d, largest n): built op by op, the distributions compile hundreds
# of tiny programs, which is most of a small run's time.
@functools.partial(
  jax.jit,
  static_argnames=("source", "dim", "num_samples", "prior", "dof"),
  compiler_options=problems.FAST_COMPILE,
)
def _draw(key, *, source: str, dim: int, num_samples: int, prior: tuple, dof: float):
  distribution_key, sample_key = jax.random.split(key)
  distribution = source_distribution(source, distribution_key, dim, prior, dof)
  return distribution, distribution.sample(sample_key, num_samples)


@jax.jit
def _true_log_density(distribution, points: jax.Array) -> jax.Array:
  return distribution.log_prob_and_score(points).log_density


def draw_problem(
  config: ml_collections.ConfigDict, source: str, dim: int, n: int, sizes, *indices: int
) -> tuple[object, np.ndarray, jax.Array]:
  """(distribution, samples (n, dim), a key for the estimate) of one sample set.

  The samples are the first n of max(sizes) drawn at once (nested across n, as in the
  evaluation suite: one program per source and d). Depends on (config.seed, source, dim,
  max(sizes), indices) only, so (3) redraws (1)'s samples.
  """
  key = jax.random.key(config.seed)
  for index in (SOURCES.index(source), dim) + indices:
    key = jax.random.fold_in(key, index)
  problem_key, estimate_key = jax.random.split(key)
  distribution, samples = _draw(
    problem_key,
    source=source,
    dim=dim,
    num_samples=max(sizes),
    prior=problems.mixture_prior(config),
    dof=float(config.quadrature.student_t_dof),
  )
  return distribution, np.asarray(samples[:n]), jax.random.fold_in(estimate_key, n)


def integrate(log_density_fn, samples: np.ndarray, points_per_dim: int, halfwidth: float) -> dict:
  """The trapezoid integral of exp(log_density_fn) on `sinh_grid_points` and three checks.

  Args:
    log_density_fn: points (m, d) -> log f (m,), evaluated once on the N^d grid points.
    samples: (n, d): where the grid is centred and how it is shaped.
    points_per_dim: N, odd.
    halfwidth: the grid's reach in whitened standard deviations.

  Returns:
    {"integral",
     "coarse_integral": the rule on every other node ((N + 1) / 2 per axis),
     "outside_share": the share of the integral outside the samples' bounding box,
     "edge_mass": the integral over nodes with |u| > 3/4 asinh(halfwidth) on some axis
       (|z| > `edge_radius(halfwidth)`): if it is small, what lies beyond the grid is too}.
  """
  if points_per_dim % 2 == 0:
    raise ValueError(
      f"points_per_dim must be odd (every other node: the coarse rule); got {points_per_dim}."
    )
  d = samples.shape[1]
  points, log_weights = quadrature.sinh_grid_points(samples, points_per_dim, halfwidth)
  _, coarse_log_weights = quadrature.sinh_grid_points(samples, (points_per_dim + 1) // 2, halfwidth)
  log_f = np.asarray(log_density_fn(points), np.float64).reshape((points_per_dim,) * d)
  terms = log_f + np.asarray(log_weights, np.float64).reshape(log_f.shape)
  every_other = log_f[(slice(None, None, 2),) * d]
  coarse = every_other + np.asarray(coarse_log_weights, np.float64).reshape(every_other.shape)
  eighth = (points_per_dim - 1) // 8  # Nodes [eighth, 7 * eighth] have |u| <= 3/4 U.
  inner = np.zeros(log_f.shape, bool)
  inner[(slice(eighth, 7 * eighth + 1),) * d] = True
  points = np.asarray(points)
  outside = np.any((points < samples.min(axis=0)) | (points > samples.max(axis=0)), axis=1)
  log_integral = special.logsumexp(terms)
  return {
    "integral": float(np.exp(log_integral)),
    "coarse_integral": float(np.exp(special.logsumexp(coarse))),
    "outside_share": float(np.exp(special.logsumexp(terms.reshape(-1)[outside]) - log_integral)),
    "edge_mass": float(np.exp(special.logsumexp(terms[~inner]))),
  }


def edge_radius(halfwidth: float) -> float:
  """|z| where `integrate`'s edge mass begins: sinh(3/4 asinh(halfwidth))."""
  return math.sinh(0.75 * math.asinh(halfwidth))


def quadrature_rows(estimator, config: ml_collections.ConfigDict) -> list[dict]:
  """(1): one row per (d, source, n) with every seed's integral of model and truth."""
  cfg = config.quadrature
  rows = []
  progress = Progress(
    "log_normalizer (1) quadrature",
    len(cfg.sources) * sum(len(sizes) for sizes in cfg.sample_sizes),
  )
  for dim_index, dim in enumerate(cfg.dims):
    points_per_dim, (low, high) = cfg.points_per_dim[dim_index], cfg.bars[dim_index]
    for source in cfg.sources:
      for n in cfg.sample_sizes[dim_index]:
        start = time.time()
        model, truth = [], []
        for seed in range(config.seeds):
          distribution, samples, _ = draw_problem(
            config, source, dim, n, cfg.sample_sizes[dim_index], seed
          )
          model.append(
            integrate(
              lambda points, s=samples: estimator(s, points).log_density,
              samples,
              points_per_dim,
              cfg.halfwidth,
            )
          )
          truth.append(
            integrate(
              functools.partial(_true_log_density, distribution),
              samples,
              points_per_dim,
              cfg.halfwidth,
            )
          )
        integrals = np.array([m["integral"] for m in model])
        row = {
          "dim": dim,
          "source": source,
          "n": n,
          "integrals": integrals.tolist(),
          "mean": float(np.mean(integrals)),
          "min": float(np.min(integrals)),
          "max": float(np.max(integrals)),
          "bar": [low, high],
          "verdict": verdict(integrals, low, high),
          "log_integrals": np.log(integrals).tolist(),
          "true_integrals": [t["integral"] for t in truth],
          "truncation_error": float(max(abs(t["integral"] - 1) for t in truth)),
          "resolution": float(
            max(abs(m["integral"] - m["coarse_integral"]) / m["integral"] for m in model)
          ),
          "outside_share": float(np.mean([m["outside_share"] for m in model])),
          "true_outside_share": float(np.mean([t["outside_share"] for t in truth])),
          "edge_mass": float(np.max([m["edge_mass"] for m in model])),
          "seconds": time.time() - start,
        }
        rows.append(row)
        progress.done(
          f"d={dim} {source} n={n}",
          f"integral {row['mean']:.4f} [{row['min']:.4f}, {row['max']:.4f}] "
          f"{row['verdict']}; truth on the grid within {row['truncation_error']:.1e}",
        )
  return rows


def log_z_rows(estimator, config: ml_collections.ConfigDict) -> list[dict]:
  """(2): one row per (d, n): every seed's importance-sampled log Z of a prior mixture."""
  cfg = config.log_z
  rows = []
  progress = Progress("log_normalizer (2) log Z", len(cfg.dims) * len(cfg.sample_sizes))
  for dim in cfg.dims:
    for n in cfg.sample_sizes:
      start = time.time()
      estimates = []
      for seed in range(config.seeds):
        # The extra index 1 keeps these apart from (1)'s sample sets if the dims overlap.
        _, samples, draw_key = draw_problem(config, "mixture", dim, n, cfg.sample_sizes, seed, 1)
        estimates.append(
          log_normalizer_lib.log_normalizer(
            lambda points, s=samples: estimator(s, points).log_density,
            samples,
            draw_key,
            cfg.num_draws,
            num_replicates=cfg.num_replicates,
          )
        )
      log_z = np.array([float(e.log_z) for e in estimates])
      row = {
        "dim": dim,
        "n": n,
        "log_z": log_z.tolist(),
        "standard_errors": [float(e.standard_error) for e in estimates],
        "effective_sample_sizes": [float(e.effective_sample_size) for e in estimates],
        "mean": float(np.mean(log_z)),
        "min": float(np.min(log_z)),
        "max": float(np.max(log_z)),
        "bar": cfg.bar,
        "verdict": verdict(log_z, -cfg.bar, cfg.bar),
        "seconds": time.time() - start,
      }
      rows.append(row)
      progress.done(
        f"d={dim} n={n}",
        f"log Z {row['mean']:+.4f} [{row['min']:+.4f}, "
        f"{row['max']:+.4f}], s.e. <= {max(row['standard_errors']):.4f} "
        f"{row['verdict']}",
      )
  return rows


def normalize_rows(
  estimator, config: ml_collections.ConfigDict, quadrature: list[dict]
) -> list[dict]:
  """(3): one row per sample set: normalize=True's log Z against (1)'s quadrature."""
  cfg = config.normalize
  cells = [
    (dim_index, dim, source, n)
    for dim_index, dim in enumerate(config.quadrature.dims)
    for source in config.quadrature.sources
    for n in cfg.sample_sizes[dim_index]
  ]
  by_cell = {(row["dim"], row["source"], row["n"]): row for row in quadrature}
  missing = [cell[1:] for cell in cells if cell[1:] not in by_cell]
  if missing or cfg.seeds > config.seeds:
    raise ValueError(
      f"normalize needs (1)'s sample sets: cells {missing} are not in "
      f"quadrature.sample_sizes, or normalize.seeds={cfg.seeds} > "
      f"seeds={config.seeds}."
    )
  rows = []
  progress = Progress("log_normalizer (3) normalize=True", len(cells))
  for dim_index, dim, source, n in cells:
    for seed in range(cfg.seeds):
      _, samples, key = draw_problem(
        config, source, dim, n, config.quadrature.sample_sizes[dim_index], seed
      )
      query = samples[:1]
      raw = float(estimator(samples, query).log_density[0])
      log_z = raw - float(estimator(samples, query, normalize=True, key=key).log_density[0])
      library = log_normalizer_lib.log_normalizer(
        lambda points, s=samples: estimator(s, points).log_density,
        samples,
        jax.random.split(key)[0],
      )  # The Estimator's sampler key and default settings.
      quadrature_log_z = by_cell[(dim, source, n)]["log_integrals"][seed]
      standard_error = float(library.standard_error)
      rows.append(
        {
          "dim": dim,
          "source": source,
          "n": n,
          "seed": seed,
          "log_z_quadrature": quadrature_log_z,
          "log_z_normalize": log_z,
          "standard_error": standard_error,
          "difference": log_z - quadrature_log_z,
          "difference_in_se": (log_z - quadrature_log_z) / standard_error,
          "library_minus_public": float(library.log_z) - log_z,
        }
      )
    last = rows[-cfg.seeds :]
    progress.done(
      f"d={dim} {source} n={n}",
      "normalize - quadrature in s.e.: "
      + ", ".join(f"{row['difference_in_se']:+.1f}" for row in last),
    )
  return rows


def run(config: ml_collections.ConfigDict, output_dir: str, workdir: str | None = None) -> dict:
  """Loads --workdir's model (None: the shipped one), runs `evaluate`, writes its results.

  results.json and results.md go into output_dir; the tables are printed. No `failures`:
  the bars are information, the command exits 0 whatever they say.
  """
  return common.run_on_model(evaluate, results_markdown, config, output_dir, workdir)


def sizes_the_model_answers(
  estimator, config: ml_collections.ConfigDict
) -> ml_collections.ConfigDict:
  """A copy of config without the sample sizes below the estimator's min_samples (it refuses
  them: README, "Small samples"); each dropped size is logged. The draws of the other sizes
  do not change (they depend on the largest size only)."""
  minimum = getattr(estimator, "min_samples", 0)
  config = copy.deepcopy(config)
  for part, per_dim in (("quadrature", True), ("log_z", False), ("normalize", True)):
    sizes = config[part].sample_sizes
    kept = (
      tuple(tuple(n for n in row if n >= minimum) for row in sizes)
      if per_dim
      else tuple(n for n in sizes if n >= minimum)
    )
    if kept != tuple(map(tuple, sizes) if per_dim else sizes):
      logging.warning(
        "%s.sample_sizes %s: the sizes below the model's min_samples %d are skipped.",
        part,
        sizes,
        minimum,
      )
      config[part].sample_sizes = kept
  return config


def evaluate(estimator, config: ml_collections.ConfigDict, info: dict | None = None) -> dict:
  """(1), (2) and (3) (see the module docstring); returns the results dict."""
  config = sizes_the_model_answers(estimator, config)
  start = time.time()
  results = {"config": config.to_dict(), "model": info}
  results["quadrature"] = quadrature_rows(estimator, config)
  results["log_z"] = log_z_rows(estimator, config) if config.log_z.enabled else []
  results["normalize"] = (
    normalize_rows(estimator, config, results["quadrature"]) if config.normalize.enabled else []
  )
  results["seconds"] = time.time() - start
  return results


def _signed(value: float) -> str:
  return f"{value:+.4f}"


def results_markdown(results: dict) -> str:
  """The three tables (and a PASS count per bar) as Markdown."""
  config = results["config"]
  cfg = config["quadrature"]
  model = results.get("model") or {}
  lines = [
    "# Is exp(log f_hat) a density?",
    "",
    f"Model: {model.get('source', 'given')} (step {model.get('step')}); seed "
    f"{config['seed']}; {config['seeds']} sample sets per cell; wall time "
    f"{results['seconds']:.0f} s.",
    "",
    "## (1) Trapezoid quadrature of exp(log f_hat), raw output",
    "",
    f"Grid uniform in u = asinh(z) per whitened axis z, |z| <= {cfg['halfwidth']:g}; "
    f"{tuple(cfg['points_per_dim'])} nodes per axis for d = {tuple(cfg['dims'])}. "
    "Sample sets are nested across n (the first n of the largest). 'truth' = max over "
    "the seeds of |1 - the true density's integral on the same grid| (truncation and "
    "discretisation); 'resolution' = max |I - I(every other node)| / I of the model; "
    "'outside' = mean share of the model's integral outside the samples' bounding box "
    "(the true density's share in parentheses); 'edge' = the model's largest mass at "
    f"|z| > {edge_radius(cfg['halfwidth']):.0f} on some axis (small: nothing is lost "
    f"beyond the grid). Student-t: {cfg['student_t_dof']:g} degrees of freedom. PASS: "
    "every seed's integral inside the bar.",
    "",
  ]
  for dim_index, dim in enumerate(cfg["dims"]):
    rows = [row for row in results["quadrature"] if row["dim"] == dim]
    low, high = cfg["bars"][dim_index]
    body = [
      [
        SOURCE_LABELS[r["source"]],
        r["n"],
        f"{r['mean']:.4f}",
        f"{r['min']:.4f}",
        f"{r['max']:.4f}",
        r["verdict"],
        common.format_number(r["truncation_error"], "e"),
        common.format_number(r["resolution"], "e"),
        f"{r['outside_share']:.3f} ({r['true_outside_share']:.3f})",
        common.format_number(r["edge_mass"], "e"),
      ]
      for r in rows
    ]
    passed = sum(r["verdict"] == "PASS" for r in rows)
    lines += [
      f"### d = {dim}: bar [{low}, {high}], {passed}/{len(rows)} cells PASS",
      "",
      common.markdown_table(
        ["source", "n", "mean", "min", "max", "bar", "truth", "resolution", "outside", "edge"], body
      ),
      "",
    ]
  if results["log_z"]:
    rows = results["log_z"]
    passed = sum(r["verdict"] == "PASS" for r in rows)
    lz = config["log_z"]
    body = [
      [
        r["dim"],
        r["n"],
        _signed(r["mean"]),
        _signed(r["min"]),
        _signed(r["max"]),
        common.format_number(max(r["standard_errors"])),
        f"{min(r['effective_sample_sizes']):.0f}",
        r["verdict"],
      ]
      for r in rows
    ]
    lines += [
      f"## (2) Importance-sampled log Z of the raw output, training-prior mixtures: "
      f"bar |log Z| < {lz['bar']}, {passed}/{len(rows)} cells PASS",
      "",
      f"`log_normalizer_lib.log_normalizer`, {lz['num_draws']} draws in "
      f"{lz['num_replicates']} replicates; a fresh mixture per seed.",
      "",
      common.markdown_table(
        ["d", "n", "mean log Z", "min", "max", "max s.e.", "min ESS", "bar"], body
      ),
      "",
    ]
  if results["normalize"]:
    rows = results["normalize"]
    body = [
      [
        r["dim"],
        SOURCE_LABELS[r["source"]],
        r["n"],
        r["seed"],
        _signed(r["log_z_quadrature"]),
        _signed(r["log_z_normalize"]),
        common.format_number(r["standard_error"]),
        _signed(r["difference"]),
        f"{r['difference_in_se']:+.1f}",
        common.format_number(r["library_minus_public"], "e"),
      ]
      for r in rows
    ]
    worst = max(abs(r["difference_in_se"]) for r in rows)
    lines += [
      "## (3) normalize=True: its importance-sampled log Z against the quadrature",
      "",
      "log Z (normalize=True) = raw minus normalised log-density at a query; its "
      "standard error from `log_normalizer` with the Estimator's sampler key (the "
      "last column: that estimate minus the public one, 0 if they are the same). A large "
      "|difference| / s.e. means the standard error does not cover the error, e.g. "
      "mass where the proposal (the samples' KDE and a broad Gaussian) puts almost none. "
      f"Largest |difference| / s.e.: {worst:.1f}.",
      "",
      common.markdown_table(
        [
          "d",
          "source",
          "n",
          "seed",
          "log Z (quadrature)",
          "log Z (normalize=True)",
          "s.e.",
          "difference",
          "difference / s.e.",
          "library - public",
        ],
        body,
      ),
      "",
    ]
  return "\n".join(lines)
