r"""Ships a trained workdir inside the package as a named model (kdeformer/pretrained/<name>).

  python -m experiments.export_pretrained --workdir=/tmp/kdeformer_cpu --name=general \
      [--step=3200] [--fresh_modules=base_gate]

Copies config.json and the checkpoint (--fresh_modules: those modules at their initial values,
where a trained part measured worse than its initialisation); write the model card
(MODEL_CARD.md) by hand from the evaluation's results.md.
"""

from absl import app
from absl import flags
from absl import logging
import jax

from kdeformer import checkpoints
from kdeformer import estimator
from kdeformer import networks
from kdeformer.training import warm_start

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir to ship.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_NAME = flags.DEFINE_enum(
  "name", None, list(checkpoints.PRETRAINED_MODELS), "Which shipped model the run replaces."
)
_FRESH_MODULES = flags.DEFINE_list(
  "fresh_modules", [], "Modules shipped at their initial values instead of the trained ones."
)
flags.mark_flags_as_required(["workdir", "name"])


def main(argv):
  del argv
  logging.get_absl_logger().addFilter(lambda record: "orbax" not in record.pathname)
  config = checkpoints.load_config(_WORKDIR.value)
  abstract_params = jax.eval_shape(lambda: networks.init_params(config, jax.random.key(0)))
  destination = checkpoints.pretrained_dir(_NAME.value)
  fresh_modules = tuple(_FRESH_MODULES.value)

  def transform(params):
    if not fresh_modules:
      return params
    return warm_start.merge_params(
      networks.init_params(config, jax.random.key(0)), params, keep_fresh=fresh_modules
    )

  step = checkpoints.export_params(
    _WORKDIR.value, destination, abstract_params, _STEP.value, transform=transform
  )
  logging.info(
    "Shipped step %d of %s into %s (at their initial values: %s).",
    step,
    _WORKDIR.value,
    destination,
    ", ".join(fresh_modules) or "none",
  )
  # Fails here, not in a user's notebook, if it does not restore.
  estimator.load_pretrained(_NAME.value)


if __name__ == "__main__":
  app.run(main)
