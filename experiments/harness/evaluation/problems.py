"""The suite's estimation problems: training-prior mixtures, out-of-family distributions, grids.

  grid, cell_volume = problems.evaluation_grid(dim, config)
  drawn, modes = problems.draw_mixture_problems(keys, dim, grid, prior=problems.mixture_prior(
      config), max_dim=problems.padded_dim(config), num_samples=n, num_queries=m)
  smaller = problems.with_sample_size(drawn, n // 4)  # The first n/4 samples of each problem.
  row = problems.out_of_family_row("student_t3_d2", config)  # Named out-of-family rows.

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
import re
import time
from typing import NamedTuple
import zlib

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kdeformer import distributions
from kdeformer import quadrature
from kdeformer.estimate import Estimate

Distribution = (
  distributions.GaussianMixture
  | distributions.Laplace
  | distributions.StudentT
  | distributions.WarpedMixture
)

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
  return (
    ("min_modes", int(prior.min_modes)),
    ("max_modes", int(prior.max_modes)),
    ("mean_range", float(prior.mean_range)),
    ("min_variance", float(prior.min_variance)),
    ("max_variance", float(prior.max_variance)),
    ("weight_concentration", float(prior.weight_concentration)),
  )


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
  return Problems(
    samples,
    queries,
    truth.log_density,
    truth.score,
    distribution.log_prob_and_score(samples).score,
    jnp.zeros((0,)),
    jnp.zeros((0, dim)),
  )


@functools.partial(
  jax.jit,
  static_argnames=("prior", "max_dim", "num_samples", "num_queries"),
  compiler_options=FAST_COMPILE,
)
def _mixture_problem(
  key, dim, *, prior: tuple, max_dim: int, num_samples: int, num_queries: int
) -> tuple[Problems, distributions.GaussianMixture]:
  """A prior mixture (from fold_in(key, 0)) zero-padded to max_dim, and its problem."""
  mixture = distributions.sample_mixture_prior(
    jax.random.fold_in(key, 0), dim, max_dim=max_dim, **dict(prior)
  )
  return _problem(mixture, key, num_samples, num_queries), mixture


@functools.partial(
  jax.jit, static_argnames=("num_samples", "num_queries"), compiler_options=FAST_COMPILE
)
def _fixed_problem(distribution, key, *, num_samples: int, num_queries: int) -> Problems:
  return _problem(distribution, key, num_samples, num_queries)


@functools.partial(jax.jit, compiler_options=FAST_COMPILE)
def _batched_truth(distribution, points: jax.Array) -> Estimate:
  """Truth at the same points (g, D) for a batch of distributions: ((b, g), (b, g, D))."""
  return jax.vmap(lambda dist: dist.log_prob_and_score(points))(distribution)


def _with_grid_truth(problems: Problems, distribution, grid: jax.Array) -> Problems:
  if not grid.shape[0]:
    b = problems.samples.shape[0]
    return problems._replace(
      true_grid_log_density=np.zeros((b, 0), np.float32),
      true_grid_score=np.zeros((b, 0, grid.shape[1]), np.float32),
    )
  truth = jax.device_get(_batched_truth(distribution, grid))
  return problems._replace(true_grid_log_density=truth.log_density, true_grid_score=truth.score)


def draw_mixture_problems(
  keys: jax.Array,
  dim: int,
  grid: jax.Array,
  *,
  prior: tuple,
  max_dim: int,
  num_samples: int,
  num_queries: int,
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
  drawn = [
    _mixture_problem(
      key,
      jnp.asarray(dim),
      prior=prior,
      max_dim=max_dim,
      num_samples=num_samples,
      num_queries=num_queries,
    )
    for key in keys
  ]
  problems, mixtures = stack(jax.device_get(drawn))
  problems = _with_grid_truth(problems, mixtures, jnp.pad(grid, [(0, 0), (0, max_dim - dim)]))
  problems = problems._replace(
    **{
      name: getattr(problems, name)[..., :dim]
      for name in ("samples", "queries", "true_score", "true_sample_score", "true_grid_score")
    }
  )
  logging.info(
    "Drew %d prior mixtures in d=%d (n=%d, m=%d, grid %d) in %.1f s.",
    len(keys),
    dim,
    num_samples,
    num_queries,
    grid.shape[0],
    time.time() - start,
  )
  return problems, np.sum(np.isfinite(mixtures.log_weights), axis=-1)


def draw_fixed_problems(
  distribution: Distribution,
  keys: jax.Array,
  grid: jax.Array,
  *,
  num_samples: int,
  num_queries: int,
) -> Problems:
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
  problems = stack(
    jax.device_get(
      [
        _fixed_problem(distribution, key, num_samples=num_samples, num_queries=num_queries)
        for key in keys
      ]
    )
  )
  batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(keys),) + jnp.shape(x)), distribution)
  problems = _with_grid_truth(problems, batched, grid)
  logging.info(
    "Drew %d sample sets of %s (n=%d, m=%d, grid %d) in %.1f s.",
    len(keys),
    type(distribution).__name__,
    num_samples,
    num_queries,
    grid.shape[0],
    time.time() - start,
  )
  return problems


def with_sample_size(problems: Problems, num_samples: int) -> Problems:
  """The first n samples of every problem (sample sets for smaller n are nested in larger ones)."""
  return problems._replace(
    samples=problems.samples[:, :num_samples],
    true_sample_score=problems.true_sample_score[:, :num_samples],
  )


def evaluation_grid(dim: int, config: ml_collections.ConfigDict) -> tuple[jax.Array, float]:
  """The MISE grid: (g, d) points over [-limit, limit]^d and the cell volume.

  g = 0 (no grid, no MISE) for d > 2 and where the config sets 0 points for d.
  """
  points = {1: config.grid.points_1d, 2: config.grid.points_2d}.get(dim)
  if not points:
    return jnp.zeros((0, dim)), 0.0
  limit = config.grid.limit
  return quadrature.regular_grid([-limit] * dim, [limit] * dim, points)


# Out-of-family row names: `<kind>_d<dimension>`, the Student-t kind carrying its degrees of
# freedom (student_t3_d2 is the paper's 2-D Student-t with nu = 3).
_ROW_NAME = re.compile(
  r"(?P<kind>student_t(?P<dof>\d+(?:\.\d+)?)|laplace|skewed|multiscale)_d(?P<dim>\d+)"
)
ROW_NAME_HELP = (
  "student_t<dof>_d<d> (e.g. student_t3_d2), laplace_d<d>, skewed_d<d> or multiscale_d<d>"
)


class OutOfFamilyRow(NamedTuple):
  """One out-of-family row: its config name, dimension, distribution and a reader's description."""

  name: str
  dim: int
  distribution: Distribution
  description: str


def out_of_family_row(name: str, config: ml_collections.ConfigDict) -> OutOfFamilyRow:
  """The row `name` of config.out_of_family.rows (see ROW_NAME_HELP), with its distribution.

  The kinds (the parameters other than nu and d come from config.out_of_family):
    student_t<nu>  multivariate Student-t, identity scale matrix (heavy tails);
    laplace        product of Laplace densities of scale `laplace_scale` (a peak, exponential
                   tails);
    skewed         a standard normal warped per coordinate by sinh-arcsinh (`skew`,
                   `tail_weight`): skewed and heavier-tailed;
    multiscale     two isotropic Gaussians with weights `multiscale_weights`, centred at
                   `multiscale_locs` * (1, ..., 1), standard deviations `multiscale_stds`
                   (0.05 and 1.5: a spike 30x narrower than its broad neighbour, so no single
                   bandwidth suits both).

  Raises:
    ValueError: the name does not follow ROW_NAME_HELP, or its d or nu is not positive.
  """
  match = _ROW_NAME.fullmatch(name)
  if match is None:
    raise ValueError(f"Unknown out-of-family row {name!r}; rows are named {ROW_NAME_HELP}.")
  oof = config.out_of_family
  dim, kind = int(match["dim"]), match["kind"]
  dof = None if match["dof"] is None else float(match["dof"])
  if dim < 1 or (dof is not None and dof <= 0):
    raise ValueError(f"Out-of-family row {name!r}: d and the degrees of freedom must be > 0.")
  if dof is not None:
    return OutOfFamilyRow(
      name, dim, distributions.student_t(dim, dof), f"Student-t, nu = {dof:g}, d = {dim}"
    )
  if kind == "laplace":
    return OutOfFamilyRow(
      name,
      dim,
      distributions.laplace(dim, oof.laplace_scale),
      f"product of Laplace densities, scale {oof.laplace_scale:g}, d = {dim}",
    )
  if kind == "skewed":
    return OutOfFamilyRow(
      name,
      dim,
      distributions.sinh_arcsinh(dim, oof.skew, oof.tail_weight),
      f"sinh-arcsinh-warped standard normal, skew {oof.skew:g}, tail weight "
      f"{oof.tail_weight:g}, d = {dim}",
    )
  locs, stds = oof.multiscale_locs, oof.multiscale_stds
  mixture = distributions.gaussian_mixture(
    oof.multiscale_weights, [[loc] * dim for loc in locs], [std**2 * np.eye(dim) for std in stds]
  )
  return OutOfFamilyRow(
    name,
    dim,
    mixture,
    f"two Gaussians at {', '.join(f'{loc:g}' for loc in locs)} with standard deviations "
    f"{', '.join(f'{std:g}' for std in stds)} ({max(stds) / min(stds):.0f}x apart), "
    f"d = {dim}",
  )


def out_of_family_rows(config: ml_collections.ConfigDict) -> list[OutOfFamilyRow]:
  """Every row of config.out_of_family.rows, all parsed before anything is drawn or run."""
  return [out_of_family_row(name, config) for name in config.out_of_family.rows]


def draw_out_of_family_sets(
  config: ml_collections.ConfigDict, stream: int, *, with_grid: bool
) -> list[tuple[OutOfFamilyRow, Problems]]:
  """[(row, problems)] per config.out_of_family row: `repeats` independent sample sets each.

  Each set has max(sample_sizes) samples (cut to smaller n with `with_sample_size`) and the
  truth on the MISE grid of its d if with_grid. The keys come from fold_in(key(config.seed),
  stream) and the row's name, so every harness passing the same stream gets the same problems
  for a row, whichever other rows it runs.
  """
  oof = config.out_of_family
  base = jax.random.fold_in(jax.random.key(config.seed), stream)
  sets = []
  for row in out_of_family_rows(config):
    # crc32: the same number for a name in every process (Python's hash() is salted).
    keys = jax.random.split(jax.random.fold_in(base, zlib.crc32(row.name.encode())), oof.repeats)
    grid = evaluation_grid(row.dim, config)[0] if with_grid else jnp.zeros((0, row.dim))
    sets.append(
      (
        row,
        draw_fixed_problems(
          row.distribution,
          keys,
          grid,
          num_samples=max(oof.sample_sizes),
          num_queries=oof.num_queries,
        ),
      )
    )
  return sets
