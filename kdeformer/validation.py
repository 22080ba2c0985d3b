"""Host-side checks of user input, so bad data fails loudly instead of making NaNs.

Checks run on concrete arrays and are skipped under tracing, where values are unknown.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

# Eigenvalue ratio below which the sample correlation matrix counts as singular.
SINGULAR_COVARIANCE_RTOL = 1e-9
# Queries farther from the samples' mean, in sample standard deviations, are refused. The
# shipped models' outputs grow smoothly (log f ~ -1.55 |z|^2) up to ~3e9 and are NaN from
# ~1e11 (2026-12-06: the first NaN is in the decoder, by jax_debug_nans; its query features
# grow like |z|^2). That far out, a query is almost always in other units than the samples.
MAX_QUERY_DISTANCE = 1e8


def is_traced(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def host_or_traced(*arrays):
  """numpy for concrete arrays, jax.numpy when one is traced: padding, casting and slicing
  on the host compile nothing, while eager jax.numpy compiles a program for every new shape
  (about ten per new n or m, 0.3 s of CPU on the 2-core machine)."""
  return jnp if any(is_traced(x) for x in arrays) else np


def as_float32(x):
  """x as float32: a numpy array for a concrete x, a jax array for a traced one."""
  return host_or_traced(x).asarray(x, np.float32)


def check_points(
  points,
  name: str,
  *,
  min_rows: int = 1,
  dim: int | None = None,
  batched_ok: bool = True,
  max_dim: int | None = None,
) -> None:
  """Checks rank, finiteness and dimension of a (n, d) or (b, n, d) array.

  Raises:
    ValueError: naming the argument, what was wrong and what was expected.
  """
  if is_traced(points):
    return
  array = np.asarray(points)
  allowed = (2, 3) if batched_ok else (2,)
  if array.ndim not in allowed:
    shapes = "(n, d) or (b, n, d)" if batched_ok else "(n, d)"
    raise ValueError(f"{name} must have shape {shapes}; got an array of shape {array.shape}.")
  if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
    raise ValueError(f"{name} must hold real numbers; got dtype {array.dtype}.")
  if not np.all(np.isfinite(array)):
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    raise ValueError(f"{name} contains {bad} NaN or infinite value(s); all entries must be finite.")
  rows, cols = array.shape[-2], array.shape[-1]
  if array.size == 0 and rows == 0:
    raise ValueError(
      f"{name} is empty (shape {array.shape}): pass at least {max(min_rows, 1)} "
      "point(s) as rows of an (n, d) array."
    )
  if cols == 0:
    raise ValueError(f"{name} has zero columns; expected d >= 1 coordinates per point.")
  if dim is not None and cols != dim:
    raise ValueError(
      f"{name} has d = {cols} columns but the samples have d = {dim}; "
      "queries and samples must share their dimension."
    )
  if max_dim and cols > max_dim:
    hint = (
      " It has more columns than rows: did you pass a transposed (d, n) array?"
      if cols > rows
      else ""
    )
    raise ValueError(
      f"{name} has d = {cols} columns; this estimator supports d <= {max_dim}. "
      "kdeformer.load_pretrained('equivariant') takes any d (the default, "
      f"kdeformer.load_pretrained(), hands it d = 1 and d >= 9).{hint}"
    )
  if rows < min_rows:
    hint = (
      " It has more columns than rows: did you pass a transposed (d, n) array?"
      if cols > rows
      else ""
    )
    if name == "samples" and cols >= rows:
      hint += " A full-rank covariance needs n > d too."
    raise ValueError(f"{name} has n = {rows} rows; at least {min_rows} are needed.{hint}")


def check_samples(
  samples, *, min_samples: int = 2, max_dim: int | None = None, weights=None
) -> None:
  """Checks samples (n, d) or (b, n, d): finite, n >= min_samples, n > d, covariance of full rank.

  With `weights` (checked by `check_weights`), only samples of positive weight enter the scale
  and rank checks: a far outlier weighted out must not make the others look degenerate.
  """
  if is_traced(samples):
    return
  check_points(samples, "samples", min_rows=min_samples, max_dim=max_dim)
  check_sample_spread(samples, weights=weights)


def check_sample_spread(samples, *, weights=None) -> None:
  """The part of `check_samples` after `check_points`: n > d, no constant coordinate, a
  correlation matrix of full rank, squares that fit float64 (samples (n, d) or (b, n, d))."""
  if is_traced(samples):
    return
  array = np.asarray(samples, dtype=np.float64)
  n, d = array.shape[-2:]
  if d >= n:
    raise ValueError(
      f"samples has shape {array.shape}: d = {d} columns but only n = {n} rows. A full-rank "
      "covariance needs n > d; if the array is transposed, pass samples as (n, d)."
    )
  batch = array.reshape((-1, n, d))
  taking_part = (
    np.ones(batch.shape[:2], bool)
    if weights is None
    else np.asarray(weights).reshape(batch.shape[:2]) > 0
  )
  for index, (member, kept) in enumerate(zip(batch, taking_part)):
    member = member[kept]
    where = f" (batch member {index})" if batch.shape[0] > 1 else ""
    centred = member - member.mean(axis=0)
    with np.errstate(over="ignore"):
      deviation = np.sqrt(np.mean(centred**2, axis=0))
    if not np.all(np.isfinite(deviation)):
      raise ValueError(
        f"samples{where} are too large for float64 statistics: their squared deviations "
        f"overflow (largest |x| = {np.max(np.abs(member)):.3g}). Rescale the data (the "
        "estimates are affine equivariant), for example divide by its largest value."
      )
    # Relative to each coordinate's magnitude: float64 rounding noise at an offset is not spread.
    constant = deviation <= 64 * np.finfo(np.float64).eps * np.max(np.abs(member), axis=0)
    if np.all(constant):
      raise ValueError(
        f"samples{where} are all identical: the sample covariance is zero, so no "
        "scale can be estimated. Pass at least two distinct points."
      )
    if np.any(constant):
      raise ValueError(
        f"samples{where} have constant coordinate(s) {np.flatnonzero(constant)}: "
        "no scale can be estimated along them. Remove constant coordinates."
      )
    # The correlation, not the covariance: the check must not depend on each coordinate's units.
    standardized = centred / deviation
    eigenvalues = np.linalg.eigvalsh(standardized.T @ standardized / n)
    if eigenvalues[0] <= SINGULAR_COVARIANCE_RTOL * eigenvalues[-1]:
      raise ValueError(
        f"samples{where} lie on a lower-dimensional subspace: the sample correlation matrix "
        f"is singular (eigenvalue ratio {eigenvalues[0] / eigenvalues[-1]:.2e}). Remove "
        "redundant coordinates, or project onto the subspace, before estimating a density."
      )


def check_query_distance(whitened_queries, max_distance: float = MAX_QUERY_DISTANCE) -> None:
  """Refuses queries farther than max_distance sample standard deviations (whitened norm)
  from the samples' mean: a sign of queries in other units or offsets than the samples."""
  with np.errstate(over="ignore"):
    distance = np.linalg.norm(np.asarray(whitened_queries, np.float64), axis=-1)
  far = ~(distance <= max_distance)
  if np.any(far):
    raise ValueError(
      f"{np.sum(far)} of {far.size} queries lie more than {max_distance:.0e} sample standard "
      f"deviations from the samples' mean (the farthest: {np.max(distance):.3g}), where the "
      "float32 network's output has no meaning (the shipped models' log-density is below "
      "-1e16 there). Check that queries and samples share their units and offsets, or drop "
      "those queries; kdeformer.kde.gaussian_kde evaluates them in closed form."
    )


def check_array(values, name: str, shape: tuple[int, ...]) -> None:
  """Refuses a caller's array (a score function's output, a truth) of another shape, or
  with NaN or infinite entries."""
  if np.shape(values) != tuple(shape):
    raise ValueError(f"{name} must have shape {tuple(shape)}; got {np.shape(values)}.")
  bad = ~np.isfinite(np.asarray(values, np.float64))
  if np.any(bad):
    raise ValueError(f"{name} has {np.sum(bad)} NaN or infinite value(s); all must be finite.")


def check_chunk_sizes(**sizes: int) -> None:
  """Refuses chunk sizes below 1 (named by their argument)."""
  for name, size in sizes.items():
    if int(size) < 1:
      raise ValueError(f"{name}={size}: a chunk holds at least 1 point.")


def check_key(key, purpose: str) -> None:
  """Refuses anything but a JAX PRNG key (new-style jax.random.key or a raw uint32 (2,))."""
  if key is None:
    raise ValueError(f"{purpose}: pass key=jax.random.key(seed).")
  typed = isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
  raw = isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape == (2,)
  if not (typed or raw or is_traced(key)):
    raise ValueError(
      f"{purpose}: key must be a JAX PRNG key, jax.random.key(seed); got "
      f"{type(key).__name__} {key!r:.60}."
    )


def check_weights(weights, samples_shape: tuple[int, ...]) -> np.ndarray:
  """Checks sample weights and returns them normalised to sum 1 per problem (float64).

  Args:
    weights: (n,) for samples (n, d), or (b, n) for samples (b, n, d); non-negative and
      finite, with a positive sum per problem (scipy.stats.gaussian_kde's convention).
    samples_shape: the samples' shape.

  Raises:
    ValueError: wrong shape, NaN/inf, negative entries, an all-zero problem, or fewer
      samples of positive weight than a full-rank covariance needs (d + 1).
  """
  array = np.asarray(weights, dtype=np.float64)
  expected = tuple(samples_shape[:-1])
  if array.shape != expected:
    raise ValueError(
      f"weights must have shape {expected} (one per sample, batched like the "
      f"samples); got {array.shape}."
    )
  if not np.all(np.isfinite(array)):
    raise ValueError("weights contain NaN or infinite values; all must be finite.")
  if np.any(array < 0):
    raise ValueError(f"weights must be non-negative; the smallest is {array.min():g}.")
  # Divided by the largest first: weights near float64's maximum must not sum to inf.
  largest = array.max(axis=-1, keepdims=True)
  array = array / np.where(largest > 0, largest, 1.0)
  totals = array.sum(axis=-1, keepdims=True)
  if np.any(totals <= 0):
    raise ValueError(
      "weights sum to zero (for at least one problem): at least some samples "
      "need a positive weight."
    )
  dim = samples_shape[-1]
  positive = np.count_nonzero(array > 0, axis=-1)
  if np.any(positive <= dim):
    raise ValueError(
      f"only {int(np.min(positive))} samples have a positive weight; a full-rank "
      f"covariance in d = {dim} needs at least {dim + 1}."
    )
  return array / totals


def check_equivariant_memory(
  num_samples: int,
  dim: int,
  *,
  num_keys: int,
  num_bandwidths: int,
  num_components: int,
  row_block: int = 4096,
) -> None:
  """Raises if the equivariant network's working set would not fit in this machine's memory.

  What limits d there is memory, not a table size: the per-sample local means (n, K, d), the
  leave-one-out kernel weights (n, keys, K) and the mixture bases' (C, d, d) matrices.
  """
  bytes_needed = 4 * (
    3 * num_samples * num_bandwidths * dim
    + 3 * min(num_samples, row_block) * min(num_samples, num_keys) * num_bandwidths
    + 8 * num_components * dim * dim
    + 4 * num_samples * dim
  )
  try:
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):
    return
  if bytes_needed > 0.7 * available:
    raise ValueError(
      f"n = {num_samples} samples in d = {dim} need about {bytes_needed / 2**30:.1f} GiB of "
      f"working memory, more than 70% of this machine's {available / 2**30:.1f} GiB: memory, "
      "not a table size, limits d here. Use fewer samples or fewer coordinates (e.g. PCA)."
    )


def check_columns(columns, dim: int, name: str) -> np.ndarray:
  """(k,) int column indices: a non-empty list of distinct integers in [0, dim).

  Raises:
    ValueError: empty, not integers, outside [0, dim) or repeated, saying which.
  """
  array = np.atleast_1d(np.asarray(columns))
  if array.ndim != 1 or array.size == 0:
    raise ValueError(f"{name} must be a non-empty list of column indices; got {columns!r}.")
  if not np.issubdtype(array.dtype, np.integer):
    raise ValueError(
      f"{name} must hold integer column indices; got {columns!r} (dtype {array.dtype})."
    )
  bad = array[(array < 0) | (array >= dim)]
  if bad.size:
    raise ValueError(f"{name} holds column(s) {bad.tolist()} outside [0, {dim}) for d = {dim}.")
  if np.unique(array).size != array.size:
    raise ValueError(f"{name} holds duplicate columns: {array.tolist()}.")
  return array.astype(int)
