r"""Runtime and memory versus n = 2^8 .. 2^16 (d = 2 and 10, m = 1024): the full benchmark.

Command:
  python -m experiments.run --config=experiments/configs/runtime_benchmark_full.py \
      [--workdir=/tmp/kdeformer_cpu] [--output_dir=./outputs/runtime_benchmark_full]

Expected result (measured 2026-11-28, idle 2-core CPU, gmm model: 9.5
minutes, table and figure in docs/log/): our JAX KDE is the fastest at
every n (0.0013 s at 2^8 to 0.1 s at 2^16) and stays under 400 MiB; the model
takes 0.04 s at 2^8 and 15-16 s at 2^16 (about linear in n beyond 2^12, where
the Estimator's default sub-quadratic mixing starts: each sample attends to the
first 4096; --config.model_max_self_attention_keys=0 for the full O(n^2)
network, about 15 minutes per call at 2^16) with 1.7 GiB peak; scipy (plus its
finite-difference score) is 1.3-1.8x faster than the model at d = 2 and 2.5-4x
slower at d = 10, up to scipy_max_samples. The model has the lowest error at
every n (d = 2: 0.016 relative score MSE at 2^16 vs the KDEs' 0.039). Run it on
an otherwise idle machine: timings under load are meaningless.
"""

from experiments.configs import runtime_benchmark_quick


def get_config():
  config = runtime_benchmark_quick.get_config()  # experiment "runtime_benchmark"
  config.sample_sizes = tuple(2**k for k in range(8, 17))  # 256 .. 65536.
  config.scipy_max_samples = 2**14  # scipy's single-threaded loop: minutes beyond this.
  config.repeats = 3  # Timed calls after the warm-up (fewer when slow, see below).
  config.max_timed_seconds = 120.0  # Cap on timed seconds per (method, d, n).
  config.subprocess_timeout_seconds = 3600  # Per (method, d, n).
  return config
