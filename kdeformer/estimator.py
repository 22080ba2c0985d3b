"""Inference API: a trained transformer as a function samples, queries -> Estimate.

  est = kdeformer.load_pretrained()   # or kdeformer.Estimator.restore(workdir)
  out = est(samples, queries)         # (n, d), (m, d) -> (m,), (m, d)

Samples pad to power-of-two buckets and queries go in fixed-size blocks: few compiled programs.
"""

import functools
import os
from typing import Any, NamedTuple
import warnings

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kdeformer import attention
from kdeformer import checkpoints
from kdeformer import fitted
from kdeformer import kernel_bank
from kdeformer import model as model_lib
from kdeformer import normalization
from kdeformer import normalizing_constant
from kdeformer import rotation_averaging
from kdeformer import sample_order
from kdeformer import sampling
from kdeformer import support
from kdeformer import test_time_training
from kdeformer import validation
from kdeformer.estimate import Estimate

# Smallest sample bucket; buckets are the powers of two from here.
MIN_SAMPLE_BUCKET = 64
# Fewest samples accepted: the covariance and the attention need a few points.
MIN_SAMPLES = 4
# Default Adam learning rate of test-time training (chosen with experiments/configs/refinements.py).
DEFAULT_TTT_LEARNING_RATE = 1e-5
# Attention key block (online softmax beyond it): memory linear in n, and faster than dense on
# the CPU (timings in docs/DESIGN.md).
DEFAULT_KEY_CHUNK = 1024
DEFAULT_QUERY_CHUNK = 512
# On a GPU the CPU's blocks would be many sequential loop iterations: dense attention up to
# this many keys and larger query blocks instead (not yet tuned).
GPU_KEY_CHUNK = 16384
GPU_QUERY_CHUNK = 4096
# Default of query_chunk_size and key_chunk_size: resolved per backend by `default_chunks`.
BACKEND_DEFAULT = "backend default"
# From this sample bucket on, encoding and decoding are two compiled programs: inside one,
# XLA keeps both scratch areas alive (about twice the peak memory).
DEFAULT_SEPARATE_ENCODE_FROM = 1 << 17


class Encoded(NamedTuple):
  """Samples encoded by the network (padded batch): what decoding and sampling need.

  Attributes:
    layers: the encoder's per-layer sample tokens.
    whitened_samples: (b, bucket, max_dim) samples in the network's whitened coordinates.
    sample_mask: (b, bucket) True for real samples of positive weight.
    dim_mask: (b, max_dim) True for real coordinates.
    normalizer: the network's `normalization.AffineNormalizer`.
    sample_weights: (b, bucket) weights or None.
  """
  layers: Any
  whitened_samples: jax.Array
  sample_mask: jax.Array
  dim_mask: jax.Array
  normalizer: normalization.AffineNormalizer
  sample_weights: jax.Array | None


def default_chunks(backend: str | None = None) -> tuple[int, int]:
  """(query_chunk_size, key_chunk_size) for a backend (default: JAX's): the one place
  inference chooses its blocks. CPU (and TPU): DEFAULT_QUERY_CHUNK, DEFAULT_KEY_CHUNK."""
  backend = jax.default_backend() if backend is None else backend
  if backend == "gpu":
    return GPU_QUERY_CHUNK, GPU_KEY_CHUNK
  return DEFAULT_QUERY_CHUNK, DEFAULT_KEY_CHUNK


def sample_bucket(num_samples: int) -> int:
  """The padded size for n samples: the next power of two, at least MIN_SAMPLE_BUCKET."""
  return max(MIN_SAMPLE_BUCKET, 1 << (num_samples - 1).bit_length())


def whitened_predict(model: model_lib.KDEFormer, params, whitened_samples: jax.Array,
                     whitened_queries: jax.Array, sample_mask: jax.Array, dim_mask: jax.Array,
                     *, query_chunk_size: int, sample_log_weights: jax.Array | None = None
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
  layers = model.apply({"params": params}, whitened_samples, sample_mask, dim_mask,
                       sample_log_weights=sample_log_weights, method=model_lib.KDEFormer.encode)
  return decode_queries(model, params, layers, whitened_samples, whitened_queries, sample_mask,
                        dim_mask, query_chunk_size=query_chunk_size,
                        sample_log_weights=sample_log_weights)


def decode_queries(model: model_lib.KDEFormer, params, layers, whitened_samples: jax.Array,
                   whitened_queries: jax.Array, sample_mask: jax.Array, dim_mask: jax.Array,
                   *, query_chunk_size: int, sample_log_weights: jax.Array | None = None
                   ) -> tuple[jax.Array, jax.Array]:
  """The decoder over query blocks, given the encoded sample layers (see whitened_predict)."""
  b, m, max_dim = whitened_queries.shape
  variables = {"params": params}

  def decode(query_chunk):
    return model.apply(variables, query_chunk, whitened_samples, layers, sample_mask, dim_mask,
                       sample_log_weights=sample_log_weights, method=model_lib.KDEFormer.decode)

  chunks = m // query_chunk_size
  blocks = whitened_queries.reshape(b, chunks, query_chunk_size, max_dim).swapaxes(0, 1)
  log_density, score = jax.lax.map(decode, blocks)
  return (log_density.swapaxes(0, 1).reshape(b, m),
          score.swapaxes(0, 1).reshape(b, m, max_dim))


def whiten_problem(model: model_lib.KDEFormer, samples: jax.Array, queries: jax.Array,
                   sample_mask: jax.Array, sample_weights: jax.Array | None = None):
  """Whitened, zero-padded (to model.max_dim) samples and queries, the dim mask, the normalizer.

  With sample_weights (b, n) (summing to 1), the whitening uses the weighted mean and covariance.
  """
  b, _, d = samples.shape
  normalizer = normalization.fit_normalizer(samples, sample_mask, sample_weights=sample_weights)
  pad = [(0, 0), (0, 0), (0, model.max_dim - d)]
  whitened_samples = jnp.pad(normalization.whiten(samples, normalizer), pad)
  whitened_samples = whitened_samples * sample_mask[..., None]
  whitened_queries = jnp.pad(normalization.whiten(queries, normalizer), pad)
  dim_mask = jnp.broadcast_to(jnp.arange(model.max_dim) < d, (b, model.max_dim))
  return whitened_samples, whitened_queries, dim_mask, normalizer


def predict(model: model_lib.KDEFormer, params, samples: jax.Array, queries: jax.Array,
            sample_mask: jax.Array, query_chunk_size: int, *,
            ttt_steps: int | jax.Array | None = 0,
            ttt_learning_rate: float | jax.Array = 0.0, ttt_num_points: int | None = None,
            rotations: jax.Array | None = None,
            sample_weights: jax.Array | None = None) -> Estimate:
  """Pure prediction in data coordinates.

  Args:
    model: the network.
    params: its parameters.
    samples: (b, n, d) samples, d <= model.max_dim; padded rows are ignored.
    queries: (b, m, d) with m a multiple of query_chunk_size.
    sample_mask: (b, n) True for real samples.
    query_chunk_size: queries decoded per block.
    ttt_steps: test-time training steps per problem (0 or None: none), see
      `kdeformer.test_time_training`; may be traced.
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
  whitened_samples, whitened_queries, dim_mask, normalizer = whiten_problem(
      model, samples, queries, sample_mask, sample_weights)
  network = functools.partial(whitened_predict, model, query_chunk_size=query_chunk_size,
                              sample_log_weights=log_weights(sample_weights, sample_mask))
  network = test_time_training.with_test_time_training(
      network, model, steps=ttt_steps, learning_rate=ttt_learning_rate, num_points=ttt_num_points)
  if rotations is not None:
    rotations = rotation_averaging.pad_rotations(jnp.asarray(rotations, jnp.float32),
                                                 model.max_dim)
  network = rotation_averaging.with_rotation_averaging(network, rotations)
  log_density, score = network(params, whitened_samples, whitened_queries, sample_mask, dim_mask)
  return Estimate(*normalization.unwhiten_estimate(log_density, score[..., :d], normalizer))


def pad_samples(samples: jax.Array, weights=None):
  """Samples (b, n, d) padded to their bucket: (padded, sample_mask (b, bucket), weights or None).

  Samples of weight zero are masked out, as if they were absent.
  """
  b, n, _ = samples.shape
  bucket = sample_bucket(n)
  padded = jnp.pad(samples, [(0, 0), (0, bucket - n), (0, 0)])
  sample_mask = jnp.broadcast_to(jnp.arange(bucket) < n, (b, bucket))
  if weights is not None:
    weights = jnp.pad(jnp.asarray(np.reshape(weights, (b, n)), jnp.float32),
                      [(0, 0), (0, bucket - n)])
    sample_mask = sample_mask & (weights > 0)
  return padded, sample_mask, weights


def check_draw_arguments(num_samples, key, num_steps=None, step_size=None) -> None:
  """Raises a ValueError for a sampling call's bad arguments (see `Estimator.sample`)."""
  if int(num_samples) < 1:
    raise ValueError(f"num_samples={num_samples}: draw at least one point.")
  if num_steps is not None and int(num_steps) < 2:
    raise ValueError(f"num_steps={num_steps}: at least 2 (half of them burn-in).")
  if step_size is not None and not step_size > 0:
    raise ValueError(f"step_size={step_size}: the step size must be positive.")
  if key is None:
    raise ValueError("sample() draws random points: pass key=jax.random.key(seed).")


def log_weights(sample_weights: jax.Array | None, sample_mask: jax.Array) -> jax.Array | None:
  """log w where the mask is set (0 elsewhere: masked keys never count), or None."""
  if sample_weights is None:
    return None
  return jnp.log(jnp.where(sample_mask, sample_weights, 1.0))


class Estimator:
  """A trained density-and-score transformer, callable like the KDE baselines.

  Attributes:
    config: the training config (model shape and data prior).
    params: the network parameters.
    num_compilations: how many distinct programs have been compiled so far.
    max_self_attention_keys: k of the sub-quadratic sample mixing (0: full).
    max_embedded_samples: the largest n the network is told (0: any).

  Large n: attention runs blockwise beyond key_chunk_size; beyond k = max_self_attention_keys
  samples the sample tokens' self-attention uses k key samples chosen by a hash of the values
  (`kdeformer.sample_order`: the output does not depend on the input order), and beyond
  max_embedded_samples the log-n input is held there (docs/DESIGN.md).
  """

  min_samples = MIN_SAMPLES

  def __init__(self, params, config: ml_collections.ConfigDict, *,
               query_chunk_size: int | str = BACKEND_DEFAULT,
               key_chunk_size: int | None | str = BACKEND_DEFAULT,
               max_self_attention_keys: int | None = None,
               max_embedded_samples: int | None = None, ttt_steps: int = 0,
               ttt_learning_rate: float = DEFAULT_TTT_LEARNING_RATE,
               ttt_num_points: int | None = None,
               separate_encode_from: int = DEFAULT_SEPARATE_ENCODE_FROM):
    """See the class doc.

    Args:
      params: network parameters.
      config: the training config.
      query_chunk_size: queries decoded per block; beyond key_chunk_size
        samples, also the sample tokens per self-attention block. Default: per backend
        (`default_chunks`).
      key_chunk_size: key block size of the attention (online softmax beyond
        it); None: dense attention at every n (memory ~ m * n and n^2). Default: per
        backend (`default_chunks`).
      max_self_attention_keys: k; None: `model.large_sample_settings(config)`
        (config.model.max_self_attention_keys if set, else 4096, the shipped model's
        largest training bucket); 0: full O(n^2) self-attention at every n.
      max_embedded_samples: the log-n embedding sees min(n, this); None:
        `model.large_sample_settings(config)` (the largest training bucket);
        0: the true n at every n (the linear embedding extrapolates).
      ttt_steps: default test-time training steps of a call (0: none); see
        `kdeformer.test_time_training` and `__call__`.
      ttt_learning_rate: default Adam learning rate of those steps.
      ttt_num_points: the TTT loss is evaluated at the first this-many samples
        of each problem (None: all of them); a cost knob.
      separate_encode_from: from this padded n on (and without TTT or
        rotations), the samples are encoded and the queries decoded by two
        separately compiled programs, which halves the peak memory at large n.
    """
    self.separate_encode_from = int(separate_encode_from)
    self.ttt_steps = int(ttt_steps)
    self.ttt_learning_rate = float(ttt_learning_rate)
    self.ttt_num_points = ttt_num_points
    self.params = params
    self.config = config
    self.max_dim = int(config.model.max_dim)
    default_query_chunk, default_key_chunk = default_chunks()
    if query_chunk_size == BACKEND_DEFAULT:
      query_chunk_size = default_query_chunk
    if key_chunk_size == BACKEND_DEFAULT:
      key_chunk_size = default_key_chunk
    self.query_chunk_size = query_chunk_size
    self.large_n = model_lib.large_sample_settings(
        config, max_self_attention_keys=max_self_attention_keys,
        max_embedded_samples=max_embedded_samples)
    self.max_self_attention_keys = self.large_n.max_self_attention_keys
    self.max_embedded_samples = self.large_n.max_embedded_samples
    self.runtime = attention.AttentionRuntime(key_chunk_size=key_chunk_size,
                                              query_chunk_size=query_chunk_size)
    self.model = model_lib.build_model(config, self.runtime, self.large_n)
    self.num_compilations = 0
    self._warned_small_n = False
    self._predict = jax.jit(self._traced_predict,
                            static_argnames=("query_chunk_size", "ttt_num_points"))
    self._encode = jax.jit(self._traced_encode)
    self._decode = jax.jit(self._traced_decode, static_argnames=("query_chunk_size",))
    self._sample = jax.jit(self._traced_sample,
                           static_argnames=("num_chains", "num_steps", "query_chunk_size"))

  def _traced_encode(self, params, samples, sample_mask, sample_weights=None) -> "Encoded":
    self.num_compilations += 1
    whitened_samples, _, dim_mask, normalizer = whiten_problem(
        self.model, samples, samples[:, :1], sample_mask, sample_weights)
    layers = self.model.apply({"params": params}, whitened_samples, sample_mask, dim_mask,
                              sample_log_weights=log_weights(sample_weights, sample_mask),
                              method=model_lib.KDEFormer.encode)
    return Encoded(layers, whitened_samples, sample_mask, dim_mask, normalizer, sample_weights)

  def _traced_decode(self, params, encoded: "Encoded", queries, query_chunk_size) -> Estimate:
    self.num_compilations += 1
    d = queries.shape[-1]
    pad = [(0, 0), (0, 0), (0, self.max_dim - d)]
    whitened_queries = jnp.pad(normalization.whiten(queries, encoded.normalizer), pad)
    log_density, score = decode_queries(
        self.model, params, encoded.layers, encoded.whitened_samples, whitened_queries,
        encoded.sample_mask, encoded.dim_mask, query_chunk_size=query_chunk_size,
        sample_log_weights=log_weights(encoded.sample_weights, encoded.sample_mask))
    return Estimate(*normalization.unwhiten_estimate(log_density, score[..., :d],
                                                     encoded.normalizer))

  def _traced_sample(self, params, encoded: "Encoded", key, step_size, *, num_chains, num_steps,
                     query_chunk_size):
    """MALA chains on the network's whitened density, started from a Scott-KDE resample."""
    self.num_compilations += 1
    d = encoded.normalizer.mean.shape[-1]
    sample_mask, dim_mask = encoded.sample_mask, encoded.dim_mask
    sample_log_weights = log_weights(encoded.sample_weights, sample_mask)

    def target(points):  # (chains, max_dim) -> (chains,), (chains, max_dim): samples encoded once.
      log_density, score = decode_queries(
          self.model, params, encoded.layers, encoded.whitened_samples, points[None],
          sample_mask, dim_mask, query_chunk_size=query_chunk_size,
          sample_log_weights=sample_log_weights)
      return log_density[0], score[0]

    choice_key, noise_key, chain_key = jax.random.split(key, 3)
    logits = (jnp.where(sample_mask[0], 0.0, -jnp.inf) if sample_log_weights is None
              else jnp.where(sample_mask[0], sample_log_weights[0], -jnp.inf))
    picks = jax.random.categorical(choice_key, logits, shape=(num_chains,))
    count = kernel_bank.sample_count(sample_mask, sample_log_weights)[0]
    scott = count ** (-1.0 / (d + 4.0))  # Whitened space: the KDE's own resample to start.
    real = dim_mask[0].astype(jnp.float32)
    initial = (encoded.whitened_samples[0, picks]
               + scott * jax.random.normal(noise_key, (num_chains, self.max_dim)) * real)
    step_size = jnp.where(step_size > 0, step_size, scott)
    points, acceptance, final_step = sampling.mala(target, initial, chain_key,
                                                   num_steps=num_steps, step_size=step_size,
                                                   coordinate_mask=real)
    data_points = (points[:, :d] @ encoded.normalizer.unwhitening[0]
                   + encoded.normalizer.mean[0])
    return data_points, acceptance, final_step

  def _query_blocks(self, count: int) -> tuple[int, int]:
    """(block size, padded count) for `count` queries or chains: a power of two from 8 to
    query_chunk_size, so a handful of compiled programs serve every count."""
    chunk = min(self.query_chunk_size, max(8, 1 << (count - 1).bit_length()))
    return chunk, -(-count // chunk) * chunk

  def _pad_queries(self, queries: jax.Array) -> tuple[jax.Array, int]:
    """Queries (b, m, d) padded with copies of the last row to whole blocks: (padded, block)."""
    chunk, padded_m = self._query_blocks(queries.shape[1])
    pad = [(0, 0), (0, padded_m - queries.shape[1]), (0, 0)]
    return jnp.pad(queries, pad, mode="edge"), chunk

  def encode(self, samples, weights=None) -> "Encoded":
    """Samples (b, n, d) (checked, ordered, pre-whitened) and weights (b, n) or None, padded to
    their bucket and encoded (one compiled program per bucket)."""
    padded, sample_mask, weights = pad_samples(jnp.asarray(samples, jnp.float32), weights)
    return self._encode(self.params, padded, sample_mask, weights)

  def decode(self, encoded: "Encoded", queries) -> Estimate:
    """Queries (b, m, d) against encoded samples: (log_density (b, m), score (b, m, d))."""
    m = np.shape(queries)[1]
    queries, chunk = self._pad_queries(jnp.asarray(queries, jnp.float32))
    out = self._decode(self.params, encoded, queries, query_chunk_size=chunk)
    return Estimate(out.log_density[:, :m], out.score[:, :m])

  def fit(self, samples, *, weights=None, bounds=None) -> fitted.FittedDensity:
    """The density of `samples`, encoded once: queries, sampling and log Z without re-encoding.

      density = est.fit(samples)              # (n, d)
      out = density(queries)                  # Estimate, as est(samples, queries)
      out = density(queries, normalize=True, key=key)   # log Z estimated once per key
      drawn = density.sample(500, key=key)    # as est.sample(samples, 500, key=key)

    Args:
      samples: (n, d) i.i.d. samples (one problem).
      weights: optional (n,) sample weights, as in `__call__`.
      bounds: optional support (lower, upper), as in `__call__`.

    Test-time training and rotation averaging re-run the network per call: use `__call__`.
    """
    return fitted.FittedDensity(self, samples, weights=weights, bounds=bounds)

  def sample(self, samples, num_samples: int, *, key: jax.Array, weights=None,
             num_steps: int | None = None, step_size: float | None = None, bounds=None
             ) -> sampling.SampleResult:
    """Draws points from the estimated density of `samples` (Metropolis-adjusted Langevin).

    `num_samples` independent chains start from a Scott-KDE resample and take `num_steps`
    MALA steps (`kdeformer.sampling`); each chain gives its last state.

    Args:
      samples: (n, d) i.i.d. samples (one problem).
      num_samples: how many points to draw (= chains).
      key: PRNG key.
      weights: optional (n,) sample weights, as in `__call__`.
      num_steps: MALA steps per chain (default `sampling.DEFAULT_NUM_STEPS`).
      step_size: initial step size in whitened coordinates (default: Scott's bandwidth there).
      bounds: optional support (lower, upper), as in `__call__`: the chains run on the
        mapped samples and their points are mapped back (`kdeformer.support`).

    Returns:
      `sampling.SampleResult`: points (num_samples, d), acceptance_rate, step_size, num_steps.
    """
    check_draw_arguments(num_samples, key, num_steps, step_size)  # Before the encoding.
    return self.fit(samples, weights=weights, bounds=bounds).sample(
        num_samples, key=key, num_steps=num_steps, step_size=step_size)

  def draw(self, encoded: "Encoded", num_samples: int, *, key: jax.Array,
           num_steps: int | None = None, step_size: float | None = None
           ) -> sampling.SampleResult:
    """MALA draws (in the encoded problem's coordinates) from encoded samples (one problem)."""
    check_draw_arguments(num_samples, key, num_steps, step_size)
    num_steps = sampling.DEFAULT_NUM_STEPS if num_steps is None else int(num_steps)
    chains = int(num_samples)
    chunk, padded_chains = self._query_blocks(chains)
    points, acceptance, final_step = self._sample(
        self.params, encoded, key, jnp.float32(step_size or 0.0), num_chains=padded_chains,
        num_steps=num_steps, query_chunk_size=chunk)
    return sampling.SampleResult(np.asarray(points[:chains]), float(acceptance),
                                 float(final_step), num_steps)

  def _traced_predict(self, params, samples, queries, sample_mask, query_chunk_size,
                      ttt_steps=None, ttt_learning_rate=0.0, ttt_num_points=None,
                      rotations=None, sample_weights=None):
    self.num_compilations += 1  # Runs once per trace, i.e. per compiled shape.
    return predict(self.model, params, samples, queries, sample_mask, query_chunk_size,
                   ttt_steps=ttt_steps, ttt_learning_rate=ttt_learning_rate,
                   ttt_num_points=ttt_num_points, rotations=rotations,
                   sample_weights=sample_weights)

  @classmethod
  def restore(cls, workdir: str, step: int | None = None, **kwargs) -> "Estimator":
    """Loads the config and the latest (or given) checkpoint of a training workdir.

    Raises:
      FileNotFoundError: the workdir, its config.json or its checkpoints are missing.
      ValueError: the checkpoint is corrupt or does not fit the config.
    """
    if not os.path.isdir(workdir):
      raise FileNotFoundError(f"Workdir {workdir!r} does not exist.")
    config = checkpoints.load_config(workdir)
    abstract_params = jax.eval_shape(lambda: model_lib.init_params(config, jax.random.key(0)))
    params = checkpoints.restore_params(workdir, abstract_params, step=step)
    return cls(params, config, **kwargs)

  def __call__(self, samples, queries=None, *, weights=None, ttt_steps: int | None = None,
               ttt_learning_rate: float | None = None, rotations=None,
               normalize: bool = False, key: jax.Array | None = None, bounds=None) -> Estimate:
    """Log-density and score of the distribution of `samples`, at `queries`.

    Args:
      samples: (n, d) or (b, n, d) i.i.d. samples, 1 <= d <= max_dim, n > d.
        numpy or jax, float32 or float64.
      queries: (m, d) or (b, m, d); defaults to the samples.
      weights: optional (n,) or (b, n) non-negative sample weights (scipy.stats.gaussian_kde's
        convention: normalised to sum 1 per problem; effective n = 1 / sum w^2). Samples of
        weight zero take no part. Not combined with ttt_steps.
      ttt_steps: test-time training steps per problem on a copy of the parameters
        (`kdeformer.test_time_training`); None: self.ttt_steps; 0: the plain call.
      ttt_learning_rate: their learning rate; None: self.ttt_learning_rate.
      rotations: rotation averaging (`kdeformer.rotation_averaging`): an int k (k
        Haar-random rotations drawn from `key`) or a (k, d, d) array of orthogonal matrices,
        the same for every problem of a batch. None: no averaging.
      normalize: subtract log Z, the log of the integral of exp(log-density),
        estimated by importance sampling (`kdeformer.normalizing_constant`,
        16,384 draws: one extra call with that many queries per problem), so
        exp(log_density) integrates to 1. Needs `key`.
      key: PRNG key for the rotations (required when `rotations` is an int)
        and for `normalize`.
      bounds: optional support (lower, upper): scalars or (d,) arrays, -inf / +inf where a
        coordinate is unbounded; the problem is solved in mapped coordinates and mapped back
        exactly (`kdeformer.support`). Samples must lie strictly inside; queries on or
        outside the open support get log-density -inf and score 0.

    Returns:
      Estimate(log_density (m,) or (b, m), score (m, d) or (b, m, d)), jax arrays.

    Raises:
      ValueError: NaN/inf, wrong rank, mismatched or unsupported d, too few
        samples, a degenerate (singular) sample covariance, bad weights, or bad
        bounds (a sample on or beyond a bound, lower >= upper, a wrong shape).
    """
    if bounds is not None:
      return support.estimate_with_bounds(
          self, samples, queries, bounds, weights=weights, ttt_steps=ttt_steps,
          ttt_learning_rate=ttt_learning_rate, rotations=rotations, normalize=normalize, key=key)
    validation.check_samples(samples, min_samples=MIN_SAMPLES, max_dim=self.max_dim)
    if weights is not None:
      weights = validation.check_weights(weights, np.shape(samples))
      if (self.ttt_steps if ttt_steps is None else int(ttt_steps)) > 0:
        raise ValueError("weights and test-time training (ttt_steps > 0) cannot be combined: "
                         "the TTT loss treats every sample alike.")
    self.warn_below_trained_sizes(np.shape(samples)[-2])
    if queries is None:
      queries = samples
    validation.check_points(queries, "queries", dim=np.shape(samples)[-1])
    if np.ndim(queries) != np.ndim(samples):
      raise ValueError(f"samples have shape {np.shape(samples)} and queries {np.shape(queries)}: "
                       "both must be unbatched (n, d), (m, d) or batched (b, n, d), (b, m, d).")
    if np.ndim(samples) == 3 and np.shape(samples)[0] != np.shape(queries)[0]:
      raise ValueError(f"samples hold {np.shape(samples)[0]} problems but queries "
                       f"{np.shape(queries)[0]}; the batch sizes must match.")
    if normalize and key is None:
      raise ValueError("normalize=True estimates log Z by importance sampling: pass "
                       "key=jax.random.key(seed).")
    # Traced inputs (jax.grad through the call) stay on the float32 path.
    whitening = None
    if not any(validation.is_traced(x) for x in (samples, queries)):
      samples, weights = self.in_canonical_order(samples, weights)
      whitening = normalization.fit_host_whitening(samples, weights)
      samples, queries = whitening.whiten(samples), whitening.whiten(queries)
    options = dict(weights=weights, ttt_steps=ttt_steps, ttt_learning_rate=ttt_learning_rate,
                   rotations=rotations, key=key)
    out = (self._normalized if normalize else self._estimate)(samples, queries, **options)
    return out if whitening is None else whitening.unwhiten_estimate(out)

  def in_canonical_order(self, samples, weights):
    """Samples (float64) and weights in their canonical order beyond the key budget.

    Beyond the key budget the first k samples are the self-attention keys, so the order must
    not depend on the input's. Done before the whitening, so its float64 sums see one order.
    """
    samples = np.asarray(samples, np.float64)
    if not 0 < self.max_self_attention_keys < samples.shape[-2]:
      return samples, weights
    order = sample_order.canonical_order(samples)
    samples = np.take_along_axis(samples, order[..., None], axis=-2)
    if weights is not None:
      weights = np.take_along_axis(weights, order, axis=-1)
    return samples, weights

  def _estimate(self, samples, queries, *, weights=None, ttt_steps=None, ttt_learning_rate=None,
                rotations=None, key=None) -> Estimate:
    """The network on checked, ordered (and, from __call__, pre-whitened) problems."""
    unbatched = np.ndim(samples) == 2
    samples = jnp.asarray(samples, jnp.float32)
    queries = jnp.asarray(queries, jnp.float32)
    if unbatched:
      samples, queries = samples[None], queries[None]
    m = queries.shape[1]
    samples, sample_mask, weights = pad_samples(samples, weights)
    queries, chunk = self._pad_queries(queries)
    ttt_steps = self.ttt_steps if ttt_steps is None else int(ttt_steps)
    if ttt_steps < 0:
      raise ValueError(f"ttt_steps={ttt_steps}: the number of TTT steps must be >= 0.")
    ttt_learning_rate = (self.ttt_learning_rate if ttt_learning_rate is None
                         else float(ttt_learning_rate))
    rotations = self._rotations(rotations, key, dim=samples.shape[-1])
    if samples.shape[1] >= self.separate_encode_from and ttt_steps == 0 and rotations is None:
      encoded = self._encode(self.params, samples, sample_mask, weights)
      out = self._decode(self.params, encoded, queries, query_chunk_size=chunk)
    else:
      out = self._predict(self.params, samples, queries, sample_mask, query_chunk_size=chunk,
                          # Traced step count (one program for every k > 0); None: no TTT.
                          ttt_steps=jnp.int32(ttt_steps) if ttt_steps > 0 else None,
                          ttt_learning_rate=jnp.float32(ttt_learning_rate),
                          ttt_num_points=self.ttt_num_points, rotations=rotations,
                          sample_weights=weights)
    out = Estimate(out.log_density[:, :m], out.score[:, :m])
    return Estimate(out.log_density[0], out.score[0]) if unbatched else out

  def _normalized(self, samples, queries, *, weights=None, key=None, **options) -> Estimate:
    """`self._estimate(samples, queries, ...)` with log Z subtracted (see __call__)."""
    sampler_key, rotation_key = jax.random.split(key)
    call = functools.partial(self._estimate, key=rotation_key, **options)

    def normalized(problem, problem_queries, problem_weights, problem_key):
      # Samples of weight zero take no part in the proposal either.
      proposal = problem if problem_weights is None else problem[problem_weights > 0]
      return normalizing_constant.normalized_log_density(
          functools.partial(call, weights=problem_weights), problem, problem_queries,
          problem_key, proposal_samples=proposal)[0]

    if np.ndim(samples) == 2:
      return normalized(samples, queries, weights, sampler_key)
    outs = [normalized(problem, problem_queries, None if weights is None else weights[index],
                       jax.random.fold_in(sampler_key, index))
            for index, (problem, problem_queries) in enumerate(zip(samples, queries))]
    return Estimate(jnp.stack([o.log_density for o in outs]), jnp.stack([o.score for o in outs]))

  def smallest_trained_size(self) -> int:
    """The fewest samples a training problem had (the smallest bucket times data.min_fill)."""
    buckets = self.config.get("buckets", ())
    if not buckets:
      return MIN_SAMPLES
    min_fill = float(self.config.get("data", {}).get("min_fill", 1.0))
    return max(MIN_SAMPLES, int(min_fill * min(buckets)))

  def warn_below_trained_sizes(self, num_samples: int) -> None:
    """Says once per estimator that n is below what the model was trained at (see README)."""
    smallest = self.smallest_trained_size()
    if num_samples >= smallest or self._warned_small_n:
      return
    self._warned_small_n = True
    warnings.warn(
        f"n = {num_samples} samples is below the {smallest} this model was trained with at the "
        "least. It still answers, but nothing guarantees it beats a KDE there (README, 'Small "
        "samples', has the measured errors): compare with kdeformer.kde.gaussian_kde on your "
        "data when n is this small.", stacklevel=3)

  @staticmethod
  def _rotations(rotations, key, *, dim: int) -> jax.Array | None:
    """The (k, d, d) float32 orthogonal matrices of a call's `rotations` argument, or None."""
    if rotations is None:
      return None
    if isinstance(rotations, (int, np.integer)):
      if rotations < 1:
        raise ValueError(f"rotations={rotations}: the number of rotations must be at least 1.")
      if key is None:
        raise ValueError("rotations=k draws k random rotations: pass key=jax.random.key(seed).")
      return jax.random.orthogonal(key, dim, shape=(int(rotations),))  # Haar on O(d).
    matrices = np.asarray(rotations, np.float64)
    if matrices.ndim != 3 or matrices.shape[1:] != (dim, dim) or not len(matrices):
      raise ValueError(f"rotations has shape {matrices.shape}; expected (k, {dim}, {dim}) "
                       "orthogonal matrices with k >= 1, or an int k.")
    gram = np.einsum("kji,kjl->kil", matrices, matrices)
    if not np.allclose(gram, np.eye(dim), atol=1e-4):
      raise ValueError("rotations must be orthogonal (R^T R = I within 1e-4).")
    return jnp.asarray(matrices, jnp.float32)


def list_pretrained() -> dict[str, str]:
  """The models shipped in the package: name -> one line on what it is for."""
  return dict(checkpoints.PRETRAINED_MODELS)


def load_pretrained(name: str = checkpoints.DEFAULT_PRETRAINED, **kwargs) -> Estimator:
  """A model shipped inside the package, by name (see `list_pretrained()` and its MODEL_CARD.md).

  Args:
    name: "general" (the default: any data, n from 16) or "gmm" (the Gaussian-mixture
      specialist of the paper's benchmark).
    **kwargs: Estimator options (query_chunk_size, key_chunk_size, ...).
  """
  directory = checkpoints.pretrained_dir(name)
  if not os.path.isfile(os.path.join(directory, checkpoints.CONFIG_FILE)):
    raise FileNotFoundError(
        f"The pretrained model {name!r} is missing from {directory} (config.json missing): "
        "the package is incomplete; reinstall it, or train a model with experiments/train.py "
        "and use Estimator.restore(workdir).")
  return Estimator.restore(directory, **kwargs)
