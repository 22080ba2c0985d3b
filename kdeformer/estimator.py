"""Inference API: a trained transformer as a function samples, queries -> Estimate.

  est = kdeformer.load_pretrained()   # or kdeformer.Estimator.restore(workdir)
  out = est(samples, queries)         # (n, d), (m, d) -> (m,), (m, d)

The class checks and prepares inputs and holds the compiled programs; the pipeline itself is
the pure functions of `kdeformer.inference`.
"""

import dataclasses
import functools
import math
import os
import warnings

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kdeformer import attention
from kdeformer import checkpoints
from kdeformer import fitted
from kdeformer import inference
from kdeformer import log_normalizer as log_normalizer_lib
from kdeformer import model as model_lib
from kdeformer import equivariant
from kdeformer import networks
from kdeformer import rotation_averaging
from kdeformer import sample_order
from kdeformer import sampling
from kdeformer import support
from kdeformer import validation
from kdeformer import whitening
from kdeformer.estimate import Estimate
from kdeformer.inference import Encoded

# Default Adam learning rate of test-time training (chosen with experiments/configs/refinements.py).
DEFAULT_TTT_LEARNING_RATE = 1e-5
# Default of query_chunk_size and key_chunk_size: resolved per backend by
# `inference.default_chunks`.
BACKEND_DEFAULT = "backend default"
# From this sample bucket on, encoding and decoding are two compiled programs: inside one,
# XLA keeps both scratch areas alive (about twice the peak memory).
DEFAULT_SEPARATE_ENCODE_FROM = 1 << 17


class Estimator:
  """A trained density-and-score transformer, callable like the KDE baselines.

  Attributes:
    model_config: the network's `model.ModelConfig` (with this estimator's large-n settings).
    params: the network parameters.
    num_compilations: how many distinct programs have been compiled so far.
    max_self_attention_keys: k of the sub-quadratic sample mixing (0: full).
    max_embedded_samples: the largest n the network is told (0: any).

  Large n: attention runs blockwise beyond key_chunk_size; beyond k = max_self_attention_keys
  samples the sample tokens' self-attention uses k key samples chosen by a hash of the values
  (`kdeformer.sample_order`: the output does not depend on the input order), and beyond
  max_embedded_samples the log-n input is held there (docs/DESIGN.md).
  """

  def __init__(self, params, config: "model_lib.ModelConfig | ml_collections.ConfigDict", *,
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
      config: the network's `model.ModelConfig` (a workdir's model.json), or a training
        config (`model.model_config` reads it).
      query_chunk_size: queries decoded per block; beyond key_chunk_size samples, also the
        sample tokens per self-attention block. Default: per backend
        (`inference.default_chunks`).
      key_chunk_size: key block size of the attention (online softmax beyond it); None: dense
        attention at every n (memory ~ m * n and n^2). Default: per backend.
      max_self_attention_keys: k; None: the model config's; 0: full O(n^2) self-attention at
        every n.
      max_embedded_samples: the log-n embedding sees min(n, this); None: the model config's
        (the largest training bucket); 0: the true n at every n.
      ttt_steps: default test-time training steps of a call (0: none); see
        `kdeformer.adaptation` and `__call__`.
      ttt_learning_rate: default Adam learning rate of those steps.
      ttt_num_points: the TTT loss is evaluated at the first this-many samples of each
        problem (None: all of them); a cost knob.
      separate_encode_from: from this padded n on (and without TTT or rotations), samples are
        encoded and queries decoded by two compiled programs (half the peak memory).
    """
    self.separate_encode_from = int(separate_encode_from)
    # The shipped model that answers d > max_dim (set by load_pretrained on the default model),
    # loaded on first use with the same options.
    self.beyond_max_dim: str | None = None
    self._beyond_max_dim_estimator = None
    self._options = dict(query_chunk_size=query_chunk_size, key_chunk_size=key_chunk_size)
    self.ttt_steps = int(ttt_steps)
    self.ttt_learning_rate = float(ttt_learning_rate)
    self.ttt_num_points = ttt_num_points
    self.params = params
    overrides = {name: int(value) for name, value in
                 (("max_self_attention_keys", max_self_attention_keys),
                  ("max_embedded_samples", max_embedded_samples)) if value is not None}
    self.model_config = dataclasses.replace(model_lib.model_config(config), **overrides)
    default_query_chunk, default_key_chunk = inference.default_chunks()
    if query_chunk_size == BACKEND_DEFAULT:
      query_chunk_size = default_query_chunk
    if key_chunk_size == BACKEND_DEFAULT:
      key_chunk_size = default_key_chunk
    self.query_chunk_size = query_chunk_size
    self.runtime = attention.AttentionRuntime(key_chunk_size=key_chunk_size,
                                              query_chunk_size=query_chunk_size)
    self.model = networks.build_model(self.model_config, self.runtime)
    self.num_compilations = 0
    self._warned_small_n = False
    self._predict = self._compiled(inference.predict,
                                   static_argnames=("query_chunk_size", "ttt_num_points"))
    self._encode = self._compiled(inference.encode)
    self._decode = self._compiled(inference.decode, static_argnames=("query_chunk_size",))
    self._draw = self._compiled(
        inference.draw, static_argnames=("num_chains", "num_steps", "query_chunk_size"))

  @property
  def max_dim(self) -> int:
    """The largest d the network takes (0: any d)."""
    return self.model_config.max_dim

  def check_memory(self, samples) -> None:
    """For the equivariant network (any d): a clear error where memory, not d, is the limit."""
    if self.max_dim:
      return
    config = self.model_config
    validation.check_equivariant_memory(
        np.shape(samples)[-2], np.shape(samples)[-1],
        num_keys=config.max_self_attention_keys or np.shape(samples)[-2],
        num_bandwidths=len(config.kernel_bandwidths),
        num_components=sum(config.mixture_components),
        row_block=equivariant.FEATURE_ROW_BLOCK)

  def for_dimension(self, samples) -> "Estimator":
    """The estimator that answers samples (..., n, d): self, or for d > max_dim the shipped
    model named by `beyond_max_dim` (the default model hands d > 10 to the equivariant one)."""
    dim = np.shape(samples)[-1] if np.ndim(samples) >= 2 else 0
    if not self.max_dim or self.beyond_max_dim is None or dim <= self.max_dim:
      return self
    if self._beyond_max_dim_estimator is None:
      self._beyond_max_dim_estimator = load_pretrained(self.beyond_max_dim, **self._options)
    return self._beyond_max_dim_estimator

  @property
  def max_self_attention_keys(self) -> int:
    return self.model_config.max_self_attention_keys

  @property
  def max_embedded_samples(self) -> int:
    return self.model_config.max_embedded_samples

  def _compiled(self, function, **jit_options):
    """jit(function(self.model, ...)), counting its traces in num_compilations."""
    def traced(*args, **kwargs):
      self.num_compilations += 1  # Runs once per trace, i.e. per compiled shape.
      return function(self.model, *args, **kwargs)
    traced.__name__ = function.__name__
    return jax.jit(traced, **jit_options)

  def encode(self, samples, weights=None) -> "Encoded":
    """Samples (b, n, d) (checked, ordered, pre-whitened) and weights (b, n) or None, padded to
    their bucket and encoded (one compiled program per bucket)."""
    padded, sample_mask, weights = inference.pad_samples(jnp.asarray(samples, jnp.float32),
                                                         weights)
    return self._encode(self.params, padded, sample_mask, weights)

  def decode(self, encoded: "Encoded", queries) -> Estimate:
    """Queries (b, m, d) against encoded samples: (log_density (b, m), score (b, m, d))."""
    m = np.shape(queries)[1]
    queries, chunk = inference.pad_queries(jnp.asarray(queries, jnp.float32),
                                           self.query_chunk_size)
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
    if self.for_dimension(samples) is not self:
      return self.for_dimension(samples).fit(samples, weights=weights, bounds=bounds)
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
    sampling.check_draw_arguments(num_samples, key, num_steps, step_size)  # Before encoding.
    return self.fit(samples, weights=weights, bounds=bounds).sample(
        num_samples, key=key, num_steps=num_steps, step_size=step_size)

  def draw(self, encoded: "Encoded", num_samples: int, *, key: jax.Array,
           num_steps: int | None = None, step_size: float | None = None
           ) -> sampling.SampleResult:
    """MALA draws (in the encoded problem's coordinates) from encoded samples (one problem)."""
    sampling.check_draw_arguments(num_samples, key, num_steps, step_size)
    num_steps = sampling.DEFAULT_NUM_STEPS if num_steps is None else int(num_steps)
    chains = int(num_samples)
    chunk, padded_chains = inference.query_blocks(chains, self.query_chunk_size)
    points, acceptance, final_step = self._draw(
        self.params, encoded, key, jnp.float32(step_size or 0.0), num_chains=padded_chains,
        num_steps=num_steps, query_chunk_size=chunk)
    return sampling.SampleResult(np.asarray(points[:chains]), float(acceptance),
                                 float(final_step), num_steps)

  @classmethod
  def restore(cls, workdir: str, step: int | None = None, **kwargs) -> "Estimator":
    """Loads the model config and the latest (or given) checkpoint of a training workdir.

    Raises:
      FileNotFoundError: the workdir, its model.json and config.json, or its checkpoints are
        missing.
      ValueError: the checkpoint is corrupt or does not fit the config.
    """
    if not os.path.isdir(workdir):
      raise FileNotFoundError(f"Workdir {workdir!r} does not exist.")
    config = checkpoints.load_model_config(workdir)
    abstract_params = jax.eval_shape(lambda: networks.init_params(config, jax.random.key(0)))
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
        (`kdeformer.adaptation`); None: self.ttt_steps; 0: the plain call.
      ttt_learning_rate: their learning rate; None: self.ttt_learning_rate.
      rotations: rotation averaging (`kdeformer.rotation_averaging`): an int k (k
        Haar-random rotations drawn from `key`) or a (k, d, d) array of orthogonal matrices,
        the same for every problem of a batch. None: no averaging.
      normalize: subtract log Z, the log of the integral of exp(log-density),
        estimated by importance sampling (`kdeformer.log_normalizer`,
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
    if self.for_dimension(samples) is not self:
      return self.for_dimension(samples)(
          samples, queries, weights=weights, ttt_steps=ttt_steps,
          ttt_learning_rate=ttt_learning_rate, rotations=rotations, normalize=normalize, key=key,
          bounds=bounds)
    if bounds is not None:
      return support.estimate_with_bounds(
          self, samples, queries, bounds, weights=weights, ttt_steps=ttt_steps,
          ttt_learning_rate=ttt_learning_rate, rotations=rotations, normalize=normalize, key=key)
    validation.check_points(samples, "samples", min_rows=inference.MIN_SAMPLES,
                            max_dim=self.max_dim)
    self.check_sample_count(samples)
    if weights is not None:
      weights = validation.check_weights(weights, np.shape(samples))
      if (self.ttt_steps if ttt_steps is None else int(ttt_steps)) > 0:
        raise ValueError("weights and test-time training (ttt_steps > 0) cannot be combined: "
                         "the TTT loss treats every sample alike.")
    validation.check_samples(samples, min_samples=self.min_samples, max_dim=self.max_dim,
                             weights=weights)
    self.check_memory(samples)
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
    if normalize:
      validation.check_key(key, "normalize=True estimates log Z by importance sampling")
    # Traced inputs (jax.grad through the call) stay on the float32 path.
    host_map = None
    if not any(validation.is_traced(x) for x in (samples, queries)):
      samples, weights = self.in_canonical_order(samples, weights)
      host_map = whitening.fit_host_whitening(samples, weights)
      samples, queries = host_map.whiten_samples(samples, weights), host_map.whiten(queries)
      validation.check_query_distance(queries)
    options = dict(weights=weights, ttt_steps=ttt_steps, ttt_learning_rate=ttt_learning_rate,
                   rotations=rotations, key=key)
    out = (self._normalized if normalize else self._estimate)(samples, queries, **options)
    return out if host_map is None else host_map.unwhiten_estimate(out)

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
    samples, sample_mask, weights = inference.pad_samples(samples, weights)
    queries, chunk = inference.pad_queries(queries, self.query_chunk_size)
    ttt_steps = self.ttt_steps if ttt_steps is None else int(ttt_steps)
    if ttt_steps < 0:
      raise ValueError(f"ttt_steps={ttt_steps}: the number of TTT steps must be >= 0.")
    ttt_learning_rate = (self.ttt_learning_rate if ttt_learning_rate is None
                         else float(ttt_learning_rate))
    if ttt_steps > 0 and not 0 < ttt_learning_rate < math.inf:  # NaN: a NaN estimate.
      raise ValueError(f"ttt_learning_rate={ttt_learning_rate}: a positive finite learning rate "
                       "is needed for test-time training.")
    rotations = rotation_averaging.resolve_rotations(rotations, key, dim=samples.shape[-1])
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
      return log_normalizer_lib.normalized_log_density(
          functools.partial(call, weights=problem_weights), problem, problem_queries,
          problem_key, proposal_samples=proposal)[0]

    if np.ndim(samples) == 2:
      return normalized(samples, queries, weights, sampler_key)
    outs = [normalized(problem, problem_queries, None if weights is None else weights[index],
                       jax.random.fold_in(sampler_key, index))
            for index, (problem, problem_queries) in enumerate(zip(samples, queries))]
    return Estimate(jnp.stack([o.log_density for o in outs]), jnp.stack([o.score for o in outs]))

  @property
  def min_samples(self) -> int:
    """The fewest samples this model answers for (`model.ModelConfig.min_samples`)."""
    return max(inference.MIN_SAMPLES, self.model_config.min_samples)

  def check_sample_count(self, samples) -> None:
    """Refuses fewer samples (n, d) or (b, n, d) than the model's measured minimum
    (`model.ModelConfig.min_samples`; rank already checked). The floor,
    `inference.MIN_SAMPLES`, is the generic count check's (`validation.check_points`)."""
    num_samples, dim = np.shape(samples)[-2:]
    if num_samples < self.model_config.min_samples:
      hint = (" It has more columns than rows: did you pass a transposed (d, n) array?"
              if dim > num_samples else "")
      raise ValueError(
          f"n = {num_samples} samples is below the {self.min_samples} this model answers for: "
          "with fewer, its estimate was measured not to be a density (README, 'Small "
          "samples'). Pass more samples, or use kdeformer.kde.gaussian_kde, which answers "
          f"from n = d + 1.{hint}")

  def smallest_trained_size(self) -> int:
    """The fewest samples a training problem had (at least MIN_SAMPLES)."""
    return max(inference.MIN_SAMPLES, self.model_config.smallest_trained_size)

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
  estimator = Estimator.restore(directory, **kwargs)
  estimator.beyond_max_dim = checkpoints.BEYOND_MAX_DIM.get(name)
  return estimator


def load(source: str | None = None, **kwargs) -> Estimator:
  """The one model loader: a shipped model by name ("general", "gmm"; None: the default) or a
  training workdir (latest checkpoint). **kwargs: Estimator options.

  Raises:
    FileNotFoundError: no such workdir or checkpoint, or the shipped model is missing.
    ValueError: the checkpoint is corrupt or does not fit its config, or `source` is both a
      shipped model's name and a training workdir in the current directory.
  """
  if source in checkpoints.PRETRAINED_MODELS and checkpoints.looks_like_workdir(source):
    # Training with --workdir=gmm and evaluating --workdir=gmm must not silently give the
    # shipped model.
    raise ValueError(
        f"{source!r} is both the name of a shipped model and a training workdir in the "
        f"current directory ({os.path.abspath(source)}). Pass {os.path.join('.', source)!r} "
        f"for the workdir, or {checkpoints.pretrained_dir(source)!r} for the shipped model.")
  if source is None or source in checkpoints.PRETRAINED_MODELS:
    return load_pretrained(source or checkpoints.DEFAULT_PRETRAINED, **kwargs)
  return Estimator.restore(source, **kwargs)
