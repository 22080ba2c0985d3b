"""The next network: the rotation-equivariant sample-point estimator, on this CPU.

Command:
  python -m experiments.train --config=experiments/configs/equivariant_cpu.py \
      --workdir=/tmp/kdeformer_equivariant

A fresh network (`kdeformer.equivariant`, architecture "equivariant": no max_dim) trained on the
general model's prior (half Gaussian mixtures of the paper's prior, half the broad prior: heavy
tails, Laplace-type, skew, scales 100x apart, rotations) with d drawn from 1 to 32 (batches
padded to 32 coordinates; padding changes no invariant), n from 32 to 1024, for a wall-clock
budget. Its learned parts see only rotation-invariant features, so nothing about orientation is
learned; the untrained network is Scott's KDE. Measured results: WORKSPACE.md ("The
equivariant network").
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.model.architecture = "equivariant"
  config.model.max_dim = 0  # Any d.
  config.model.width = 64
  config.model.num_layers = 2
  config.model.num_heads = 4
  config.model.mlp_ratio = 2
  config.model.dropout_rate = 0.0
  # Feature bank factors of Scott's bandwidth; the third (Scott's) is the reference.
  config.model.kernel_bandwidths = (0.5, 0.75, 1.0, 1.5, 2.0)
  config.model.initial_bandwidth_index = 2
  config.model.tail_base_dofs = (1.0, 3.0, 10.0)
  config.model.mixture_components = (2, 4)
  config.model.em_steps = 10
  # Keys of the sample features and self-attention: the largest training n, so every trained
  # n is exact, and beyond it the encoder costs n * 1024 (4096 keys made it 5x slower at
  # n = 4096, docs/results_next_network_cpu.md).
  config.model.max_self_attention_keys = 1024
  config.data.dims = (1, 1, 2, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32)
  config.data.broad_fraction = 0.5
  config.data.tail_scale_max = 4.0
  config.data.num_queries = 128
  config.data.fast_sampling = True
  config.loss.huber_delta = 2.0
  config.buckets = (64, 256, 1024)
  config.batch_sizes = (16, 8, 4)
  config.optim.learning_rate = 1e-3
  config.optim.warmup_steps = 100
  config.num_train_steps = 100_000  # An upper bound: time_budget_s decides.
  config.time_budget_s = 3000.0
  config.calibration_steps = 20
  config.log_every_steps = 25
  config.checkpoint_every_steps = 100
  config.checkpoint_every_seconds = 120.0
  return config
