"""Inference API: a trained transformer as a function samples, queries -> Estimate.

  est = kdeformer.load_pretrained()            # the model shipped in the package
  est = kdeformer.Estimator.restore(workdir)   # any workdir of experiments/train.py
  out = est(samples, queries)                  # (n, d), (m, d) -> (m,), (m, d)

Samples are padded to power-of-two bucket sizes with the key-padding mask, and
queries are answered in fixed-size chunks against samples encoded once, so a
notebook calling `est` with hundreds of different n compiles a handful of
programs. The affine normalisation wraps the network as a pair of pure
functions (`kdeformer.normalization`).
"""

import functools
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kdeformer import checkpointing
from kdeformer import model as model_lib
from kdeformer import normalization
from kdeformer import validation
from kdeformer.estimate import Estimate

PRETRAINED_DIR = os.path.join(os.path.dirname(__file__), "pretrained")
# Smallest sample bucket; buckets are the powers of two from here.
MIN_SAMPLE_BUCKET = 64
# Fewest samples accepted: the covariance and the attention need a few points.
MIN_SAMPLES = 4


def sample_bucket(num_samples: int) -> int:
  """The padded size for n samples: the next power of two, at least MIN_SAMPLE_BUCKET."""
  return max(MIN_SAMPLE_BUCKET, 1 << (num_samples - 1).bit_length())


def build_model(config: ml_collections.ConfigDict, key_chunk_size: int | None = None
                ) -> model_lib.KDEFormer:
  """The network described by config.model (dropout is off at inference anyway)."""
  return model_lib.KDEFormer(
      width=config.model.width, num_layers=config.model.num_layers,
      num_heads=config.model.num_heads, mlp_ratio=config.model.mlp_ratio,
      dropout_rate=config.model.dropout_rate, max_dim=config.model.max_dim,
      key_chunk_size=key_chunk_size,
      kernel_bandwidths=tuple(config.model.get("kernel_bandwidths", ())),
      initial_bandwidth_index=config.model.get("initial_bandwidth_index", -1))


def predict(model: model_lib.KDEFormer, params, samples: jax.Array, queries: jax.Array,
            sample_mask: jax.Array, query_chunk_size: int) -> Estimate:
  """Pure prediction in data coordinates.

  Args:
    model: the network.
    params: its parameters.
    samples: (b, n, d) samples, d <= model.max_dim; padded rows are ignored.
    queries: (b, m, d) with m a multiple of query_chunk_size.
    sample_mask: (b, n) True for real samples.
    query_chunk_size: queries decoded per block.

  Returns:
    Estimate with log_density (b, m) and score (b, m, d).
  """
  b, _, d = samples.shape
  m = queries.shape[1]
  normalizer = normalization.fit_normalizer(samples, sample_mask)
  pad = [(0, 0), (0, 0), (0, model.max_dim - d)]
  whitened_samples = jnp.pad(normalization.whiten(samples, normalizer), pad)
  whitened_samples = whitened_samples * sample_mask[..., None]
  whitened_queries = jnp.pad(normalization.whiten(queries, normalizer), pad)
  dim_mask = jnp.broadcast_to(jnp.arange(model.max_dim) < d, (b, model.max_dim))
  variables = {"params": params}
  layers = model.apply(variables, whitened_samples, sample_mask, dim_mask,
                       method=model_lib.KDEFormer.encode)

  def decode(query_chunk):
    return model.apply(variables, query_chunk, whitened_samples, layers, sample_mask, dim_mask,
                       method=model_lib.KDEFormer.decode)

  chunks = m // query_chunk_size
  blocks = whitened_queries.reshape(b, chunks, query_chunk_size, model.max_dim).swapaxes(0, 1)
  log_density, score = jax.lax.map(decode, blocks)
  log_density = log_density.swapaxes(0, 1).reshape(b, m)
  score = score.swapaxes(0, 1).reshape(b, m, model.max_dim)[..., :d]
  return Estimate(*normalization.unwhiten_estimate(log_density, score, normalizer))


class Estimator:
  """A trained density-and-score transformer, callable like the KDE baselines.

  Attributes:
    config: the training config (model shape and data prior).
    params: the network parameters.
    num_compilations: how many distinct programs have been compiled so far.
  """

  def __init__(self, params, config: ml_collections.ConfigDict, *, query_chunk_size: int = 512,
               key_chunk_size: int | None = None):
    self.params = params
    self.config = config
    self.max_dim = int(config.model.max_dim)
    self.query_chunk_size = query_chunk_size
    self.model = build_model(config, key_chunk_size)
    self.num_compilations = 0
    self._predict = jax.jit(self._traced_predict, static_argnames=("query_chunk_size",))

  def _traced_predict(self, params, samples, queries, sample_mask, query_chunk_size):
    self.num_compilations += 1  # Runs once per trace, i.e. per compiled shape.
    return predict(self.model, params, samples, queries, sample_mask, query_chunk_size)

  @classmethod
  def restore(cls, workdir: str, step: int | None = None, **kwargs) -> "Estimator":
    """Loads the config and the latest (or given) checkpoint of a training workdir.

    Raises:
      FileNotFoundError: the workdir, its config.json or its checkpoints are missing.
      ValueError: the checkpoint is corrupt or does not fit the config.
    """
    if not os.path.isdir(workdir):
      raise FileNotFoundError(f"Workdir {workdir!r} does not exist.")
    config = checkpointing.load_config(workdir)
    from kdeformer import train  # pylint: disable=g-import-not-at-top  (optax only when restoring)
    abstract_state = jax.eval_shape(lambda: train.create_train_state(config, jax.random.key(0)))
    if config.get("checkpoint_contents", "train_state") == "params":  # An export's checkpoint.
      abstract_state = {"params": abstract_state.params}
    manager = checkpointing.checkpoint_manager(workdir, read_only=True)
    state = checkpointing.restore_latest(manager, abstract_state, step=step)
    manager.close()
    return cls(state["params"] if isinstance(state, dict) else state.params, config, **kwargs)

  def __call__(self, samples, queries=None) -> Estimate:
    """Log-density and score of the distribution of `samples`, at `queries`.

    Args:
      samples: (n, d) or (b, n, d) i.i.d. samples, 1 <= d <= max_dim, n > d.
        numpy or jax, float32 or float64.
      queries: (m, d) or (b, m, d); defaults to the samples.

    Returns:
      Estimate(log_density (m,) or (b, m), score (m, d) or (b, m, d)), jax arrays.

    Raises:
      ValueError: NaN/inf, wrong rank, mismatched or unsupported d, too few
        samples, or a degenerate (singular) sample covariance.
    """
    validation.check_samples(samples, min_samples=MIN_SAMPLES, max_dim=self.max_dim)
    if queries is None:
      queries = samples
    validation.check_points(queries, "queries", dim=np.shape(samples)[-1])
    if np.ndim(queries) != np.ndim(samples):
      raise ValueError(f"samples have shape {np.shape(samples)} and queries {np.shape(queries)}: "
                       "both must be unbatched (n, d), (m, d) or batched (b, n, d), (b, m, d).")
    unbatched = np.ndim(samples) == 2
    samples = jnp.asarray(samples, jnp.float32)
    queries = jnp.asarray(queries, jnp.float32)
    if unbatched:
      samples, queries = samples[None], queries[None]
    if samples.shape[0] != queries.shape[0]:
      raise ValueError(f"samples hold {samples.shape[0]} problems but queries "
                       f"{queries.shape[0]}; the batch sizes must match.")
    b, n, _ = samples.shape
    m = queries.shape[1]
    bucket = sample_bucket(n)
    samples = jnp.pad(samples, [(0, 0), (0, bucket - n), (0, 0)])
    sample_mask = jnp.broadcast_to(jnp.arange(bucket) < n, (b, bucket))
    chunk = min(self.query_chunk_size, max(8, 1 << (m - 1).bit_length()))
    padded_m = -(-m // chunk) * chunk
    queries = jnp.pad(queries, [(0, 0), (0, padded_m - m), (0, 0)], mode="edge")
    out = self._predict(self.params, samples, queries, sample_mask, query_chunk_size=chunk)
    out = Estimate(out.log_density[:, :m], out.score[:, :m])
    return Estimate(out.log_density[0], out.score[0]) if unbatched else out


def load_pretrained(**kwargs) -> Estimator:
  """The estimator shipped inside the package (see kdeformer/pretrained/MODEL_CARD.md)."""
  if not os.path.isfile(os.path.join(PRETRAINED_DIR, checkpointing.CONFIG_FILE)):
    raise FileNotFoundError(
        f"No pretrained model is shipped in {PRETRAINED_DIR} (config.json missing); "
        "train one with experiments/train.py and use Estimator.restore(workdir).")
  return Estimator.restore(PRETRAINED_DIR, **kwargs)
