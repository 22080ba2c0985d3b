"""kdeformer.sklearn: the estimators in clone, Pipeline, GridSearchCV and cross-validation.

The shipped model compiles one program per padded shape (and per d, and with or without
weights), so every KDEFormerDensity here fits 400 (or 300) samples in d = 2 (the 512 bucket),
scores 200 queries (the shapes of a 3-fold split of 600) and draws at most 8 points (one
MALA program). normalize=True costs 16,384 network evaluations per fit: it is used where
the test is about the normalised density (one fitted estimator, shared; the bounded fit; the
cross-validated likelihoods), normalize=False where the test is about the API.
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import base as sklearn_base
from sklearn import exceptions as sklearn_exceptions
from sklearn import model_selection
from sklearn import pipeline
from sklearn import preprocessing
from sklearn.utils import estimator_checks

from kdeformer import distributions
from kdeformer import log_normalizer as log_normalizer_lib
from kdeformer import whitening
import kdeformer.sklearn
from kdeformer.sklearn import GaussianKDEDensity
from kdeformer.sklearn import KDEFormerDensity

NUM_SAMPLES = 600  # Three folds of 400 training and 200 held-out points.
NUM_FIT = 400


def two_component_mixture():
  """A 2-D mixture with unequal weights and correlated, unequal covariances."""
  return distributions.gaussian_mixture(
    [0.4, 0.6], [[-1.5, 0.0], [1.5, 0.5]], [[[0.5, 0.2], [0.2, 0.4]], [[0.3, 0.0], [0.0, 0.8]]]
  )


@pytest.fixture(scope="module")
def mixture_samples():
  """(600, 2) float32 draws of two_component_mixture()."""
  return np.asarray(two_component_mixture().sample(jax.random.key(0), NUM_SAMPLES))


@pytest.fixture(scope="module")
def fitted_kdeformer(mixture_samples):
  """KDEFormerDensity() (normalize=True) fitted on the first 400 samples, shared."""
  return KDEFormerDensity().fit(mixture_samples[:NUM_FIT])


@pytest.fixture(scope="module")
def fitted_kde(mixture_samples):
  return GaussianKDEDensity().fit(mixture_samples[:NUM_FIT])


def test_importing_kdeformer_does_not_import_sklearn():
  script = "import sys, kdeformer; print('sklearn' in sys.modules)"
  result = subprocess.run(
    [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
  )
  assert result.stdout.strip() == "False", result.stdout


@pytest.mark.parametrize(
  "estimator",
  [
    KDEFormerDensity(workdir="/some/workdir", rotations=3, normalize=False, random_state=7),
    GaussianKDEDensity(bandwidth=0.25, random_state=7),
  ],
)
def test_clone_keeps_the_parameters(estimator):
  cloned = sklearn_base.clone(estimator)
  assert cloned is not estimator
  assert cloned.get_params() == estimator.get_params()


def test_kde_passes_scikit_learns_estimator_checks():
  """scikit-learn's own API checks (about 45 of them, many small shapes: about 5 s).

  KDEFormerDensity is left out: every check's new shape would compile the network again.
  """
  estimator_checks.check_estimator(
    GaussianKDEDensity(),
    expected_failed_checks={
      "check_sample_weight_equivalence_on_dense_data": (
        "it fits 27 samples in d = 30: a KDE needs n > d for a full-rank covariance"
      )
    },
    on_skip=None,
  )  # Checks of optional inputs (pandas, the array API) skip when absent.


def test_clone_of_a_fitted_estimator_is_unfitted(fitted_kdeformer):
  cloned = sklearn_base.clone(fitted_kdeformer)
  assert cloned.get_params() == fitted_kdeformer.get_params()
  with pytest.raises(sklearn_exceptions.NotFittedError):
    cloned.score_samples(np.zeros((3, 2)))


@pytest.mark.parametrize("make_estimator", [KDEFormerDensity, GaussianKDEDensity])
@pytest.mark.parametrize("method", ["score_samples", "score", "grad_log_density", "sample"])
def test_use_before_fit_raises_not_fitted(make_estimator, method):
  arguments = () if method == "sample" else (np.zeros((3, 2)),)
  with pytest.raises(sklearn_exceptions.NotFittedError):
    getattr(make_estimator(), method)(*arguments)


def bad_fit_inputs(samples):
  """Invalid (X, sample_weight, what the error says) around good samples (n, 2), by case."""
  with_nan = samples.copy()
  with_nan[3, 1] = np.nan
  n = len(samples)
  return {
    "NaN": (with_nan, None, "NaN"),
    "1-D samples": (samples[:, 0], None, "2D array"),
    "one sample": (samples[:1], None, "1 sample"),
    "n <= d": (samples[:2], None, "n > d"),
    "identical samples": (np.ones_like(samples), None, "identical"),
    "negative weight": (samples, np.r_[-1.0, np.ones(n - 1)], "non-negative"),
    "all weights zero": (samples, np.zeros(n), "sum to zero"),
    "weights of the wrong length": (samples, np.ones(n - 1), "shape"),
  }


@pytest.mark.parametrize("make_estimator", [KDEFormerDensity, GaussianKDEDensity])
@pytest.mark.parametrize("case", list(bad_fit_inputs(np.ones((10, 2)))))
def test_bad_input_raises_value_error(make_estimator, case, mixture_samples):
  data, weights, message = bad_fit_inputs(mixture_samples[:NUM_FIT])[case]
  with pytest.raises(ValueError, match=message):
    make_estimator().fit(data, sample_weight=weights)


def test_scoring_another_dimension_raises(fitted_kdeformer, fitted_kde):
  for fitted in (fitted_kdeformer, fitted_kde):
    with pytest.raises(ValueError, match="features"):
      fitted.score_samples(np.zeros((5, 3)))  # Fitted on d = 2.


def test_kde_rejects_a_bad_bandwidth(mixture_samples):
  for bandwidth in ("wide", -0.5, 0.0):
    with pytest.raises(ValueError, match="bandwidth"):
      GaussianKDEDensity(bandwidth=bandwidth).fit(mixture_samples)


def test_fitted_density_is_the_estimators_normalized_call(fitted_kdeformer, mixture_samples):
  """Fit estimates log Z once, with the key split of est(..., normalize=True, key=key)."""
  queries = mixture_samples[NUM_FIT:]
  # The process's cached shipped model: a second Estimator would compile its programs again.
  model = kdeformer.sklearn.load_estimator()
  expected = model(mixture_samples[:NUM_FIT], queries, normalize=True, key=jax.random.key(0))
  np.testing.assert_allclose(
    fitted_kdeformer.score_samples(queries), expected.log_density, atol=1e-5
  )
  np.testing.assert_allclose(fitted_kdeformer.grad_log_density(queries), expected.score, atol=1e-5)
  assert fitted_kdeformer.score(queries) == pytest.approx(
    float(np.sum(np.asarray(expected.log_density), dtype=np.float64)), abs=1e-3
  )


def test_int_rotations_are_drawn_once_as_the_estimator_draws_them(mixture_samples):
  fit, held_out = mixture_samples[:NUM_FIT], mixture_samples[NUM_FIT:]
  fitted = KDEFormerDensity(rotations=2, normalize=False).fit(fit)
  assert fitted.rotations_.shape == (2, 2, 2)
  _, rotation_key = jax.random.split(jax.random.key(0))
  expected = kdeformer.sklearn.load_estimator()(fit, held_out, rotations=2, key=rotation_key)
  np.testing.assert_allclose(fitted.score_samples(held_out), expected.log_density, atol=1e-5)


def test_pipeline_with_standard_scaler(mixture_samples):
  fit, held_out = mixture_samples[:NUM_FIT], mixture_samples[NUM_FIT:]
  # normalize=False: the comparison below is then free of log Z's Monte Carlo error.
  model = pipeline.Pipeline(
    [("scale", preprocessing.StandardScaler()), ("density", KDEFormerDensity(normalize=False))]
  ).fit(fit)
  log_density = model.score_samples(held_out)
  assert log_density.shape == (len(held_out),)
  assert np.all(np.isfinite(log_density))
  # The pipeline's density lives in standardised coordinates: adding log |det| of the
  # scaling gives the density of the data. The model whitens its input, so it is nearly
  # invariant to the scaling, not exactly: a diagonal rescaling of correlated data turns its
  # whitened points by a residual rotation. Measured: max 0.031, mean 0.0018 nats.
  log_det_scaling = -np.sum(np.log(model.named_steps["scale"].scale_))
  direct = KDEFormerDensity(normalize=False).fit(fit).score_samples(held_out)
  difference = np.abs(log_density + log_det_scaling - direct)
  assert difference.max() < 0.1 and difference.mean() < 0.01, difference


def test_grid_search_picks_a_bandwidth_by_held_out_likelihood():
  samples = np.random.default_rng(0).normal(size=(300, 1))
  search = model_selection.GridSearchCV(
    GaussianKDEDensity(), {"bandwidth": [0.1, 0.3, 1.0, "scott"]}, cv=3
  )
  search.fit(samples)
  # The factor multiplies the data's standard deviation: 0.1 puts a narrow bump on each of
  # the 200 training points, whose held-out likelihood is lost between the bumps, and 1.0
  # doubles the variance of the estimate. Scott's factor 200^(-1/5) = 0.35 (and 0.3) are
  # near the likelihood-optimal width for a Gaussian.
  assert search.best_params_["bandwidth"] != 0.1
  assert search.best_params_["bandwidth"] in (0.3, "scott")
  assert search.best_estimator_.n_features_in_ == 1


def test_kdeformer_beats_scott_kde_in_held_out_likelihood(mixture_samples):
  """Both estimators scored on the same three folds of a 2-D mixture (n = 600).

  Measured (held-out log-likelihood per point, the same folds, data seeds 0..5):
  KDEFormerDensity -2.793 / -2.770 / -2.726 / -2.664 / -2.717 / -2.800, Scott KDE -2.867 /
  -2.840 / -2.813 / -2.732 / -2.789 / -2.884; the true density gives -2.774 at seed 0.
  """
  folds = model_selection.KFold(3, shuffle=True, random_state=0)
  per_point = {
    name: model_selection.cross_val_score(estimator, mixture_samples, cv=folds).sum() / NUM_SAMPLES
    for name, estimator in [("kdeformer", KDEFormerDensity()), ("kde", GaussianKDEDensity())]
  }
  assert per_point["kdeformer"] > per_point["kde"] + 0.03, per_point


@pytest.mark.parametrize("fitted", ["fitted_kdeformer", "fitted_kde"])
def test_sample_shapes_seeds_and_draws_from_the_fitted_density(fitted, mixture_samples, request):
  estimator = request.getfixturevalue(fitted)
  assert estimator.sample().shape == (1, 2)
  # 8 draws per call: the most that one compiled MALA program (8 chains) serves.
  points = estimator.sample(8, random_state=1)
  assert points.shape == (8, 2)
  assert np.all(np.isfinite(points))
  np.testing.assert_array_equal(estimator.sample(8, random_state=1), points)
  other = estimator.sample(8, random_state=2)
  assert not np.array_equal(other, points)
  # The draws follow the fitted density (cheaply: 16 draws against the 400 fitted samples;
  # 4 standard errors of a 16-draw mean, a factor 2 in spread, 0.8 nats of true log-density).
  # Measured 2026-12-05 (KDEFormer, then the KDE): means (0.44, 0.56) and (0.10, 0.07)
  # against the data's (0.30, 0.31); standard deviations (1.71, 0.79) and (1.77, 0.82)
  # against (1.65, 0.89); mean true log-density -3.02 and -3.33 against the data's -2.78.
  # Draws of a wrong scale, offset or dimension order, or stuck chains, fail.
  draws, data = np.concatenate([points, other]), mixture_samples[:NUM_FIT]
  spread = data.std(axis=0)
  assert np.all(np.abs(draws.mean(axis=0) - data.mean(axis=0)) < spread), draws
  assert np.all((draws.std(axis=0) > 0.5 * spread) & (draws.std(axis=0) < 2.0 * spread)), draws
  truth = two_component_mixture()
  log_p = lambda x: float(
    np.mean(truth.log_prob_and_score(jnp.asarray(x, jnp.float32)).log_density)
  )
  assert abs(log_p(draws) - log_p(data)) < 0.8, (log_p(draws), log_p(data))


@pytest.mark.parametrize("make_estimator", [KDEFormerDensity, GaussianKDEDensity])
def test_zero_sample_weights_drop_the_samples(make_estimator, mixture_samples, monkeypatch):
  """Zero weights drop the samples from the density, the score and (KDEFormerDensity) the
  proposal of log Z's importance sampler.

  KDEFormerDensity: the network's part is compared with normalize=False; log Z's inputs are
  checked without its 16,384 evaluations, by recording the call of the importance sampler
  (tests/test_weights.py compares the Estimator's normalised weighted call with the dropped
  samples' in full).
  """
  fit, held_out = mixture_samples[:NUM_FIT], mixture_samples[NUM_FIT:]
  weights = np.ones(NUM_FIT)
  weights[::4] = 0.0
  kept = weights > 0
  if make_estimator is KDEFormerDensity:
    calls = []

    def recording_log_normalizer(log_density_fn, samples, key, *args, **kwargs):
      calls.append((log_density_fn, np.asarray(samples), key, args, kwargs))
      return log_normalizer_lib.LogNormalizer(
        jnp.float32(0.25), jnp.float32(0.0), jnp.float32(1.0), 16384
      )

    monkeypatch.setattr(
      kdeformer.sklearn.log_normalizer_lib, "log_normalizer", recording_log_normalizer
    )
    weighted = KDEFormerDensity(normalize=True).fit(fit, sample_weight=weights)
    monkeypatch.undo()
    dropped = KDEFormerDensity(normalize=False).fit(fit[kept])
    ((log_density_fn, proposal, key, args, kwargs),) = calls
    # The sampler runs where the network does, in float64-whitened coordinates (the kept
    # samples' whitening: a weight of zero drops a sample from the mean and covariance too).
    host_map = whitening.fit_host_whitening(fit[kept])
    # The proposal: positive weights only.
    np.testing.assert_allclose(proposal, host_map.whiten(fit[kept]), atol=1e-9)
    assert not args and not kwargs  # The default number of draws.
    np.testing.assert_array_equal(
      jax.random.key_data(key), jax.random.key_data(jax.random.split(jax.random.key(0))[0])
    )
    assert weighted.log_normalizer_ == 0.25
    # The integrand is the weighted network: here the network of the kept samples.
    np.testing.assert_allclose(
      np.asarray(log_density_fn(host_map.whiten(held_out))) + host_map.log_det,
      dropped.score_samples(held_out),
      rtol=1e-5,
      atol=1e-5,
    )
    np.testing.assert_allclose(
      weighted.score_samples(held_out) + 0.25, dropped.score_samples(held_out), rtol=1e-5, atol=1e-5
    )
  else:
    weighted = make_estimator().fit(fit, sample_weight=weights)
    dropped = make_estimator().fit(fit[kept])
    # float32 sums over a different padding (measured: at most 1.1e-5 apart on a score of 2.6).
    np.testing.assert_allclose(
      weighted.score_samples(held_out), dropped.score_samples(held_out), rtol=1e-5, atol=1e-5
    )
  np.testing.assert_allclose(
    weighted.grad_log_density(held_out), dropped.grad_log_density(held_out), rtol=1e-5, atol=1e-5
  )


def test_bounds_are_validated_at_fit_and_reach_the_kde():
  rng = np.random.default_rng(3)
  samples, queries = rng.exponential(size=(300, 1)), np.array([[-1.0], [0.05], [1.0], [3.0]])
  density = GaussianKDEDensity(bounds=(0.0, np.inf))
  assert sklearn_base.clone(density).get_params()["bounds"] == (0.0, np.inf)
  density.fit(samples)
  np.testing.assert_array_equal(
    density.score_samples(queries),
    kdeformer.kde.gaussian_kde(samples, queries, bounds=(0.0, np.inf)).log_density,
  )
  assert density.score_samples(queries)[0] == -np.inf
  assert np.all(density.sample(50) > 0)
  with pytest.raises(ValueError, match="exactly on the lower bound"):
    GaussianKDEDensity(bounds=(0.0, np.inf)).fit(np.vstack([samples, [[0.0]]]))
  with pytest.raises(ValueError, match=r"shape \(d,\) = \(1,\)"):
    GaussianKDEDensity(bounds=([0.0, 0.0], np.inf)).fit(samples)


def test_kdeformer_with_bounds_is_the_estimators_normalized_call_with_bounds():
  """A half-bounded first coordinate in d = 2: the other tests' compiled shapes (400 samples,
  200 queries, 8 draws), so only the runs cost time."""
  rng = np.random.default_rng(4)
  bounds = ([0.0, -np.inf], np.inf)
  draw = lambda n: np.c_[rng.gamma(2.0, size=n), rng.normal(size=n)]
  samples, queries = draw(NUM_FIT), draw(200)
  queries[0, 0] = -0.5  # Outside the support: density 0.
  density = KDEFormerDensity(bounds=bounds).fit(samples)
  assert density.log_normalizer_ != 0.0
  # The process's cached shipped model: a second Estimator would compile its programs again.
  expected = kdeformer.sklearn.load_estimator()(
    samples, queries, bounds=bounds, normalize=True, key=jax.random.key(0)
  )
  np.testing.assert_allclose(density.score_samples(queries), expected.log_density, atol=1e-5)
  # Scores reach ~8 here: float32 round-off of two compiled programs is relative (1.8e-5
  # measured at 7.87, 2.3e-6 relative).
  np.testing.assert_allclose(
    density.grad_log_density(queries), expected.score, rtol=1e-5, atol=1e-5
  )
  assert density.score_samples(queries)[0] == -np.inf
  assert np.all(np.isfinite(density.score_samples(queries)[1:]))
  draws = density.sample(8)
  assert draws.shape == (8, 2) and np.all(draws[:, 0] > 0)
  assert np.any(draws[:, 1] < 0)  # The unbounded coordinate is not mapped to a half-line.
