"""The fused attention path at the shapes training runs it: every v2_gpu.py bucket, padding,
the kernel bank's unequal key and value widths, mixed precision; cuDNN only on a GPU."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import v2_gpu
from kdeformer import attention
from kdeformer import kernels
from kdeformer import model as model_lib
from kdeformer import networks
from kdeformer.training import data as data_lib
from kdeformer.training import train

CONFIG = v2_gpu.get_config()
HEADS = CONFIG.model.num_heads
HEAD_DIM = CONFIG.model.width // CONFIG.model.num_heads
MAX_KEYS = model_lib.DEFAULT_MAX_SELF_ATTENTION_KEYS


def trunk_inputs(num_tokens, num_keys, dtype, seed=0):
  """Queries (1, m, h, k), keys and values (1, n, h, k), a prefix mask with half the keys."""
  keys = jax.random.split(jax.random.key(seed), 3)
  query = jax.random.normal(keys[0], (1, num_tokens, HEADS, HEAD_DIM)) / np.sqrt(HEAD_DIM)
  key = jax.random.normal(keys[1], (1, num_keys, HEADS, HEAD_DIM))
  value = jax.random.normal(keys[2], (1, num_keys, HEADS, HEAD_DIM))
  mask = jnp.arange(num_keys)[None] < num_keys // 2 + 1
  return [x.astype(dtype) for x in (query, key, value)] + [mask]


@pytest.mark.parametrize("num_samples", CONFIG.buckets)
def test_fused_self_attention_matches_dense_in_every_bucket(num_samples):
  """The trunk's self-attention of each bucket (keys capped as the model caps them), padded.

  Query rows are independent, so beyond 2,048 tokens the first 2,048 queries stand for all
  (the CPU's dense bfloat16 matmuls would take a minute at 16,384 x 4,096); the keys keep
  the bucket's full count. The GPU test below runs every shape whole.
  """
  fused = jax.jit(lambda *a: attention.AttentionRuntime(fused=True).attend(*a)[0])
  dense = jax.jit(lambda *a: attention.dense_attention(*a)[0])
  dtypes = ((jnp.float32, 1e-5),) + (((jnp.bfloat16, 2e-2),) if num_samples <= 512 else ())
  for dtype, tolerance in dtypes:
    query, *rest = trunk_inputs(num_samples, min(num_samples, MAX_KEYS), dtype)
    inputs = [query[:, :2048]] + rest
    actual, expected = fused(*inputs), dense(*inputs)
    assert actual.dtype == expected.dtype == dtype
    np.testing.assert_allclose(
      np.asarray(actual, np.float32),
      np.asarray(expected, np.float32),
      atol=tolerance,
      rtol=tolerance,
    )


def test_kernel_bank_is_never_fused():
  """Lifted keys (d + 1 wide) against values (d wide), the v2_gpu crash; and the bank's
  log-normaliser (its KDE), which only the float32 path returns."""
  queries = jax.random.normal(jax.random.key(0), (2, 8, 10))
  samples = jax.random.normal(jax.random.key(1), (2, 32, 10))
  inverse_h2 = jnp.ones((2, 6))
  mask = jnp.arange(32)[None] < jnp.asarray([[32], [17]])
  fused = attention.AttentionRuntime(fused=True)
  expected = kernels.gaussian_kernel_attention(queries, samples, inverse_h2, sample_mask=mask)
  actual = kernels.gaussian_kernel_attention(
    queries, samples, inverse_h2, sample_mask=mask, runtime=fused
  )
  jax.tree.map(np.testing.assert_array_equal, actual, expected)


@pytest.fixture(scope="module")
def v2_gpu_params():
  """Fresh parameters of the v2_gpu.py network (they do not depend on n), initialised once."""
  return networks.init_params(v2_gpu.get_config(), jax.random.key(0))


def padded_batch(num_samples, num_queries=16, max_dim=CONFIG.model.max_dim):
  """Two problems, standard normal with their exact targets: d = 3 with half the samples real
  (padded samples and coordinates) and d = max_dim with all of them; a quarter of the queries
  marked as pushed into the tails. (No training sampler: compiling it took most of the time.)"""
  sample_key, query_key = jax.random.split(jax.random.key(1))
  dim_mask = jnp.arange(max_dim)[None] < jnp.asarray([[3], [max_dim]])
  sample_mask = jnp.arange(num_samples)[None] < jnp.asarray([[num_samples // 2 + 1], [num_samples]])
  samples = (
    jax.random.normal(sample_key, (2, num_samples, max_dim))
    * dim_mask[:, None]
    * sample_mask[..., None]
  )
  queries = jax.random.normal(query_key, (2, num_queries, max_dim)) * dim_mask[:, None]
  dims = jnp.sum(dim_mask, axis=-1, keepdims=True)
  log_density = -0.5 * jnp.sum(queries**2, axis=-1) - 0.5 * dims * np.log(2 * np.pi)
  return data_lib.Batch(
    samples=samples,
    queries=queries,
    sample_mask=sample_mask,
    dim_mask=dim_mask,
    log_density=log_density,
    score=-queries,
    in_tail=jnp.broadcast_to(jnp.arange(num_queries) % 4 == 0, (2, num_queries)),
  )


def v2_gpu_loss(config, fused):
  config.fused_attention = fused
  return functools.partial(
    train.loss_fn,
    model=train.training_model(config),
    alpha=0.5,
    deterministic=True,
    huber_delta=2.0,
    normalization_weight=0.1,
  )


# Both kinds of v2_gpu.py bucket at small n: n <= the self-attention key budget (its buckets up
# to 2,048: every sample a key) and n above it (its 16,384 bucket: the first keys only), the
# latter with the budget lowered to 64 so that n = 128 exceeds it.
@pytest.mark.parametrize(
  "num_samples,max_keys", [(32, None), (128, 64)], ids=["all_keys", "capped_keys"]
)
def test_v2_gpu_training_model_fused_matches_dense(v2_gpu_params, num_samples, max_keys):
  """The whole v2_gpu.py model (bf16 trunk, tail bases, kernel bank, padded samples) lowers
  with the fused path (it crashed in the kernel bank) and gives the dense path's loss up to
  bfloat16 round-off. (Forward only: compiling the whole backward pass twice takes minutes
  here; the attention's gradients are compared on the GPU below.)"""
  config = v2_gpu.get_config()
  config.data.num_queries = 16
  if max_keys is not None:
    config.model.max_self_attention_keys = max_keys
  batch = padded_batch(num_samples)
  losses = [
    jax.jit(v2_gpu_loss(config, fused))(v2_gpu_params, batch, jax.random.key(2))
    for fused in (False, True)
  ]
  (dense_loss, dense_metrics), (fused_loss, fused_metrics) = losses
  assert np.isfinite(float(fused_loss))
  np.testing.assert_allclose(float(fused_loss), float(dense_loss), rtol=2e-2)
  for name in ("relative_score_mse", "log_density_mse", "log_normalizer_sq"):
    np.testing.assert_allclose(
      float(fused_metrics[name]), float(dense_metrics[name]), rtol=2e-2, err_msg=name
    )


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN's fused kernel needs a GPU.")
@pytest.mark.parametrize("num_samples", CONFIG.buckets)
def test_cudnn_fused_attention_matches_dense_on_gpu(num_samples):
  """On a GPU the bf16 trunk attention runs cuDNN (padding as key counts) and matches dense."""
  inputs = trunk_inputs(num_samples, min(num_samples, MAX_KEYS), jnp.bfloat16)
  assert attention.fused_implementation(jnp.bfloat16) == "cudnn"
  fused = jax.jit(lambda *a: attention.fused_attention(*a))
  assert "cudnn" in fused.lower(*inputs).compile().as_text().lower()
  expected, _ = jax.jit(attention.dense_attention)(*inputs)
  np.testing.assert_allclose(
    np.asarray(fused(*inputs), np.float32), np.asarray(expected, np.float32), atol=2e-2, rtol=2e-2
  )
  # Gradients too: training differentiates through the kernel.
  grad = lambda f: jax.jit(
    jax.grad(lambda q, k, v, m: jnp.sum(f(q, k, v, m).astype(jnp.float32) ** 2), argnums=(0, 1, 2))
  )(*inputs)
  for a, b in zip(
    grad(attention.fused_attention), grad(lambda *args: attention.dense_attention(*args)[0])
  ):
    scale = float(jnp.max(jnp.abs(b.astype(jnp.float32)))) + 1e-6
    assert float(jnp.max(jnp.abs((a - b).astype(jnp.float32)))) < 5e-2 * scale
