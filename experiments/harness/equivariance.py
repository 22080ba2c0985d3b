"""How exactly an estimator respects the symmetries of density estimation (the paper's Table 1).

For samples X (n, d), queries Y (m, d), an invertible A (d, d) and a shift mu,
the density of X A + mu at y' = y A + mu is f(y) / |det A|, so in row-vector
convention

  log f_new(y')  = log f(y) - log|det A|
  score_new(y')  = score(y) A^{-T},

and the outputs must not depend on the order of the samples. `transform_errors`
runs an estimator on original and transformed problems and reports, per trial,
the relative MSE sum ||new - expected||^2 / sum ||expected||^2 between the
transformed problem's outputs and the exactly transformed original outputs,
separately for the log-density and the score.

Any callable `estimator(samples (b, n, d), queries (b, m, d)) -> Estimate` works
(a `kdeformer.Estimator`, or a vmapped KDE).
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from kdeformer.estimate import Estimate

# The transforms of the paper's Table 1, in its order.
TRANSFORMS = (
  "permutation",
  "translation",
  "isotropic_scaling",
  "anisotropic_scaling",
  "rotation",
  "affine",
)


class Transform(NamedTuple):
  """A batch of transforms x -> x A + shift, plus a reordering of the samples (numpy, float64).

  Attributes:
    matrix: (b, d, d) A.
    shift: (b, d) mu.
    permutation: (b, n) new order of the samples.
  """

  matrix: np.ndarray
  shift: np.ndarray
  permutation: np.ndarray


def random_rotation(rng: np.random.Generator, dim: int) -> np.ndarray:
  """Haar-random proper rotation (d, d) with det = +1 (the identity for d = 1).

  Not the core's `kdeformer.rotation_averaging.random_orthogonal` or
  `kdeformer.distributions.random_orthogonal`: those take a JAX key, return
  float32 and may be reflections (det -1), while this table reports proper
  rotations and draws every transform host-side in float64 from one numpy
  generator (shared with the scales, shifts and permutations, so the published
  trials stay reproducible; a JAX key here would change every rotation drawn).
  """
  q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
  q = q * np.sign(np.diagonal(r))[None, :]
  if np.linalg.det(q) < 0:
    q[:, 0] = -q[:, 0]
  return q


def random_transforms(
  rng: np.random.Generator,
  kind: str,
  *,
  num: int,
  dim: int,
  num_samples: int,
  min_scale: float,
  max_scale: float,
  max_shift: float,
) -> Transform:
  """Draws `num` random transforms of one kind.

  The transforms are host-side test inputs, drawn with numpy in float64.

  Args:
    rng: numpy random generator.
    kind: one of TRANSFORMS.
    num: number of transforms (trials).
    dim: d.
    num_samples: n (for the permutations).
    min_scale, max_scale: scale factors are log-uniform in [min_scale, max_scale].
    max_shift: shift coordinates are uniform in [-max_shift, max_shift].

  Returns:
    Transform with matrix (num, d, d), shift (num, d), permutation (num, n).
  """
  if kind not in TRANSFORMS:
    raise ValueError(f"Unknown transform {kind!r}; expected one of {TRANSFORMS}.")
  matrix = np.broadcast_to(np.eye(dim), (num, dim, dim)).copy()
  shift = np.zeros((num, dim))
  order = np.broadcast_to(np.arange(num_samples), (num, num_samples)).copy()
  scales = lambda shape: np.exp(rng.uniform(np.log(min_scale), np.log(max_scale), shape))
  rotations = lambda: np.stack([random_rotation(rng, dim) for _ in range(num)])
  if kind == "permutation":
    order = np.stack([rng.permutation(num_samples) for _ in range(num)])
  elif kind == "translation":
    shift = rng.uniform(-max_shift, max_shift, (num, dim))
  elif kind == "isotropic_scaling":
    matrix = matrix * scales((num, 1, 1))
  elif kind == "anisotropic_scaling":
    matrix = matrix * scales((num, 1, dim))
  elif kind == "rotation":
    matrix = rotations()
  else:  # Full affine: rotation, anisotropic scaling, rotation, then a shift.
    matrix = np.einsum("bij,bjk->bik", rotations() * scales((num, 1, dim)), rotations())
    shift = rng.uniform(-max_shift, max_shift, (num, dim))
  return Transform(matrix, shift, order)


def apply_transform(samples, queries, transform: Transform) -> tuple[np.ndarray, np.ndarray]:
  """Transformed problem: samples (b, n, d) reordered then x A + mu; queries (b, m, d) y A + mu."""
  samples = np.asarray(samples, np.float64)
  queries = np.asarray(queries, np.float64)
  reordered = np.take_along_axis(samples, transform.permutation[..., None], axis=1)
  move = lambda x: np.einsum("bni,bij->bnj", x, transform.matrix) + transform.shift[:, None]
  return move(reordered), move(queries)


def expected_outputs(original: Estimate, transform: Transform) -> Estimate:
  """The exactly transformed original outputs: log f - log|det A| and score A^{-T}."""
  _, log_abs_det = np.linalg.slogdet(transform.matrix)
  inverse_transpose = np.swapaxes(np.linalg.inv(transform.matrix), -1, -2)
  log_density = np.asarray(original.log_density, np.float64) - log_abs_det[:, None]
  score = np.einsum("bmi,bij->bmj", np.asarray(original.score, np.float64), inverse_transpose)
  return Estimate(log_density, score)


def relative_mse(estimated, expected, axes) -> np.ndarray:
  """sum (estimated - expected)^2 / sum expected^2 over `axes`, per remaining index."""
  estimated = np.asarray(estimated, np.float64)
  expected = np.asarray(expected, np.float64)
  return np.sum((estimated - expected) ** 2, axis=axes) / np.sum(expected**2, axis=axes)


def transform_errors(
  estimator: Callable[..., Estimate],
  samples,
  queries,
  rng: np.random.Generator,
  *,
  kinds=TRANSFORMS,
  min_scale: float = 0.1,
  max_scale: float = 10.0,
  max_shift: float = 5.0,
) -> dict[str, dict[str, np.ndarray]]:
  """Per-trial relative MSE of each symmetry, for the log-density and the score.

  Args:
    estimator: maps samples (b, n, d), queries (b, m, d) to Estimate((b, m), (b, m, d)).
    samples: (b, n, d), one trial per batch member.
    queries: (b, m, d).
    rng: numpy generator for the random transforms.
    kinds: which transforms (names from TRANSFORMS).
    min_scale, max_scale: range of the (log-uniform) scale factors.
    max_shift: range of the (uniform) shift coordinates.

  Returns:
    {kind: {"log_density": (b,) relative MSE, "score": (b,) relative MSE}}.
  """
  b, n, d = np.shape(samples)
  original = estimator(samples, queries)
  errors = {}
  for kind in kinds:
    transform = random_transforms(
      rng,
      kind,
      num=b,
      dim=d,
      num_samples=n,
      min_scale=min_scale,
      max_scale=max_scale,
      max_shift=max_shift,
    )
    new = estimator(*apply_transform(samples, queries, transform))
    expected = expected_outputs(original, transform)
    errors[kind] = {
      "log_density": relative_mse(new.log_density, expected.log_density, axes=1),
      "score": relative_mse(new.score, expected.score, axes=(1, 2)),
    }
  return errors


def summary_rows(errors: dict[str, dict[str, np.ndarray]], dim: int) -> list[dict]:
  """Table rows {transform, dim, num_trials, log_density_mean/max, score_mean/max}."""
  rows = []
  for kind, per_output in errors.items():
    row = {"transform": kind, "dim": int(dim), "num_trials": int(len(per_output["score"]))}
    for output in ("log_density", "score"):
      row[f"{output}_mean"] = float(np.mean(per_output[output]))
      row[f"{output}_max"] = float(np.max(per_output[output]))
    rows.append(row)
  return rows
