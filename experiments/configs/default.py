"""The paper's model and training prior (width 128, 4 layers, 8 heads).

Command:
  python -m experiments.train --config=experiments/configs/default.py \
      --workdir=/tmp/kdeformer_default

Expected result: this is the paper-sized reference, not trainable on the 2-core
CPU: its n = 256 bucket runs at 2.2 s/step (50 GFLOP/s) and its n = 2048 bucket
(batch 32, dense attention) needs 28 GB, more than the 24 GB machine has (both
measured, docs/log/). Use cpu.py on a CPU and gpu.py on one H100/H200; the
other configs override a few fields of this one.
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import prior
from kdeformer import model as model_lib


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # One seed -> init key and data key; per-step keys are fold_in(key, step).

  # The network: kdeformer.model.ModelConfig's architecture fields, whose defaults are the
  # paper's model (width 128, 4 layer pairs, 8 heads, MLP ratio 4, dropout 0.1, d <= 10, no
  # kernel bank, no tail bases); its docstring says what each field does. Variants override.
  config.model = ml_collections.ConfigDict(
    {name: getattr(model_lib.ModelConfig(), name) for name in model_lib.ARCHITECTURE_FIELDS}
  )

  config.data = ml_collections.ConfigDict()
  config.data.dims = tuple(range(1, 11))  # Each example draws its d uniformly from this list.
  # The Gaussian-mixture prior (prior.py: min_modes, max_modes, mean_range, min_variance,
  # max_variance, weight_concentration), flat in config.data under the names that
  # kdeformer/training/data.py and saved checkpoints' config.json use.
  config.data.update(prior.get_config())
  config.data.min_fill = 0.5  # Real samples per example uniform in [min_fill * n, n] (rest padded).
  config.data.num_queries = 256  # Queries per example.
  config.data.tail_fraction = 0.25  # Fraction of queries pushed into the tails,
  config.data.tail_scale = 0.5  # by N(0, s^2 I) noise in whitened coordinates, s log-uniform
  config.data.tail_scale_max = 0.5  # in [tail_scale, tail_scale_max].
  # Fraction of the problems drawn from the broad prior (heavy tails, Laplace-type components,
  # scales over 100x, warps, rotations: prior.get_broad_config) instead of the mixtures above.
  config.data.broad_fraction = 0.0
  config.data.broad = prior.get_broad_config()
  # Loop-free samplers (no jax.random.gamma while loops) and one Gaussian-mixture draw shared
  # by the two priors: the same distributions from other random numbers, so a run's data
  # differ from a run without it (kdeformer/training/data.py).
  config.data.fast_sampling = False

  # Sample-count buckets (compiled once each, cycled step by step) and their batch sizes.
  config.buckets = (256, 512, 1024, 2048)
  config.batch_sizes = (32, 32, 32, 32)

  config.loss = ml_collections.ConfigDict()
  config.loss.alpha = 0.2  # Weight of the log-density MSE; 1 - alpha for the relative score MSE.
  config.loss.huber_delta = 0.0  # > 0: pseudo-Huber log-density loss of this width, not MSE.
  config.loss.normalization_weight = 0.0  # Weight of (log Z_hat)^2 (see train.loss_fn).

  config.optim = ml_collections.ConfigDict()
  config.optim.learning_rate = 2e-4  # Peak AdamW learning rate.
  config.optim.warmup_steps = 2_000  # Linear warm-up, then cosine decay to the end.
  config.optim.end_lr_fraction = 0.05  # Final learning rate as a fraction of the peak.
  config.optim.weight_decay = 1e-6  # AdamW decoupled weight decay.
  config.optim.b1 = 0.9  # Adam beta1.
  config.optim.b2 = 0.99  # Adam beta2.
  config.optim.grad_clip_norm = 1.0  # Global-norm gradient clipping (the loss is heavy-tailed).

  config.num_train_steps = 150_000  # Total optimiser steps (an upper bound with a time budget).
  # > 0: train as many steps as fit in this many seconds (compilation included), decided
  # after `calibration_steps` timed steps of the warm-up; the learning rate decays to its
  # end at that step. 0: train num_train_steps.
  config.time_budget_s = 0.0
  config.calibration_steps = 20
  config.log_every_steps = 100  # Progress line and metrics.jsonl record interval.
  config.checkpoint_every_steps = 1_000  # Orbax save interval (and always at the end).
  config.checkpoint_every_seconds = 0.0  # > 0: also save when this long since the last save.
  # Optimiser steps per compiled call (a lax.scan over steps of one bucket): fewer dispatches.
  # Buckets then cycle every steps_per_dispatch steps; each step's data still comes from
  # fold_in(key, step), so a resumed run sees the same data. 1: one step per call.
  config.steps_per_dispatch = 1
  # A directory for JAX's persistent compilation cache: a rerun (or the next window on the
  # same machine) loads the compiled steps instead of compiling them. "": no cache.
  config.compilation_cache_dir = ""
  config.keep_checkpoints = 3  # Latest checkpoints kept.
  # Warm start of a fresh run: "pretrained" (the shipped general model), "pretrained:gmm" or a
  # training workdir; its parameters are copied where the networks agree, the optimiser starts
  # fresh. "": none.
  config.init_from = ""
  config.init_fresh = ()  # Module names that start fresh despite init_from.
  config.mixed_precision = False  # bfloat16 matmuls in the trunk (accelerators).
  config.fused_attention = False  # jax.nn.dot_product_attention in the trunk (cuDNN on GPU).
  config.num_devices = 0  # Devices in the data mesh; 0 = all devices of all hosts.
  # Several processes (one per host, or several on one machine) train one model together:
  # multihost=True calls jax.distributed.initialize() before anything touches a device. A None
  # field below is left to JAX, which finds it on Slurm, Open MPI, Cloud TPU and Kubernetes
  # (and the address in JAX_COORDINATOR_ADDRESS); elsewhere set all three, per process.
  config.multihost = False
  config.distributed = ml_collections.ConfigDict()
  config.distributed.coordinator_address = config_dict.placeholder(str)  # "host:port" of process 0.
  config.distributed.num_processes = config_dict.placeholder(int)  # Processes in the run.
  config.distributed.process_id = config_dict.placeholder(int)  # This process: 0 is the chief.
  return config
