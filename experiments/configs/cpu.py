"""A smaller model this 2-core CPU trains in about an hour (the shipped gmm model is gpu.py's).

Command:
  python -m experiments.train --config=experiments/configs/cpu.py --workdir=/tmp/kdeformer_cpu

Expected result: 0.46-0.57 s/step and about 70 GFLOP/s on an idle 2-core
machine (python -m experiments.run --config=experiments/configs/train_benchmark.py:cpu);
the earlier shipped model was this config after 3,200 steps and beat Scott-rule
KDE on the standard GMM benchmark (python -m experiments.evaluate
--workdir=/tmp/kdeformer_cpu); docs/log/ holds the measured tables.

Why these choices: two heads of width 64 instead of eight of 16 (the attention
softmax is memory-bound on a CPU: 2 heads reach 73 GFLOP/s where 4 reach 52),
three layers, no dropout (the data are fresh every step, so nothing to
overfit), and batch sizes that keep the work per step roughly constant across
the n buckets.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.model.width = 128
  config.model.num_layers = 3
  config.model.num_heads = 2
  config.model.mlp_ratio = 2
  config.model.dropout_rate = 0.0
  config.model.kernel_bandwidths = (0.2, 0.3, 0.45, 0.65, 1.0, 1.4)
  config.model.initial_bandwidth_index = 4  # Scott's rule.
  config.buckets = (256, 512, 1024)
  config.batch_sizes = (16, 8, 6)
  config.optim.learning_rate = 4e-4
  config.optim.warmup_steps = 200
  config.num_train_steps = 3_200
  config.log_every_steps = 50
  config.checkpoint_every_steps = 200
  return config
