r"""Large n: 2^14, 2^17 and 2^20 samples (d = 2 and 10, m = 1024), the model and our JAX KDE.

Command (one fresh process per (method, d, n), measured in this order):
  python -m experiments.run --config=experiments/configs/runtime_benchmark_scale.py \
      [--config.dims='(2,)'] [--output_dir=./outputs/runtime_benchmark_scale]

The model runs blockwise attention in key blocks of 4096 (no (n x n) or
(m x n) matrix). The Estimator's default key block is 1024 now; this config
keeps 4096, the block the rows below were measured with, so that they
reproduce. Sample mixing is the Estimator's default sub-quadratic one (each
sample token's self-attention uses the first 4096 samples as keys, cost
n * 4096; the queries' cross-attention and the kernel bank use all n).
scipy is not run (minutes to hours at these n). Each (method, d, n) is called
once (repeats = 0): its time includes compilation, i.e. what a user waits.

Expected result (measured 2026-11-28 on the shared 2-core CPU, 24 GB, load ~4;
see docs/log/), d = 2: model 29 s / 0.9 GiB / relative score MSE
0.0287 at n = 2^14, 159 s / 2.6 GiB / 0.0138 at 2^17, 635 s / 17.5 GiB / 0.0077
at 2^20; our JAX KDE 2-4 s and < 0.4 GiB at every n (0.0737, 0.0277, 0.0096).
d = 10 (idle machine): model 8.8 s / 48 s / 398 s, 0.123 / 0.125 / 0.137 (no
gain with n); KDE ~1-3 s, < 0.6 GiB, 0.327 / 0.269 / 0.209.
The 2^20 model's peak memory is over 16 GB (see docs/log/).
"""

from experiments.configs import runtime_benchmark_quick


def get_config():
  config = runtime_benchmark_quick.get_config()  # experiment "runtime_benchmark"
  config.sample_sizes = (2**14, 2**17, 2**20)
  config.methods = ("model", "jax_kde")  # scipy's KDE: minutes to hours at these n.
  config.scipy_max_samples = 0
  config.repeats = 0  # One call per (method, d, n), compilation included (see the doc).
  config.max_timed_seconds = 0.0
  # Blockwise attention beyond 4096 keys: not the Estimator's default (1024), the
  # block the recorded rows were measured with (see the doc).
  config.model_key_chunk_size = 4096
  # All m = 1024 queries in one decode block (also the sample tokens per self-attention
  # block): at n = 2^20 the compiled program's scratch is 14.0 GiB against 15.6 GiB with 512.
  config.model_query_chunk_size = 1024
  config.kde_key_chunk_size = 4096
  config.subprocess_timeout_seconds = 3600  # Per (method, d, n).
  return config
