"""The compared methods on a batch of problems: the estimator and the KDE-type baselines.

  outputs, oracle_factors, seconds = methods.run_methods(estimator, batch, grid, names,
                                                         config=config)

Every method answers at the queries and on the MISE grid (`MethodOutput`). The
methods: the estimator; Gaussian KDE with Scott's and Silverman's factors and
with the oracle factor (chosen per problem and per metric with the truth: by the
score error at the queries for the score metrics, by the log-density error at
the queries for the log-density MSE, by the grid error for the MISE); SD-KDE
with the exact score, Emp-SD-KDE (the pilot KDE's score) and SD-KDE with the
estimator's own score at the samples as the plug-in.
"""

from collections.abc import Callable
import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.harness.evaluation.problems import Problems
from kdeformer import kde
from kdeformer import linalg
from kdeformer.estimate import Estimate

# Columns of the tables, in order, with their labels.
METHODS = (
  "model",
  "kde_scott",
  "kde_silverman",
  "kde_oracle",
  "sd_kde_exact",
  "emp_sd_kde",
  "sd_kde_model",
)
METHOD_LABELS = {
  "model": "model",
  "kde_scott": "KDE Scott",
  "kde_silverman": "KDE Silverman",
  "kde_oracle": "KDE oracle h",
  "sd_kde_exact": "SD-KDE exact score",
  "emp_sd_kde": "Emp-SD-KDE",
  "sd_kde_model": "SD-KDE model score",
}
BASELINES = METHODS[1:]
# The methods that need the estimator (SD-KDE model score plugs in its score at the samples).
MODEL_METHODS = ("model", "sd_kde_model")


class MethodOutput(NamedTuple):
  """One method's estimates for a batch of problems (numpy)."""

  log_density: np.ndarray  # (b, m) at the queries.
  score: np.ndarray  # (b, m, d) at the queries.
  grid_log_density: np.ndarray  # (b, g) on the grid.
  grid_score: np.ndarray  # (b, g, d) on the grid.


def run_model(
  estimator: Callable, problems: Problems, grid: jax.Array, *, at_samples: bool = True
) -> tuple[MethodOutput, jax.Array | None]:
  """The estimator at the queries, the grid and (if at_samples) the samples, in one batched call.

  Args:
    estimator: (samples (b, n, d), points (b, p, d)) -> Estimate, batched.
    problems: a batch of b problems.
    grid: (g, d) MISE grid (g may be 0).
    at_samples: also answer at the samples (SD-KDE model score's plug-in); at large n that
      is most of the call's cost, so it is left out when no method needs it.

  Returns:
    (its MethodOutput, its score at the samples (b, n, d) or None without at_samples).
  """
  b, _, d = problems.samples.shape
  m, g = problems.queries.shape[1], grid.shape[0]
  points = [problems.queries, np.broadcast_to(np.asarray(grid), (b, g, d))]
  points += [problems.samples] if at_samples else []
  out = estimator(problems.samples, np.concatenate(points, axis=1))
  log_density, score = np.asarray(out.log_density), np.asarray(out.score)
  return (
    MethodOutput(log_density[:, :m], score[:, :m], log_density[:, m : m + g], score[:, m : m + g]),
    jnp.asarray(score[:, m + g :]) if at_samples else None,
  )


def best_factor_on_grid(
  samples: jax.Array, grid: jax.Array, true_grid_log_density: jax.Array
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
    return jnp.sum((jnp.exp(estimate.log_density) - true_density) ** 2)

  factors = kde.default_factor_grid()
  return factors[jnp.argmin(jax.lax.map(squared_error, factors))]


@functools.partial(jax.jit, static_argnames=("methods", "bandwidth_scale", "pilot_bandwidth"))
def _baselines(
  problems: Problems,
  grid: jax.Array,
  model_sample_score: jax.Array,
  *,
  methods: tuple[str, ...],
  bandwidth_scale: float,
  pilot_bandwidth: str,
):
  """Every KDE-type baseline on a batch, at the queries and the grid; and the oracle factors."""
  m = problems.queries.shape[1]

  def one(
    samples,
    queries,
    true_log_density,
    true_score,
    true_sample_score,
    true_grid_log_density,
    model_score,
  ):
    points = jnp.concatenate([queries, grid], axis=0)
    sd = functools.partial(
      kde.sd_kde, samples, points, bandwidth_scale=bandwidth_scale, pilot_bandwidth=pilot_bandwidth
    )
    out, factors = {}, {}
    for name in methods:
      if name == "kde_scott":
        out[name] = kde.gaussian_kde(samples, points, "scott")
      elif name == "kde_silverman":
        out[name] = kde.gaussian_kde(samples, points, "silverman")
      elif name == "kde_oracle":
        _, factors["score"] = kde.oracle_kde(
          samples, queries, true_score=true_score, criterion="score"
        )
        _, factors["log_density"] = kde.oracle_kde(
          samples, queries, true_log_density=true_log_density, criterion="log_density"
        )
        by_score = kde.gaussian_kde(samples, queries, factors["score"])
        by_log_density = kde.gaussian_kde(samples, queries, factors["log_density"])
        on_grid = Estimate(jnp.zeros((0,)), jnp.zeros((0, grid.shape[1])))
        if grid.shape[0]:
          factors["mise"] = best_factor_on_grid(samples, grid, true_grid_log_density)
          on_grid = kde.gaussian_kde(samples, grid, factors["mise"])
        # Each metric from the factor chosen by that metric.
        out[name] = (by_log_density.log_density, by_score.score, on_grid.log_density, on_grid.score)
        continue
      elif name == "sd_kde_exact":
        out[name] = sd(score_fn=lambda _: true_sample_score)
      elif name == "emp_sd_kde":
        out[name] = sd(score_fn=None)
      elif name == "sd_kde_model":
        out[name] = sd(score_fn=lambda _: model_score)
      out[name] = (
        out[name].log_density[:m],
        out[name].score[:m],
        out[name].log_density[m:],
        out[name].score[m:],
      )
    return out, factors

  return jax.vmap(one)(
    problems.samples,
    problems.queries,
    problems.true_log_density,
    problems.true_score,
    problems.true_sample_score,
    problems.true_grid_log_density,
    model_sample_score,
  )


def run_methods(
  estimator: Callable,
  problems: Problems,
  grid: jax.Array,
  methods,
  *,
  config: ml_collections.ConfigDict,
) -> tuple[dict, dict, dict]:
  """All requested methods on one batch.

  Args:
    estimator: (samples (b, n, d), points (b, p, d)) -> Estimate, batched.
    problems: a batch of b problems.
    grid: (g, d) MISE grid (g may be 0).
    methods: names from METHODS.
    config: an evaluate_* config (its sd_kde block).

  Returns:
    ({method: MethodOutput}, {criterion: (b,) oracle factors}, {"model"/"baselines": seconds}).
  """
  outputs, seconds = {}, {}
  model_sample_score = np.zeros(problems.samples.shape, np.float32)
  start = time.time()
  if any(name in methods for name in MODEL_METHODS):
    model_output, sample_score = run_model(
      estimator, problems, grid, at_samples="sd_kde_model" in methods
    )
    if sample_score is not None:
      model_sample_score = sample_score
    if "model" in methods:
      outputs["model"] = model_output
  seconds["model"] = time.time() - start
  start = time.time()
  baselines = tuple(name for name in methods if name in BASELINES)
  factors = {}
  if baselines:
    results, factors = jax.device_get(
      _baselines(
        problems,
        grid,
        model_sample_score,
        methods=baselines,
        bandwidth_scale=config.sd_kde.bandwidth_scale,
        pilot_bandwidth=config.sd_kde.pilot_bandwidth,
      )
    )
    outputs.update({k: MethodOutput(*v) for k, v in results.items()})
  seconds["baselines"] = time.time() - start
  return outputs, factors, seconds
