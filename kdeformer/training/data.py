"""Synthetic training batches with exact targets, generated on the device.

Each element is a fresh mixture (the Gaussian prior, or for `config.broad_fraction` of them the
broad prior `distributions.sample_warped_prior`) in a d from `config.dims`, whitened with its
samples' statistics; a fraction of the queries is pushed into the tails.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from kdeformer import distributions
from kdeformer import whitening


class Batch(NamedTuple):
  """A training batch in whitened, padded coordinates.

  Attributes:
    samples: (b, n, max_dim) whitened context samples (padding rows are zero).
    queries: (b, m, max_dim) whitened queries.
    sample_mask: (b, n) True for real samples.
    dim_mask: (b, max_dim) True for real coordinates.
    log_density: (b, m) exact whitened log-density at the queries.
    score: (b, m, max_dim) exact whitened score at the queries.
  """

  samples: jax.Array
  queries: jax.Array
  sample_mask: jax.Array
  dim_mask: jax.Array
  log_density: jax.Array
  score: jax.Array
  in_tail: jax.Array | None = None  # (b, m) True for queries pushed into the tails.


def _tail_scales(key: jax.Array, config: ml_collections.ConfigDict, num_queries: int):
  """The tail queries' noise scale: config.tail_scale, or per query log-uniform up to
  config.tail_scale_max (some reach far out)."""
  tail_scale_max = config.get("tail_scale_max", config.tail_scale)
  if tail_scale_max <= config.tail_scale:
    return config.tail_scale
  return jnp.exp(
    jax.random.uniform(
      key,
      (num_queries, 1),
      minval=jnp.log(config.tail_scale),
      maxval=jnp.log(tail_scale_max),
    )
  )


def make_example(
  key: jax.Array,
  config: ml_collections.ConfigDict,
  max_dim: int,
  num_samples: int,
  num_queries: int,
) -> Batch:
  """One unbatched example; `make_batch` vmaps it."""
  dim_key, mixture_key, size_key, sample_key, query_key, tail_key, pick_key = jax.random.split(
    key, 7
  )
  broad_key, family_key, tail_scale_key = (jax.random.fold_in(key, 7 + i) for i in range(3))
  dims = jnp.asarray(config.dims)
  dim = dims[jax.random.randint(dim_key, (), 0, len(config.dims))]
  dim_mask = jnp.arange(max_dim) < dim
  # fast_sampling: loop-free gamma draws and one Gaussian mixture shared by the two priors
  # (each problem uses one of them): the same distributions, other random numbers.
  fast = config.get("fast_sampling", False)
  # The Gaussian-mixture prior's fields, shared by both priors.
  prior_fields = ("min_modes", "max_modes", "mean_range", "min_variance", "max_variance")
  prior = {name: config[name] for name in prior_fields + ("weight_concentration",)}
  mixture = distributions.sample_mixture_prior(
    mixture_key, dim, max_dim=max_dim, loop_free=fast, **prior
  )
  if config.get("broad_fraction", 0.0) > 0:
    broad = distributions.sample_warped_prior(
      broad_key, dim, max_dim=max_dim, base=mixture if fast else None, **prior, **config.broad
    )
    use_broad = jax.random.uniform(family_key) < config.broad_fraction
    mixture = jax.tree.map(
      lambda b, g: jnp.where(use_broad, b, g), broad, distributions.as_warped(mixture)
    )
  sample = (
    functools.partial(mixture.sample, loop_free=True)
    if fast and isinstance(mixture, distributions.WarpedMixture)
    else mixture.sample
  )
  min_count = int(config.min_fill * num_samples)
  count = jax.random.randint(size_key, (), min_count, num_samples + 1)
  sample_mask = jnp.arange(num_samples) < count
  samples = sample(sample_key, num_samples)
  affine_map = whitening.fit_affine_map(samples, sample_mask, dim_mask)
  queries = sample(query_key, num_queries)
  tail_scale = _tail_scales(tail_scale_key, config, num_queries)
  tail_noise = tail_scale * jax.random.normal(tail_key, queries.shape) * dim_mask
  in_tail = jax.random.uniform(pick_key, (num_queries, 1)) < config.tail_fraction
  queries = queries + in_tail * (tail_noise @ affine_map.unwhitening)
  truth = mixture.log_prob_and_score(queries)
  log_density, score = whitening.whiten_estimate(truth.log_density, truth.score, affine_map)
  return Batch(
    samples=whitening.whiten(samples, affine_map) * sample_mask[:, None],
    queries=whitening.whiten(queries, affine_map),
    sample_mask=sample_mask,
    dim_mask=dim_mask,
    log_density=log_density,
    score=score * dim_mask,
    in_tail=in_tail[:, 0],
  )


def make_batch(
  key: jax.Array,
  config: ml_collections.ConfigDict,
  max_dim: int,
  batch_size: int,
  num_samples: int,
  num_queries: int,
) -> Batch:
  """A batch of independent examples; element i depends only on (key, i)."""
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch_size))
  return jax.vmap(make_example, in_axes=(0, None, None, None, None))(
    keys, config, max_dim, num_samples, num_queries
  )
