"""A seconds-long evaluation of every part, for tests and smoke checks.

Command:
  python -m experiments.evaluate --config=experiments/configs/evaluate_tiny.py \
      --workdir=/tmp/kdeformer_tiny --output_dir=/tmp/evaluate_tiny

Expected result: results.json, results.md and four PNG figures in a few
seconds (plus compilation); no accuracy is expected (tiny cells, tiny model).
"""

from experiments.configs import evaluate_full


def get_config():
  config = evaluate_full.get_config()
  config.batch_size = 2
  config.benchmark.dims = (1, 2)
  config.benchmark.sample_sizes = (64, 128)
  config.benchmark.mixtures_per_cell = 3  # Not a multiple of batch_size: exercises the padding.
  config.benchmark.num_queries = 16
  config.grid.points_1d = 20
  config.grid.points_2d = 8
  # Rows in d <= 2, so the benchmark's compiled shapes serve them; not skewed_d1, whose
  # sampler alone takes ~10 s to compile (tests/experiments/test_evaluation_problems.py
  # checks its density and score).
  config.out_of_family.rows = ("student_t3_d2", "laplace_d2", "multiscale_d1")
  config.out_of_family.sample_sizes = (64,)
  config.out_of_family.repeats = 2
  config.out_of_family.num_queries = 16
  config.equivariance.dims = (2,)
  config.equivariance.num_trials = 2
  config.equivariance.num_samples = 32
  config.equivariance.num_queries = 8
  config.figures.field_num_samples = 128
  config.figures.quiver_stride = 2
  config.figures.density_num_samples = 64
  return config
