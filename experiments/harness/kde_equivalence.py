"""Attention is a Gaussian KDE: the construction checked, and trained heads fitted with kernels.

Two experiments (the paper's "kernels to attention" link; `python -m experiments.kde_equivalence`,
i.e. `python -m experiments.run --config=experiments/configs/kde_equivalence.py`):

(a) `construction_errors`: the constructed one-head cross-attention block
    (`kde_attention.attention_kde`, the model's own block with hand-set weights)
    against our KDE (`kde.kde_with_covariance` with H = h^2 I) and against
    `scipy.stats.gaussian_kde` with the same kernel covariance. scipy's kernel
    covariance is Cov(samples) * factor^2, so the samples are first whitened
    exactly (mean 0, covariance I, in float64) and factor = h; scipy has no
    score, so its score is a float64 central difference of its log-density.
    Errors are max-norm: abs = max |a - b|, rel = abs / max |b| (over all
    queries, and all coordinates for the score).

(b) `attention_kernel_fit`: the softmax weights of each head of a trained
    model's first cross-attention layer, for a few queries over whitened samples
    (the estimator's own normalisation), against the Gaussian-kernel weights
    k_j(y) = exp(-(y - x_j) P (y - x_j)^T / 2) / sum_l (...) centred at the
    query, with P = I / h^2 fitted on a grid (isotropic) or a full P fitted by
    Adam (anisotropic), both minimising the mean KL(attention || kernel).

`run` does both and writes results.json, results.md and the figure.
"""

import functools
import math
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import scipy.stats

from experiments.harness import common
from experiments.harness import references
from experiments.harness.progress import Progress
from kdeformer import kde
from kdeformer import kde_attention
from kdeformer import model as model_lib
from kdeformer import whitening

# Estimator pairs compared in (a): (candidate, reference).
COMPARISONS = (("attention", "kde"), ("attention", "scipy"), ("kde", "scipy"))


# ----------------------------------------------------------------------------------------------
# Problems.


def exactly_whitened_problem(
  key: jax.Array,
  dim: int,
  num_samples: int,
  num_queries: int,
  prior: ml_collections.ConfigDict,
  tail_fraction: float,
  tail_scale: float,
) -> tuple[np.ndarray, np.ndarray]:
  """Samples (n, d) with mean 0 and sample covariance I, and queries (m, d), as float32.

  Whitening is done in float64 with the symmetric inverse square root of the
  sample covariance (ddof = 1), then rounded to float32, so every estimator sees
  the same float32-representable inputs and scipy's Cov(samples) is I to ~1e-7.
  A `tail_fraction` of the queries gets N(0, tail_scale^2 I) noise added.
  """
  draw_key, tail_key, pick_key = jax.random.split(key, 3)
  samples, queries, _ = references.sliced_prior_problem(
    draw_key, dim, num_samples, num_queries, prior
  )
  samples = np.asarray(samples, np.float64)
  queries = np.asarray(queries, np.float64)
  mean = samples.mean(axis=0)
  covariance = np.cov(samples, rowvar=False, ddof=1).reshape(dim, dim)
  eigenvalues, eigenvectors = np.linalg.eigh(covariance)
  host_map = (eigenvectors / np.sqrt(eigenvalues)) @ eigenvectors.T
  samples = (samples - mean) @ host_map
  queries = (queries - mean) @ host_map
  in_tail = np.asarray(jax.random.uniform(pick_key, (num_queries, 1))) < tail_fraction
  queries = queries + in_tail * tail_scale * np.asarray(
    jax.random.normal(tail_key, (num_queries, dim)), np.float64
  )
  return samples.astype(np.float32), queries.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# (a) The construction.


def scipy_isotropic_kde(
  samples: np.ndarray, queries: np.ndarray, bandwidth: float, fd_step: float
) -> tuple[np.ndarray, np.ndarray, float]:
  """scipy.stats.gaussian_kde with factor h on (whitened) samples, in float64.

  Args:
    samples: (n, d) with sample covariance I (so the kernel covariance is h^2 I).
    queries: (m, d).
    bandwidth: h.
    fd_step: central-difference step for the score.

  Returns:
    (log_density (m,), score (m, d) by central differences, max |kernel covariance / h^2 - I|).
  """
  samples = np.asarray(samples, np.float64)
  queries = np.asarray(queries, np.float64)
  estimator = scipy.stats.gaussian_kde(samples.T, bw_method=bandwidth)
  deviation = float(
    np.max(np.abs(np.atleast_2d(estimator.covariance) / bandwidth**2 - np.eye(samples.shape[1])))
  )
  log_density = estimator.logpdf(queries.T)
  score = references.central_difference_score(
    lambda points: estimator.logpdf(points.T), queries, fd_step
  )
  return log_density, score, deviation


def max_errors(candidate: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
  """(max |candidate - reference|, that divided by max |reference|), in float64."""
  candidate = np.asarray(candidate, np.float64)
  reference = np.asarray(reference, np.float64)
  absolute = float(np.max(np.abs(candidate - reference)))
  return absolute, absolute / max(float(np.max(np.abs(reference))), np.finfo(np.float64).tiny)


_attention_kde = jax.jit(kde_attention.attention_kde, static_argnames=("bandwidth",))
_kde_with_covariance = jax.jit(kde.kde_with_covariance)


def construction_errors(config: ml_collections.ConfigDict) -> list[dict]:
  """Errors of attention vs our KDE vs scipy for every (d, h) of `config.construction`.

  Each d gets `num_problems` independent mixtures; a row reports the largest
  error over them.

  Returns:
    One row per (d, h, comparison) with keys dim, bandwidth, candidate, reference,
    log_density_abs, log_density_rel, score_abs, score_rel, passed; scipy rows
    also carry scipy_covariance_deviation (max |H_scipy / h^2 - I|).
  """
  spec = config.construction
  root = jax.random.key(config.seed)
  rows = {}
  progress = Progress("kde_equivalence (a) construction", len(spec.dims) * spec.num_problems)
  for dim in spec.dims:
    for problem in range(spec.num_problems):
      samples, queries = exactly_whitened_problem(
        jax.random.fold_in(jax.random.fold_in(root, dim), problem),
        dim,
        spec.num_samples,
        spec.num_queries,
        config.prior,
        spec.tail_fraction,
        spec.tail_scale,
      )
      for bandwidth in spec.bandwidths:
        estimates = {
          "attention": _attention_kde(samples, queries, bandwidth=bandwidth),
          "kde": _kde_with_covariance(samples, queries, bandwidth**2 * jnp.eye(dim)),
        }
        estimates = {
          name: (np.asarray(e.log_density), np.asarray(e.score)) for name, e in estimates.items()
        }
        scipy_log_density, scipy_score, deviation = scipy_isotropic_kde(
          samples, queries, bandwidth, spec.fd_relative_step * bandwidth
        )
        estimates["scipy"] = (scipy_log_density, scipy_score)
        for candidate, reference in COMPARISONS:
          errors = dict(
            zip(
              ("log_density_abs", "log_density_rel"),
              max_errors(estimates[candidate][0], estimates[reference][0]),
            )
          )
          errors.update(
            zip(
              ("score_abs", "score_rel"),
              max_errors(estimates[candidate][1], estimates[reference][1]),
            )
          )
          if reference == "scipy":
            errors["scipy_covariance_deviation"] = deviation
          key = (dim, float(bandwidth), candidate, reference)
          previous = rows.get(key, {})
          rows[key] = {name: max(value, previous.get(name, 0.0)) for name, value in errors.items()}
      progress.done(f"d={dim} mixture {problem}", f"{len(spec.bandwidths)} bandwidths")
  return [
    dict(
      dim=dim,
      bandwidth=bandwidth,
      candidate=candidate,
      reference=reference,
      num_problems=spec.num_problems,
      **errors,
      passed=bool(max(errors["log_density_rel"], errors["score_rel"]) <= spec.tolerance),
    )
    for (dim, bandwidth, candidate, reference), errors in rows.items()
  ]


def construction_failures(rows: list[dict], tolerance: float) -> list[str]:
  """One message per row whose relative error exceeds the tolerance (empty list: all pass)."""
  return [
    f"d={r['dim']} h={r['bandwidth']:g} {r['candidate']} vs {r['reference']}: "
    f"log-density rel {r['log_density_rel']:.2e}, score rel {r['score_rel']:.2e} "
    f"> tolerance {tolerance:g}"
    for r in rows
    if max(r["log_density_rel"], r["score_rel"]) > tolerance
  ]


def construction_table(rows: list[dict], tolerance: float) -> str:
  """Markdown table of `construction_errors` rows."""
  problems = rows[0]["num_problems"] if rows else 0
  header = [
    "d",
    "h",
    "compared",
    "log-density max abs",
    "log-density max rel",
    "score max abs",
    "score max rel",
    "pass",
  ]
  body = [
    [r["dim"], f"{r['bandwidth']:g}", f"{r['candidate']} vs {r['reference']}"]
    + [
      common.format_number(r[name], "e")
      for name in ("log_density_abs", "log_density_rel", "score_abs", "score_rel")
    ]
    + ["yes" if r["passed"] else "NO"]
    for r in rows
  ]
  return (
    f"Max-norm errors (rel = max |error| / max |reference|), the largest over {problems} "
    f"mixtures per d; tolerance {tolerance:g} relative, float32.\n\n"
    + common.markdown_table(header, body)
  )


# ----------------------------------------------------------------------------------------------
# (b) Trained heads against Gaussian kernels.


@functools.partial(jax.jit, static_argnames=("model", "layer"))
def _cross_attention_weights(model, params, samples, queries, dim_mask, layer):
  sample_mask = jnp.ones(samples.shape[:2], bool)
  # The full forward pass: every attention module sows its weights; keep one.
  _, state = model.apply(
    {"params": params}, samples, queries, sample_mask, dim_mask, mutable=["intermediates"]
  )
  return state["intermediates"][f"cross_attention_{layer}"]["attention"]["attention_weights"][0]


def cross_attention_weights(
  model: model_lib.KDEFormer, params, samples: jax.Array, queries: jax.Array, layer: int = 0
) -> jax.Array:
  """Softmax weights of every head of cross-attention layer `layer`.

  Args:
    model: the network (its key_chunk_size is irrelevant: the weights are dense).
    params: its parameters.
    samples: (n, d) whitened samples, d <= model.max_dim.
    queries: (m, d) whitened queries.
    layer: index of the cross-attention layer.

  Returns:
    (heads, m, n) weights; each row sums to 1.
  """
  dim = samples.shape[-1]
  pad = [(0, 0), (0, model.max_dim - dim)]
  samples = jnp.pad(jnp.asarray(samples, jnp.float32), pad)[None]
  queries = jnp.pad(jnp.asarray(queries, jnp.float32), pad)[None]
  dim_mask = (jnp.arange(model.max_dim) < dim)[None]
  return _cross_attention_weights(model, params, samples, queries, dim_mask, layer)[0]


def kernel_log_weights(queries: jax.Array, samples: jax.Array, precision: jax.Array) -> jax.Array:
  """log of Gaussian-kernel weights centred at each query: (m, n), rows normalised.

  Args:
    queries: (m, d).
    samples: (n, d).
    precision: (d, d) P; the kernel is exp(-(y - x) P (y - x)^T / 2).
  """
  diff = queries[:, None, :] - samples[None, :, :]
  logits = -0.5 * jnp.einsum("mni,ij,mnj->mn", diff, precision, diff)
  return jax.nn.log_softmax(logits, axis=-1)


def mean_kl(weights: jax.Array, log_kernel: jax.Array) -> jax.Array:
  """Mean over queries of KL(weights || kernel) for rows of (m, n) weights and log-kernel."""
  safe_log = jnp.log(jnp.where(weights > 0, weights, 1.0))
  return jnp.mean(jnp.sum(jnp.where(weights > 0, weights * (safe_log - log_kernel), 0.0), -1))


def mean_correlation(weights: jax.Array, kernel: jax.Array) -> jax.Array:
  """Mean over queries of the Pearson correlation of two (m, n) weight arrays across samples."""
  a = weights - jnp.mean(weights, axis=-1, keepdims=True)
  b = kernel - jnp.mean(kernel, axis=-1, keepdims=True)
  denominator = jnp.sqrt(jnp.sum(a**2, -1) * jnp.sum(b**2, -1))
  return jnp.mean(jnp.sum(a * b, -1) / jnp.maximum(denominator, 1e-30))


def query_dependence(weights: jax.Array) -> jax.Array:
  """Mean total-variation distance between the (m, n) weight rows of different queries.

  0 means the head ignores the query (no query-centred kernel can fit it); 1
  means disjoint supports.
  """
  m = weights.shape[0]
  distances = 0.5 * jnp.sum(jnp.abs(weights[:, None, :] - weights[None, :, :]), axis=-1)
  return jnp.sum(distances) / max(m * (m - 1), 1)


def fit_isotropic_bandwidth(
  weights: jax.Array, queries: jax.Array, samples: jax.Array, grid: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Grid search of h minimising the mean KL(weights || kernel with P = I / h^2).

  Args:
    weights: (m, n) attention weights.
    queries: (m, d); samples: (n, d); grid: (g,) candidate h.

  Returns:
    (best h, its mean KL).
  """
  squared = jnp.sum((queries[:, None, :] - samples[None, :, :]) ** 2, axis=-1)
  kls = jax.vmap(lambda h: mean_kl(weights, jax.nn.log_softmax(-squared / (2 * h**2), -1)))(grid)
  best = jnp.argmin(kls)
  return grid[best], kls[best]


def _precision(tril: jax.Array) -> jax.Array:
  """P = L L^T from an unconstrained lower triangle whose diagonal is the log of L's."""
  lower = jnp.tril(tril, -1) + jnp.diag(jnp.exp(jnp.diagonal(tril)))
  return lower @ lower.T


@functools.partial(jax.jit, static_argnames=("num_steps",))
def fit_full_precision(
  weights: jax.Array,
  queries: jax.Array,
  samples: jax.Array,
  initial_bandwidth: float,
  num_steps: int,
  learning_rate: float,
) -> tuple[jax.Array, jax.Array]:
  """Adam on a full kernel precision P = L L^T minimising the mean KL; starts at I / h^2.

  Returns:
    (P (d, d), its mean KL).
  """
  dim = queries.shape[-1]
  loss = lambda tril: mean_kl(weights, kernel_log_weights(queries, samples, _precision(tril)))
  optimizer = optax.adam(learning_rate)
  tril = jnp.diag(jnp.full((dim,), -jnp.log(initial_bandwidth)))

  def step(carry, _):
    tril, opt_state = carry
    grads = jax.grad(loss)(tril)
    updates, opt_state = optimizer.update(grads, opt_state)
    return (optax.apply_updates(tril, updates), opt_state), None

  (tril, _), _ = jax.lax.scan(step, (tril, optimizer.init(tril)), None, length=num_steps)
  precision = _precision(tril)
  return precision, loss(tril)


def attention_kernel_fit(
  weights: jax.Array, queries: jax.Array, samples: jax.Array, spec: ml_collections.ConfigDict
) -> list[dict]:
  """Fits Gaussian kernels to each head's weights.

  Args:
    weights: (heads, m, n) attention weights over `samples`.
    queries: (m, d) whitened queries; samples: (n, d) whitened samples.
    spec: `config.attention` (bandwidth grid, anisotropic fit settings).

  Returns:
    One dict per head: head, isotropic_bandwidth, kl_isotropic,
    correlation_isotropic, kl_uniform (KL(attention || uniform) = log n - entropy,
    the no-kernel reference), query_dependence (see `query_dependence`),
    grid_edge (the best h is at an end of the grid),
    and with spec.anisotropic: anisotropic_bandwidths (square roots of the
    eigenvalues of P^-1, descending), kl_anisotropic, correlation_anisotropic.
  """
  queries = jnp.asarray(queries, jnp.float32)
  samples = jnp.asarray(samples, jnp.float32)
  n = samples.shape[0]
  grid = jnp.geomspace(spec.min_bandwidth, spec.max_bandwidth, spec.num_bandwidths)
  uniform = jnp.full((queries.shape[0], n), -math.log(n))
  rows = []
  for head, head_weights in enumerate(weights):
    bandwidth, kl = fit_isotropic_bandwidth(head_weights, queries, samples, grid)
    isotropic = jnp.exp(
      kernel_log_weights(queries, samples, jnp.eye(samples.shape[1]) / bandwidth**2)
    )
    row = dict(
      head=head,
      isotropic_bandwidth=float(bandwidth),
      kl_isotropic=float(kl),
      query_dependence=float(query_dependence(head_weights)),
      correlation_isotropic=float(mean_correlation(head_weights, isotropic)),
      kl_uniform=float(mean_kl(head_weights, uniform)),
      grid_edge=bool(bandwidth <= grid[0] or bandwidth >= grid[-1]),
    )
    if spec.anisotropic:
      precision, kl_full = fit_full_precision(
        head_weights,
        queries,
        samples,
        bandwidth,
        num_steps=spec.anisotropic_steps,
        learning_rate=spec.anisotropic_learning_rate,
      )
      full = jnp.exp(kernel_log_weights(queries, samples, precision))
      eigenvalues = jnp.linalg.eigvalsh(precision)
      row.update(
        anisotropic_bandwidths=[float(b) for b in 1.0 / jnp.sqrt(eigenvalues)],
        kl_anisotropic=float(kl_full),
        correlation_anisotropic=float(mean_correlation(head_weights, full)),
      )
    rows.append(row)
  return rows


@jax.jit
def _whiten_with_samples(samples: jax.Array, queries: jax.Array) -> tuple[jax.Array, jax.Array]:
  affine_map = whitening.fit_affine_map(samples)
  return whitening.whiten(samples, affine_map), whitening.whiten(queries, affine_map)


def whitened_model_problem(
  key: jax.Array, dim: int, num_samples: int, num_queries: int, prior: ml_collections.ConfigDict
) -> tuple[jax.Array, jax.Array]:
  """Mixture samples (n, d) and queries (m, d), whitened with the estimator's normalisation."""
  samples, queries, _ = references.sliced_prior_problem(key, dim, num_samples, num_queries, prior)
  return _whiten_with_samples(samples, queries)


def analyse_heads(
  model: model_lib.KDEFormer, params, config: ml_collections.ConfigDict
) -> tuple[list[dict], dict]:
  """Per (d, head) kernel fits of the chosen cross-attention layer (`config.attention`).

  Returns:
    (rows: `attention_kernel_fit` rows with `dim` added,
     figure data: {dim: (samples, queries, weights (heads, m, n))} for figure_dim).
  """
  spec = config.attention
  root = jax.random.fold_in(jax.random.key(config.seed), 1_000_003)
  rows, figure_data = [], {}
  progress = Progress("kde_equivalence (b) trained heads", len(spec.dims))
  for dim in spec.dims:
    samples, queries = whitened_model_problem(
      jax.random.fold_in(root, dim), dim, spec.num_samples, spec.num_queries, config.prior
    )
    weights = cross_attention_weights(model, params, samples, queries, spec.layer)
    for row in attention_kernel_fit(weights, queries, samples, spec):
      rows.append(dict(dim=dim, **row))
    if dim == spec.figure_dim:
      figure_data[dim] = (np.asarray(samples), np.asarray(queries), np.asarray(weights))
    progress.done(f"d={dim}", f"{weights.shape[0]} heads fitted")
  return rows, figure_data


def heads_table(rows: list[dict]) -> str:
  """Markdown table of `analyse_heads` rows."""
  anisotropic = "kl_anisotropic" in rows[0] if rows else False
  header = ["d", "head", "fitted h (isotropic)", "KL iso", "corr iso"]
  if anisotropic:
    header += ["fitted bandwidths (full, largest..smallest)", "KL full", "corr full"]
  # Pipes escaped: a bare | would split the cell.
  header += ["KL(attention \\|\\| uniform)", "query dependence (TV)"]
  body = []
  for r in rows:
    edge = " (grid edge)" if r["grid_edge"] else ""
    cells = [
      r["dim"],
      r["head"],
      common.format_number(r["isotropic_bandwidth"]) + edge,
      common.format_number(r["kl_isotropic"]),
      common.format_number(r["correlation_isotropic"]),
    ]
    if anisotropic:
      cells += [
        ", ".join(common.format_number(b) for b in r["anisotropic_bandwidths"]),
        common.format_number(r["kl_anisotropic"]),
        common.format_number(r["correlation_anisotropic"]),
      ]
    body.append(
      cells + [common.format_number(r["kl_uniform"]), common.format_number(r["query_dependence"])]
    )
  return common.markdown_table(header, body)


def plot_weight_maps(
  samples: np.ndarray,
  queries: np.ndarray,
  weights: np.ndarray,
  rows: list[dict],
  spec: ml_collections.ConfigDict,
  path: str,
) -> str:
  """Query-centred weight maps (d = 2): attention beside the fitted isotropic kernel's weights.

  Rows are heads (at most spec.figure_max_heads), columns alternate attention
  and kernel for the first spec.figure_queries queries; colour is n x weight
  (1 = uniform), each pair on a shared scale. Returns the PNG path.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  num_heads = min(weights.shape[0], spec.figure_max_heads)
  num_queries = min(queries.shape[0], spec.figure_queries)
  fig, axes = plt.subplots(
    num_heads, 2 * num_queries, squeeze=False, figsize=(3.0 * 2 * num_queries, 3.0 * num_heads)
  )
  for head in range(num_heads):
    bandwidth = rows[head]["isotropic_bandwidth"]
    kernel = np.asarray(
      jnp.exp(
        kernel_log_weights(jnp.asarray(queries), jnp.asarray(samples), jnp.eye(2) / bandwidth**2)
      )
    )
    for q in range(num_queries):
      # Colour: weight relative to uniform (n * w); each pair shares its range.
      pair = samples.shape[0] * np.stack([weights[head, q], kernel[q]])
      vmin, vmax = float(pair.min()), float(pair.max())
      for column, (values, title) in enumerate(
        [
          (pair[0], f"head {head}, query {q}: attention"),
          (pair[1], f"Gaussian kernel h={bandwidth:.2g}"),
        ]
      ):
        ax = axes[head, 2 * q + column]
        order = np.argsort(values)  # Heaviest points drawn last.
        points = ax.scatter(
          samples[order, 0],
          samples[order, 1],
          c=values[order],
          s=4,
          cmap="viridis",
          vmin=vmin,
          vmax=vmax,
        )
        ax.plot(queries[q, 0], queries[q, 1], "r+", ms=12, mew=2)
        ax.set_title(title, fontsize=8)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=6)
      colorbar = fig.colorbar(points, ax=axes[head, 2 * q + 1], fraction=0.046, pad=0.02)
      colorbar.ax.tick_params(labelsize=6)
  fig.suptitle(
    "First cross-attention layer: weights over whitened samples for a query (+), "
    "beside the best-fitting isotropic Gaussian kernel's (colour: n x weight, "
    "1 = uniform)",
    fontsize=9,
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


# ----------------------------------------------------------------------------------------------
# Both parts.


def failures(results: dict, config: ml_collections.ConfigDict) -> list[str]:
  """(a)'s rows above config.construction.tolerance (empty: the construction holds)."""
  del config  # The rows were judged against it in `run`.
  return [
    f"attention-as-KDE construction above tolerance: {failure}"
    for failure in results["construction"]["failures"]
  ]


def load_trained_estimator(workdir: str | None, model: str | None = None):
  """The estimator of `workdir`, else the shipped model `model` (`common.load_model`), else None.

  Returns:
    (Estimator or None, a description of the model: its source and checkpoint
     step, or why (b) is skipped, which is also logged).
  Raises:
    FileNotFoundError / ValueError: an explicitly given workdir cannot be restored.
  """
  try:
    estimator, info = common.load_model(workdir or model)
  except FileNotFoundError as error:
    if workdir:
      raise  # Only the shipped model may be absent.
    reason = f"no --workdir given and no pretrained model shipped ({error})"
    logging.warning("Skipping part (b), the trained-head analysis: %s", reason)
    return None, reason
  return estimator, f"{info['source']} (checkpoint step {info['step']})"


def run(
  config: ml_collections.ConfigDict, output_dir: str, workdir: str | None = None, estimator=None
) -> dict:
  """Runs (a) and, if a model is available, (b); writes results.json, results.md, the figure.

  Args:
    config: see experiments/configs/kde_equivalence.py.
    output_dir: created if missing.
    workdir: a training workdir for (b); None tries the shipped model config.model.
    estimator: an `Estimator`-like object (model, params) to use for (b) instead
      of loading one (tests pass a randomly initialised model).

  Returns:
    {"construction": {"rows", "failures", "tolerance"},
     "attention": {"model", "rows", "figure"} or {"skipped": reason}}.
    The runner's exit status comes from `failures` (construction.failures).
  """
  os.makedirs(output_dir, exist_ok=True)
  start = time.time()
  rows = construction_errors(config)
  failures = construction_failures(rows, config.construction.tolerance)
  results = {
    "construction": dict(
      rows=rows,
      failures=failures,
      tolerance=config.construction.tolerance,
      seconds=time.time() - start,
    )
  }
  markdown = [
    "# Attention is a Gaussian KDE",
    "",
    "## (a) The constructed attention block against our KDE and scipy",
    "",
    construction_table(rows, config.construction.tolerance),
    "",
  ]
  if failures:
    markdown += ["**FAILED:**", ""] + [f"- {f}" for f in failures] + [""]
  print(construction_table(rows, config.construction.tolerance))

  markdown += ["## (b) Heads of the first cross-attention layer against Gaussian kernels", ""]
  if not config.attention.enabled:
    results["attention"] = {"skipped": "config.attention.enabled is False"}
  else:
    if estimator is None:
      estimator, description = load_trained_estimator(workdir, config.get("model"))
    else:
      description = "given in-process (see caller)"
    if estimator is None:
      results["attention"] = {"skipped": description}
    else:
      start = time.time()
      head_rows, figure_data = analyse_heads(estimator.model, estimator.params, config)
      figure = None
      if config.attention.figure_dim in figure_data:
        samples, queries, weights = figure_data[config.attention.figure_dim]
        figure = plot_weight_maps(
          samples,
          queries,
          weights,
          [r for r in head_rows if r["dim"] == config.attention.figure_dim],
          config.attention,
          os.path.join(output_dir, f"attention_weights_d{config.attention.figure_dim}.png"),
        )
      results["attention"] = dict(
        model=description,
        layer=config.attention.layer,
        rows=head_rows,
        figure=figure,
        seconds=time.time() - start,
      )
      print(f"Model: {description}\n" + heads_table(head_rows))
  attention = results["attention"]
  if "skipped" in attention:
    markdown += [f"Skipped: {attention['skipped']}.", ""]
  else:
    markdown += [
      f"Model: {attention['model']}; cross-attention layer {attention['layer']}; "
      f"{config.attention.num_queries} queries per problem over "
      f"{config.attention.num_samples} whitened samples; KL is mean "
      "KL(attention || kernel) over the queries, corr the mean Pearson correlation "
      "of the weights; query dependence is the mean total-variation distance between "
      "the weights of different queries (0: the head ignores the query).",
      "",
      heads_table(attention["rows"]),
      "",
    ]
    if attention["figure"]:
      markdown += [f"![weight maps]({os.path.basename(attention['figure'])})", ""]
  common.write_results(dict(config=config.to_dict(), **results), "\n".join(markdown), output_dir)
  return results
