"""The pure inference pipeline: padded, whitened problems through the network and back.

Functions of (model, params, arrays); `kdeformer.Estimator` checks the inputs, pads them with
`pad_samples` / `pad_queries` and jits these. Samples pad to power-of-two buckets and queries
go in power-of-two blocks, so a handful of compiled programs serve every n and m.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from kdeformer import adaptation
from kdeformer import kernel_bank
from kdeformer import kernels
from kdeformer import model as model_lib
from kdeformer import rotation_averaging
from kdeformer import sampling
from kdeformer import validation
from kdeformer import whitening
from kdeformer.estimate import Estimate

# Smallest sample bucket; buckets are the powers of two from here.
MIN_SAMPLE_BUCKET = 64
# Smallest query block: counts of queries or chains pad to a power of two from here.
MIN_QUERY_BLOCK = 8


class Encoded(NamedTuple):
  """Samples encoded by the network (padded batch): what decoding and sampling need.

  Attributes:
    layers: the encoder's per-layer sample tokens.
    whitened_samples: (b, bucket, max_dim) samples in the network's whitened coordinates.
    sample_mask: (b, bucket) True for real samples of positive weight.
    dim_mask: (b, max_dim) True for real coordinates.
    affine_map: the network's `whitening.AffineMap`.
    sample_weights: (b, bucket) weights or None.
  """

  layers: Any
  whitened_samples: jax.Array
  sample_mask: jax.Array
  dim_mask: jax.Array
  affine_map: whitening.AffineMap
  sample_weights: jax.Array | None


def sample_bucket(num_samples: int) -> int:
  """The padded size for n samples: the next power of two, at least MIN_SAMPLE_BUCKET."""
  return max(MIN_SAMPLE_BUCKET, 1 << (num_samples - 1).bit_length())


def pad_samples(samples, weights=None):
  """Samples (b, n, d) padded to their bucket: (padded, sample_mask (b, bucket), weights or None),
  float32 (numpy arrays for concrete inputs, see `validation.host_or_traced`).

  Samples of weight zero are masked out, as if they were absent.
  """
  xp = validation.host_or_traced(samples, weights)
  b, n, _ = np.shape(samples)
  bucket = sample_bucket(n)
  padded = xp.pad(validation.as_float32(samples), [(0, 0), (0, bucket - n), (0, 0)])
  sample_mask = xp.broadcast_to(xp.arange(bucket) < n, (b, bucket))
  if weights is not None:
    weights = xp.pad(xp.reshape(validation.as_float32(weights), (b, n)), [(0, 0), (0, bucket - n)])
    sample_mask = sample_mask & (weights > 0)
  return padded, sample_mask, weights


def query_blocks(count: int, max_block: int) -> tuple[int, int]:
  """(block size, padded count) for `count` queries or chains: a power of two from
  MIN_QUERY_BLOCK to max_block."""
  block = min(max_block, max(MIN_QUERY_BLOCK, 1 << (count - 1).bit_length()))
  return block, -(-count // block) * block


def pad_queries(queries, max_block: int):
  """Queries (b, m, d) padded with copies of the last row to whole blocks: (padded float32,
  block), on the host for concrete queries (`validation.host_or_traced`)."""
  block, padded_m = query_blocks(np.shape(queries)[1], max_block)
  pad = [(0, 0), (0, padded_m - np.shape(queries)[1]), (0, 0)]
  return validation.host_or_traced(queries).pad(
    validation.as_float32(queries), pad, mode="edge"
  ), block


def first_queries(estimate: Estimate, m: int) -> Estimate:
  """The estimates (b, padded m) at the first m queries, sliced on the host when concrete."""
  xp = validation.host_or_traced(estimate.log_density)
  return Estimate(xp.asarray(estimate.log_density)[:, :m], xp.asarray(estimate.score)[:, :m])


def whiten_problem(
  model: model_lib.KDEFormer,
  samples: jax.Array,
  queries: jax.Array,
  sample_mask: jax.Array,
  sample_weights: jax.Array | None = None,
):
  """Whitened, zero-padded (to model.max_dim) samples and queries, the dim mask, the affine_map.

  With sample_weights (b, n) (summing to 1), the whitening uses the weighted mean and covariance.
  """
  b, _, d = samples.shape
  affine_map = whitening.fit_affine_map(samples, sample_mask, sample_weights=sample_weights)
  width = max(model.max_dim, d)  # max_dim 0 (the equivariant network): no padding.
  pad = [(0, 0), (0, 0), (0, width - d)]
  whitened_samples = jnp.pad(whitening.whiten(samples, affine_map), pad)
  whitened_samples = whitened_samples * sample_mask[..., None]
  whitened_queries = jnp.pad(whitening.whiten(queries, affine_map), pad)
  dim_mask = jnp.broadcast_to(jnp.arange(width) < d, (b, width))
  return whitened_samples, whitened_queries, dim_mask, affine_map


def decode_queries(
  model: model_lib.KDEFormer,
  params,
  layers,
  whitened_samples: jax.Array,
  whitened_queries: jax.Array,
  sample_mask: jax.Array,
  dim_mask: jax.Array,
  *,
  query_chunk_size: int,
  sample_log_weights: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """The decoder over query blocks, given the encoded sample layers (see whitened_predict)."""
  b, m, max_dim = whitened_queries.shape
  variables = {"params": params}

  def decode_block(query_block):
    return model.apply(
      variables,
      query_block,
      whitened_samples,
      layers,
      sample_mask,
      dim_mask,
      sample_log_weights=sample_log_weights,
      method="decode",
    )

  blocks = whitened_queries.reshape(b, m // query_chunk_size, query_chunk_size, max_dim)
  log_density, score = jax.lax.map(decode_block, blocks.swapaxes(0, 1))
  return (log_density.swapaxes(0, 1).reshape(b, m), score.swapaxes(0, 1).reshape(b, m, max_dim))


def whitened_predict(
  model: model_lib.KDEFormer,
  params,
  whitened_samples: jax.Array,
  whitened_queries: jax.Array,
  sample_mask: jax.Array,
  dim_mask: jax.Array,
  *,
  query_chunk_size: int,
  sample_log_weights: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """The network in whitened, padded coordinates: samples encoded once, queries in blocks.

  Args:
    model: the network.
    params: its parameters.
    whitened_samples: (b, n, max_dim), zero on padded rows and coordinates.
    whitened_queries: (b, m, max_dim) with m a multiple of query_chunk_size.
    sample_mask: (b, n) True for real samples.
    dim_mask: (b, max_dim) True for real coordinates.
    query_chunk_size: queries decoded per block.
    sample_log_weights: optional (b, n) log sample weights (see model.KDEFormer.encode).

  Returns:
    (log_density (b, m), score (b, m, max_dim)) in whitened coordinates.
  """
  layers = model.apply(
    {"params": params},
    whitened_samples,
    sample_mask,
    dim_mask,
    sample_log_weights=sample_log_weights,
    method="encode",
  )
  return decode_queries(
    model,
    params,
    layers,
    whitened_samples,
    whitened_queries,
    sample_mask,
    dim_mask,
    query_chunk_size=query_chunk_size,
    sample_log_weights=sample_log_weights,
  )


def predict(
  model: model_lib.KDEFormer,
  params,
  samples: jax.Array,
  queries: jax.Array,
  sample_mask: jax.Array,
  query_chunk_size: int,
  *,
  ttt_steps: int | jax.Array | None = 0,
  ttt_learning_rate: float | jax.Array = 0.0,
  ttt_num_points: int | None = None,
  rotations: jax.Array | None = None,
  sample_weights: jax.Array | None = None,
) -> Estimate:
  """Pure prediction in data coordinates.

  Args:
    model: the network.
    params: its parameters.
    samples: (b, n, d) samples, d <= model.max_dim; padded rows are ignored.
    queries: (b, m, d) with m a multiple of query_chunk_size.
    sample_mask: (b, n) True for real samples.
    query_chunk_size: queries decoded per block.
    ttt_steps: test-time training steps per problem (0 or None: none), see
      `kdeformer.adaptation`; may be traced.
    ttt_learning_rate: their Adam learning rate.
    ttt_num_points: evaluate the TTT loss at the first this-many samples (None: all).
    rotations: optional (k, d, d) orthogonal matrices to average over, see
      `kdeformer.rotation_averaging` (each rotated problem is adapted on its own).
    sample_weights: optional (b, n) non-negative weights summing to 1 per problem, zero where
      sample_mask is False; they enter the whitening and every attention over samples.

  Returns:
    Estimate with log_density (b, m) and score (b, m, d).
  """
  d = samples.shape[-1]
  whitened_samples, whitened_queries, dim_mask, affine_map = whiten_problem(
    model, samples, queries, sample_mask, sample_weights
  )
  network = functools.partial(
    whitened_predict,
    model,
    query_chunk_size=query_chunk_size,
    sample_log_weights=kernels.masked_log_weights(sample_weights, sample_mask),
  )
  network = adaptation.with_test_time_training(
    network, model, steps=ttt_steps, learning_rate=ttt_learning_rate, num_points=ttt_num_points
  )
  if rotations is not None:
    rotations = rotation_averaging.pad_rotations(
      jnp.asarray(rotations, jnp.float32), max(model.max_dim, d)
    )
  network = rotation_averaging.with_rotation_averaging(network, rotations)
  log_density, score = network(params, whitened_samples, whitened_queries, sample_mask, dim_mask)
  return Estimate(*whitening.unwhiten_estimate(log_density, score[..., :d], affine_map))


def encode(
  model: model_lib.KDEFormer,
  params,
  samples: jax.Array,
  sample_mask: jax.Array,
  sample_weights: jax.Array | None = None,
) -> Encoded:
  """Padded samples (b, n, d) encoded once, for `decode` and `draw`."""
  whitened_samples, _, dim_mask, affine_map = whiten_problem(
    model, samples, samples[:, :1], sample_mask, sample_weights
  )
  layers = model.apply(
    {"params": params},
    whitened_samples,
    sample_mask,
    dim_mask,
    sample_log_weights=kernels.masked_log_weights(sample_weights, sample_mask),
    method="encode",
  )
  return Encoded(layers, whitened_samples, sample_mask, dim_mask, affine_map, sample_weights)


def decode(
  model: model_lib.KDEFormer, params, encoded: Encoded, queries: jax.Array, *, query_chunk_size: int
) -> Estimate:
  """Queries (b, m, d), m a multiple of query_chunk_size, against encoded samples."""
  d = queries.shape[-1]
  pad = [(0, 0), (0, 0), (0, max(model.max_dim, d) - d)]
  whitened_queries = jnp.pad(whitening.whiten(queries, encoded.affine_map), pad)
  log_density, score = decode_queries(
    model,
    params,
    encoded.layers,
    encoded.whitened_samples,
    whitened_queries,
    encoded.sample_mask,
    encoded.dim_mask,
    query_chunk_size=query_chunk_size,
    sample_log_weights=kernels.masked_log_weights(encoded.sample_weights, encoded.sample_mask),
  )
  return Estimate(*whitening.unwhiten_estimate(log_density, score[..., :d], encoded.affine_map))


def draw(
  model: model_lib.KDEFormer,
  params,
  encoded: Encoded,
  key: jax.Array,
  step_size: jax.Array,
  *,
  num_chains: int,
  num_steps: int,
  query_chunk_size: int,
):
  """MALA chains on the network's whitened density (one problem), from a Scott-KDE resample.

  step_size: the initial step size in whitened coordinates; <= 0: Scott's bandwidth there.

  Returns:
    (points (num_chains, d) in the encoded problem's coordinates, acceptance rate, final step).
  """
  d = encoded.affine_map.mean.shape[-1]
  sample_mask, dim_mask = encoded.sample_mask, encoded.dim_mask
  sample_log_weights = kernels.masked_log_weights(encoded.sample_weights, sample_mask)

  def target(points):  # (chains, max_dim) -> (chains,), (chains, max_dim): samples encoded once.
    log_density, score = decode_queries(
      model,
      params,
      encoded.layers,
      encoded.whitened_samples,
      points[None],
      sample_mask,
      dim_mask,
      query_chunk_size=query_chunk_size,
      sample_log_weights=sample_log_weights,
    )
    return log_density[0], score[0]

  choice_key, noise_key, chain_key = jax.random.split(key, 3)
  logits = (
    jnp.where(sample_mask[0], 0.0, -jnp.inf)
    if sample_log_weights is None
    else jnp.where(sample_mask[0], sample_log_weights[0], -jnp.inf)
  )
  picks = jax.random.categorical(choice_key, logits, shape=(num_chains,))
  count = kernel_bank.sample_count(sample_mask, sample_log_weights)[0]
  scott = kernels.scott_factor(count, d)  # Whitened space: the KDE's own resample to start.
  real = dim_mask[0].astype(jnp.float32)
  initial = (
    encoded.whitened_samples[0, picks]
    + scott * jax.random.normal(noise_key, (num_chains, max(model.max_dim, d))) * real
  )
  step_size = jnp.where(step_size > 0, step_size, scott)
  points, acceptance, final_step = sampling.mala(
    target, initial, chain_key, num_steps=num_steps, step_size=step_size, coordinate_mask=real
  )
  data_points = points[:, :d] @ encoded.affine_map.unwhitening[0] + encoded.affine_map.mean[0]
  return data_points, acceptance, final_step
