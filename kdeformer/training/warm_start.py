"""Warm start: a new run begins from a trained model's parameters, with a fresh optimiser.

`config.init_from`: "pretrained", "pretrained:<name>" or a training workdir. Shared parameters
are copied; a layer that grew takes the source as its leading block (the new entries start
inactive); a layer that shrank is an error. `config.init_fresh`: module names whose parameters
start fresh anyway (a gate whose inputs changed meaning, for instance).
"""

import os

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections

from kdeformer import checkpoints
from kdeformer import networks

PRETRAINED = "pretrained"


def source_directory(init_from: str) -> str:
  """The workdir that `config.init_from` names ("pretrained[:name]": a shipped model's)."""
  if init_from == PRETRAINED:
    return checkpoints.pretrained_dir()
  if init_from.startswith(PRETRAINED + ":"):
    return checkpoints.pretrained_dir(init_from[len(PRETRAINED) + 1 :])
  return init_from


def load_source_params(init_from: str):
  """The source's parameters, in the structure of its own config's network."""
  directory = source_directory(init_from)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"config.init_from={init_from!r}: no such workdir {directory!r}.")
  source_config = checkpoints.load_config(directory)
  abstract = jax.eval_shape(lambda: networks.init_params(source_config, jax.random.key(0)))
  return checkpoints.restore_params(directory, abstract)


def merge_params(fresh, source, keep_fresh: tuple[str, ...] = ()):
  """`fresh` with every leaf `source` also has copied in (leading block when it grew), except
  those under a module named in `keep_fresh`.

  Raises:
    ValueError: a shared leaf is smaller in `fresh`, or differs in rank or dtype.
  """
  unknown = set(keep_fresh) - {
    str(getattr(entry, "key", ""))
    for path, _ in jax.tree_util.tree_leaves_with_path(fresh)
    for entry in path
  }
  if unknown:
    raise ValueError(f"init_fresh names {sorted(unknown)}, which the network does not have.")
  source_leaves = {
    jax.tree_util.keystr(path): leaf
    for path, leaf in jax.tree_util.tree_leaves_with_path(source)
    if not any(getattr(entry, "key", None) in keep_fresh for entry in path)
  }
  copied, grown, kept = 0, [], []

  def merge(path, leaf):
    nonlocal copied
    name = jax.tree_util.keystr(path)
    old = source_leaves.pop(name, None)
    if old is None:
      kept.append(name)
      return leaf
    if old.shape == leaf.shape:
      copied += 1
      return jnp.asarray(old, leaf.dtype)
    if old.ndim != leaf.ndim or any(o > n for o, n in zip(old.shape, leaf.shape)):
      raise ValueError(
        f"Cannot warm-start {name}: the source has shape {old.shape}, the new "
        f"network {leaf.shape} (only layers that grow can be warm-started)."
      )
    grown.append(f"{name} {old.shape}->{leaf.shape}")
    block = tuple(slice(0, size) for size in old.shape)
    return jnp.asarray(leaf).at[block].set(jnp.asarray(old, leaf.dtype))

  merged = jax.tree_util.tree_map_with_path(merge, fresh)
  logging.info(
    "Warm start: %d parameter arrays copied, %d grown (%s), %d new (%s), %d of the "
    "source unused (%s).",
    copied,
    len(grown),
    "; ".join(grown) or "none",
    len(kept),
    ", ".join(kept) or "none",
    len(source_leaves),
    ", ".join(source_leaves) or "none",
  )
  return merged


def warm_start(config: ml_collections.ConfigDict, fresh_params):
  """fresh_params with config.init_from's parameters merged in ("" or None: unchanged)."""
  init_from = config.get("init_from") or ""
  if not init_from:
    return fresh_params
  return merge_params(
    fresh_params, load_source_params(init_from), tuple(config.get("init_fresh", ()))
  )
