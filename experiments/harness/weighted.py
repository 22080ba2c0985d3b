"""The weighted-samples experiment (experiments/configs/weighted.py): importance-weighted draws.

python -m experiments.run --config=experiments/configs/weighted.py   # calls `run`
results = weighted.evaluate(estimator, config, info)                  # any estimator
"""

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.harness import common
from experiments.harness.evaluation import pooling
from experiments.harness.progress import Progress
from kdeformer import distributions
from kdeformer import kde
from kdeformer import kernels
from kdeformer import metrics

METHODS = ("model_weighted", "kde_weighted", "model_target_n_eff", "kde_target_n_eff")
LABELS = {
  "model_weighted": "model, weighted",
  "kde_weighted": "Scott KDE, weighted",
  "model_target_n_eff": "model, n_eff target draws (at least min_samples)",
  "kde_target_n_eff": "Scott KDE, the same target draws",
}


def draw_problem(key, dim: int, config: ml_collections.ConfigDict, num_samples: int):
  """One target mixture; proposal draws with importance weights; target draws; queries; truth."""
  mixture_key, proposal_key, target_key, query_key = jax.random.split(key, 4)
  mixture = distributions.sample_mixture_prior(mixture_key, dim, max_dim=dim, **dict(config.prior))
  scale = config.proposal_scale
  draws = scale * jax.random.normal(proposal_key, (num_samples, dim))
  log_proposal = -0.5 * jnp.sum((draws / scale) ** 2, -1) - dim * jnp.log(
    scale * jnp.sqrt(2 * jnp.pi)
  )
  log_weights = mixture.log_prob_and_score(draws).log_density - log_proposal
  weights = jnp.exp(log_weights - jnp.max(log_weights))
  queries = mixture.sample(query_key, config.num_queries)
  return dict(
    samples=draws,
    weights=weights / jnp.sum(weights),
    target_draws=mixture.sample(target_key, num_samples),
    queries=queries,
    truth=mixture.log_prob_and_score(queries),
  )


def cell_metrics(
  estimates: dict, truth_log_density: np.ndarray, truth_score: np.ndarray, quantile: float
) -> dict:
  """Pooled and typical-set relative score MSE and log-density MSE per method.

  Arrays have a leading problem axis, (b, m) and (b, m, d); the typical set is the
  evaluation suite's (`pooling.typical_set`: per problem).
  """
  typical = pooling.typical_set(truth_log_density, quantile)
  out = {}
  for name, (log_density, score) in estimates.items():
    out[name] = {
      "relative_score_mse": float(metrics.relative_score_mse(score, truth_score)),
      "typical_relative_score_mse": float(
        metrics.relative_score_mse(score[typical], truth_score[typical])
      ),
      "log_density_mse": float(metrics.log_density_mse(log_density, truth_log_density)),
    }
  return out


def run(config: ml_collections.ConfigDict, output_dir: str, workdir: str | None = None) -> dict:
  """Loads --workdir's model (None: the shipped one), runs `evaluate`, writes its results.

  results.json and results.md go into output_dir; the tables are printed.
  """
  return common.run_on_model(evaluate, results_markdown, config, output_dir, workdir)


def evaluate(estimator, config: ml_collections.ConfigDict, info: dict | None = None) -> dict:
  """Every cell of the experiment; returns the results dict (rows of per-method metrics)."""
  rows = []
  progress = Progress("weighted", len(config.dims) * len(config.sample_sizes))
  base = jax.random.key(config.seed)
  for dim in config.dims:
    for n in config.sample_sizes:
      start = time.time()
      keys = jax.random.split(
        jax.random.fold_in(jax.random.fold_in(base, dim), n), config.num_problems
      )
      problems = [jax.device_get(draw_problem(k, dim, config, n)) for k in keys]
      samples = np.stack([p["samples"] for p in problems])
      weights = np.stack([p["weights"] for p in problems])
      queries = np.stack([p["queries"] for p in problems])
      n_eff = kernels.effective_sample_size(weights)
      estimates = {name: ([], []) for name in METHODS}
      model = estimator(samples, queries, weights=weights)
      for index, problem in enumerate(problems):
        # At least the model's min_samples (below, it refuses), for the KDE as well.
        size = max(int(round(n_eff[index])), dim + 2, getattr(estimator, "min_samples", 4))
        calls = {
          "model_weighted": (model.log_density[index], model.score[index]),
          "kde_weighted": kde.gaussian_kde(samples[index], queries[index], weights=weights[index]),
          "model_target_n_eff": estimator(problem["target_draws"][:size], queries[index]),
          "kde_target_n_eff": kde.gaussian_kde(problem["target_draws"][:size], queries[index]),
        }
        for name, (log_density, score) in calls.items():
          estimates[name][0].append(np.asarray(log_density))
          estimates[name][1].append(np.asarray(score))
      truth_log_density = np.stack([p["truth"].log_density for p in problems])
      truth_score = np.stack([p["truth"].score for p in problems])
      pooled = {name: (np.stack(ld), np.stack(sc)) for name, (ld, sc) in estimates.items()}
      row = {
        "dim": dim,
        "n": n,
        "median_n_eff": float(np.median(n_eff)),
        "metrics": cell_metrics(pooled, truth_log_density, truth_score, config.typical_quantile),
        "seconds": time.time() - start,
      }
      rows.append(row)
      progress.done(
        f"d={dim} n={n}",
        f"median n_eff {row['median_n_eff']:.0f}; relative score "
        "MSE "
        + ", ".join(
          f"{LABELS[k]} {v['relative_score_mse']:.3f}" for k, v in row["metrics"].items()
        ),
      )
  return {"config": config.to_dict(), "model": info, "rows": rows}


def results_markdown(results: dict) -> str:
  lines = [
    "# Weighted samples",
    "",
    f"Model: {results['model']['source'] if results.get('model') else 'given'}.",
    "",
  ]
  for metric, title in (
    ("relative_score_mse", "relative score MSE (pooled)"),
    ("typical_relative_score_mse", "relative score MSE (typical set)"),
    ("log_density_mse", "log-density MSE"),
  ):
    header = ["d", "n", "median n_eff"] + [LABELS[m] for m in METHODS]
    body = [
      [row["dim"], row["n"], f"{row['median_n_eff']:.0f}"]
      + [common.format_number(row["metrics"][m][metric]) for m in METHODS]
      for row in results["rows"]
    ]
    lines += [f"## {title}", "", common.markdown_table(header, body), ""]
  return "\n".join(lines)
