"""Tests of the inference API: shapes, batching, buckets, chunking, dtypes, gradients, errors."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kdeformer
from experiments.configs import tiny
from kdeformer import estimator as estimator_lib
from kdeformer import model as model_lib


@pytest.fixture(scope="module")
def est(random_estimator):
  """conftest.py's tiny model with perturbed random parameters, under this module's short name."""
  return random_estimator


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  return rng.normal(size=(100, 2)), rng.normal(size=(37, 2))


def test_shapes_unbatched_batched_and_default_queries(est, data):
  samples, queries = data
  out = est(samples, queries)
  assert out.log_density.shape == (37,) and out.score.shape == (37, 2)
  assert isinstance(out.log_density, jax.Array)
  out = est(samples)
  assert out.log_density.shape == (100,) and out.score.shape == (100, 2)
  batched = est(np.stack([samples, samples * 2]), np.stack([queries, queries * 2]))
  assert batched.log_density.shape == (2, 37) and batched.score.shape == (2, 37, 2)
  np.testing.assert_allclose(batched.log_density[0], out_for(est, samples, queries).log_density,
                             rtol=1e-5, atol=1e-5)


def out_for(est, samples, queries):
  return est(samples, queries)


def test_padding_to_bucket_equals_unpadded_prediction(est, data):
  samples, queries = data
  padded = est(samples, queries)  # n = 100 is padded to the 128 bucket.
  direct = estimator_lib.predict(
      est.model, est.params, jnp.asarray(samples, jnp.float32)[None],
      jnp.pad(jnp.asarray(queries, jnp.float32), [(0, 3), (0, 0)])[None],
      jnp.ones((1, 100), bool), query_chunk_size=40)
  np.testing.assert_allclose(padded.log_density, direct.log_density[0, :37], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(padded.score, direct.score[0, :37], rtol=1e-5, atol=1e-5)


def test_sixty_sample_sizes_compile_a_handful_of_times(random_estimator_factory, data):
  est = random_estimator_factory()
  rng = np.random.default_rng(1)
  queries = data[1]
  for n in range(10, 310, 5):  # Every bucket's range, a fifth of the sizes (suite time).
    est(rng.normal(size=(n, 2)), queries)
  assert est.num_compilations <= 4, est.num_compilations  # buckets 64, 128, 256, 512


def test_chunked_queries_equal_unchunked(random_estimator_factory, data):
  samples, queries = data
  whole = random_estimator_factory(query_chunk_size=512)(samples, queries)
  chunked = random_estimator_factory(query_chunk_size=8)(samples, queries)
  np.testing.assert_allclose(chunked.log_density, whole.log_density, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(chunked.score, whole.score, rtol=1e-5, atol=1e-5)


def test_blockwise_attention_equals_dense(random_estimator_factory, data):
  samples, queries = data
  dense = random_estimator_factory()(samples, queries)
  blockwise = random_estimator_factory(key_chunk_size=48)(samples, queries)
  np.testing.assert_allclose(blockwise.log_density, dense.log_density, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(blockwise.score, dense.score, rtol=1e-5, atol=1e-4)


def test_float64_and_jax_inputs(est, data):
  samples, queries = data
  a = est(samples.astype(np.float64), queries.astype(np.float64))
  b = est(jnp.asarray(samples, jnp.float32), jnp.asarray(queries, jnp.float32))
  # The same problem up to float32 rounding of the data (relative 6e-8).
  np.testing.assert_allclose(a.log_density, b.log_density, rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(a.score, b.score, rtol=1e-5, atol=1e-5)
  assert a.score.dtype == jnp.float32


def test_gradients_with_respect_to_samples_and_queries_are_finite(est, data):
  samples, queries = (jnp.asarray(x, jnp.float32) for x in data)
  grad_samples, grad_queries = jax.grad(
      lambda s, q: jnp.sum(est(s, q).log_density), argnums=(0, 1))(samples, queries)
  assert grad_samples.shape == samples.shape and grad_queries.shape == queries.shape
  assert np.all(np.isfinite(grad_samples)) and np.all(np.isfinite(grad_queries))
  assert np.any(grad_samples != 0) and np.any(grad_queries != 0)


@pytest.mark.parametrize("samples, queries, message", [
    (np.full((50, 2), np.nan), None, "NaN or infinite"),
    (np.ones((2, 3, 4, 5)), None, "shape"),
    (np.random.default_rng(0).normal(size=(50, 11)), None, "d <= 10"),
    (np.random.default_rng(0).normal(size=(3, 2)), None, "at least 4"),
    (np.ones((50, 2)), None, "identical"),
    (np.random.default_rng(0).normal(size=(50, 2)), np.zeros((5, 3)), "d = 3"),
    (np.random.default_rng(0).normal(size=(50, 2)), np.zeros((1, 5, 2)), "batched"),
    (np.random.default_rng(0).normal(size=(2, 50, 2)), np.zeros((3, 5, 2)), "batch sizes"),
])
def test_bad_input_raises_value_error(est, samples, queries, message):
  with pytest.raises(ValueError, match=message):
    est(samples, queries)


def test_kde_baseline_has_the_same_call_shape(data):
  samples, queries = data
  out = kdeformer.kde.gaussian_kde(samples, queries)
  assert isinstance(out, kdeformer.Estimate)
  assert out.log_density.shape == (37,) and out.score.shape == (37, 2)


def test_sub_quadratic_sample_mixing_defaults_and_switch(random_estimator_factory, data):
  """Default k: the config's max_self_attention_keys, else 4096; n <= k is the full model;
  n > k (the large-n path, here with small k and key blocks) gives finite, different output."""
  config = tiny.get_config()
  assert "max_self_attention_keys" not in config.model  # Older configs lack the field.
  # One resolution of the large-n settings, shared by training and inference.
  settings = model_lib.large_sample_settings(config)
  assert settings.max_self_attention_keys == model_lib.DEFAULT_MAX_SELF_ATTENTION_KEYS == 4096
  assert settings.max_embedded_samples == max(config.buckets)  # Held at the largest trained n.
  assert model_lib.build_model(config).max_self_attention_keys == 4096  # Training's network.
  config.model.max_self_attention_keys = 48
  config.model.max_embedded_samples = 4096
  assert model_lib.large_sample_settings(config) == model_lib.LargeSampleSettings(48, 4096)
  assert model_lib.large_sample_settings(
      config, max_self_attention_keys=0).max_self_attention_keys == 0
  samples, queries = data  # n = 100: bucket 128.
  full = random_estimator_factory(max_self_attention_keys=0)
  assert full.model.runtime.key_chunk_size == estimator_lib.DEFAULT_KEY_CHUNK
  expected = full(samples, queries)
  same = random_estimator_factory(max_self_attention_keys=128)(samples, queries)
  np.testing.assert_array_equal(same.score, expected.score)
  subset = random_estimator_factory(max_self_attention_keys=32, key_chunk_size=48,
                            query_chunk_size=16)(samples, queries)
  assert np.all(np.isfinite(subset.score)) and np.all(np.isfinite(subset.log_density))
  assert np.max(np.abs(subset.score - expected.score)) > 1e-4


def test_separate_encode_and_decode_programs_equal_the_single_program(random_estimator_factory):
  samples = np.random.default_rng(0).normal(size=(2, 100, 2))
  queries = np.random.default_rng(1).normal(size=(2, 20, 2))
  single = random_estimator_factory(perturb=0.0)
  split = random_estimator_factory(perturb=0.0, separate_encode_from=64)
  expected, got = single(samples, queries), split(samples, queries)
  assert split.num_compilations == 2  # The encoder and the decoder, not _predict.
  np.testing.assert_allclose(got.log_density, expected.log_density, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got.score, expected.score, rtol=1e-5, atol=1e-5)


def test_normalize_subtracts_the_importance_sampling_log_z(random_estimator_factory):
  from kdeformer import normalizing_constant  # pylint: disable=g-import-not-at-top
  est = random_estimator_factory(perturb=0.0)
  samples = np.random.default_rng(0).normal(size=(100, 2))
  queries = np.random.default_rng(1).normal(size=(20, 2))
  key = jax.random.key(3)
  got = est(samples, queries, normalize=True, key=key)
  expected, normalizer = normalizing_constant.normalized_log_density(
      functools.partial(est, key=jax.random.split(key)[1]), samples, queries,
      jax.random.split(key)[0])
  np.testing.assert_allclose(got.log_density, expected.log_density, rtol=1e-6)
  np.testing.assert_allclose(got.log_density, est(samples, queries).log_density - normalizer.log_z,
                             rtol=1e-5, atol=1e-5)
  batched = est(samples[None], queries[None], normalize=True, key=key)
  assert batched.log_density.shape == (1, 20) and np.all(np.isfinite(batched.log_density))
  with pytest.raises(ValueError, match="key"):
    est(samples, queries, normalize=True)


def test_fewer_samples_than_trained_warns_once(random_estimator_factory):
  est = random_estimator_factory()  # The tiny config: buckets (16, 32), min_fill 0.5 -> 8.
  assert est.smallest_trained_size() == 8
  samples = np.random.default_rng(0).normal(size=(6, 2))
  with pytest.warns(UserWarning, match="below the 8 this model was trained with"):
    est(samples)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    est(samples)  # Once per estimator.
    est(np.random.default_rng(1).normal(size=(40, 2)))  # n at or above: silent.


def test_chunk_defaults_follow_the_backend_and_keep_the_cpu_outputs(random_estimator_factory):
  """One place picks the blocks per backend; on the CPU the defaults are the former
  (512 queries, 1,024 keys), bit for bit, at an n beyond the key block."""
  assert estimator_lib.default_chunks("cpu") == (512, 1024)
  query_chunk, key_chunk = estimator_lib.default_chunks("gpu")
  assert key_chunk >= 4096 and query_chunk > 512  # Dense at every trained n, bigger blocks.
  default = random_estimator_factory()
  explicit = random_estimator_factory(query_chunk_size=512, key_chunk_size=1024)
  if jax.default_backend() == "cpu":
    assert (default.query_chunk_size, default.runtime) == (512, explicit.runtime)
  samples = np.random.default_rng(0).normal(size=(1500, 2)).astype(np.float32)
  queries = samples[:600]
  a, b = default(samples, queries), explicit(samples, queries)
  if jax.default_backend() == "cpu":
    np.testing.assert_array_equal(a.log_density, b.log_density)
    np.testing.assert_array_equal(a.score, b.score)
