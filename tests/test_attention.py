"""Tests for kdeformer.attention: blockwise (online-softmax) attention equals dense attention."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdeformer import attention

BATCH, QUERIES, KEYS, HEADS, KEY_DIM, VALUE_DIM = 2, 5, 37, 3, 4, 6

dense = jax.jit(attention.dense_attention)
blockwise = jax.jit(attention.blockwise_attention, static_argnames="key_chunk_size")


def random_inputs(seed: int, logit_scale: float = 1.0):
  """query (b, m, h, k), key (b, n, h, k), value (b, n, h, v), key mask (b, n); numpy RNG."""
  rng = np.random.default_rng(seed)
  normal = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  query = logit_scale * normal(BATCH, QUERIES, HEADS, KEY_DIM)
  key = normal(BATCH, KEYS, HEADS, KEY_DIM)
  value = normal(BATCH, KEYS, HEADS, VALUE_DIM)
  mask = rng.random((BATCH, KEYS)) < 0.6
  mask[:, 0] = True
  return query, key, value, jnp.asarray(mask)


@pytest.mark.parametrize("chunk", [1, 8, 10, 37, 64])
@pytest.mark.parametrize("use_mask", [False, True])
def test_blockwise_equals_dense(chunk, use_mask):
  query, key, value, mask = random_inputs(0)
  mask = mask if use_mask else None
  dense_out, dense_log_norm = dense(query, key, value, mask)
  block_out, block_log_norm = blockwise(query, key, value, mask, key_chunk_size=chunk)
  chex.assert_shape(dense_out, (BATCH, QUERIES, HEADS, VALUE_DIM))
  chex.assert_shape(dense_log_norm, (BATCH, QUERIES, HEADS))
  chex.assert_trees_all_equal_shapes_and_dtypes(
    (dense_out, dense_log_norm), (block_out, block_log_norm)
  )
  np.testing.assert_allclose(block_out, dense_out, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(block_log_norm, dense_log_norm, rtol=1e-5, atol=1e-5)


def test_dense_matches_reference_softmax():
  query, key, value, mask = random_inputs(1)
  q, k, v, msk = (np.asarray(x, np.float64) for x in (query, key, value, mask))
  logits = np.einsum("bmhk,bnhk->bhmn", q, k)
  logits = np.where(msk[:, None, None, :] > 0, logits, -np.inf)
  log_norm = np.log(np.sum(np.exp(logits), axis=-1))
  weights = np.exp(logits - log_norm[..., None])
  expected = np.einsum("bhmn,bnhv->bmhv", weights, v)
  out, log_partition = attention.dense_attention(query, key, value, mask)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(log_partition, np.swapaxes(log_norm, -1, -2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_mask", [False, True])
def test_blockwise_gradients_match_dense(use_mask):
  query, key, value, mask = random_inputs(2)
  mask = mask if use_mask else None
  rng = np.random.default_rng(3)
  out_weight = rng.normal(size=(BATCH, QUERIES, HEADS, VALUE_DIM)).astype(np.float32)
  norm_weight = rng.normal(size=(BATCH, QUERIES, HEADS)).astype(np.float32)

  def loss(fn, q, k, v):
    out, log_norm = fn(q, k, v, mask)
    return jnp.sum(out * out_weight) + jnp.sum(log_norm * norm_weight)

  @jax.jit
  def gradients(q, k, v):
    chunked = functools.partial(attention.blockwise_attention, key_chunk_size=10)
    return (
      jax.grad(functools.partial(loss, attention.dense_attention), argnums=(0, 1, 2))(q, k, v),
      jax.grad(functools.partial(loss, chunked), argnums=(0, 1, 2))(q, k, v),
    )

  dense_grads, block_grads = gradients(query, key, value)
  chex.assert_trees_all_close(block_grads, dense_grads, rtol=1e-5, atol=1e-5)


def test_masked_keys_have_no_influence():
  query, key, value, mask = random_inputs(4)
  garbage = 1e3 * np.random.default_rng(5).normal(size=value.shape).astype(np.float32)
  changed_key = jnp.where(mask[..., None, None], key, garbage[..., :KEY_DIM])
  changed_value = jnp.where(mask[..., None, None], value, garbage)
  for fn in (dense, functools.partial(blockwise, key_chunk_size=8)):
    expected = fn(query, key, value, mask)
    actual = fn(query, changed_key, changed_value, mask)
    chex.assert_trees_all_close(actual, expected, rtol=1e-6, atol=1e-6)


def test_large_logits_are_stable():
  query, key, value, mask = random_inputs(6, logit_scale=300.0)
  expected = dense(query, key, value, mask)
  actual = blockwise(query, key, value, mask, key_chunk_size=8)
  chex.assert_tree_all_finite((expected, actual))
  np.testing.assert_allclose(actual[0], expected[0], rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(actual[1], expected[1], rtol=1e-5)


def test_fully_masked_rows_stay_finite():
  query, key, value, _ = random_inputs(7)
  mask = jnp.zeros((BATCH, KEYS), bool)
  chex.assert_tree_all_finite(dense(query, key, value, mask))
  chex.assert_tree_all_finite(blockwise(query, key, value, mask, key_chunk_size=8))


@pytest.mark.parametrize("chunk", [None, 8, KEYS, 100])
def test_attention_dispatch(chunk):
  query, key, value, mask = random_inputs(8)
  expected = dense(query, key, value, mask)
  actual = jax.jit(attention.attention, static_argnames="key_chunk_size")(
    query, key, value, mask, key_chunk_size=chunk
  )
  chex.assert_trees_all_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_leading_batch_axes_are_optional():
  query, key, value, mask = random_inputs(9)
  batched = dense(query, key, value, mask)
  single = blockwise(query[0], key[0], value[0], mask[0], key_chunk_size=8)
  chex.assert_trees_all_close(single, jax.tree.map(lambda x: x[0], batched), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", [None, 16])
def test_large_logits_keep_weights_normalised(chunk):
  """Narrow kernels give logits ~1e3; a constant value must come back exactly."""
  rng = np.random.default_rng(3)
  query = jnp.asarray(rng.normal(size=(5, 1, 3)) * 30.0, jnp.float32)
  key = jnp.asarray(rng.normal(size=(64, 1, 3)) * 30.0, jnp.float32)
  value = jnp.full((64, 1, 2), 1.7, jnp.float32)
  out, _ = attention.attention(query, key, value, key_chunk_size=chunk)
  np.testing.assert_allclose(out, 1.7, rtol=1e-6)


@pytest.mark.parametrize("query_chunk", [1, 2, 4, QUERIES, 16])
@pytest.mark.parametrize("key_chunk", [None, 8])
def test_query_blocks_equal_dense(query_chunk, key_chunk):
  """Queries answered in blocks (self-attention over many tokens): same numbers, same shapes."""
  query, key, value, mask = random_inputs(10)
  expected = dense(query, key, value, mask)
  actual = jax.jit(attention.attention, static_argnames=("key_chunk_size", "query_chunk_size"))(
    query, key, value, mask, key_chunk_size=key_chunk, query_chunk_size=query_chunk
  )
  chex.assert_trees_all_equal_shapes_and_dtypes(actual, expected)
  chex.assert_trees_all_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_mask", [False, True])
def test_fused_runtime_equals_dense(use_mask):
  """jax.nn.dot_product_attention (XLA on this CPU, cuDNN on a GPU) gives dense's values."""
  query, key, value, mask = random_inputs(3)
  value = value[..., : query.shape[-1]]  # The fused kernel needs value heads as wide as keys'.
  mask = mask if use_mask else None
  bias = jnp.linspace(-1.0, 0.5, KEYS)[None].repeat(BATCH, 0)
  expected, _ = attention.dense_attention(query, key, value, mask, bias)
  out, log_partition = attention.AttentionRuntime(fused=True).attend(query, key, value, mask, bias)
  assert log_partition is None
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_bfloat16_inputs_keep_float32_logits():
  """Mixed precision: logits of order 100 in bfloat16 would round by ~0.5 (weights by ~60%)."""
  query, key, value, _ = random_inputs(4)
  query = query * 8.0
  expected, _ = attention.dense_attention(query, key, value)
  low = [x.astype(jnp.bfloat16) for x in (query, key, value)]
  out, _ = attention.dense_attention(*low)
  assert out.dtype == jnp.bfloat16
  reference, _ = attention.dense_attention(*[x.astype(jnp.float32) for x in low])
  np.testing.assert_allclose(np.asarray(out, np.float32), reference, atol=0.05)
