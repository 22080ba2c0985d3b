"""scikit-learn density estimators around the transformer and the KDE baseline.

  cross_val_score(KDEFormerDensity(), X, cv=5)     # held-out log-likelihood per fold

sklearn.neighbors.KernelDensity's API (fit, score_samples, score, sample), plus
grad_log_density(X) -> (m, d). Needs the extra `pip install "kdeformer[sklearn]"`.
"""

import numbers
import os

import jax
import numpy as np

try:
  from sklearn import base as sklearn_base
  from sklearn.utils import validation as sklearn_validation
except ImportError as error:  # pragma: no cover (the test extra installs scikit-learn)
  raise ImportError(
    'kdeformer.sklearn needs scikit-learn: pip install "kdeformer[sklearn]".'
  ) from error

from kdeformer import estimator as estimator_lib
from kdeformer import fitted
from kdeformer import kde
from kdeformer import kernels
from kdeformer import log_normalizer as log_normalizer_lib
from kdeformer import problem as problem_lib
from kdeformer import support
from kdeformer.estimate import Estimate

# Estimators by workdir or "pretrained:<name>": clones (one per fold and candidate) would
# otherwise each restore and recompile. A retrained workdir needs `clear_cache()`.
_LOADED_ESTIMATORS: dict[str, estimator_lib.Estimator] = {}

# Accepted input dtypes: float32 and float64 are kept, anything else becomes float64.
_FLOAT_DTYPES = (np.float64, np.float32)


def load_estimator(workdir: str | None = None, model: str | None = None) -> estimator_lib.Estimator:
  """The Estimator of a training workdir, or of the shipped model `model` (None: the default,
  `kdeformer.load_pretrained()`), loaded once per process."""
  cache_key = f"pretrained:{model}" if workdir is None else os.path.realpath(workdir)
  if cache_key not in _LOADED_ESTIMATORS:
    _LOADED_ESTIMATORS[cache_key] = estimator_lib.load(model if workdir is None else workdir)
  return _LOADED_ESTIMATORS[cache_key]


def clear_cache() -> None:
  """Forgets the loaded estimators, so the next fit restores its workdir afresh."""
  _LOADED_ESTIMATORS.clear()


def jax_key(random_state) -> jax.Array:
  """A JAX PRNG key from scikit-learn's random_state (int seed, None or a RandomState).

  An int is the seed itself; None (numpy's global generator) or a RandomState draws one.
  """
  if isinstance(random_state, numbers.Integral):
    return jax.random.key(int(random_state))
  seed = sklearn_validation.check_random_state(random_state).randint(np.iinfo(np.int32).max)
  return jax.random.key(seed)


class _SampleDensity(sklearn_base.DensityMixin, sklearn_base.BaseEstimator):
  """What both estimators share: input checks, fitted samples, score, score_samples.

  Subclasses define `_prepare(samples, weights)` (the problem, checked once at fit),
  `_fit_model()` (called at the end of fit) and `_estimate(queries)`.
  """

  def _validate_fit_input(self, X, sample_weight) -> problem_lib.Problem:
    """Checks X (n, d) and sample_weight (n,) (`kdeformer.problem`); sets samples_, weights_
    (normalised to sum 1), bounds_ and n_features_in_."""
    # Two samples at least, with scikit-learn's wording of the error.
    samples = sklearn_validation.validate_data(self, X, dtype=_FLOAT_DTYPES, ensure_min_samples=2)
    weights = None
    if sample_weight is not None:
      weights = sklearn_validation.check_array(
        sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight"
      )
    problem = self._prepare(samples, weights)
    self.samples_ = samples
    self.weights_ = problem.unwhitened[1]  # Normalised, in the caller's order.
    self.bounds_ = problem.bounds
    return problem

  def _validate_queries(self, X) -> np.ndarray:
    sklearn_validation.check_is_fitted(self)
    return sklearn_validation.validate_data(self, X, reset=False, dtype=_FLOAT_DTYPES)

  def fit(self, X, y=None, sample_weight=None):
    """Stores the samples the density is estimated from.

    Args:
      X: (n, d) i.i.d. samples.
      y: ignored (scikit-learn's convention for unsupervised estimators).
      sample_weight: optional (n,) non-negative weights (scipy.stats.gaussian_kde's
        convention: normalised to sum 1; a weight of zero drops the sample).

    Returns:
      self.

    Raises:
      ValueError: NaN/inf, too few samples, a singular covariance, bad weights, or bad
        bounds (a sample on or beyond a bound, lower >= upper, a wrong shape).
    """
    del y
    self._fit_model(self._validate_fit_input(X, sample_weight))
    return self

  def score_samples(self, X) -> np.ndarray:
    """Log-density (m,) of the fitted distribution at the rows of X (m, d)."""
    return np.asarray(self._estimate(self._validate_queries(X)).log_density)

  def grad_log_density(self, X) -> np.ndarray:
    """Score (m, d): the gradient of the log-density at the rows of X (m, d)."""
    return np.asarray(self._estimate(self._validate_queries(X)).score)

  def score(self, X, y=None) -> float:
    """Total log-likelihood of X (m, d): the sum of score_samples(X)."""
    del y
    return float(np.sum(self.score_samples(X), dtype=np.float64))

  def _sample_key(self, random_state) -> jax.Array:
    sklearn_validation.check_is_fitted(self)
    return jax_key(self.random_state if random_state is None else random_state)


class KDEFormerDensity(_SampleDensity):
  """The pretrained transformer (or any trained workdir) as a scikit-learn density estimator.

  Attributes (after fit):
    samples_: (n, d) the fitted samples.
    weights_: (n,) the sample weights normalised to sum 1, or None.
    n_features_in_: d.
    rotations_: (k, d, d) the rotations averaged over, or None.
    log_normalizer_: log Z subtracted from the network's log-density (0.0 when
      normalize=False), estimated once by importance sampling.
    bounds_: the validated `kdeformer.support.Bounds`, or None.
    density_: the samples encoded once (`kdeformer.Estimator.fit`), or None with rotations
      (each call then runs the rotated problems).
  """

  def __init__(
    self,
    model: str | None = None,
    workdir: str | None = None,
    rotations=None,
    normalize: bool = True,
    random_state=0,
    bounds=None,
  ):
    """Stores the parameters as given (scikit-learn's clone and GridSearchCV rely on it).

    Args:
      model: the name of a model shipped in the package (`kdeformer.list_pretrained()`);
        None: the default (`kdeformer.load_pretrained()`); ignored when workdir is given.
      workdir: a training workdir to restore instead of a shipped model.
      rotations: rotation averaging (see `kdeformer.Estimator.__call__`): an int k of
        Haar-random rotations drawn from random_state at fit, or (k, d, d) orthogonal
        matrices; None: none. Sampling does not average over rotations.
      normalize: subtract log Z (importance sampling with 16,384 network evaluations at fit,
        `kdeformer.log_normalizer`), so exp(score_samples) integrates to 1 and
        `score` is a held-out log-likelihood comparable across estimators.
      random_state: int seed, None or a numpy RandomState for the rotations, log Z and
        `sample`.
      bounds: optional support (lower, upper), as in `kdeformer.Estimator.__call__`
        (validated at fit; sample() maps back).
    """
    self.model = model
    self.workdir = workdir
    self.rotations = rotations
    self.normalize = normalize
    self.random_state = random_state
    self.bounds = bounds

  def _prepare(self, samples, weights) -> problem_lib.Problem:
    return (
      load_estimator(self.workdir, self.model)
      .answering(samples)
      .prepare(samples, weights=weights, bounds=self.bounds, batched=False)
    )

  def _fit_model(self, problem: problem_lib.Problem) -> None:
    model = load_estimator(self.workdir, self.model).answering(problem.samples)
    # The key split of `Estimator(..., normalize=True, key=key)`: the same fitted density.
    key = jax_key(self.random_state)
    sampler_key, rotation_key = log_normalizer_lib.split_key(key)
    self.rotations_ = self.rotations
    if isinstance(self.rotations, numbers.Integral):
      if self.rotations < 1:
        raise ValueError(f"rotations={self.rotations}: average over at least 1 rotation.")
      # Drawn once here, so every later call averages over the same rotations.
      self.rotations_ = np.asarray(
        jax.random.orthogonal(rotation_key, self.n_features_in_, shape=(int(self.rotations),))
      )
    # Without rotations the samples are encoded once, here, for every later call.
    self.density_ = None
    if self.rotations_ is None:
      self.density_ = fitted.FittedDensity(model, None, problem=problem)
    self.log_normalizer_ = 0.0
    if self.normalize and self.density_ is not None:
      self.log_normalizer_ = self.density_.log_normalizer(key)
    elif self.normalize:
      # Once at fit, so every call sees the same density; in the mapped space with bounds
      # (the same log Z).
      self.log_normalizer_ = log_normalizer_lib.log_normalizer_of_fit(
        lambda points: self._network(points).log_density,
        self._mapped_samples(),
        sampler_key,
        self.weights_,
      )

  def _mapped_samples(self) -> np.ndarray:
    """The samples (n, d) in the space the network runs in (mapped when bounds are set)."""
    return self.samples_ if self.bounds_ is None else self.bounds_.forward(self.samples_)

  def _network(self, mapped_queries) -> Estimate:
    """The network's unnormalised estimate at queries (m, d) of the mapped space."""
    return load_estimator(self.workdir, self.model)(
      self._mapped_samples(), mapped_queries, weights=self.weights_, rotations=self.rotations_
    )

  def _estimate(self, queries) -> Estimate:
    if self.density_ is not None:
      out = self.density_(queries)
    elif self.bounds_ is None:
      out = self._network(queries)
    else:
      out = support.pull_back(
        self._network(support.map_queries(queries, self.bounds_)[0]), queries, self.bounds_
      )
    return Estimate(out.log_density - self.log_normalizer_, out.score)

  def sample(self, n_samples: int = 1, random_state=None) -> np.ndarray:
    """Draws (n_samples, d) points from the estimated density (MALA chains, `Estimator.sample`).

    Args:
      n_samples: how many points.
      random_state: int seed, None (use the estimator's random_state) or a RandomState.
    """
    key = self._sample_key(random_state)
    if self.density_ is not None:
      return np.asarray(self.density_.sample(n_samples, key=key).points)
    result = load_estimator(self.workdir, self.model).sample(
      self.samples_, n_samples, key=key, weights=self.weights_, bounds=self.bounds_
    )
    return np.asarray(result.points)


class GaussianKDEDensity(_SampleDensity):
  """Gaussian KDE (`kdeformer.kde.gaussian_kde`, scipy's convention) as a density estimator.

  Attributes (after fit):
    samples_: (n, d) the fitted samples.
    weights_: (n,) the sample weights normalised to sum 1, or None.
    n_features_in_: d.
    factor_: the bandwidth factor: the kernel covariance is Cov(samples) * factor_^2
      (Scott's and Silverman's rules use the effective sample size 1 / sum w^2); with
      bounds, Cov of the mapped samples.
    bounds_: the validated `kdeformer.support.Bounds`, or None.
  """

  def __init__(self, bandwidth="scott", random_state=0, bounds=None):
    """Stores the parameters as given (scikit-learn's clone and GridSearchCV rely on it).

    Args:
      bandwidth: "scott", "silverman" or a positive float factor.
      random_state: int seed, None or a numpy RandomState for `sample`.
      bounds: optional support (lower, upper), as in `kdeformer.kde.gaussian_kde`
        (validated at fit).
    """
    self.bandwidth = bandwidth
    self.random_state = random_state
    self.bounds = bounds

  def _prepare(self, samples, weights) -> problem_lib.Problem:
    return problem_lib.prepare(samples, weights=weights, bounds=self.bounds)

  def _fit_model(self, problem: problem_lib.Problem) -> None:
    del problem  # gaussian_kde prepares its own at each call.
    size = (
      len(self.samples_)
      if self.weights_ is None
      else float(kernels.effective_sample_size(self.weights_))
    )
    factor = kde.bandwidth_factor(self.bandwidth, size, self.n_features_in_)
    if not factor > 0:
      raise ValueError(
        f"bandwidth must be 'scott', 'silverman' or a positive float; got {self.bandwidth!r}."
      )
    self.factor_ = float(factor)

  def _estimate(self, queries) -> Estimate:
    return kde.gaussian_kde(
      self.samples_, queries, self.bandwidth, weights=self.weights_, bounds=self.bounds_
    )

  def sample(self, n_samples: int = 1, random_state=None) -> np.ndarray:
    """Draws (n_samples, d) points from the KDE (`kdeformer.kde.resample`).

    Args:
      n_samples: how many points.
      random_state: int seed, None (use the estimator's random_state) or a RandomState.
    """
    key = self._sample_key(random_state)
    return np.asarray(
      kde.resample(
        self.samples_,
        n_samples,
        key=key,
        bandwidth=self.bandwidth,
        weights=self.weights_,
        bounds=self.bounds_,
      )
    )
