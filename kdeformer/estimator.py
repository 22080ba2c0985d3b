"""Inference API: a trained transformer as a function samples, queries -> Estimate.

  est = kdeformer.load_pretrained()   # or kdeformer.load(workdir)
  out = est(samples, queries)         # (n, d), (m, d) -> (m,), (m, d)

Input is prepared once by `kdeformer.problem`; a plain call is `est.fit(samples)(queries)`
(`kdeformer.fitted`); test-time training and rotations run `kdeformer.inference.predict`.
"""

import dataclasses
import os
import warnings

import jax
import ml_collections
import numpy as np

from kdeformer import adaptation
from kdeformer import attention
from kdeformer import checkpoints
from kdeformer import equivariant
from kdeformer import fitted
from kdeformer import log_normalizer as log_normalizer_lib
from kdeformer import model as model_lib
from kdeformer import networks
from kdeformer import problem as problem_lib
from kdeformer import programs
from kdeformer import rotation_averaging
from kdeformer import sampling
from kdeformer import validation
from kdeformer.estimate import Estimate

# Default Adam learning rate of test-time training (chosen with experiments/configs/refinements.py).
DEFAULT_TTT_LEARNING_RATE = 1e-5
# Default of query_chunk_size and key_chunk_size: per backend (`attention.default_chunks`).
BACKEND_DEFAULT = "backend default"


class Estimator(programs.CompiledNetwork):
  """A trained density-and-score transformer, callable like the KDE baselines.

  Attributes:
    model_config: the network's `model.ModelConfig` (with this estimator's large-n settings).
    params: the network parameters.
    rules: what it accepts (`problem.Rules`: the count, dimension and distance rules).
    num_compilations: how many distinct programs have been compiled so far.

  Large n: attention runs blockwise beyond key_chunk_size; beyond k = max_self_attention_keys
  samples the self-attention uses k key samples chosen by a hash of the values (the output
  does not depend on the input order), and beyond max_embedded_samples the log-n input is
  held there (WORKSPACE.md, "Design notes").
  """

  def __init__(
    self,
    params,
    config: "model_lib.ModelConfig | ml_collections.ConfigDict",
    *,
    query_chunk_size: int | str = BACKEND_DEFAULT,
    key_chunk_size: int | None | str = BACKEND_DEFAULT,
    max_self_attention_keys: int | None = None,
    max_embedded_samples: int | None = None,
    ttt_steps: int = 0,
    ttt_learning_rate: float = DEFAULT_TTT_LEARNING_RATE,
    ttt_num_points: int | None = None,
  ):
    """See the class doc.

    Args:
      params: network parameters.
      config: the network's `model.ModelConfig` (a workdir's model.json), or a training config.
      query_chunk_size: queries decoded per block (and, beyond key_chunk_size samples, sample
        tokens per self-attention block). Default: per backend (`attention.default_chunks`).
      key_chunk_size: key block of the attention (online softmax beyond it); None: dense at
        every n (memory ~ m * n and n^2). Default: per backend.
      max_self_attention_keys: k; None: the model config's; 0: full self-attention.
      max_embedded_samples: the log-n embedding sees min(n, this); None: the model config's.
      ttt_steps: default test-time training steps of a call (0: none; `kdeformer.adaptation`).
      ttt_learning_rate: default Adam learning rate of those steps.
      ttt_num_points: the TTT loss uses the first this-many samples (None: all); a cost knob.
    """
    self.ttt_steps, self.ttt_learning_rate = int(ttt_steps), float(ttt_learning_rate)
    # Which problems another shipped model answers (set by load_pretrained), that model
    # loaded on first use with the same chunk options.
    self.handoff: checkpoints.Handoff | None = None
    self._handed_to = None
    self._options = dict(query_chunk_size=query_chunk_size, key_chunk_size=key_chunk_size)
    overrides = {
      name: int(value)
      for name, value in (
        ("max_self_attention_keys", max_self_attention_keys),
        ("max_embedded_samples", max_embedded_samples),
      )
      if value is not None
    }
    model_config = dataclasses.replace(model_lib.model_config(config), **overrides)
    self.rules = problem_lib.Rules.for_model(model_config)
    default_query_chunk, default_key_chunk = attention.default_chunks()
    if query_chunk_size == BACKEND_DEFAULT:
      query_chunk_size = default_query_chunk
    runtime = attention.AttentionRuntime(
      key_chunk_size=default_key_chunk if key_chunk_size == BACKEND_DEFAULT else key_chunk_size,
      query_chunk_size=query_chunk_size,
    )
    super().__init__(params, model_config, runtime, query_chunk_size, ttt_num_points)
    self._warned_small_n = False

  max_dim = property(lambda self: self.model_config.max_dim)
  max_self_attention_keys = property(lambda self: self.model_config.max_self_attention_keys)
  max_embedded_samples = property(lambda self: self.model_config.max_embedded_samples)
  min_samples = property(lambda self: self.rules.min_samples, doc="The fewest samples it answers.")

  def prepare(self, samples, *, weights=None, bounds=None, batched=True) -> problem_lib.Problem:
    """Samples (n, d) or (b, n, d) checked, ordered and whitened (`kdeformer.problem`); says
    once per estimator when n is below the sizes the model was trained at."""
    rules = self.rules if batched else dataclasses.replace(self.rules, batched=False)
    problem = problem_lib.prepare(samples, weights=weights, bounds=bounds, rules=rules)
    equivariant.check_memory(self.model_config, problem.num_samples, problem.dim)
    if problem.num_samples < rules.trained_from and not self._warned_small_n:
      self._warned_small_n = True
      warnings.warn(
        f"n = {problem.num_samples} samples is below the {rules.trained_from} this model was "
        "trained with at the least. It still answers, but nothing guarantees it beats a KDE "
        "there (README, 'Small samples', has the measured errors): compare with "
        "kdeformer.kde.gaussian_kde on your data when n is this small.",
        stacklevel=3,
      )
    return problem

  def answering(self, samples) -> "Estimator":
    """The estimator that answers `samples` (n, d) or (b, n, d): self, or the shipped model
    its `handoff` names for that d and n (`checkpoints.DEFAULT_HANDOFF`: the default hands
    d = 1, d >= 9 and n > 16,384 to the equivariant model)."""
    shape = np.shape(samples)
    if self.handoff is None or len(shape) < 2 or not self.handoff.hands_off(*shape[:-3:-1]):
      return self
    if self._handed_to is None:
      self._handed_to = load_pretrained(self.handoff.to, **self._options)
    return self._handed_to

  def fit(self, samples, *, weights=None, bounds=None) -> fitted.FittedDensity:
    """The density of `samples` (n, d) (weights (n,), bounds as in `__call__`), encoded once:
    `density(queries)`, `density(queries, normalize=True, key=key)`, `density.sample(k, key=)`.
    Test-time training and rotation averaging re-run the network per call: use `__call__`."""
    if self.answering(samples) is not self:
      return self.answering(samples).fit(samples, weights=weights, bounds=bounds)
    return fitted.FittedDensity(self, samples, weights=weights, bounds=bounds)

  def sample(
    self,
    samples,
    num_samples: int,
    *,
    key: jax.Array,
    weights=None,
    num_steps: int | None = None,
    step_size: float | None = None,
    bounds=None,
  ) -> sampling.SampleResult:
    """Draws num_samples points (num_samples, d) from the estimated density of `samples`
    (n, d): MALA chains from a Scott-KDE resample (`kdeformer.sampling`), each giving its last
    state. step_size is in whitened coordinates (default: Scott's bandwidth there)."""
    sampling.check_draw_arguments(num_samples, key, num_steps, step_size)  # Before encoding.
    return self.fit(samples, weights=weights, bounds=bounds).sample(
      num_samples, key=key, num_steps=num_steps, step_size=step_size
    )

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

  def __call__(
    self,
    samples,
    queries=None,
    *,
    weights=None,
    ttt_steps: int | None = None,
    ttt_learning_rate: float | None = None,
    rotations=None,
    normalize: bool = False,
    key: jax.Array | None = None,
    bounds=None,
  ) -> Estimate:
    """Log-density and score of the distribution of `samples`, at `queries`.

    Args:
      samples: (n, d) or (b, n, d) i.i.d. samples, 1 <= d <= max_dim, n > d; numpy or jax.
      queries: (m, d) or (b, m, d); defaults to the samples.
      weights: optional (n,) or (b, n) non-negative sample weights (scipy's convention:
        normalised to sum 1; effective n = 1 / sum w^2). Not combined with ttt_steps.
      ttt_steps: test-time training steps on a copy of the parameters (`kdeformer.adaptation`);
        None: self.ttt_steps. ttt_learning_rate: their learning rate.
      rotations: an int k (Haar-random rotations drawn from `key`) or (k, d, d) orthogonal
        matrices to average over (`kdeformer.rotation_averaging`); None: none.
      normalize: subtract log Z (importance sampling, `kdeformer.log_normalizer`), so
        exp(log_density) integrates to 1. Needs `key`.
      key: PRNG key for the rotations (when `rotations` is an int) and for `normalize`.
      bounds: optional support (lower, upper), scalars or (d,), +-inf where unbounded
        (`kdeformer.support`); queries outside get log-density -inf and score 0.

    Returns:
      Estimate(log_density (m,) or (b, m), score (m, d) or (b, m, d)), jax arrays.

    Raises:
      ValueError: bad samples, queries, weights, bounds or options (`kdeformer.problem`).
    """
    if self.answering(samples) is not self:
      return self.answering(samples)(
        samples,
        queries,
        weights=weights,
        ttt_steps=ttt_steps,
        ttt_learning_rate=ttt_learning_rate,
        rotations=rotations,
        normalize=normalize,
        key=key,
        bounds=bounds,
      )
    ttt_steps, ttt_learning_rate = adaptation.check_options(
      self.ttt_steps if ttt_steps is None else ttt_steps,
      self.ttt_learning_rate if ttt_learning_rate is None else ttt_learning_rate,
      weighted=weights is not None,
    )
    if normalize:
      validation.check_key(key, "normalize=True estimates log Z by importance sampling")
    problem = self.prepare(samples, weights=weights, bounds=bounds)
    if ttt_steps == 0 and rotations is None and problem.whitening is not None:
      return fitted.FittedDensity(self, None, problem=problem)(
        queries, normalize=normalize, key=key
      )
    sampler_key, rotation_key = log_normalizer_lib.split_key(key) if normalize else (None, key)
    rotations = rotation_averaging.resolve_rotations(rotations, rotation_key, dim=problem.dim)
    options = dict(ttt_steps=ttt_steps, ttt_learning_rate=ttt_learning_rate, rotations=rotations)
    return problem.run(
      lambda s, q, w: self.predict_problems(s, q, w, sampler_key, **options), queries
    )


def list_pretrained() -> dict[str, str]:
  """The models shipped in the package: name -> one line on what it is for."""
  return dict(checkpoints.PRETRAINED_MODELS)


def load_pretrained(name: str | None = None, **kwargs) -> Estimator:
  """A model shipped inside the package, by name (see `list_pretrained()` and its MODEL_CARD.md).

  Args:
    name: None, the default: the "general" network at 2 <= d <= 8 and n <= 16,384, handing
      every other problem to "equivariant" (`checkpoints.DEFAULT_HANDOFF`, measured in
      docs/results_default_routing_cpu.md); "general" (that network alone, handing on only
      d > 10); "gmm" (the Gaussian-mixture specialist of the paper's benchmark; d > 10 handed
      on); or "equivariant" (any d).
    **kwargs: Estimator options (query_chunk_size, key_chunk_size, ...).
  """
  handoff = checkpoints.DEFAULT_HANDOFF if name is None else checkpoints.HANDOFFS.get(name)
  name = checkpoints.DEFAULT_PRETRAINED if name is None else name
  directory = checkpoints.pretrained_dir(name)
  if not os.path.isfile(os.path.join(directory, checkpoints.CONFIG_FILE)):
    raise FileNotFoundError(
      f"The pretrained model {name!r} is missing from {directory} (config.json missing): "
      "the package is incomplete; reinstall it, or train a model with experiments/train.py "
      "and use Estimator.restore(workdir)."
    )
  estimator = Estimator.restore(directory, **kwargs)
  estimator.handoff = handoff
  return estimator


def load(source: str | None = None, **kwargs) -> Estimator:
  """The one model loader: a shipped model by name ("general", "gmm", "equivariant"; None: the
  default, `load_pretrained()`) or a training workdir (latest checkpoint). **kwargs: Estimator
  options.

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
      f"for the workdir, or {checkpoints.pretrained_dir(source)!r} for the shipped model."
    )
  if source is None or source in checkpoints.PRETRAINED_MODELS:
    return load_pretrained(source, **kwargs)
  return Estimator.restore(source, **kwargs)
