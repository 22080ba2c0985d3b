r"""Runtime and memory versus n for the model, our JAX KDE and scipy's KDE (quick version).

Command:
  python -m experiments.run --config=experiments/configs/runtime_benchmark_quick.py \
      [--workdir=/tmp/kdeformer_cpu] [--output_dir=./outputs/runtime_benchmark]

Expected result: 30 fresh processes, an estimated 5 minutes on this idle 2-core
CPU (runtime_benchmark_full.py ran its 54 in 9.5 minutes).
Writes results.json, results.md (with the time-to-accuracy table) and
benchmark.png (time vs n, peak memory vs n, error vs seconds). The rows are
those of runtime_benchmark_full.py up to n = 4096 (measured there with the shipped
model, m = 1024, idle): our JAX KDE is the fastest everywhere (0.0013 s at
n = 256 to 0.025 s at n = 4096); the model takes 0.04-0.05 s at n = 256 and
1.0-1.1 s at n = 4096; scipy (log-density plus a central-difference score)
takes 0.56 s (d = 2) / 2.8 s (d = 10) at n = 4096, faster than the model at
d = 2 from n = 1024 on and slower at d = 10. Peak memory at n = 4096: model
~590 MiB (~245 before the call), our KDE ~320-330 (~193), scipy ~250 (~246).
The model has the lowest error at every n. Without a trained model (no
--workdir, none shipped) the model is a random initialisation of
experiments/configs/cpu.py: timings only, its errors are meaningless (the
output says so).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import prior


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "runtime_benchmark"  # experiments/harness/runtime_benchmark.py: its harness.
  config.seed = 0  # Fixes the mixture of each d, its samples and queries.
  config.dims = (2, 10)  # Dimensions d.
  config.sample_sizes = (256, 512, 1024, 2048, 4096)  # n (samples are nested: the first n).
  config.num_queries = 1024  # m, drawn from the same mixture.
  config.methods = ("model", "jax_kde", "scipy_kde")  # Which estimators to time.
  config.bandwidth = "scott"  # Bandwidth rule of both KDEs ("scott" or "silverman").
  # Time-to-accuracy table: per method, the seconds per call needed to reach
  # each of these relative score MSE levels.
  config.accuracy_targets = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01)

  config.repeats = 3  # Timed calls after the warm-up call (median reported),
  config.max_timed_seconds = 60.0  # fewer if the timed calls exceed this many seconds.
  config.scipy_max_samples = 4096  # scipy is skipped above this n (and the table says so).
  # scipy has no score: it is a central difference of logpdf (2d extra logpdf
  # calls, included in its time) with step fd_relative_step * smallest kernel std.
  config.fd_relative_step = 1e-4

  config.model_query_chunk_size = 512  # Estimator(query_chunk_size=...).
  config.model_key_chunk_size = 1024  # Estimator(key_chunk_size=...): blockwise attention
  # over keys (online softmax) when n exceeds it, so memory stays bounded in n
  # (1024 is the Estimator's default: also the fastest on CPU, see estimator.py).
  # Estimator(max_self_attention_keys=...): None, the Estimator's default (self-attention
  # keys are the first 4096 samples when n > 4096, cost n * 4096); 0, all samples (O(n^2)).
  config.model_max_self_attention_keys = config_dict.placeholder(int)
  config.kde_query_chunk_size = 1024  # kde.gaussian_kde(query_chunk_size=...).
  config.kde_key_chunk_size = 4096  # kde.gaussian_kde(key_chunk_size=...).

  config.fresh_process = True  # One fresh subprocess per (method, d, n): clean peak memory.
  config.subprocess_timeout_seconds = 900  # A (method, d, n) run longer than this is recorded
  # as a timeout and the benchmark goes on.
  # When neither --workdir nor a shipped model exists, time a random
  # initialisation of this config (experiments/configs/<name>.py) instead.
  config.fallback_model_config = "cpu"

  # The fixed mixture of each d is drawn from the training prior (prior.py).
  config.prior = prior.get_config()
  return config
