"""The suite's estimation problems: training-prior mixtures, out-of-family distributions, grids.

  grid, cell_volume = problems.evaluation_grid(dim, config)
  drawn, modes = problems.draw_mixture_problems(keys, dim, grid, prior=problems.mixture_prior(
      config), max_dim=problems.padded_dim(config), num_samples=n, num_queries=m)
  smaller = problems.with_sample_size(drawn, n // 4)  # The first n/4 samples of each problem.

A problem is a sample set with queries drawn from the same true distribution and
the truth there (log-density and score at the queries, the exact score at the
samples, and the truth on the MISE grid for d <= 2). Everything is numpy with a
leading problem axis b.

Each problem is drawn by one jitted, unbatched call with shapes padded to a
common max_dim, so the whole suite compiles a handful of programs whatever its
size: the mixtures of every d share one program per (n, m) shape. Problem i of a
cell depends on (seed, d, i) only, and the sample set for a smaller n is the
first n of the largest n's (nested samples: paired comparisons across n).
"""

import functools
import time
from typing import NamedTuple

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kdeformer import distributions
from kdeformer import metrics
from kdeformer.estimate import Estimate

Distribution = distributions.GaussianMixture | distributions.Laplace | distributions.StudentT

# The problem programs run once per problem and take milliseconds, while XLA's optimising
# compile of the prior's samplers takes seconds, so they are compiled without backend
# optimisation (about 3x faster to compile on a CPU).
FAST_COMPILE = {"xla_backend_optimization_level": 0}


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


def mixture_prior(config: ml_collections.ConfigDict) -> tuple:
  """Keyword arguments of `distributions.sample_mixture_prior` (less max_dim), hashable.

  Args:
    config: a config with a `prior` block (experiments/configs/prior.py).

  Returns:
    ((name, value), ...) pairs, usable as a static argument of a jitted function.
  """
  prior = config.prior
  return (("min_modes", int(prior.min_modes)), ("max_modes", int(prior.max_modes)),
          ("mean_range", float(prior.mean_range)), ("min_variance", float(prior.min_variance)),
          ("max_variance", float(prior.max_variance)),
          ("weight_concentration", float(prior.weight_concentration)))


def padded_dim(config: ml_collections.ConfigDict) -> int:
  """The common padded dimension of every mixture problem of an evaluate_* config."""
  return max(list(config.benchmark.dims) + list(config.equivariance.dims) + [1])


def take(tree, index: np.ndarray):
  """Every leaf indexed along its leading (problem) axis: tree[index], on the host."""
  return jax.tree.map(lambda x: np.asarray(x)[index], tree)


def stack(trees: list):
  """A list of equal-structure pytrees as one pytree with a new leading axis (numpy)."""
  return jax.tree.map(lambda *x: np.stack(x), *trees)


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
  start = time.time()
  drawn = [_mixture_problem(key, jnp.asarray(dim), prior=prior, max_dim=max_dim,
                            num_samples=num_samples, num_queries=num_queries) for key in keys]
  problems, mixtures = stack(jax.device_get(drawn))
  problems = _with_grid_truth(problems, mixtures, jnp.pad(grid, [(0, 0), (0, max_dim - dim)]))
  problems = problems._replace(**{
      name: getattr(problems, name)[..., :dim]
      for name in ("samples", "queries", "true_score", "true_sample_score", "true_grid_score")})
  logging.info("Drew %d prior mixtures in d=%d (n=%d, m=%d, grid %d) in %.1f s.", len(keys), dim,
               num_samples, num_queries, grid.shape[0], time.time() - start)
  return problems, np.sum(np.isfinite(mixtures.log_weights), axis=-1)


def draw_fixed_problems(distribution: Distribution, keys: jax.Array, grid: jax.Array, *,
                        num_samples: int, num_queries: int) -> Problems:
  """Independent sample and query sets of one distribution, one per key.

  Args:
    distribution: an unbatched distribution of dimension d.
    keys: (b,) problem keys.
    grid: (g, d) points for the grid truth (g = 0: none).
    num_samples: n.
    num_queries: m.

  Returns:
    Problems with a leading axis b.
  """
  start = time.time()
  problems = stack(jax.device_get([_fixed_problem(distribution, key, num_samples=num_samples,
                                                  num_queries=num_queries) for key in keys]))
  batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(keys),) + jnp.shape(x)),
                         distribution)
  problems = _with_grid_truth(problems, batched, grid)
  logging.info("Drew %d sample sets of %s (n=%d, m=%d, grid %d) in %.1f s.", len(keys),
               type(distribution).__name__, num_samples, num_queries, grid.shape[0],
               time.time() - start)
  return problems


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


def out_of_family_distribution(name: str, config: ml_collections.ConfigDict) -> Distribution:
  """config.out_of_family's distribution `name` ('laplace' or 'student_t') in its dim."""
  oof = config.out_of_family
  if name == "laplace":
    return distributions.laplace(oof.dim, oof.laplace_scale)
  if name == "student_t":
    return distributions.student_t(oof.dim, oof.student_t_dof)
  raise ValueError(f"Unknown out-of-family distribution {name!r}; use 'laplace' or 'student_t'.")


def draw_out_of_family_sets(config: ml_collections.ConfigDict, grid: jax.Array,
                            stream: int) -> list[tuple[str, "Problems"]]:
  """[(name, problems)] per config.out_of_family distribution: `repeats` sample sets each.

  Each set has max(sample_sizes) samples (cut to smaller n with `with_sample_size`); the keys
  come from fold_in(key(config.seed), stream), so every harness passing the same stream gets
  the same problems.
  """
  oof = config.out_of_family
  base = jax.random.fold_in(jax.random.key(config.seed), stream)
  sets = []
  for index, name in enumerate(oof.distributions):
    keys = jax.random.split(jax.random.fold_in(base, index), oof.repeats)
    sets.append((name, draw_fixed_problems(
        out_of_family_distribution(name, config), keys, grid,
        num_samples=max(oof.sample_sizes), num_queries=oof.num_queries)))
  return sets
