"""A seconds-long run of a shrunken model, for tests and smoke checks.

Command:
  python -m experiments.train --config=experiments/configs/tiny.py --workdir=/tmp/kdeformer_tiny

Expected result: 6 steps in a few seconds on a CPU, finite loss, a checkpoint at
steps 3 and 6, metrics.jsonl and training_curves.png; no accuracy is expected.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.model.width = 16
  config.model.num_layers = 1
  config.model.num_heads = 2
  config.model.mlp_ratio = 2
  config.model.dropout_rate = 0.0
  config.model.kernel_bandwidths = (0.2, 0.3, 0.45, 0.65, 1.0, 1.4)
  config.model.initial_bandwidth_index = 4  # Scott's rule.
  config.data.num_queries = 8
  config.data.dims = (1, 2, 3)
  config.buckets = (16, 32)
  config.batch_sizes = (4, 4)
  config.optim.warmup_steps = 2
  config.num_train_steps = 6
  config.log_every_steps = 1
  config.checkpoint_every_steps = 3
  return config
