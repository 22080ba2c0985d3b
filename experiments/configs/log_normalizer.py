r"""Is the model's exp(log-density) a density? Quadrature and importance sampling.

Command:
  python -m experiments.run --config=experiments/configs/log_normalizer.py \
      [--workdir=/path/to/training/workdir] [--output_dir=./outputs/log_normalizer]
Any field can be overridden, e.g. --config.seeds=2 --config.log_z.dims='(5,)'.

Three measurements of the raw model output (no normalize=True) and of the normalised one:
(1) int exp(log f_hat) by the trapezoid rule in u = asinh(whitened x) per axis
    (`quadrature.sinh_grid_points`, out to `halfwidth` whitened standard
    deviations, so Student-t tails are inside the box; the true density on the same grid
    states the truncation and discretisation error), for a standard Gaussian, a
    training-prior mixture and Student-t (3 degrees of freedom), d = 1 and 2, `seeds`
    sample sets per (d, source, n); every cell PASS/FAIL against `bars` (all seeds inside).
(2) log Z of the raw output by importance sampling (`log_normalizer_lib.log_normalizer`,
    with its standard error) on training-prior mixtures in d = 5 and 10; bar |log Z| < 0.2.
(3) normalize=True's log Z (the public path, `Estimator.__call__(..., normalize=True,
    key=...)`) against (1)'s quadrature on the same samples, the difference in standard
    errors.
The bars are information, not assertions: the command exits 0 whatever they say.

Expected result (gmm model, this config): docs/normalization_shipped_cpu.md. In short:
from n = 128 (1-D) or 512 (2-D) on, Gaussians and prior mixtures integrate to 1 within the
bars (0.98-1.04); below the trained sizes (n <= 64) the integral is 1.1-1.5 at n = 64, ~3
at n = 32 and ~100-300 at n = 16 (spurious bumps beyond the samples); Student-t FAILs at
every n, up to ~1000 at n = 512 (a bump on an isolated far sample). log Z in d = 5 is within
0.08 from n = 512, in d = 10 it is +0.18 at n = 4096 and +0.9 at n = 512.
Runtime: 949 s on the 2-core CPU shared with other jobs ((1) 6.3 min, (2) 2.5 min, (3) 7.0
min; most of it model calls on the 257^2 grids and the 16,384 importance draws); 4543 s
under nice -n 15 while a training run held both cores. The numbers are bit-identical.
"""

import ml_collections

from experiments.configs import prior


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "log_normalizer"  # experiments/harness/log_normalizer.py: its harness.
  config.seed = 0  # One seed -> every mixture, sample set and importance-sampling draw.
  config.prior = prior.get_config()  # The mixtures: the training prior (prior.py).
  config.seeds = 5  # Independent sample sets (and mixtures) per cell.

  # (1) Trapezoid quadrature of the raw exp(log f_hat) in d = 1, 2.
  config.quadrature = ml_collections.ConfigDict()
  config.quadrature.dims = (1, 2)
  # "gaussian": N(0, I); "mixture": a training-prior mixture per seed; "student_t": standard
  # multivariate Student-t with student_t_dof degrees of freedom.
  config.quadrature.sources = ("gaussian", "mixture", "student_t")
  config.quadrature.student_t_dof = 3.0
  # n per entry of dims.
  config.quadrature.sample_sizes = ((16, 32, 64, 128, 512, 4096), (16, 64, 512, 4096))
  # Nodes per axis per entry of dims (odd: every other node is the resolution check; 257^2
  # model queries per sample set in 2-D).
  config.quadrature.points_per_dim = (4097, 257)
  # Largest |whitened coordinate| of the grid; Student-t (3 dof) mass beyond 200 standard
  # deviations is ~1e-7.
  config.quadrature.halfwidth = 200.0
  # PASS: every seed's integral inside [low, high] (per entry of dims; the bars).
  config.quadrature.bars = ((0.9, 1.1), (0.85, 1.15))

  # (2) Importance-sampled log Z of the raw output on training-prior mixtures.
  config.log_z = ml_collections.ConfigDict()
  config.log_z.enabled = True  # False skips (2).
  config.log_z.dims = (5, 10)
  config.log_z.sample_sizes = (64, 512, 4096)
  config.log_z.num_draws = 16384  # Model queries per estimate (the normalize=True default).
  config.log_z.num_replicates = 16  # Randomised replicates (the standard error).
  config.log_z.bar = 0.2  # PASS: every seed's |log Z| below it.

  # (3) normalize=True's importance-sampled log Z against (1)'s quadrature.
  config.normalize = ml_collections.ConfigDict()
  config.normalize.enabled = True  # False skips (3).
  # n per entry of quadrature.dims; each must be one of (1)'s sample sizes for that d.
  config.normalize.sample_sizes = ((64, 512, 4096), (64, 512, 4096))
  config.normalize.seeds = 2  # The first this many of (1)'s sample sets per cell.
  return config
