"""kdeformer.sklearn: the estimators in clone, Pipeline, GridSearchCV and cross-validation.

The shipped model compiles one program per padded shape, so every KDEFormerDensity here fits
400 samples (the 512 bucket) and scores 200 queries: the shapes of a 3-fold split of 600.
"""

import subprocess
import sys

import jax
import numpy as np
import pytest
from sklearn import base as sklearn_base
from sklearn import exceptions as sklearn_exceptions
from sklearn import model_selection
from sklearn import pipeline
from sklearn import preprocessing
from sklearn.utils import estimator_checks

import kdeformer.sklearn
from kdeformer import distributions
from kdeformer.sklearn import GaussianKDEDensity
from kdeformer.sklearn import KDEFormerDensity

NUM_SAMPLES = 600  # Three folds of 400 training and 200 held-out points.
NUM_FIT = 400


def two_component_mixture():
  """A 2-D mixture with unequal weights and correlated, unequal covariances."""
  return distributions.gaussian_mixture(
      [0.4, 0.6], [[-1.5, 0.0], [1.5, 0.5]],
      [[[0.5, 0.2], [0.2, 0.4]], [[0.3, 0.0], [0.0, 0.8]]])


@pytest.fixture(scope="module")
def mixture_samples():
  """(600, 2) float32 draws of two_component_mixture()."""
  return np.asarray(two_component_mixture().sample(jax.random.key(0), NUM_SAMPLES))


@pytest.fixture(scope="module")
def fitted_kdeformer(mixture_samples):
  return KDEFormerDensity().fit(mixture_samples[:NUM_FIT])


def test_importing_kdeformer_does_not_import_sklearn():
  script = "import sys, kdeformer; print('sklearn' in sys.modules)"
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=True)
  assert result.stdout.strip() == "False", result.stdout


@pytest.mark.parametrize("estimator", [
    KDEFormerDensity(workdir="/some/workdir", rotations=3, normalize=False, random_state=7),
    GaussianKDEDensity(bandwidth=0.25, random_state=7),
])
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
          "check_sample_weight_equivalence_on_dense_data":
              "it fits 27 samples in d = 30: a KDE needs n > d for a full-rank covariance"},
      on_skip=None)  # Checks of optional inputs (pandas, the array API) skip when absent.


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
  return {"NaN": (with_nan, None, "NaN"),
          "1-D samples": (samples[:, 0], None, "2D array"),
          "one sample": (samples[:1], None, "1 sample"),
          "n <= d": (samples[:2], None, "n > d"),
          "identical samples": (np.ones_like(samples), None, "identical"),
          "negative weight": (samples, np.r_[-1.0, np.ones(n - 1)], "non-negative"),
          "all weights zero": (samples, np.zeros(n), "sum to zero"),
          "weights of the wrong length": (samples, np.ones(n - 1), "shape")}


@pytest.mark.parametrize("make_estimator", [KDEFormerDensity, GaussianKDEDensity])
@pytest.mark.parametrize("case", list(bad_fit_inputs(np.ones((10, 2)))))
def test_bad_input_raises_value_error(make_estimator, case, mixture_samples):
  data, weights, message = bad_fit_inputs(mixture_samples[:NUM_FIT])[case]
  with pytest.raises(ValueError, match=message):
    make_estimator().fit(data, sample_weight=weights)


def test_scoring_another_dimension_raises(fitted_kdeformer, mixture_samples):
  kde_fitted = GaussianKDEDensity().fit(mixture_samples)
  for fitted in (fitted_kdeformer, kde_fitted):
    with pytest.raises(ValueError, match="features"):
      fitted.score_samples(np.zeros((5, 3)))  # Fitted on d = 2.


def test_kdeformer_rejects_more_dimensions_than_the_model_has():
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="d <="):
    KDEFormerDensity().fit(rng.normal(size=(200, 11)))


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
  np.testing.assert_allclose(fitted_kdeformer.score_samples(queries), expected.log_density,
                             atol=1e-5)
  np.testing.assert_allclose(fitted_kdeformer.grad_log_density(queries), expected.score,
                             atol=1e-5)
  assert fitted_kdeformer.score(queries) == pytest.approx(
      float(np.sum(np.asarray(expected.log_density), dtype=np.float64)), abs=1e-3)


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
  model = pipeline.Pipeline([("scale", preprocessing.StandardScaler()),
                             ("density", KDEFormerDensity(normalize=False))]).fit(fit)
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
  search = model_selection.GridSearchCV(GaussianKDEDensity(),
                                        {"bandwidth": [0.1, 0.3, 1.0, "scott"]}, cv=3)
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
      name: model_selection.cross_val_score(estimator, mixture_samples, cv=folds).sum()
      / NUM_SAMPLES
      for name, estimator in [("kdeformer", KDEFormerDensity()), ("kde", GaussianKDEDensity())]}
  assert per_point["kdeformer"] > per_point["kde"] + 0.03, per_point


@pytest.mark.parametrize("make_estimator", [KDEFormerDensity, GaussianKDEDensity])
def test_sample_shapes_and_seeds(make_estimator, mixture_samples):
  estimator = make_estimator().fit(mixture_samples[:NUM_FIT])
  assert estimator.sample().shape == (1, 2)
  points = estimator.sample(7, random_state=1)
  assert points.shape == (7, 2)
  assert np.all(np.isfinite(points))
  np.testing.assert_array_equal(estimator.sample(7, random_state=1), points)
  assert not np.array_equal(estimator.sample(7, random_state=2), points)


@pytest.mark.parametrize("make_estimator", [KDEFormerDensity, GaussianKDEDensity])
def test_zero_sample_weights_drop_the_samples(make_estimator, mixture_samples):
  fit, held_out = mixture_samples[:NUM_FIT], mixture_samples[NUM_FIT:]
  weights = np.ones(NUM_FIT)
  weights[::4] = 0.0
  weighted = make_estimator().fit(fit, sample_weight=weights)
  dropped = make_estimator().fit(fit[weights > 0])
  # float32 sums over a different padding (measured: at most 1.1e-5 apart on a score of 2.6).
  np.testing.assert_allclose(weighted.score_samples(held_out), dropped.score_samples(held_out),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(weighted.grad_log_density(held_out),
                             dropped.grad_log_density(held_out), rtol=1e-5, atol=1e-5)


def test_bounds_are_validated_at_fit_and_reach_the_kde():
  rng = np.random.default_rng(3)
  samples, queries = rng.exponential(size=(300, 1)), np.array([[-1.0], [0.05], [1.0], [3.0]])
  density = GaussianKDEDensity(bounds=(0.0, np.inf))
  assert sklearn_base.clone(density).get_params()["bounds"] == (0.0, np.inf)
  density.fit(samples)
  np.testing.assert_array_equal(
      density.score_samples(queries),
      kdeformer.kde.gaussian_kde(samples, queries, bounds=(0.0, np.inf)).log_density)
  assert density.score_samples(queries)[0] == -np.inf
  assert np.all(density.sample(50) > 0)
  with pytest.raises(ValueError, match="exactly on the lower bound"):
    GaussianKDEDensity(bounds=(0.0, np.inf)).fit(np.vstack([samples, [[0.0]]]))
  with pytest.raises(ValueError, match=r"shape \(d,\) = \(1,\)"):
    GaussianKDEDensity(bounds=([0.0, 0.0], np.inf)).fit(samples)


def test_kdeformer_with_bounds_is_the_estimators_normalized_call_with_bounds():
  # 400 samples and 200 queries: the shapes the other KDEFormerDensity tests compile.
  rng = np.random.default_rng(4)
  samples, queries = rng.gamma(2.0, size=(NUM_FIT, 1)), rng.gamma(2.0, size=(200, 1))
  density = KDEFormerDensity(bounds=(0.0, np.inf)).fit(samples)
  # The process's cached shipped model: a second Estimator would compile its programs again.
  expected = kdeformer.sklearn.load_estimator()(samples, queries, bounds=(0.0, np.inf),
                                                normalize=True, key=jax.random.key(0))
  np.testing.assert_allclose(density.score_samples(queries), expected.log_density, atol=1e-5)
  np.testing.assert_allclose(density.grad_log_density(queries), expected.score, atol=1e-5)
  assert np.all(density.sample(7) > 0)  # 7 draws: the program test_sample_shapes compiles.
