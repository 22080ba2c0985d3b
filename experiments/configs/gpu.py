"""A larger model for one H100/H200 over about ten minutes (not yet run: no GPU was lent).

Command:
  python -m experiments.train --config=experiments/configs/gpu.py --workdir=/tmp/kdeformer_gpu
(on the GPU machine, ml_collections travels as a wheel: see /work/.library/device/README.md).

Expected result: unmeasured. The step count assumes roughly 30 ms per step for
this model and these buckets on one H100 (an estimate from the CPU's measured
FLOPs per step, not a measurement); check the first progress lines' steps/s and
ETA and adjust --config.num_train_steps so the run ends near ten minutes.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.model.width = 128
  config.model.num_layers = 4
  config.model.num_heads = 4
  config.model.mlp_ratio = 4
  config.model.dropout_rate = 0.0
  config.model.kernel_bandwidths = (0.2, 0.3, 0.45, 0.65, 1.0, 1.4)
  config.model.initial_bandwidth_index = 4  # Scott's rule.
  config.buckets = (256, 512, 1024, 2048, 4096)
  config.batch_sizes = (64, 32, 16, 8, 4)
  config.optim.learning_rate = 4e-4
  config.optim.warmup_steps = 500
  config.num_train_steps = 20_000
  config.log_every_steps = 200
  config.checkpoint_every_steps = 2_000
  return config
