r"""Step time and achieved GFLOP/s of the training step, per n bucket, for any training config.

Command:
  python -m experiments.run --config=experiments/configs/train_benchmark.py[:TRAIN_CONFIG] \
      [--config.steps=5] [--config.train.buckets='(256,)' ...] \
      [--output_dir=./outputs/train_benchmark]

TRAIN_CONFIG names a training config of experiments/configs/ (default cpu: `:v2_gpu` for
experiments/configs/v2_gpu.py); it is nested here as config.train, so its fields are
overridden as --config.train.<field>. FLOPs come from XLA's cost analysis of the compiled
step; GFLOP/s = FLOPs / step time. Prints a Markdown table (one row per n bucket) and the
mean over the bucket cycle, also written to results.md / results.json.

Expected result: for cpu, 0.46-0.57 s/step and about 70 GFLOP/s on an idle 2-core
machine (experiments/configs/cpu.py). The logic is in experiments/harness/train_benchmark.py.
"""

import importlib

import ml_collections


def get_config(train_config: str = "cpu") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "train_benchmark"  # experiments/harness/train_benchmark.py: its harness.
  config.train_config = train_config  # Which training config config.train is (a record).
  config.train = importlib.import_module(f"experiments.configs.{train_config}").get_config()
  config.steps = 5  # Timed steps per bucket (after one warm-up step).
  return config
