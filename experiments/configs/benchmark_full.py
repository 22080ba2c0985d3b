r"""Runtime and memory versus n = 2^8 .. 2^16 (d = 2 and 10, m = 1024): the full benchmark.

Command:
  python -m experiments.benchmark --config=experiments/configs/benchmark_full.py \
      [--workdir=/tmp/kdeformer_cpu] [--output_dir=./outputs/benchmark_full]

Expected result: roughly 1.5-2 hours on an idle 2-core CPU, dominated by the
model at n = 2^15 and 2^16: its self-attention is O(n^2) (about 4x the time
per doubling of n; extrapolating the quick run's 3.3 s at n = 2^12, d = 10,
about 15 minutes per call at 2^16), while blockwise attention
(model_key_chunk_size) keeps its peak memory growing only linearly in n. Our
JAX KDE stays at seconds and bounded memory at every n; scipy runs up to
scipy_max_samples and is marked skipped above. Run it on an otherwise idle
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
