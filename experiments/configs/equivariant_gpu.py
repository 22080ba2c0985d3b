"""The equivariant network on one GPU: the chained GPU windows of gpu_run.sh.

Command (the whole window, install to export and paired evaluation, is experiments/gpu_run.sh,
which uses this config by default):
  python -m experiments.train --config=experiments/configs/equivariant_gpu.py \
      --workdir=/tmp/kdeformer_equivariant_gpu --config.time_budget_s=480 \
      --config.init_from=pretrained:equivariant

Differences from equivariant_heldout_cpu.py (the shipped network: cross-validated base
weights): batches about 16x larger, n up to 4,096 and d up to 64
(the GPU is idle at the CPU's sizes), bfloat16 matmuls in the sample self-attention (the
kernels, the mixture fits and the bases stay float32), compiled steps cached, a checkpoint
every 2 minutes. Warm start from the shipped equivariant model, or with
--config.init_from=DIR from the last window's candidate/. Not yet run on a GPU: no GPU was
lent to the session that wrote it (WORKSPACE.md).
"""

from experiments.configs import equivariant_heldout_cpu


def get_config():
  config = equivariant_heldout_cpu.get_config()
  config.init_from = "pretrained:equivariant"
  config.init_fresh = ()  # The shipped model already has the held-out gate.
  config.data.dims = (1, 1, 2, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64)
  config.buckets = (256, 1024, 4096)
  config.batch_sizes = (128, 32, 8)
  config.mixed_precision = True
  config.optim.learning_rate = 5e-4
  config.time_budget_s = 480.0
  config.log_every_steps = 50
  config.checkpoint_every_steps = 500
  config.checkpoint_every_seconds = 120.0
  return config
