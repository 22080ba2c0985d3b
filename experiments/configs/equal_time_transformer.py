"""Equal-time baseline for the equivariant network: today's architecture, fresh, same data.

Command (beside the equivariant network's run of the same budget, one core each):
  taskset -c 0 python -m experiments.train --config=experiments/configs/equal_time_transformer.py \
      --workdir=/tmp/equal_time_transformer
  taskset -c 1 python -m experiments.train --config=experiments/configs/equivariant_cpu.py \
      --workdir=/tmp/equal_time_equivariant --config.time_budget_s=900

The general model's network (gpu.py's transformer with v2's Student-t tail bases; max_dim 10)
from its untrained state (Scott's KDE, as the equivariant network's), on equivariant_cpu.py's
data, buckets and batches with d <= 10, for the same wall-clock budget. Results: WORKSPACE.md
("The equivariant network", equal-time comparison) and docs/equal_time_cpu.md.
"""

from experiments.configs import equivariant_cpu
from experiments.configs import v2_cpu


def get_config():
  config = equivariant_cpu.get_config()
  config.model = v2_cpu.get_config().model
  config.init_from = ""
  config.data.dims = tuple(d for d in config.data.dims if d <= config.model.max_dim)
  config.optim.learning_rate = 4e-4  # gpu.py's peak rate for this network.
  config.time_budget_s = 900.0
  return config
