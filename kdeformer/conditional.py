"""Conditional densities f(rest | given) of a fitted density, and draws from them.

  out = density.log_conditional(queries, given=[0])      # log f(x_rest | x_given), its score
  out = density.log_conditional(queries, [0], normalize=True, key=key)   # integrates to 1
  drawn = density.sample_conditional([0], [1.5], 500, key=key)           # rows (500, d)

normalize=False is the ratio of the joint to the marginal of the given columns (a second
density fitted on those columns). normalize=True divides the joint by its own integral over
the rest, per distinct row of given values: for one rest column by the trapezoid rule on a
sinh-stretched line centred on the samples' kernel conditional, for more by importance
sampling from that kernel conditional (the Gaussian-KDE conditional, mixed with a broad
Gaussian regression). The estimate then integrates to 1 over the rest up to that error.
Bounds act through the change of variables of `kdeformer.support`, the proposal living in the
mapped coordinates.
"""

import functools
import math
from typing import NamedTuple
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from kdeformer import kde
from kdeformer import kernels
from kdeformer import support
from kdeformer import validation
from kdeformer.estimate import Estimate

# Quadrature nodes or importance draws per row for normalize=True (each a joint query).
DEFAULT_NUM_DRAWS = 256
# A 1-D rest is integrated on a sinh-stretched line reaching this many (kernel conditional)
# standard deviations.
LINE_HALFWIDTH = 50.0
# Share of the draws from the broad Gaussian regression, and its widening.
DEFAULT_DEFENSIVE_WEIGHT = 0.1
DEFAULT_DEFENSIVE_SCALE = 2.0
# Independence Metropolis-Hastings steps of sample_conditional.
DEFAULT_NUM_STEPS = 8
# Rows whose kernel mixtures are evaluated together (bounds memory: rows x draws x n).
_ROW_BATCH = 8


class ConditionalSample(NamedTuple):
  """Draws from f(rest | given = values).

  Attributes:
    points: (k, d) full rows: the given columns hold the values, the rest the draws.
    acceptance_rate: () mean acceptance of the independence Metropolis-Hastings steps.
    num_steps: steps per chain.
  """

  points: np.ndarray
  acceptance_rate: float
  num_steps: int


def check_given(given, dim: int) -> tuple[np.ndarray, np.ndarray]:
  """(given (g,), rest (d - g,)) column indices, int; given in the caller's order.

  Raises:
    ValueError: not a non-empty list of distinct integers in [0, d), or all d columns.
  """
  array = validation.check_columns(given, dim, "given")
  if array.size == dim:
    raise ValueError(
      f"given holds all {dim} columns: nothing is left to condition on them "
      "(the conditional of no coordinates); use the density itself."
    )
  return array.astype(int), np.setdiff1d(np.arange(dim), array)


def _restricted(bounds: support.Bounds | None, columns: np.ndarray) -> support.Bounds | None:
  """The bounds of some columns (None if none of them is bounded)."""
  if bounds is None:
    return None
  restricted = support.make_bounds((bounds.lower[columns], bounds.upper[columns]), len(columns))
  return None if restricted.is_unbounded else restricted


def _cache(density) -> dict:
  """A per-density cache for marginal fits and proposals (it lives and dies with the density)."""
  if not hasattr(density, "_conditional_cache"):
    density._conditional_cache = {}  # pylint: disable=protected-access
  return density._conditional_cache  # pylint: disable=protected-access


def marginal_density(density, given: np.ndarray):
  """The density of the given columns, fitted once per column set with the same estimator,
  weights and bounds."""
  cache = _cache(density)
  name = ("marginal", tuple(int(i) for i in given))
  if name not in cache:
    bounds = _restricted(density.bounds, given)
    cache[name] = density.estimator.fit(
      density.samples[:, given],
      weights=density.weights,
      bounds=None if bounds is None else (bounds.lower, bounds.upper),
    )
  return cache[name]


class KernelConditional:
  """The conditional of the samples' Gaussian KDE (kernel covariance h^2 Cov), the proposal.

  In mapped coordinates z = t(x) (the identity without bounds). Given values g, kernel i has
  weight w_i N(g; g_i, h^2 S_gg) and density N(r; r_i + B (g - g_i), h^2 C) over the rest,
  with B = S_rg S_gg^-1 and C = S_rr - B S_gr; a share a of the draws comes from the
  regression N(mu_r + B (g - mu_g), s^2 C) so that the weights stay bounded in the tails.
  """

  def __init__(
    self,
    density,
    given: np.ndarray,
    rest: np.ndarray,
    *,
    defensive_weight: float = DEFAULT_DEFENSIVE_WEIGHT,
    defensive_scale: float = DEFAULT_DEFENSIVE_SCALE,
  ):
    samples = density.samples
    if density.bounds is not None:
      samples = density.bounds.forward(samples)
    weights = density.weights
    n = samples.shape[0]
    if weights is None:
      weights = np.full(n, 1.0 / n)
    keep = weights > 0  # Samples of weight zero take no part.
    samples, weights = samples[keep], weights[keep] / weights[keep].sum()
    mean = weights @ samples
    centred = samples - mean
    covariance = (centred * weights[:, None]).T @ centred / (1.0 - np.sum(weights**2))
    s_gg = covariance[np.ix_(given, given)]
    s_rg = covariance[np.ix_(rest, given)]
    s_rr = covariance[np.ix_(rest, rest)]
    regression = np.linalg.solve(s_gg, s_rg.T).T  # B (r, g).
    residual = s_rr - regression @ s_rg.T
    residual = 0.5 * (residual + residual.T)
    self.given, self.rest = given, rest
    self.given_bounds = _restricted(density.bounds, given)
    self.rest_bounds = _restricted(density.bounds, rest)
    factor = kde.scott_factor(float(kernels.effective_sample_size(weights)), len(given) + len(rest))
    self.defensive_weight = float(defensive_weight)
    self.defensive_scale = float(defensive_scale)
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    # Given coordinates whitened by S_gg, rest by C: kernels are N(0, h^2 I) there.
    given_root = np.linalg.cholesky(s_gg)
    rest_root = np.linalg.cholesky(residual)
    self._given_root_inv = np.linalg.inv(given_root)
    self._params = dict(
      given=f32((samples[:, given] - mean[given]) @ self._given_root_inv.T),
      centres=f32(samples[:, rest] - samples[:, given] @ regression.T),
      log_weights=f32(np.log(weights)),
      bandwidth=float(factor),
    )
    self._mean, self._regression, self._rest_root = mean, regression, rest_root
    self._given_whitened = (samples[:, given] - mean[given]) @ self._given_root_inv.T
    self._centres = samples[:, rest] - samples[:, given] @ regression.T
    self._log_weights = np.log(weights)
    self._residual = residual
    self._rest_log_det = float(np.sum(np.log(np.diag(rest_root))))

  def _row_arrays(self, values: np.ndarray):
    """Per row (m, .): whitened given values, the regression shift B g, the regression mean."""
    whitened = (values - self._mean[self.given]) @ self._given_root_inv.T
    shift = values @ self._regression.T
    regression_mean = self._mean[self.rest] + (values - self._mean[self.given]) @ self._regression.T
    return whitened, shift, regression_mean

  def draw(self, key: jax.Array, values, num_draws: int) -> tuple[np.ndarray, np.ndarray]:
    """Draws of the rest given each row of mapped given values (m, g).

    Returns:
      (draws (m, K, r) in mapped rest coordinates, log q (m, K) of them), float64 numpy.
    """
    values = np.asarray(values, np.float64)
    whitened, shift, regression_mean = self._row_arrays(values)
    keys = row_keys(key, values)
    num_defensive = 2 * int(round(self.defensive_weight * num_draws / 2))
    share = num_defensive / num_draws
    unit, log_q = _draw_rows(
      keys,
      jnp.asarray(whitened, jnp.float32),
      jnp.asarray(shift - regression_mean, jnp.float32)
      @ jnp.asarray(np.linalg.inv(self._rest_root).T, jnp.float32),
      self._params["given"],
      self._params["centres"] @ jnp.asarray(np.linalg.inv(self._rest_root).T, jnp.float32),
      self._params["log_weights"],
      self._params["bandwidth"],
      num_draws,
      num_defensive,
      share,
      self.defensive_scale,
    )
    # Whitened-by-C coordinates u around the regression mean: r = mean_r(g) + L_C u.
    draws = regression_mean[:, None, :] + np.asarray(unit, np.float64) @ self._rest_root.T
    return draws, np.asarray(log_q, np.float64) - self._rest_log_det

  def line_moments(self, values_z) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (m,) of the kernel conditional of a 1-D rest, at mapped
    given values (m, g)."""
    whitened, _, _ = self._row_arrays(values_z)
    h = self._params["bandwidth"]
    means, deviations = [], []
    for start in range(0, whitened.shape[0], 256):  # Rows x samples, in blocks.
      block = whitened[start : start + 256]
      log_pi = (
        self._log_weights
        - 0.5 * np.sum((block[:, None, :] - self._given_whitened[None]) ** 2, axis=-1) / h**2
      )
      pi = np.exp(log_pi - log_pi.max(axis=1, keepdims=True))
      pi /= pi.sum(axis=1, keepdims=True)
      centres = (
        self._centres[None, :, 0] + (values_z[start : start + 256] @ self._regression.T)[:, :1]
      )
      mean = np.sum(pi * centres, axis=1)
      means.append(mean)
      deviations.append(
        np.sqrt(np.sum(pi * (centres - mean[:, None]) ** 2, axis=1) + h**2 * self._residual[0, 0])
      )
    return np.concatenate(means), np.concatenate(deviations)

  def line_log_integral(self, density, values_x, num_nodes: int) -> np.ndarray:
    """log int f(x_given, r) dr (m,) for a 1-D rest: the trapezoid rule on a line per row,
    z = mean + sd sinh(u) in mapped coordinates (u uniform, reaching LINE_HALFWIDTH sd)."""
    values_z = values_x if self.given_bounds is None else self.given_bounds.forward(values_x)
    mean, deviation = self.line_moments(values_z)
    u = np.linspace(-math.asinh(LINE_HALFWIDTH), math.asinh(LINE_HALFWIDTH), num_nodes)
    z = mean[:, None] + deviation[:, None] * np.sinh(u)  # (m, K)
    log_w = np.log(deviation[:, None] * np.cosh(u) * (u[1] - u[0]))
    r = z if self.rest_bounds is None else self.rest_bounds.inverse(z[..., None])[..., 0]
    if self.rest_bounds is not None:  # dr = dz / |t'(r)|; the ends map onto the bound.
      with np.errstate(divide="ignore", invalid="ignore"):
        log_w = log_w - self.rest_bounds.log_abs_jacobian(r[..., None])[..., 0]
    m = values_x.shape[0]
    rows = np.empty((m, num_nodes, len(self.given) + 1))
    rows[..., self.given] = values_x[:, None, :]
    rows[..., self.rest[0]] = r
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
      log_f = np.asarray(density(rows.reshape(m * num_nodes, -1)).log_density, np.float64).reshape(
        m, num_nodes
      )
      terms = np.where(np.isfinite(log_w), log_f + log_w, -np.inf)
    if np.any(np.isnan(terms) | (terms == np.inf)):
      raise ValueError("the density returned NaN or +inf on the conditional's quadrature line.")
    return np.asarray(jax.nn.logsumexp(terms, axis=-1), np.float64)

  def log_weights(self, density, key, values_x, num_draws):
    """log f(x) - log q(x) (m, K) at draws of the rest given data-space values (m, g), and
    the full rows (m, K, d) of the draws (in data coordinates)."""
    values_z = values_x if self.given_bounds is None else self.given_bounds.forward(values_x)
    draws_z, log_q = self.draw(key, values_z, num_draws)
    m, k, _ = draws_z.shape
    if self.rest_bounds is None:
      draws_x = draws_z
    else:
      draws_x = self.rest_bounds.inverse(draws_z)
      # q over x: q_z(t(x)) |t'(x)|.
      log_q = log_q + np.sum(self.rest_bounds.log_abs_jacobian(draws_x), axis=-1)
    rows = np.empty((m, k, len(self.given) + len(self.rest)))
    rows[..., self.given] = values_x[:, None, :]
    rows[..., self.rest] = draws_x
    log_f = np.asarray(density(rows.reshape(m * k, -1)).log_density, np.float64).reshape(m, k)
    if np.any(np.isnan(log_f) | (log_f == np.inf)):
      raise ValueError("the density returned NaN or +inf at conditional importance draws.")
    return log_f - log_q, rows


@functools.partial(jax.jit, static_argnums=(6, 7, 8, 9, 10))
def _draw_rows(
  keys,
  given,
  shift,
  sample_given,
  sample_centres,
  log_weights,
  bandwidth,
  num_draws,
  num_defensive,
  share,
  defensive_scale,
):
  """Per row: K stratified, antithetic draws u (m, K, r) of the mixture (whitened by C, around
  the regression mean) and its log-density (m, K)."""
  num_kernel = num_draws - num_defensive
  r = sample_centres.shape[1]

  def one_row(key, g, row_shift):
    # Kernel weights of the given values; the centres are shifted by the row's regression.
    log_pi = log_weights - 0.5 * jnp.sum((sample_given - g) ** 2, axis=-1) / bandwidth**2
    log_pi = log_pi - jax.nn.logsumexp(log_pi)
    centres = sample_centres + row_shift  # (n, r): r_i - B g_i + B g - mean_r(g), whitened.
    _, noise_key, offset_key = jax.random.split(key, 3)  # Three: the draws stay as they were.
    # Systematic selection of the kernels (stratified), antithetic noise in pairs.
    positions = (jnp.arange(num_kernel) + jax.random.uniform(offset_key)) / num_kernel
    chosen = jnp.minimum(
      jnp.searchsorted(jnp.cumsum(jnp.exp(log_pi)), positions), log_pi.shape[0] - 1
    )
    half = jax.random.normal(noise_key, ((num_kernel + num_defensive) // 2 + 1, r))
    noise = jnp.concatenate([half, -half])
    kernel = centres[chosen] + bandwidth * noise[:num_kernel]
    broad = defensive_scale * noise[num_kernel : num_kernel + num_defensive]
    points = jnp.concatenate([kernel, broad])
    squared = jnp.sum((points[:, None, :] - centres[None]) ** 2, axis=-1)  # (K, n)
    log_kernel = jax.nn.logsumexp(log_pi - 0.5 * squared / bandwidth**2, axis=-1) - r * (
      math.log(bandwidth) + 0.5 * math.log(2 * math.pi)
    )
    if num_defensive == 0:
      return points, log_kernel
    log_broad = -0.5 * jnp.sum(points**2, axis=-1) / defensive_scale**2 - r * (
      math.log(defensive_scale) + 0.5 * math.log(2 * math.pi)
    )
    return points, jnp.logaddexp(math.log1p(-share) + log_kernel, math.log(share) + log_broad)

  return jax.lax.map(lambda args: one_row(*args), (keys, given, shift), batch_size=_ROW_BATCH)


def row_keys(key: jax.Array, values: np.ndarray) -> jax.Array:
  """One key per row (m,), folded from the row's values: equal given values get equal draws,
  so the normalised conditional of one slice is one function of the rest."""
  digests = [zlib.crc32(np.ascontiguousarray(row).tobytes()) for row in values]
  return jax.vmap(lambda digest: jax.random.fold_in(key, digest))(
    jnp.asarray(np.asarray(digests, np.uint32))
  )


def _proposal(density, given, rest) -> KernelConditional:
  cache = _cache(density)
  name = ("proposal", tuple(int(i) for i in given))
  if name not in cache:
    cache[name] = KernelConditional(density, given, rest)
  return cache[name]


def log_conditional(
  density,
  queries,
  given,
  *,
  normalize: bool = False,
  key: jax.Array | None = None,
  num_draws: int = DEFAULT_NUM_DRAWS,
) -> Estimate:
  """log f(x_rest | x_given) at full rows, and its score with respect to the rest.

  Args:
    density: a `kdeformer.FittedDensity` (or anything with its samples, weights, bounds,
      estimator and __call__).
    queries: (m, d) full rows.
    given: the conditioning columns (a non-empty list of distinct indices, not all d).
    normalize: False: log f(x) - log f_given(x_given), the joint over the marginal fitted on
      the given columns. True: log f(x) - log int f(x_given, r) dr, the integral estimated per
      row (num_draws queries per distinct row: quadrature nodes for one rest column,
      importance draws for more), so that exp(.) integrates to 1 over the rest. Needs `key`;
      rows with equal given values share one integral (the draws of a row are keyed by its
      given values), so a slice is one function of the rest.
    key: PRNG key of the importance draws (normalize=True).
    num_draws: quadrature nodes or importance draws per row (an even number >= 2).

  Returns:
    Estimate(log_density (m,), score (m, d - g) over the rest columns in increasing order).
    Rows outside the support (bounds) get -inf and a zero score.

  Raises:
    ValueError: bad queries (NaN, shape, d) or given columns; normalize=True without a key.
  """
  given, rest = check_given(given, density.dim)
  validation.check_points(queries, "queries", dim=density.dim, batched_ok=False)
  if normalize:
    validation.check_key(
      key, "log_conditional(normalize=True) integrates over the rest by importance sampling"
    )
    if int(num_draws) < 2 or int(num_draws) % 2:
      raise ValueError(f"num_draws must be an even number >= 2; got {num_draws}.")
  queries = np.asarray(queries, np.float64)
  joint = density(queries)
  log_joint = np.asarray(joint.log_density, np.float64)
  inside = np.isfinite(log_joint)
  if not normalize:
    log_given = np.asarray(
      marginal_density(density, given)(queries[:, given]).log_density, np.float64
    )
    log_density = np.where(inside, log_joint - np.where(inside, log_given, 0.0), -np.inf)
  else:
    log_integral = np.full(queries.shape[0], -np.inf)
    if np.any(inside):
      # One integral per distinct row of given values (a slice is one conditional).
      values, index = np.unique(queries[inside][:, given], axis=0, return_inverse=True)
      proposal = _proposal(density, given, rest)
      if len(rest) == 1:  # A line: quadrature, no sampling error.
        per_value = proposal.line_log_integral(density, values, int(num_draws))
      else:
        log_w, _ = proposal.log_weights(density, key, values, int(num_draws))
        per_value = np.asarray(jax.nn.logsumexp(log_w, axis=-1)) - math.log(log_w.shape[1])
      log_integral[inside] = per_value[index.reshape(-1)]
    log_density = np.where(inside, log_joint - np.where(inside, log_integral, 0.0), -np.inf)
  score = np.where(inside[:, None], np.asarray(joint.score, np.float64)[:, rest], 0.0)
  dtype = np.asarray(joint.log_density).dtype
  return Estimate(jnp.asarray(log_density.astype(dtype)), jnp.asarray(score.astype(dtype)))


def sample_conditional(
  density, given, values, num_samples: int, *, key: jax.Array, num_steps: int = DEFAULT_NUM_STEPS
) -> ConditionalSample:
  """Draws from f(rest | x_given = values): independence Metropolis-Hastings chains.

  Each of num_samples chains starts at a draw of the kernel conditional (the importance
  proposal of `log_conditional`) and takes num_steps steps proposing fresh draws from it,
  accepted with probability min(1, w' / w), w = f / q: the target is the density's exact
  conditional (no step size to tune; acceptance near 1 when the proposal is close).

  Args:
    density: a `kdeformer.FittedDensity`.
    given: the conditioning columns.
    values: (g,) their values, inside the support.
    num_samples: draws (= chains), >= 1.
    key: PRNG key.
    num_steps: steps per chain (0: the proposal's draws, not the conditional's).

  Returns:
    ConditionalSample(points (num_samples, d) full rows, acceptance_rate, num_steps).
  """
  given, rest = check_given(given, density.dim)
  validation.check_key(key, "sample_conditional draws at random")
  values = np.asarray(values, np.float64)
  if values.shape != given.shape:
    raise ValueError(
      f"values must have shape {given.shape}, one per given column; got {values.shape}."
    )
  if not np.all(np.isfinite(values)):
    raise ValueError("values contain NaN or infinite entries; all must be finite.")
  given_bounds = _restricted(density.bounds, given)
  if given_bounds is not None and not given_bounds.contains(values):
    raise ValueError(
      f"values {values.tolist()} lie on or outside the support of the given "
      "columns (bounds); the conditional is defined inside it only."
    )
  if int(num_samples) < 1 or int(num_steps) < 0:
    raise ValueError(
      f"num_samples must be >= 1 and num_steps >= 0; got {num_samples}, {num_steps}."
    )
  proposal = _proposal(density, given, rest)
  num_draws = 2 * ((int(num_samples) + 1) // 2)
  keys = jax.random.split(key, 2 * int(num_steps) + 1)
  log_w, rows = proposal.log_weights(density, keys[0], values[None], num_draws)
  log_w, rows = log_w[0, :num_samples], rows[0, :num_samples]
  # Draws come sorted by component (stratification): shuffle so that chains are exchangeable.
  order = np.asarray(jax.random.permutation(keys[0], num_samples))
  log_w, rows = log_w[order], rows[order]
  accepted = 0
  for step in range(int(num_steps)):
    new_log_w, new_rows = proposal.log_weights(density, keys[2 * step + 1], values[None], num_draws)
    shuffle = np.asarray(jax.random.permutation(keys[2 * step + 1], num_draws))[:num_samples]
    new_log_w, new_rows = new_log_w[0, shuffle], new_rows[0, shuffle]
    uniform = np.asarray(jax.random.uniform(keys[2 * step + 2], (num_samples,)), np.float64)
    accept = np.log(uniform) < new_log_w - log_w
    log_w = np.where(accept, new_log_w, log_w)
    rows = np.where(accept[:, None], new_rows, rows)
    accepted += int(np.sum(accept))
  rate = accepted / (num_samples * num_steps) if num_steps else float("nan")
  return ConditionalSample(rows, float(rate), int(num_steps))
