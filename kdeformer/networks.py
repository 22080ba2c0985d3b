"""From a config to a network: the one place training and inference build either architecture.

"transformer" is `kdeformer.model.KDEFormer` (d <= max_dim); "equivariant" is
`kdeformer.equivariant.EquivariantDensityNet` (any d).
"""

import jax
import jax.numpy as jnp
import ml_collections

from kdeformer import attention as attention_lib
from kdeformer import equivariant
from kdeformer import model as model_lib

ARCHITECTURES = ("transformer", "equivariant")


def build_model(
  config: "ml_collections.ConfigDict | model_lib.ModelConfig",
  runtime: attention_lib.AttentionRuntime = attention_lib.DENSE,
):
  """The network of a training config or a ModelConfig (see `model.model_config`)."""
  config = model_lib.model_config(config)
  if config.architecture not in ARCHITECTURES:
    raise ValueError(
      f"Unknown architecture {config.architecture!r}; expected one of {ARCHITECTURES}."
    )
  if config.architecture == "equivariant":
    return equivariant.EquivariantDensityNet(config, runtime)
  return model_lib.KDEFormer(config, runtime)


def padded_dim(model, dim: int) -> int:
  """The coordinate width a network takes for d-dimensional data (max_dim 0: d itself)."""
  return max(model.max_dim, dim)


def init_params(config: "ml_collections.ConfigDict | model_lib.ModelConfig", key: jax.Array):
  """Network parameters from `key`, for a tiny dummy input (shapes do not depend on n, m or
  (for the equivariant network) d)."""
  model = build_model(config)
  width = padded_dim(model, 2)
  samples = jnp.linspace(-1.0, 1.0, 4 * width).reshape(1, 4, width)

  # One compiled program: run eagerly, every initialiser op compiles on its own (slow on a CPU).
  @jax.jit
  def init(key):
    return model.init(
      key, samples, samples[:, :2], jnp.ones((1, 4), bool), jnp.ones((1, width), bool)
    )["params"]

  return init(key)
