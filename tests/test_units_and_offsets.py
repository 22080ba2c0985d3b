"""Units and offsets cost nothing: data x * scale + shift gives the unit answer, mapped exactly.

Both estimators are affine equivariant, so on y = x * s + c the log-density is the unit one
minus d log s and the score the unit one divided by s. The float32 pipeline alone broke this
(shifted by 1e8: NaN), so the data are whitened in float64 first; these tests pin it over
scales 1e-3..1e9 and offsets up to timestamps in seconds (1.7e9), on every path: the model,
the KDE, SD-KDE, the oracle-bandwidth KDE, log Z by importance sampling and by quadrature,
the plug-in functionals, normalize=True, sampling, bounds, and mixed units per coordinate.
"""

import jax
import numpy as np
import pytest

from kdeformer import functionals
from kdeformer import kde
from kdeformer import log_normalizer
from kdeformer import quadrature
from kdeformer import validation
from kdeformer import whitening

DIM = 2
TIMESTAMP = 1.7e9
# (scale, shift): units from 1e-3 to 1e9, offsets up to a timestamp. The last keeps ~4,000
# float64 ulps per standard deviation: 2e-4 of relative precision is all the data has.
AFFINE_MAPS = [(1e-3, 0.0), (1e3, -5e3), (1.0, 1e8), (1e9, TIMESTAMP), (1e-3, TIMESTAMP)]
UNIT_SAMPLES = np.random.default_rng(0).normal(size=(300, DIM))
UNIT_QUERIES = np.random.default_rng(1).normal(size=(16, DIM)) * 1.2


def tolerance(scale, shift):
  """What float64 data can hold: the relative spacing of the shifted values, plus float32."""
  return 1e-4 + 4 * np.finfo(np.float64).eps * (abs(shift) + 3 * scale) / scale


def assert_affine_copy(mapped, unit, scale, shift, dim=DIM):
  atol = tolerance(scale, shift)
  np.testing.assert_allclose(
    np.asarray(mapped.log_density) + dim * np.log(scale),
    unit.log_density,
    atol=10 * atol,
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    np.asarray(mapped.score) * scale,
    unit.score,
    atol=10 * atol * np.max(np.abs(unit.score)),
    rtol=1e-4,
  )


@pytest.mark.parametrize("scale, shift", AFFINE_MAPS)
def test_kde_is_unchanged_by_units_and_offsets(scale, shift):
  unit = kde.gaussian_kde(UNIT_SAMPLES, UNIT_QUERIES)
  mapped = kde.gaussian_kde(UNIT_SAMPLES * scale + shift, UNIT_QUERIES * scale + shift)
  assert_affine_copy(mapped, unit, scale, shift)


@pytest.mark.parametrize("scale, shift", AFFINE_MAPS)
def test_sd_kde_is_unchanged_by_units_and_offsets(scale, shift):
  """Emp-SD-KDE, and SD-KDE with the exact score of the data as given (float64, so the
  score function can subtract the offset). In float32, shifted by 1e6 the log-density was
  0.34 off; shifted by 1e8 the samples were refused as all identical."""
  unit = kde.sd_kde(UNIT_SAMPLES, UNIT_QUERIES)
  mapped = kde.sd_kde(UNIT_SAMPLES * scale + shift, UNIT_QUERIES * scale + shift)
  assert_affine_copy(mapped, unit, scale, shift)
  unit = kde.sd_kde(UNIT_SAMPLES, UNIT_QUERIES, score_fn=lambda x: -x)
  mapped = kde.sd_kde(
    UNIT_SAMPLES * scale + shift,
    UNIT_QUERIES * scale + shift,
    score_fn=lambda y: -(y - shift) / scale**2,
  )
  assert_affine_copy(mapped, unit, scale, shift)


@pytest.mark.parametrize("scale, shift", AFFINE_MAPS)
def test_oracle_kde_picks_the_same_factor_and_estimate_in_any_units(scale, shift):
  """The truth is given in data coordinates and the errors are measured there (in float32,
  shifted by 1e6 the estimate was 0.037 off)."""
  unit_log_density = -0.5 * np.sum(UNIT_QUERIES**2, axis=1) - np.log(2 * np.pi)
  for criterion, truth in [
    ("score", {"true_score": -UNIT_QUERIES}),
    ("log_density", {"true_log_density": unit_log_density}),
  ]:
    mapped_truth = (
      {"true_score": -UNIT_QUERIES / scale}
      if criterion == "score"
      else {"true_log_density": unit_log_density - DIM * np.log(scale)}
    )
    unit, unit_factor = kde.oracle_kde(UNIT_SAMPLES, UNIT_QUERIES, criterion=criterion, **truth)
    mapped, factor = kde.oracle_kde(
      UNIT_SAMPLES * scale + shift,
      UNIT_QUERIES * scale + shift,
      criterion=criterion,
      **mapped_truth,
    )
    assert float(factor) == float(unit_factor), criterion
    assert_affine_copy(mapped, unit, scale, shift)


@pytest.mark.parametrize("scale, shift", AFFINE_MAPS)
def test_log_normalizer_of_a_kde_is_unchanged_by_units_and_offsets(scale, shift):
  """The importance draws go back to data coordinates in float64. In float32, at a timestamp
  offset with unit spread (draws 128 apart) log Z of the normalised KDE came out 3.34."""
  key = jax.random.key(6)
  mapped_samples = UNIT_SAMPLES * scale + shift
  unit = log_normalizer.log_normalizer(
    lambda points: kde.gaussian_kde(UNIT_SAMPLES, points).log_density, UNIT_SAMPLES, key, 2048
  )
  mapped = log_normalizer.log_normalizer(
    lambda points: kde.gaussian_kde(mapped_samples, points).log_density, mapped_samples, key, 2048
  )
  assert abs(float(unit.log_z)) < 3 * float(unit.standard_error)  # The KDE integrates to 1.
  assert float(mapped.log_z) == pytest.approx(float(unit.log_z), abs=10 * tolerance(scale, shift))


@pytest.mark.parametrize("scale, shift", AFFINE_MAPS)
def test_quadrature_grids_are_the_unit_grids_mapped_in_float64(scale, shift):
  """The box and the sinh grid, nodes and log weights, and the box's log Z of a KDE (0).
  With float32 nodes, a grid at a timestamp offset had nodes 128 apart."""
  mapped_samples = UNIT_SAMPLES * scale + shift
  for make_grid in (
    lambda x: quadrature.grid_points(x, 33),
    lambda x: quadrature.sinh_grid_points(x, 33, 50.0),
  ):
    (unit, unit_log_w), (mapped, log_w) = make_grid(UNIT_SAMPLES), make_grid(mapped_samples)
    # The sinh grid reaches 50 standard deviations: there the node is a sum of terms 50x the
    # data's spread, each rounded at the offset (measured: 8 ulps of 1.7e9 at scale 1e-3).
    atol = 2 * tolerance(scale, shift)
    np.testing.assert_allclose((mapped - shift) / scale, unit, rtol=atol, atol=atol)
    np.testing.assert_allclose(log_w - DIM * np.log(scale), unit_log_w, atol=atol)
  log_z = quadrature.grid_log_normalizer(
    lambda points: kde.gaussian_kde(mapped_samples, points).log_density, mapped_samples, 65
  )
  assert float(log_z) == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize("scale, shift", AFFINE_MAPS)
def test_plug_in_functionals_change_only_by_the_units(scale, shift):
  """Entropy + d log s, Fisher information / s^2. The folds were rounded to float32 before
  the estimator saw them: shifted by 1e6 the Fisher information was 0.8% off, by 1e8 the
  samples were refused as all identical."""
  key = jax.random.key(7)
  unit = functionals.plug_in_functionals(kde.gaussian_kde, UNIT_SAMPLES, key)
  mapped = functionals.plug_in_functionals(kde.gaussian_kde, UNIT_SAMPLES * scale + shift, key)
  atol = 10 * tolerance(scale, shift)
  assert mapped.entropy - DIM * np.log(scale) == pytest.approx(unit.entropy, abs=atol)
  assert mapped.fisher_information * scale**2 == pytest.approx(unit.fisher_information, rel=atol)


@pytest.mark.parametrize("scale, shift", AFFINE_MAPS)
def test_model_is_unchanged_by_units_and_offsets(random_estimator, scale, shift):
  unit = random_estimator(UNIT_SAMPLES, UNIT_QUERIES)
  mapped = random_estimator(UNIT_SAMPLES * scale + shift, UNIT_QUERIES * scale + shift)
  assert_affine_copy(mapped, unit, scale, shift)


def test_model_with_normalize_is_unchanged_by_an_offset(random_estimator):
  key = jax.random.key(0)
  unit = random_estimator(UNIT_SAMPLES, UNIT_QUERIES, normalize=True, key=key)
  mapped = random_estimator(
    UNIT_SAMPLES * 1e3 + TIMESTAMP, UNIT_QUERIES * 1e3 + TIMESTAMP, normalize=True, key=key
  )
  assert_affine_copy(mapped, unit, 1e3, TIMESTAMP)


def test_mixed_units_per_coordinate_are_accepted_and_exact(random_estimator):
  """R's `rock` in miniature: a timestamp beside a ratio and an area, correlated.

  The covariance's eigenvalue ratio is ~1e-25 (a covariance check refuses it as singular);
  the correlation matrix is well conditioned. The KDE is equivariant under per-coordinate
  units; the model only up to a rotation (whitening leaves an orthogonal map), so it must
  give what it gives on the same data whitened exactly (mean 0, covariance I) beforehand.
  """
  rng = np.random.default_rng(2)
  unit = rng.normal(size=(200, 3)) @ np.array([[1.0, 0.6, 0.0], [0.0, 0.8, 0.3], [0.0, 0.0, 1.0]])
  scales, shifts = np.array([1e4, 1e-2, 1e3]), np.array([TIMESTAMP, 0.3, 5e3])
  samples, queries = unit * scales + shifts, unit[:10] * 1.1 * scales + shifts
  covariance = np.cov((unit * scales).T)
  assert np.linalg.eigvalsh(covariance)[0] / np.linalg.eigvalsh(covariance)[-1] < 1e-9
  validation.check_samples(samples)  # Would raise if the check had units.

  reference = kde.gaussian_kde(unit, unit[:10] * 1.1)
  mapped = kde.gaussian_kde(samples, queries)
  np.testing.assert_allclose(
    np.asarray(mapped.log_density) + np.sum(np.log(scales)), reference.log_density, atol=2e-4
  )
  np.testing.assert_allclose(
    np.asarray(mapped.score) * scales, reference.score, atol=2e-4 * np.max(np.abs(reference.score))
  )

  host_map = whitening.fit_host_whitening(samples)
  whitened = random_estimator(host_map.whiten(samples), host_map.whiten(queries))
  mapped = random_estimator(samples, queries)
  np.testing.assert_allclose(mapped.log_density, whitened.log_density + host_map.log_det, atol=1e-4)
  np.testing.assert_allclose(
    np.asarray(mapped.score) @ host_map.unwhitening,
    whitened.score,
    atol=1e-4 * np.max(np.abs(whitened.score)),
  )


def test_model_samples_keep_their_offset(random_estimator):
  """Draws from timestamped data come back in float64, at the data's location and spread."""
  key = jax.random.key(3)
  unit = random_estimator.sample(UNIT_SAMPLES, 64, key=key, num_steps=4)
  mapped = random_estimator.sample(UNIT_SAMPLES * 1e3 + TIMESTAMP, 64, key=key, num_steps=4)
  assert mapped.points.dtype == np.float64
  np.testing.assert_allclose((mapped.points - TIMESTAMP) / 1e3, unit.points, atol=1e-3)
  assert mapped.acceptance_rate == pytest.approx(unit.acceptance_rate, abs=0.02)


@pytest.mark.parametrize("scale, shift", AFFINE_MAPS)
def test_kde_resample_is_the_unit_draws_mapped_in_float64(scale, shift):
  """The same key gives the unit draws times s plus c, in float64 (as the model's draws).
  Mapped back in float32, draws at a timestamp were 128 apart."""
  key = jax.random.key(4)
  unit = kde.resample(UNIT_SAMPLES, 400, key=key)
  mapped = kde.resample(UNIT_SAMPLES * scale + shift, 400, key=key)
  assert mapped.dtype == np.float64
  np.testing.assert_allclose((mapped - shift) / scale, unit, atol=10 * tolerance(scale, shift))


def test_bounds_at_an_offset_are_exact(random_estimator):
  """A positive duration measured from a timestamp: log(x - lower) in float64."""
  positive = np.random.default_rng(5).exponential(size=(200, 1))
  queries = np.array([[0.1], [0.5], [2.0]])
  unit = random_estimator(positive, queries, bounds=(0.0, np.inf))
  mapped = random_estimator(positive + TIMESTAMP, queries + TIMESTAMP, bounds=(TIMESTAMP, np.inf))
  # Samples within 1.7e9 * eps = 4e-7 of the bound change their logs: loose but finite.
  np.testing.assert_allclose(mapped.log_density, unit.log_density, atol=1e-3)


def test_host_whitening_is_the_symmetric_inverse_square_root():
  """The float64 fit equals Cov^{-1/2} (symmetric), the map the network's whitening uses."""
  samples = UNIT_SAMPLES @ np.array([[2.0, 0.0], [1.5, 0.3]]) + 4.0
  host_map = whitening.fit_host_whitening(samples)
  eigenvalues, eigenvectors = np.linalg.eigh(np.cov(samples.T))
  expected = eigenvectors @ np.diag(eigenvalues**-0.5) @ eigenvectors.T
  np.testing.assert_allclose(host_map.whitening, expected, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(host_map.unwhitening @ expected, np.eye(2), atol=1e-12)
  assert host_map.log_det == pytest.approx(-0.5 * np.sum(np.log(eigenvalues)), rel=1e-12)
  whitened = host_map.whiten(samples)
  np.testing.assert_allclose(np.cov(whitened.T), np.eye(2), atol=1e-12)
  np.testing.assert_allclose(host_map.unwhiten(whitened), samples, atol=1e-12)
