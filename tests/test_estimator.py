"""Tests of the inference API: shapes, batching, buckets, chunking, dtypes, gradients, errors."""

import dataclasses
import functools
import logging
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import tiny
import kdeformer
from kdeformer import attention
from kdeformer import estimator as estimator_lib
from kdeformer import inference
from kdeformer import model as model_lib
from kdeformer import networks
from kdeformer import problem as problem_lib


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
  np.testing.assert_allclose(
    batched.log_density[0], out_for(est, samples, queries).log_density, rtol=1e-5, atol=1e-5
  )


def out_for(est, samples, queries):
  return est(samples, queries)


def test_padding_to_bucket_equals_unpadded_prediction(est, data):
  samples, queries = data
  padded = est(samples, queries)  # n = 100 is padded to the 128 bucket.
  direct = inference.predict(
    est.model,
    est.params,
    jnp.asarray(samples, jnp.float32)[None],
    jnp.pad(jnp.asarray(queries, jnp.float32), [(0, 3), (0, 0)])[None],
    jnp.ones((1, 100), bool),
    query_chunk_size=40,
  )
  np.testing.assert_allclose(padded.log_density, direct.log_density[0, :37], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(padded.score, direct.score[0, :37], rtol=1e-5, atol=1e-5)


def test_sixty_sample_sizes_compile_a_handful_of_times(random_estimator_factory, data):
  est = random_estimator_factory()
  rng = np.random.default_rng(1)
  queries = data[1]
  for n in range(10, 310, 5):  # Every bucket's range, a fifth of the sizes (suite time).
    est(rng.normal(size=(n, 2)), queries)
  # Buckets 64, 128, 256, 512, each an encoder and a decoder program.
  assert est.num_compilations <= 8, est.num_compilations


def test_a_new_size_in_a_compiled_bucket_traces_nothing(random_estimator_factory, caplog):
  """Padding, casting and slicing run on the host: eager jax.numpy traced and compiled about
  ten small programs for every new n or m (0.3 s of CPU each time on the 2-core machine)."""
  est = random_estimator_factory()
  rng = np.random.default_rng(2)
  est(rng.normal(size=(100, 2)), rng.normal(size=(20, 2)))  # Bucket 128, one query block.
  est.fit(rng.normal(size=(100, 2)))(rng.normal(size=(20, 2)))
  caplog.set_level(logging.WARNING)
  with jax.log_compiles(True):
    called = est(rng.normal(size=(101, 2)), rng.normal(size=(21, 2)))
    fitted = est.fit(rng.normal(size=(102, 2)))(rng.normal(size=(19, 2)))
  traced = [r.getMessage() for r in caplog.records if "tracing" in r.getMessage().lower()]
  assert not traced, traced
  for out, m in [(called, 21), (fitted, 19)]:  # Still the public output type and shapes.
    assert isinstance(out.log_density, jax.Array) and out.log_density.shape == (m,)
    assert isinstance(out.score, jax.Array) and out.score.shape == (m, 2)


def test_chunked_queries_equal_unchunked(est, random_estimator_factory, data):
  samples, queries = data
  assert est.query_chunk_size >= len(queries)  # The module's estimator: one chunk.
  whole = est(samples, queries)
  chunked = random_estimator_factory(query_chunk_size=8)(samples, queries)
  np.testing.assert_allclose(chunked.log_density, whole.log_density, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(chunked.score, whole.score, rtol=1e-5, atol=1e-5)


def test_blockwise_attention_equals_dense(est, random_estimator_factory, data):
  samples, queries = data
  assert est.runtime.key_chunk_size >= 128  # The module's estimator: n = 100 in one key block.
  dense = est(samples, queries)
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
    lambda s, q: jnp.sum(est(s, q).log_density), argnums=(0, 1)
  )(samples, queries)
  assert grad_samples.shape == samples.shape and grad_queries.shape == queries.shape
  assert np.all(np.isfinite(grad_samples)) and np.all(np.isfinite(grad_queries))
  assert np.any(grad_samples != 0) and np.any(grad_queries != 0)


@pytest.mark.parametrize(
  "samples, queries, message",
  [
    (np.full((50, 2), np.nan), None, "NaN or infinite"),
    (np.ones((2, 3, 4, 5)), None, "shape"),
    (np.random.default_rng(0).normal(size=(50, 11)), None, "d <= 10"),
    (np.random.default_rng(0).normal(size=(3, 2)), None, "at least 4"),
    (np.ones((50, 2)), None, "identical"),
    (np.random.default_rng(0).normal(size=(50, 2)), np.zeros((5, 3)), "d = 3"),
    (np.random.default_rng(0).normal(size=(50, 2)), np.zeros((1, 5, 2)), "batched"),
    (np.random.default_rng(0).normal(size=(2, 50, 2)), np.zeros((3, 5, 2)), "batch sizes"),
  ],
)
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
  settings = model_lib.model_config(config)
  assert settings.max_self_attention_keys == model_lib.DEFAULT_MAX_SELF_ATTENTION_KEYS == 4096
  assert settings.max_embedded_samples == max(config.buckets)  # Held at the largest trained n.
  assert networks.build_model(config).config.max_self_attention_keys == 4096  # Training's.
  config.model.max_self_attention_keys = 48
  config.model.max_embedded_samples = 4096
  resolved = model_lib.model_config(config)
  assert (resolved.max_self_attention_keys, resolved.max_embedded_samples) == (48, 4096)
  samples, queries = data  # n = 100: bucket 128.
  full = random_estimator_factory(max_self_attention_keys=0)
  assert full.model.runtime.key_chunk_size == attention.KEY_CHUNK
  expected = full(samples, queries)
  same = random_estimator_factory(max_self_attention_keys=128)(samples, queries)
  np.testing.assert_array_equal(same.score, expected.score)
  subset = random_estimator_factory(
    max_self_attention_keys=32, key_chunk_size=48, query_chunk_size=16
  )(samples, queries)
  assert np.all(np.isfinite(subset.score)) and np.all(np.isfinite(subset.log_density))
  assert np.max(np.abs(subset.score - expected.score)) > 1e-4


@pytest.fixture(scope="module")
def untrained(random_estimator_factory):
  """The tiny model as initialised (perturb=0): its kernel bank's gated KDEs, heads at zero."""
  return random_estimator_factory(perturb=0.0)


def test_separate_encode_and_decode_programs_equal_the_single_program(random_estimator_factory):
  """A plain call encodes, then decodes (two programs, as `fit`); test-time training and
  rotations run one program, `inference.predict`, which must agree."""
  samples = np.random.default_rng(0).normal(size=(2, 100, 2))
  queries = np.random.default_rng(1).normal(size=(2, 20, 2))
  split = random_estimator_factory(perturb=0.0)
  got = split(samples, queries)
  assert split.num_compilations == 2  # The encoder and the decoder, not _predict.
  problem = split.prepare(samples)
  expected = problem.run(
    lambda s, q, w: split.predict(s, q, w, ttt_steps=0, ttt_learning_rate=0.0, rotations=None),
    queries,
  )
  assert split.num_compilations == 3
  np.testing.assert_allclose(got.log_density, expected.log_density, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got.score, expected.score, rtol=1e-5, atol=1e-5)


def test_untrained_model_is_its_kernel_banks_gated_mixture_of_kdes(untrained, data):
  """The closed form of the initialised network: every query's gates are the softmax of the
  initial gate logits (INITIAL_GATE_LOGIT on the initial bandwidth, 0 on the others) and the
  heads are zero, so log f = sum_k w_k log KDE_k and score = sum_k w_k score_k, where KDE_k is
  the Gaussian KDE with bandwidth factor c_k n^(-1/(d+4)) (scipy's convention, as
  kdeformer.kde.gaussian_kde: the symmetric whitening makes the two the same).

  It is therefore close to, not exactly, the Scott KDE (c = 1.0, weight e^6 / (e^6 + 5) =
  0.988): the other five bandwidths keep 0.0024 each of the log-density, which matters where
  the narrowest kernel's log-density is far below Scott's (between and beyond the samples).
  Measured 2026-12-05 (these data, d = 2 and d = 1): against the mixture, max |d log f| /
  max |log f| 1.1e-6 and 9.3e-7 (max |log f| 373 and 262, in the far tail), max |d score| /
  max |score| 9.6e-7 and 8.1e-7; against Scott's KDE, median |d log f| 0.0088 and 0.0023,
  max 32 and 22 (the tail queries).
  """
  config = untrained.model_config
  bandwidths = config.kernel_bandwidths
  assert not config.tail_base_dofs  # Tail bases would add gated-off terms.
  logits = np.zeros(len(bandwidths))
  logits[config.initial_bandwidth_index % len(bandwidths)] = model_lib.INITIAL_GATE_LOGIT
  gate = np.exp(logits) / np.sum(np.exp(logits))
  rng = np.random.default_rng(5)
  samples, queries = data
  # Skewed, correlated 2-D data; queries near the samples and in the tails.
  samples = np.where(samples > 0, samples, 0.3 * samples) @ np.array([[1.0, 0.6], [0.0, 0.5]])
  queries = np.concatenate(
    [samples[:27] + 0.3 * rng.normal(size=(27, 2)), 3.0 * rng.normal(size=(10, 2))]
  )
  for dim in (2, 1):
    s, q = samples[:, :dim], queries[:, :dim]
    out = untrained(s, q)
    factor = len(s) ** (-1.0 / (dim + 4))
    kdes = [kdeformer.kde.gaussian_kde(s, q, c * factor) for c in bandwidths]
    log_density = sum(w * np.asarray(k.log_density, np.float64) for w, k in zip(gate, kdes))
    score = sum(w * np.asarray(k.score, np.float64) for w, k in zip(gate, kdes))
    # float32 sums: 1e-6 of the largest value (measured above); a gate weight off by 1e-3 or
    # a wrong bandwidth moves the far-tail log-density by 1e-3 of it or more.
    np.testing.assert_allclose(
      out.log_density, log_density, atol=1e-5 * np.max(np.abs(log_density))
    )
    np.testing.assert_allclose(out.score, score, atol=1e-5 * np.max(np.abs(score)))
    scott = kdeformer.kde.gaussian_kde(s, q)
    difference = np.abs(np.asarray(out.log_density) - np.asarray(scott.log_density))
    # Close to Scott's KDE near the data (measured median 0.0088 / 0.0023), not equal to it.
    assert np.median(difference) < 0.03, (dim, np.median(difference))
    assert np.max(difference) > 1.0, (dim, np.max(difference))


def test_normalize_subtracts_the_importance_sampling_log_z(untrained):
  from kdeformer import log_normalizer as log_normalizer_lib  # pylint: disable=g-import-not-at-top

  est = untrained
  samples = np.random.default_rng(0).normal(size=(100, 2))
  queries = np.random.default_rng(1).normal(size=(20, 2))
  key = jax.random.key(3)
  sampler_key, rotation_key = jax.random.split(key)
  got = est(samples, queries, normalize=True, key=key)
  expected, normalizer = log_normalizer_lib.normalized_log_density(
    functools.partial(est, key=rotation_key), samples, queries, sampler_key
  )
  np.testing.assert_allclose(got.log_density, expected.log_density, rtol=1e-6)
  raw = est(samples, queries)
  np.testing.assert_allclose(
    got.log_density, raw.log_density - normalizer.log_z, rtol=1e-5, atol=1e-5
  )
  np.testing.assert_array_equal(got.score, raw.score)
  # Batched: problem i uses the key fold_in(sampler_key, i), so its log Z is another
  # importance-sampling estimate: the same scores, the log-density shifted by one constant
  # within the Monte Carlo error (measured 2026-12-05: the two log Z 1.1e-3 apart, standard
  # error 1.2e-3).
  batched = est(samples[None], queries[None], normalize=True, key=key)
  assert batched.log_density.shape == (1, 20)
  np.testing.assert_allclose(batched.score[0], got.score, rtol=1e-6, atol=1e-6)
  shift = np.asarray(batched.log_density[0], np.float64) - np.asarray(got.log_density)
  np.testing.assert_allclose(shift, shift[0], atol=1e-5)
  assert abs(shift[0]) < max(6 * float(normalizer.standard_error), 1e-3), (
    shift[0],
    normalizer.standard_error,
  )
  with pytest.raises(ValueError, match="key"):
    est(samples, queries, normalize=True)


def test_sample_rejects_too_few_steps_and_a_missing_key(est, data):
  samples = data[0]
  with pytest.raises(ValueError, match="num_steps=1: at least 2"):
    est.sample(samples, 4, key=jax.random.key(0), num_steps=1)
  with pytest.raises(ValueError, match="num_steps=0"):
    est.sample(samples, 4, key=jax.random.key(0), num_steps=0)
  with pytest.raises(ValueError, match="pass key=jax.random.key"):
    est.sample(samples, 4, key=None)


def test_fewer_samples_than_trained_warns_once(random_estimator_factory):
  est = random_estimator_factory()  # The tiny config: buckets (16, 32), min_fill 0.5 -> 8.
  assert est.rules.trained_from == 8
  samples = np.random.default_rng(0).normal(size=(6, 2))
  with pytest.warns(UserWarning, match="below the 8 this model was trained with"):
    est(samples)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    est(samples)  # Once per estimator.
    est(np.random.default_rng(1).normal(size=(40, 2)))  # n at or above: silent.


def test_fewer_samples_than_the_models_minimum_are_refused_everywhere(random_estimator_factory):
  """model.json's min_samples (measured per shipped model): below it the estimate is not a
  density, so every entry point refuses; from it the estimator answers (warning below the
  trained sizes)."""
  tiny_model = random_estimator_factory()
  assert tiny_model.min_samples == problem_lib.MIN_MODEL_SAMPLES  # 0 in model.json: the floor, 4.
  est = estimator_lib.Estimator(
    tiny_model.params, dataclasses.replace(tiny_model.model_config, min_samples=7)
  )
  assert est.min_samples == 7
  rng = np.random.default_rng(0)
  few, enough = rng.normal(size=(6, 2)), rng.normal(size=(7, 2))
  message = "n = 6 samples is below the 7 this model answers for.*kdeformer.kde.gaussian_kde"
  for entry in (
    lambda x: est(x),
    lambda x: est(x[None]),
    lambda x: est.fit(x),
    lambda x: est.sample(x, 4, key=jax.random.key(0)),
  ):
    with pytest.raises(ValueError, match=message):
      entry(few)
  with pytest.warns(UserWarning, match="below the 8 this model was trained with"):
    assert np.all(np.isfinite(est(enough).log_density))


def test_chunk_defaults_follow_the_backend_and_keep_the_cpu_outputs(est, random_estimator_factory):
  """One place picks the blocks per backend; on the CPU the defaults are the former
  (512 queries, 1,024 keys), bit for bit, at an n beyond the key block."""
  assert attention.default_chunks("cpu") == (512, 1024)
  query_chunk, key_chunk = attention.default_chunks("gpu")
  assert key_chunk >= 4096 and query_chunk > 512  # Dense at every trained n, bigger blocks.
  default = est  # The module's estimator has the default options.
  explicit = random_estimator_factory(query_chunk_size=512, key_chunk_size=1024)
  if jax.default_backend() == "cpu":
    assert (default.query_chunk_size, default.runtime) == (512, explicit.runtime)
  samples = np.random.default_rng(0).normal(size=(1500, 2)).astype(np.float32)
  queries = samples[:600]
  a, b = default(samples, queries), explicit(samples, queries)
  if jax.default_backend() == "cpu":
    np.testing.assert_array_equal(a.log_density, b.log_density)
    np.testing.assert_array_equal(a.score, b.score)
