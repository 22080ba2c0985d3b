"""Scaled dot-product attention with a key-padding mask, dense or blockwise.

One function serves the transformer, the attention-is-KDE construction and the KDE baseline. It
also returns the per-query log-partition function log sum_j exp(logit_j), which makes attention a
normalised KDE. `AttentionRuntime` (dense or blocked) changes memory and speed, not the result.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp

# Chunk defaults, in one home. The model: attention key blocks (online softmax beyond them) keep
# memory linear in n and are faster than dense on the CPU (timings in docs/log/2026-11.md); on a GPU
# the CPU's blocks would be many sequential loop iterations, so dense up to GPU_KEY_CHUNK keys
# and larger query blocks instead (not yet tuned).
QUERY_CHUNK = 512
KEY_CHUNK = 1024
GPU_QUERY_CHUNK = 4096
GPU_KEY_CHUNK = 16384
# The KDE baselines: queries and keys per block bound the memory of the kernel matrix.
KDE_QUERY_CHUNK = 1024
KDE_KEY_CHUNK = 16384

# Logit given to padded keys: exp() underflows to exactly 0, and it stays finite
# so fully-padded rows do not produce NaN.
MASKED_LOGIT = -1e30


@dataclasses.dataclass(frozen=True)
class AttentionRuntime:
  """How attention runs; no parameters and no effect on the result beyond round-off.

  Attributes:
    key_chunk_size: keys beyond this many are processed in blocks of this size
      (online softmax); None: dense at every n (memory ~ m * n).
    query_chunk_size: self-attention over more than key_chunk_size tokens answers
      its queries in blocks of this size (None: key_chunk_size), so no (n x n)
      block is held at once.
  """

  key_chunk_size: int | None = None
  query_chunk_size: int | None = None
  fused: bool = False

  def attend(
    self, query, key, value, key_mask=None, key_bias=None, *, self_attention: bool = False
  ):
    """`attention` with these settings; self_attention also blocks the queries at large n.

    With `fused`, `fused_attention` computes the values where it applies (values as wide
    as the keys per head: the trunk's attention); it does not return the log-partition function,
    which is then None. Anything else (the kernel bank's lifted keys are one wider than
    its values) takes the float32 path below.
    """
    if self.fused and value.shape[-1] == key.shape[-1]:
      return fused_attention(query, key, value, key_mask, key_bias), None
    query_chunk_size = None
    blocked = self.key_chunk_size is not None and query.shape[-3] > self.key_chunk_size
    if self_attention and blocked:
      query_chunk_size = self.query_chunk_size or self.key_chunk_size
    return attention(
      query,
      key,
      value,
      key_mask,
      key_bias,
      key_chunk_size=self.key_chunk_size,
      query_chunk_size=query_chunk_size,
    )


def default_chunks(backend: str | None = None) -> tuple[int, int]:
  """The model's (query_chunk_size, key_chunk_size) for a backend (default: JAX's)."""
  backend = jax.default_backend() if backend is None else backend
  if backend == "gpu":
    return GPU_QUERY_CHUNK, GPU_KEY_CHUNK
  return QUERY_CHUNK, KEY_CHUNK


def fused_implementation(dtype, has_key_bias: bool = False) -> str:
  """cuDNN's fused kernel on a GPU for 16-bit inputs (the only ones it takes), XLA elsewhere.

  Key biases (sample weights, never in training) stay on XLA: cuDNN wants a full-size bias.
  """
  low_precision = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
  on_gpu = jax.default_backend() == "gpu"
  return "cudnn" if on_gpu and low_precision and not has_key_bias else "xla"


def fused_attention(
  query: jax.Array,
  key: jax.Array,
  value: jax.Array,
  key_mask: jax.Array | None = None,
  key_bias: jax.Array | None = None,
) -> jax.Array:
  """`dense_attention`'s values through `jax.nn.dot_product_attention` (no scaling).

  Args:
    query: (..., m, h, k); key: (..., n, h, k); value: (..., n, h, k), one dtype.
    key_mask: optional (..., n) bool. For cuDNN it becomes per-problem key counts, so the
      real keys must come first (as the estimator and the training data pad); XLA takes
      the mask itself.
    key_bias: optional (..., n) added to every logit of a key.

  Returns:
    (..., m, h, k) in the inputs' dtype.
  """
  implementation = fused_implementation(query.dtype, key_bias is not None)
  batch_shape = query.shape[:-3]
  # The fused call takes exactly one batch axis.
  flat = lambda x: x.reshape((-1,) + x.shape[-3:])
  arguments = {}
  if key_mask is not None:
    key_mask = key_mask.reshape((-1, key_mask.shape[-1]))
    if implementation == "cudnn":
      arguments["key_value_seq_lengths"] = jnp.sum(key_mask, axis=-1, dtype=jnp.int32)
    else:
      arguments["mask"] = key_mask[:, None, None, :]
  if key_bias is not None:
    arguments["bias"] = key_bias.reshape((-1, 1, 1, key_bias.shape[-1])).astype(query.dtype)
  out = jax.nn.dot_product_attention(
    flat(query), flat(key), flat(value), scale=1.0, implementation=implementation, **arguments
  )
  return out.reshape(batch_shape + out.shape[-3:])


# Dense attention at every size: what training uses (its n fit in memory).
DENSE = AttentionRuntime()


def dense_attention(
  query: jax.Array,
  key: jax.Array,
  value: jax.Array,
  key_mask: jax.Array | None = None,
  key_bias: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Multi-head attention without scaling (fold any scale into the query).

  Args:
    query: (..., m, h, k) queries per head.
    key: (..., n, h, k) keys per head.
    value: (..., n, h, v) values per head.
    key_mask: optional (..., n) bool, True for real keys.
    key_bias: optional (..., n) added to every logit of a key (log sample weights).

  Returns:
    (out (..., m, h, v), log_partition (..., m, h)).
  """
  # Logits in float32 even for bfloat16 inputs (mixed precision): their softmax is where
  # the precision matters.
  logits = jnp.einsum("...mhk,...nhk->...hmn", query, key, preferred_element_type=jnp.float32)
  if key_bias is not None:
    logits = logits + key_bias[..., None, None, :]
  if key_mask is not None:
    logits = jnp.where(key_mask[..., None, None, :], logits, MASKED_LOGIT)
  # Normalise by the computed sum, not exp(logsumexp): with large logits (narrow kernels) the
  # latter's rounding scales every weight.
  max_logit = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
  unnormalised = jnp.exp(logits - max_logit)
  total = jnp.sum(unnormalised, axis=-1)
  # Heads-leading values: a plain batched matmul, faster on the CPU than "...nhv->...mhv".
  out = jnp.einsum(
    "...hmn,...hnv->...hmv", unnormalised.astype(value.dtype), jnp.swapaxes(value, -2, -3)
  )
  out = jnp.swapaxes((out / total[..., None]).astype(value.dtype), -2, -3)
  log_partition = max_logit[..., 0] + jnp.log(total)
  return out, jnp.swapaxes(log_partition, -1, -2)


def blockwise_attention(
  query: jax.Array,
  key: jax.Array,
  value: jax.Array,
  key_mask: jax.Array | None = None,
  key_bias: jax.Array | None = None,
  *,
  key_chunk_size: int,
) -> tuple[jax.Array, jax.Array]:
  """Same result as `dense_attention`, scanning over key blocks (online softmax)."""
  n = key.shape[-3]
  if key_mask is None:
    key_mask = jnp.ones(key.shape[:-2], dtype=bool)
  chunks = -(-n // key_chunk_size)
  pad = chunks * key_chunk_size - n
  if pad:
    pad_width = [(0, 0)] * (key.ndim - 3) + [(0, pad), (0, 0), (0, 0)]
    key = jnp.pad(key, pad_width)
    value = jnp.pad(value, pad_width)
    key_mask = jnp.pad(key_mask, [(0, 0)] * (key_mask.ndim - 1) + [(0, pad)])
    if key_bias is not None:
      key_bias = jnp.pad(key_bias, [(0, 0)] * (key_bias.ndim - 1) + [(0, pad)])

  batch_shape = query.shape[:-3]
  m, h, v = query.shape[-3], query.shape[-2], value.shape[-1]
  init = (
    jnp.full(batch_shape + (h, m), -jnp.inf, query.dtype),
    jnp.zeros(batch_shape + (h, m), query.dtype),
    jnp.zeros(batch_shape + (h, m, v), query.dtype),
  )

  @functools.partial(jax.checkpoint, prevent_cse=False)
  def step(carry, index):
    running_max, running_sum, running_out = carry
    # Blocks are sliced in place: a blocked copy of the keys and values is as large as the keys.
    start = index * key_chunk_size
    key_block = jax.lax.dynamic_slice_in_dim(key, start, key_chunk_size, axis=key.ndim - 3)
    value_block = jnp.swapaxes(
      jax.lax.dynamic_slice_in_dim(value, start, key_chunk_size, axis=value.ndim - 3), -2, -3
    )  # (..., h, chunk, v)
    mask_block = jax.lax.dynamic_slice_in_dim(
      key_mask, start, key_chunk_size, axis=key_mask.ndim - 1
    )
    logits = jnp.einsum("...mhk,...nhk->...hmn", query, key_block)
    if key_bias is not None:
      bias_block = jax.lax.dynamic_slice_in_dim(
        key_bias, start, key_chunk_size, axis=key_bias.ndim - 1
      )
      logits = logits + bias_block[..., None, None, :]
    logits = jnp.where(mask_block[..., None, None, :], logits, MASKED_LOGIT)
    new_max = jnp.maximum(running_max, jnp.max(logits, axis=-1))
    correction = jnp.exp(running_max - new_max)
    weights = jnp.exp(logits - new_max[..., None])
    running_sum = running_sum * correction + jnp.sum(weights, axis=-1)
    running_out = running_out * correction[..., None] + jnp.einsum(
      "...hmn,...hnv->...hmv", weights, value_block
    )
    return (new_max, running_sum, running_out), None

  (running_max, running_sum, running_out), _ = jax.lax.scan(step, init, jnp.arange(chunks))
  out = running_out / running_sum[..., None]
  log_partition = running_max + jnp.log(running_sum)
  return jnp.swapaxes(out, -2, -3), jnp.swapaxes(log_partition, -1, -2)


def attention(
  query,
  key,
  value,
  key_mask=None,
  key_bias=None,
  *,
  key_chunk_size: int | None = None,
  query_chunk_size: int | None = None,
):
  """Dense attention, or blockwise when `key_chunk_size` is set and smaller than n.

  With `query_chunk_size` set and smaller than m, query blocks of that size are
  answered one after another (a loop), so the weights held at once are
  (query_chunk_size x min(n, key_chunk_size)) per head, not (m x n): needed
  when m is large too (self-attention over many sample tokens). Same numbers.
  """
  m = query.shape[-3]
  if query_chunk_size is not None and m > query_chunk_size:
    chunks = -(-m // query_chunk_size)
    pad = chunks * query_chunk_size - m
    if pad:
      query = jnp.pad(query, [(0, 0)] * (query.ndim - 3) + [(0, pad), (0, 0), (0, 0)])
    axis = query.ndim - 3
    out_shape = query.shape[:-1] + value.shape[-1:]

    def block(index, outputs):
      # Sliced and written back in place: no blocked copies of the queries and outputs.
      start = index * query_chunk_size
      query_block = jax.lax.dynamic_slice_in_dim(query, start, query_chunk_size, axis=axis)
      out, log_partition = attention(
        query_block, key, value, key_mask, key_bias, key_chunk_size=key_chunk_size
      )
      return (
        jax.lax.dynamic_update_slice_in_dim(outputs[0], out, start, axis=axis),
        jax.lax.dynamic_update_slice_in_dim(outputs[1], log_partition, start, axis=axis),
      )

    out, log_partition = jax.lax.fori_loop(
      0,
      chunks,
      block,
      (jnp.zeros(out_shape, query.dtype), jnp.zeros(query.shape[:-1], query.dtype)),
    )
    return out[..., :m, :, :], log_partition[..., :m, :]
  if key_chunk_size is None or key.shape[-3] <= key_chunk_size:
    return dense_attention(query, key, value, key_mask, key_bias)
  return blockwise_attention(query, key, value, key_mask, key_bias, key_chunk_size=key_chunk_size)
