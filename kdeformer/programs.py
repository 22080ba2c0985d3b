"""A network's parameters and its compiled programs, on padded, whitened problems.

The device side of `kdeformer.Estimator`: the pure functions of `kdeformer.inference`, jitted
once per shape, with samples padded to power-of-two buckets and queries to whole blocks.
"""

import jax
import jax.numpy as jnp
import numpy as np

from kdeformer import attention
from kdeformer import inference
from kdeformer import log_normalizer as log_normalizer_lib
from kdeformer import model as model_lib
from kdeformer import networks
from kdeformer import sampling
from kdeformer import validation
from kdeformer.estimate import Estimate
from kdeformer.inference import Encoded


class CompiledNetwork:
  """The network (`model.KDEFormer`), its parameters and its compiled programs.

  Attributes:
    model_config: the network's `model.ModelConfig`.
    params: the network parameters.
    runtime: how attention runs (`attention.AttentionRuntime`).
    query_chunk_size: queries decoded per block.
    ttt_num_points: the TTT loss uses the first this-many samples (None: all).
    num_compilations: how many distinct programs have been compiled so far.
  """

  def __init__(
    self,
    params,
    model_config: model_lib.ModelConfig,
    runtime: attention.AttentionRuntime,
    query_chunk_size: int,
    ttt_num_points: int | None = None,
  ):
    self.params, self.model_config, self.runtime = params, model_config, runtime
    self.query_chunk_size, self.ttt_num_points = query_chunk_size, ttt_num_points
    self.model = networks.build_model(model_config, runtime)
    self.num_compilations = 0
    self._predict = self._compiled(
      inference.predict, static_argnames=("query_chunk_size", "ttt_num_points")
    )
    self._encode = self._compiled(inference.encode)
    self._decode = self._compiled(inference.decode, static_argnames=("query_chunk_size",))
    self._draw = self._compiled(
      inference.draw, static_argnames=("num_chains", "num_steps", "query_chunk_size")
    )

  def _compiled(self, function, **jit_options):
    """jit(function(self.model, ...)), counting its traces in num_compilations."""

    def traced(*args, **kwargs):
      self.num_compilations += 1  # Runs once per trace, i.e. per compiled shape.
      return function(self.model, *args, **kwargs)

    traced.__name__ = function.__name__
    return jax.jit(traced, **jit_options)

  def encode(self, samples, weights=None) -> Encoded:
    """Whitened samples (b, n, d) and weights (b, n) or None, padded to their bucket and
    encoded (one compiled program per bucket)."""
    padded, sample_mask, weights = inference.pad_samples(samples, weights)
    return self._encode(self.params, padded, sample_mask, weights)

  def decode(self, encoded: Encoded, queries) -> Estimate:
    """Queries (b, m, d) against encoded samples: (log_density (b, m), score (b, m, d)), numpy
    arrays for concrete queries (padding and slicing on the host compile nothing)."""
    m = np.shape(queries)[1]
    queries, chunk = inference.pad_queries(queries, self.query_chunk_size)
    out = self._decode(self.params, encoded, queries, query_chunk_size=chunk)
    return inference.first_queries(out, m)

  def draw(
    self,
    encoded: Encoded,
    num_samples: int,
    *,
    key: jax.Array,
    num_steps: int | None = None,
    step_size: float | None = None,
  ) -> sampling.SampleResult:
    """MALA draws (in the encoded problem's coordinates) from encoded samples (one problem)."""
    sampling.check_draw_arguments(num_samples, key, num_steps, step_size)
    num_steps = sampling.DEFAULT_NUM_STEPS if num_steps is None else int(num_steps)
    chunk, padded_chains = inference.query_blocks(int(num_samples), self.query_chunk_size)
    points, acceptance, final_step = self._draw(
      self.params,
      encoded,
      key,
      jnp.float32(step_size or 0.0),
      num_chains=padded_chains,
      num_steps=num_steps,
      query_chunk_size=chunk,
    )
    return sampling.SampleResult(
      np.asarray(points[: int(num_samples)]), float(acceptance), float(final_step), num_steps
    )

  def predict(
    self, samples, queries, weights, *, ttt_steps, ttt_learning_rate, rotations
  ) -> Estimate:
    """`inference.predict` (test-time training, rotations) on whitened problems (b, n, d),
    queries (b, m, d) and weights (b, n) or None, padded here."""
    m = np.shape(queries)[1]
    samples, sample_mask, weights = inference.pad_samples(samples, weights)
    queries, chunk = inference.pad_queries(queries, self.query_chunk_size)
    out = self._predict(
      self.params,
      samples,
      queries,
      sample_mask,
      query_chunk_size=chunk,
      # Traced step count (one program for every k > 0); None: no TTT.
      ttt_steps=jnp.int32(ttt_steps) if ttt_steps > 0 else None,
      ttt_learning_rate=jnp.float32(ttt_learning_rate),
      ttt_num_points=self.ttt_num_points,
      rotations=rotations,
      sample_weights=weights,
    )
    return inference.first_queries(out, m)

  def predict_problems(self, samples, queries, weights, sampler_key, **options) -> Estimate:
    """`predict` on whitened problems (n, d) or (b, n, d), queries (m, d) or (b, m, d); with a
    sampler key, log Z subtracted per problem (`log_normalizer.log_normalizer_of_fit`; a
    batch folds each problem's index into the key)."""
    unbatched = np.ndim(samples) == 2
    if unbatched:
      samples, queries = samples[None], queries[None]
      weights = None if weights is None else weights[None]
    out = self.predict(samples, queries, weights, **options)
    if sampler_key is not None:
      log_z = []
      for index, problem in enumerate(samples):
        member_weights = None if weights is None else weights[index : index + 1]
        log_density = lambda points, problem=problem, member_weights=member_weights: self.predict(
          problem[None], np.asarray(points)[None], member_weights, **options
        ).log_density[0]
        key = sampler_key if unbatched else jax.random.fold_in(sampler_key, index)
        log_z.append(
          log_normalizer_lib.log_normalizer_of_fit(
            log_density, problem, key, None if weights is None else weights[index]
          )
        )
      out = Estimate(out.log_density - validation.as_float32(log_z)[:, None], out.score)
    return Estimate(out.log_density[0], out.score[0]) if unbatched else out
