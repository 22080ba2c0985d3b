"""Bad input fails loudly with a ValueError naming the problem, for the KDE and the Estimator.

Also: the checks themselves (kdeformer.validation), and that good but awkward input (tiny or
huge scales, float64, d = 1 or d = max_dim) gives the answer the symmetries of the estimators
say it must (a NaN or an overflow would break them).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdeformer import kde
from kdeformer import validation
from kdeformer import whitening

DIM = 3


def good_samples(num: int = 50, dim: int = DIM, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=(num, dim)).astype(np.float32)


def with_entry(array, value):
  array = array.copy()
  array[3, 1] = value
  return array


def on_a_plane():
  samples = good_samples()
  samples[:, 2] = samples[:, 0] - 2.0 * samples[:, 1]
  return samples


# name -> (samples, queries, regex the message must match). Queries None = the samples.
COMMON_CASES = {
  "nan_samples": (with_entry(good_samples(), np.nan), None, r"samples .*NaN or infinite"),
  "inf_samples": (with_entry(good_samples(), -np.inf), None, r"samples .*NaN or infinite"),
  "nan_queries": (
    good_samples(),
    with_entry(good_samples(10), np.nan),
    r"queries .*NaN or infinite",
  ),
  "inf_queries": (
    good_samples(),
    with_entry(good_samples(10), np.inf),
    r"queries .*NaN or infinite",
  ),
  "samples_rank_1": (good_samples()[:, 0], None, r"samples must have shape .*got .*\(50,\)"),
  "samples_rank_4": (good_samples()[None, None], None, r"samples must have shape"),
  "queries_rank_1": (good_samples(), good_samples(10)[:, 0], r"queries must have shape"),
  "mismatched_d": (
    good_samples(),
    good_samples(10, dim=2),
    r"queries has d = 2 columns but the samples have d = 3",
  ),
  "one_sample": (good_samples(1), good_samples(10), r"samples has n = 1 rows; at least"),
  "identical_samples": (np.ones((20, DIM), np.float32), None, r"identical.*covariance is zero"),
  "samples_on_a_plane": (on_a_plane(), None, r"lower-dimensional subspace"),
  "constant_coordinate": (
    np.concatenate([good_samples()[:, :2], np.full((50, 1), 1.7e9)], axis=1),
    None,
    r"constant coordinate\(s\) \[2\]",
  ),
  "empty_samples": (np.zeros((0, DIM), np.float32), None, r"samples is empty .*at least"),
  "empty_queries": (good_samples(), np.zeros((0, DIM), np.float32), r"queries is empty"),
  "transposed": (good_samples().T.copy(), None, r"transposed"),
  "transposed_few_columns": (good_samples(8, dim=4).T.copy(), None, r"transposed"),
  "transposed_too_few_rows": (good_samples(6, dim=2).T.copy(), None, r"transposed"),
  "complex_dtype": (good_samples().astype(np.complex64), None, r"real numbers"),
  "no_columns": (np.zeros((10, 0), np.float32), None, r"zero columns"),
  # Squared deviations overflow float64: the correlation check said "subspace" (ratio nan).
  "overflowing_samples": (
    good_samples().astype(np.float64) * 1e300,
    None,
    r"too large for float64 statistics.*Rescale",
  ),
}

KDE_CASES = {
  "batched_samples": (good_samples()[None], None, r"samples must have shape \(n, d\)"),
  "batched_queries": (good_samples(), good_samples(10)[None], r"queries must have shape"),
}

ESTIMATOR_CASES = {
  "d_above_max_dim": (good_samples(dim=11), None, r"d = 11 columns; .*supports d <= 10"),
  "transposed_above_max_dim": (good_samples(100, dim=3).T.copy(), None, r"d <= 10.*transposed"),
  "batch_rank_mismatch": (
    good_samples()[None],
    good_samples(10),
    r"both must be unbatched .* or batched",
  ),
  "batch_size_mismatch": (
    np.stack([good_samples(), good_samples(seed=1)]),
    good_samples(10)[None],
    r"batch sizes must match",
  ),
  "nan_in_second_problem": (
    np.stack([good_samples(), with_entry(good_samples(), np.nan)]),
    None,
    r"NaN",
  ),
  "degenerate_second_problem": (
    np.stack([good_samples(), on_a_plane()]),
    None,
    r"batch member 1.*lower-dimensional subspace",
  ),
  # 1e12 standard deviations out: the shipped models returned NaN silently from ~1e11.
  "query_far_away": (
    good_samples(),
    good_samples(10).astype(np.float64) + 1e12,
    r"10 of 10 queries lie more than 1e\+08 sample standard deviations",
  ),
}


def kde_entry_points():
  return {
    "gaussian_kde": kde.gaussian_kde,
    "gaussian_kde_silverman": lambda s, q: kde.gaussian_kde(s, q, "silverman"),
    "sd_kde": lambda s, q: kde.sd_kde(s, q),
    "oracle_kde": lambda s, q: kde.oracle_kde(
      s, s if q is None else q, true_score=np.zeros(np.shape(s if q is None else q))
    ),
  }


@pytest.mark.parametrize("entry", list(kde_entry_points()))
@pytest.mark.parametrize("case", list(COMMON_CASES) + list(KDE_CASES))
def test_kde_rejects_bad_input(entry, case):
  samples, queries, message = {**COMMON_CASES, **KDE_CASES}[case]
  with pytest.raises(ValueError, match=message):
    kde_entry_points()[entry](samples, queries)


@pytest.mark.parametrize("case", list(COMMON_CASES) + list(ESTIMATOR_CASES))
def test_estimator_rejects_bad_input(random_estimator, case):
  samples, queries, message = {**COMMON_CASES, **ESTIMATOR_CASES}[case]
  with pytest.raises(ValueError, match=message):
    random_estimator(samples, queries)


def test_kde_rejects_non_positive_bandwidth():
  for factor in (0.0, -1.0, np.nan, np.inf):  # NaN gave a NaN estimate silently.
    with pytest.raises(ValueError, match="bandwidth factor must be a positive finite number"):
      kde.gaussian_kde(good_samples(), None, factor)
    with pytest.raises(ValueError, match="bandwidth factor must be a positive finite number"):
      kde.resample(good_samples(), 4, key=jax.random.key(0), bandwidth=factor)
  with pytest.raises(ValueError, match="bandwidth must be 'scott', 'silverman'"):
    kde.gaussian_kde(good_samples(), None, "scot")


def test_knobs_of_the_wrong_kind_are_refused(random_estimator):
  """A NaN or negative TTT learning rate gave NaN or nonsense (log f +31) silently; a zero
  chunk size a ZeroDivisionError; resample() with no points, negative points or no key JAX's
  TypeErrors (or an empty array)."""
  samples, queries = good_samples(), good_samples(10, seed=1)
  for rate in (np.nan, -1.0, 0.0):
    with pytest.raises(ValueError, match="positive finite learning rate"):
      random_estimator(samples, queries, ttt_steps=1, ttt_learning_rate=rate)
  with pytest.raises(ValueError, match="query_chunk_size=0: a chunk holds at least 1"):
    kde.gaussian_kde(samples, queries, query_chunk_size=0)
  with pytest.raises(ValueError, match="key_chunk_size=0: a chunk holds at least 1"):
    kde.gaussian_kde(samples, queries, key_chunk_size=0)
  for count in (0, -3):
    with pytest.raises(ValueError, match=f"num_samples={count}: draw at least one point"):
      kde.resample(samples, count, key=jax.random.key(0))
  with pytest.raises(ValueError, match=r"resample\(\) draws random points: pass key="):
    kde.resample(samples, 3, key=None)


def test_kde_baselines_reject_bad_scores_and_truths():
  """What the caller hands in besides the data: SD-KDE's score function's output and the
  oracle's truth (wrong shapes gave numpy's or JAX's broadcasting errors; NaN gave a NaN
  estimate, or an arbitrary oracle factor, silently)."""
  samples, queries = good_samples(), good_samples(10, seed=1)
  with pytest.raises(
    ValueError, match=r"score_fn\(samples\) must have shape \(50, 3\); got \(3,\)"
  ):
    kde.sd_kde(samples, queries, score_fn=lambda x: np.zeros(3))
  with pytest.raises(ValueError, match=r"score_fn\(samples\) has 150 NaN or infinite"):
    kde.sd_kde(samples, queries, score_fn=lambda x: np.full(np.shape(x), np.nan))
  with pytest.raises(ValueError, match=r"true_score must have shape \(10, 3\); got \(9, 3\)"):
    kde.oracle_kde(samples, queries, true_score=np.zeros((9, DIM)))
  with pytest.raises(ValueError, match=r"true_log_density has 1 NaN or infinite"):
    kde.oracle_kde(
      samples,
      queries,
      true_log_density=with_entry(np.zeros((10, 2)), np.nan)[:, 1],
      criterion="log_density",
    )


def test_shipped_model_is_finite_up_to_the_query_distance_limit(general_model):
  """Inside the refused region's edge the output is finite and keeps growing like |z|^2
  (the reason for the limit: NaN from ~1e11 standard deviations, measured 2026-12-06)."""
  samples = np.random.default_rng(0).normal(size=(200, 2))
  host_map = whitening.fit_host_whitening(samples)
  directions = np.array([[1.0, 0.0], [0.0, -1.0], [0.6, 0.8]])
  near, edge = (host_map.unwhiten(directions * radius) for radius in (1e7, 0.99e8))
  out_near, out_edge = general_model(samples, near), general_model(samples, edge)
  chex.assert_tree_all_finite((out_near, out_edge))
  ratio = np.asarray(out_edge.log_density) / np.asarray(out_near.log_density)
  np.testing.assert_allclose(ratio, 99.0**2 / 10**2, rtol=0.05)  # Measured ~ -1.5 |z|^2.
  with pytest.raises(ValueError, match="queries lie more than"):
    general_model(samples, host_map.unwhiten(directions * 1.01e8))


def assert_scaled_copy(scaled, reference, scale: float, dim: int):
  """scaled is the estimate on data x * scale + shift: log f - d log(scale), score / scale."""
  chex.assert_tree_all_finite(reference)
  np.testing.assert_allclose(
    scaled.log_density, reference.log_density - dim * np.log(scale), rtol=1e-4, atol=1e-4
  )
  np.testing.assert_allclose(
    np.asarray(scaled.score) * scale,
    reference.score,
    rtol=1e-3,
    atol=1e-3 * np.max(np.abs(reference.score)),
  )


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_kde_at_tiny_and_huge_scales_is_the_scaled_unit_estimate(scale):
  samples, queries = good_samples(), good_samples()[:10] * 1.1
  scaled = kde.gaussian_kde(samples * scale + 3.0 * scale, queries * scale + 3.0 * scale)
  assert_scaled_copy(scaled, kde.gaussian_kde(samples, queries), scale, DIM)


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_estimator_at_tiny_and_huge_scales_is_the_scaled_unit_estimate(random_estimator, scale):
  samples, queries = good_samples(), good_samples()[:10] * 1.1
  scaled = random_estimator(samples * scale + 3.0 * scale, queries * scale + 3.0 * scale)
  chex.assert_shape((scaled.log_density, scaled.score), [(10,), (10, DIM)])
  assert_scaled_copy(scaled, random_estimator(samples, queries), scale, DIM)


@pytest.mark.parametrize("dim", [1, 10])
def test_estimator_accepts_every_supported_dim_in_float64(random_estimator, dim):
  samples = good_samples(dim=dim)
  estimate = random_estimator(samples.astype(np.float64))
  chex.assert_shape((estimate.log_density, estimate.score), [(50,), (50, dim)])
  # float64 input is the float32 problem; translated data the same density (whitening is exact).
  single = random_estimator(samples)
  np.testing.assert_array_equal(estimate.log_density, single.log_density)
  np.testing.assert_array_equal(estimate.score, single.score)
  assert_scaled_copy(random_estimator(samples + 2.0), estimate, 1.0, dim)


def test_checks_are_skipped_under_tracing():
  """Traced values are unknown; a jitted caller must not fail on tracers."""
  nan_samples = jnp.full((5, 2), jnp.nan)
  with pytest.raises(ValueError, match="NaN"):
    validation.check_samples(nan_samples)
  checked = jax.jit(lambda x: (validation.check_samples(x), x)[1])
  passed = checked(nan_samples)
  chex.assert_shape(passed, (5, 2))
  assert np.all(np.isnan(passed))  # The values went through untouched.


def test_check_points_accepts_good_input():
  validation.check_points(good_samples(), "samples", min_rows=2, dim=DIM, max_dim=10)
  validation.check_samples(good_samples())
  validation.check_samples(np.stack([good_samples(), good_samples(seed=1)]), max_dim=10)
  with pytest.raises(ValueError, match="must have shape \\(n, d\\);"):
    validation.check_points(good_samples()[None], "samples", batched_ok=False)
