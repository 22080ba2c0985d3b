r"""Runtime and memory versus n = 2^8 .. 2^16 (d = 2 and 10, m = 1024): the full benchmark.

Command:
  python -m experiments.benchmark --config=experiments/configs/benchmark_full.py \
      [--workdir=/tmp/kdeformer_cpu] [--output_dir=./outputs/benchmark_full]

Expected result: not yet run (WORKSPACE.md). Up to n = 4096 the model's
self-attention is O(n^2); beyond it the Estimator's default sub-quadratic
mixing (max_self_attention_keys = 4096: each sample attends to the first 4096)
makes it O(n * 4096), so time grows about linearly from 2^13 on (set
--config.model_max_self_attention_keys=0 for the full O(n^2) network: about
15 minutes per call at 2^16). Blockwise attention keeps peak memory linear in
n. Our JAX KDE stays at seconds and bounded memory at every n; scipy runs up
to scipy_max_samples and is marked skipped above. Run it on an otherwise idle
machine: timings under load are meaningless.
"""

from experiments.configs import benchmark_quick


def get_config():
  config = benchmark_quick.get_config()
  config.sample_sizes = tuple(2**k for k in range(8, 17))  # 256 .. 65536.
  config.scipy_max_samples = 2**14  # scipy's single-threaded loop: minutes beyond this.
  config.repeats = 3  # Timed calls after the warm-up (fewer when slow, see below).
  config.max_timed_seconds = 120.0  # Cap on timed seconds per (method, d, n).
  config.subprocess_timeout_seconds = 3600  # Per (method, d, n).
  return config
