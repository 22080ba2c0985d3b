"""Tests of kdeformer.training.data: exact whitened targets, padding, shapes, determinism.

Every example is a prior mixture in a random d <= max_dim, whitened with its own
samples' statistics. Its targets must be the mixture's exact log-density and score
carried into whitened coordinates: log f_w(z) = log f(x) - log|det W| and
score_w(z) = grad_z log f_w(z), with x = z W^-1 + mean. The score is checked
against a float64 finite difference of that log-density (scipy's, not the
library's), so a wrong Jacobian in the mapping cannot hide.
"""

import copy
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from kdeformer import distributions
from kdeformer import whitening
from kdeformer.training import data
from tests import test_linalg

MAX_DIM = 10
NUM_SAMPLES = 32
NUM_QUERIES = 16
BATCH = 8
# Dimensions of the exact-target examples: d = 1, padded ones and d = max_dim (no padding).
DIMS = (1, 2, 5, MAX_DIM)
KEY = jax.random.key(0)


# (config JSON, batch size, n, m) -> make_batch compiled once for that configuration.
_SAMPLERS = {}


def make_batch(
  config,
  key,
  batch_size: int = BATCH,
  num_samples: int = NUM_SAMPLES,
  num_queries: int = NUM_QUERIES,
) -> data.Batch:
  """data.make_batch for config (a config.data), jitted once per configuration."""
  signature = (config.to_json(), batch_size, num_samples, num_queries)
  if signature not in _SAMPLERS:
    _SAMPLERS[signature] = jax.jit(
      lambda key: data.make_batch(key, config, MAX_DIM, batch_size, num_samples, num_queries)
    )
  return _SAMPLERS[signature](key)


@pytest.fixture(scope="module")
def data_config(tiny_config):
  config = copy.deepcopy(tiny_config.data)
  config.dims = DIMS
  return config


@pytest.fixture(scope="module")
def batch(data_config):
  return make_batch(data_config, KEY)


@pytest.fixture(scope="module")
def recompute(data_config):
  """library_reference for data_config, compiled once."""
  return jax.jit(lambda key, example: library_reference(key, data_config, example))


def example_mixture_and_samples(key, config, dim, num_samples: int):
  """The mixture and the raw (unwhitened) samples of make_example(key, ...).

  make_example splits its key into 7 in a fixed order: dim, mixture, size, samples,
  queries, tail noise, tail pick.
  """
  _, mixture_key, _, sample_key, _, _, _ = jax.random.split(key, 7)
  mixture = distributions.sample_mixture_prior(
    mixture_key,
    dim,
    max_dim=MAX_DIM,
    min_modes=config.min_modes,
    max_modes=config.max_modes,
    mean_range=config.mean_range,
    min_variance=config.min_variance,
    max_variance=config.max_variance,
    weight_concentration=config.weight_concentration,
  )
  return mixture, mixture.sample(sample_key, num_samples)


def library_reference(key, config, example: data.Batch) -> tuple[jax.Array, ...]:
  """Recomputes an example from its key with kdeformer.distributions and .normalization.

  Returns:
    The mixture, the whitened recomputed samples (n, max_dim), the affine_map, and the
    exact whitened log-density (m,) and score (m, max_dim) at the example's queries.
  """
  dim = jnp.sum(example.dim_mask)
  mixture, raw_samples = example_mixture_and_samples(key, config, dim, NUM_SAMPLES)
  affine_map = whitening.fit_affine_map(raw_samples, example.sample_mask, example.dim_mask)
  queries = example.queries @ affine_map.unwhitening + affine_map.mean
  truth = mixture.log_prob_and_score(queries)
  log_density, score = whitening.whiten_estimate(truth.log_density, truth.score, affine_map)
  return (mixture, whitening.whiten(raw_samples, affine_map), affine_map, log_density, score)


def float64_log_density(mixture: distributions.GaussianMixture, dim: int):
  """The mixture's log-density on its first `dim` coordinates, in float64 with scipy."""
  components = []  # (log weight, normal) of the active components.
  for log_weight, mean, scale in zip(
    np.asarray(mixture.log_weights, np.float64),
    np.asarray(mixture.means, np.float64),
    np.asarray(mixture.scales, np.float64),
  ):
    if np.isfinite(log_weight):
      covariance = scale[:dim] @ scale[:dim].T
      components.append((log_weight, scipy.stats.multivariate_normal(mean[:dim], covariance)))

  def log_density(points):  # (m, dim) -> (m,)
    return scipy.special.logsumexp(
      [log_weight + np.reshape(normal.logpdf(points), -1) for log_weight, normal in components],
      axis=0,
    )

  return log_density


def central_difference_gradient(function, points, step: float = 1e-4):
  """grad of a scalar function of each row (m, d) -> (m, d), in float64."""
  gradient = np.zeros_like(points)
  for axis in range(points.shape[1]):
    offset = np.zeros(points.shape[1])
    offset[axis] = step
    gradient[:, axis] = (function(points + offset) - function(points - offset)) / (2 * step)
  return gradient


def test_examples_cover_d_of_one_padded_and_max_dim(batch):
  """The examples below must exercise d = 1, padded coordinates and d = max_dim."""
  dims = set(np.sum(np.asarray(batch.dim_mask), axis=1).tolist())
  assert dims <= set(DIMS)
  assert {1, MAX_DIM} <= dims and len(dims) >= 3, dims


@pytest.mark.parametrize("index", range(BATCH))
def test_targets_are_the_mixtures_exact_log_density_and_score_whitened(batch, recompute, index):
  example = jax.tree.map(lambda x: x[index], batch)
  mixture, samples, affine_map, log_density, score = recompute(
    jax.random.fold_in(KEY, index), example
  )
  example = jax.tree.map(np.asarray, example)
  dim, count = int(example.dim_mask.sum()), int(example.sample_mask.sum())
  # The recomputed samples are this example's: whitening them gives the batch's samples.
  np.testing.assert_allclose(example.samples[:count], samples[:count], atol=1e-5)
  # The truth at the data-coordinate queries, mapped through the normalisation.
  np.testing.assert_allclose(example.log_density, log_density, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(example.score, score, rtol=1e-4, atol=1e-4 * np.max(np.abs(score)))

  # Independently, in float64: log f_w(z) = log f(z U + mean) + 0.5 log det(Cov) with scipy's
  # log f, and score_w its finite-difference gradient in z.
  unwhitening = np.asarray(affine_map.unwhitening, np.float64)[:dim, :dim]
  mean = np.asarray(affine_map.mean, np.float64)[:dim]
  log_f = float64_log_density(mixture, dim)
  log_det_unwhitening = np.linalg.slogdet(unwhitening)[1]
  whitened_log_density = lambda z: log_f(z @ unwhitening + mean) + log_det_unwhitening
  whitened_queries = example.queries[:, :dim].astype(np.float64)
  np.testing.assert_allclose(
    example.log_density, whitened_log_density(whitened_queries), rtol=1e-4, atol=1e-3
  )
  expected_score = central_difference_gradient(whitened_log_density, whitened_queries)
  np.testing.assert_allclose(
    example.score[:, :dim], expected_score, rtol=1e-3, atol=1e-3 * np.max(np.abs(expected_score))
  )


def test_whitened_samples_have_zero_mean_and_identity_covariance(batch):
  for example in zip(*batch):
    example = data.Batch(*map(np.asarray, example))
    dim, count = int(example.dim_mask.sum()), int(example.sample_mask.sum())
    real = example.samples[:count, :dim].astype(np.float64)
    np.testing.assert_allclose(real.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.cov(real.T).reshape(dim, dim), np.eye(dim), atol=1e-3)


def test_masks_are_prefixes_and_padding_is_zero(batch, data_config):
  sample_mask, dim_mask = np.asarray(batch.sample_mask), np.asarray(batch.dim_mask)
  counts, dims = sample_mask.sum(axis=1), dim_mask.sum(axis=1)
  np.testing.assert_array_equal(sample_mask, np.arange(NUM_SAMPLES) < counts[:, None])
  np.testing.assert_array_equal(dim_mask, np.arange(MAX_DIM) < dims[:, None])
  assert np.all(counts >= int(data_config.min_fill * NUM_SAMPLES)) and np.all(counts <= NUM_SAMPLES)
  assert len(set(counts.tolist())) > 1  # The fill is drawn per example.
  assert set(dims.tolist()) <= set(data_config.dims)
  samples = np.asarray(batch.samples)
  assert np.all(samples[~sample_mask] == 0.0)  # Padded sample rows.
  for field in (samples, np.asarray(batch.queries), np.asarray(batch.score)):
    assert np.all(field[~np.broadcast_to(dim_mask[:, None, :], field.shape)] == 0.0)
  assert np.any(samples[sample_mask] != 0.0)


def test_shapes_follow_each_bucket(tiny_config):
  """make_batch's output shapes and dtypes at each bucket (traced, not compiled: the shapes are
  the program's, whatever its values)."""
  for num_samples, batch_size in zip(tiny_config.buckets, tiny_config.batch_sizes):
    make = functools.partial(
      data.make_batch,
      config=tiny_config.data,
      max_dim=MAX_DIM,
      batch_size=batch_size,
      num_samples=num_samples,
      num_queries=tiny_config.data.num_queries,
    )
    batch = jax.eval_shape(make, KEY)
    m = tiny_config.data.num_queries
    chex.assert_shape(
      list(batch),
      [
        (batch_size, num_samples, MAX_DIM),
        (batch_size, m, MAX_DIM),
        (batch_size, num_samples),
        (batch_size, MAX_DIM),
        (batch_size, m),
        (batch_size, m, MAX_DIM),
        (batch_size, m),
      ],
    )
    assert batch.sample_mask.dtype == jnp.bool_ and batch.dim_mask.dtype == jnp.bool_
    assert batch.in_tail.dtype == jnp.bool_
    assert all(
      x.dtype == jnp.float32 for x in (batch.samples, batch.queries, batch.log_density, batch.score)
    )


def test_batch_is_a_function_of_the_key_and_each_example_of_its_index(batch, data_config):
  # Training draws step s's batch from fold_in(key, s): the same step gives the same data.
  at_step = make_batch(data_config, jax.random.fold_in(KEY, 3))
  again = make_batch(data_config, jax.random.fold_in(jax.random.key(0), 3))
  jax.tree.map(np.testing.assert_array_equal, at_step, again)
  next_step = make_batch(data_config, jax.random.fold_in(KEY, 4))
  assert not np.array_equal(next_step.samples, at_step.samples)
  # Example i depends on (key, i) only, not on the batch size.
  smaller = make_batch(data_config, KEY, batch_size=2)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b[:2]), smaller, batch)


# The sampler-law comparison's batches: many problems, small ones.
LAW_BATCH, LAW_SAMPLES, LAW_QUERIES = 512, 16, 8


@pytest.fixture(scope="module")
def mixed_priors(data_config):
  """Half the problems from the broad prior (far tail queries too), drawn by the looped sampler
  (key 0) and by fast_sampling (key 1): {fast: (data-dependent loops, LAPACK calls, batch)}
  and the config.

  Shared by the three tests below: compiling the looped sampler is what costs (tens of seconds
  on a loaded 2-core CPU).
  """
  config = copy.deepcopy(data_config)
  config.broad_fraction = 0.5
  config.tail_scale_max = 4.0
  samplers = {}
  for fast, seed in ((False, 0), (True, 1)):
    config.fast_sampling = fast
    sampler = (
      jax.jit(
        lambda key: data.make_batch(key, config, MAX_DIM, LAW_BATCH, LAW_SAMPLES, LAW_QUERIES)
      )
      .lower(jax.random.key(seed))
      .compile()
    )
    text = sampler.as_text()
    samplers[fast] = (
      data_dependent_loops(text),
      test_linalg.lapack_calls(text),
      sampler(jax.random.key(seed)),
    )
  config.fast_sampling = False
  return config, samplers


def test_broad_prior_targets_are_its_exact_whitened_truth(mixed_priors):
  """The looped sampler's broad-prior problems (those its family draw picked) have as targets
  that WarpedMixture's exact log-density and score in the example's whitened frame."""
  config, samplers = mixed_priors
  _, _, batch = samplers[False]
  assert batch.in_tail.shape == (LAW_BATCH, LAW_QUERIES)

  @jax.jit
  def recompute(key, example):
    dim = jnp.sum(example.dim_mask)
    _, _, _, sample_key, _, _, _ = jax.random.split(key, 7)
    dist = distributions.sample_warped_prior(
      jax.random.fold_in(key, 7),
      dim,
      max_dim=MAX_DIM,
      min_modes=config.min_modes,
      max_modes=config.max_modes,
      mean_range=config.mean_range,
      min_variance=config.min_variance,
      max_variance=config.max_variance,
      weight_concentration=config.weight_concentration,
      **config.broad,
    )
    affine_map = whitening.fit_affine_map(
      dist.sample(sample_key, LAW_SAMPLES), example.sample_mask, example.dim_mask
    )
    queries = example.queries @ affine_map.unwhitening + affine_map.mean
    truth = dist.log_prob_and_score(queries)
    return whitening.whiten_estimate(truth.log_density, truth.score, affine_map)

  # make_example's family draw: uniform(fold_in(key, 8)) < broad_fraction.
  example_keys = [jax.random.fold_in(KEY, index) for index in range(32)]
  broad = [
    index
    for index, key in enumerate(example_keys)
    if float(jax.random.uniform(jax.random.fold_in(key, 8))) < config.broad_fraction
  ]
  assert 8 <= len(broad) <= 24, broad  # Both families among the first 32.
  for index in broad[:BATCH]:
    example = jax.tree.map(lambda x: x[index], batch)  # noqa: B023 (used here)
    log_density, score = recompute(example_keys[index], example)
    np.testing.assert_allclose(example.log_density, log_density, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(
      example.score, score, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(score)))
    )


def test_fast_sampling_draws_the_same_problems_in_law_without_gamma_loops(mixed_priors):
  """config.fast_sampling (loop-free gammas, one Gaussian draw shared by the two priors) gives
  batches of the same law (per-problem statistics of the targets agree in distribution) from
  a program without data-dependent while loops."""
  _, samplers = mixed_priors
  statistics, loops = [], []
  for fast in (False, True):
    num_loops, _, batch = samplers[fast]
    loops.append(num_loops)
    statistics.append(
      (
        np.asarray(jnp.sum(batch.dim_mask, axis=-1), np.float64),
        np.median(np.asarray(batch.log_density, np.float64), axis=1),
        np.median(np.asarray(jnp.linalg.norm(batch.score, axis=-1), np.float64), axis=1),
        np.max(np.abs(np.asarray(batch.queries, np.float64)), axis=(1, 2)),
      )
    )
  assert loops[1] == 0 < loops[0]
  slow, fast = statistics
  for a, b in zip(slow, fast):
    assert np.all(np.isfinite(b))
    # The looped sampler's rare non-finite problems (skipped by the train step) left out.
    assert scipy.stats.ks_2samp(a[np.isfinite(a)], b).pvalue > 0.01


def test_broad_prior_batches_call_lapack_once(mixed_priors):
  """The whitening's eigendecomposition only, in either sampler: the prior's rotations are
  LAPACK-free (two concurrent batched QR calls wedged a training run on 2 cores; see
  tests/test_linalg.py). Checked here on the programs the fixture compiles anyway."""
  _, samplers = mixed_priors
  for fast in (False, True):
    assert samplers[fast][1] == ["lapack_ssyevd_ffi"], fast


def data_dependent_loops(hlo_text: str) -> int:
  """While loops of a compiled HLO text without a trip count XLA knows (threefry's rolled
  rounds have one; jax.random.gamma's rejection loops do not)."""
  return sum(
    1 for line in hlo_text.splitlines() if " while(" in line and "known_trip_count" not in line
  )
