r"""Normalising constant and plug-in functionals of the model.

Command:
  python -m experiments.run --config=experiments/configs/functionals.py \
      [--workdir=/path/to/training/workdir] [--output_dir=./outputs/functionals]
Any field can be overridden, e.g. --config.functionals.repeats=10
--config.functionals.dims='(2,)' --config.log_normalizer.sample_sizes='(1024, 4096)'.

Expected result (gmm model): results.json and results.md in output_dir.
(a) log Z of exp(model log-density) on training-prior mixtures in d = 1, 2: the
    importance-sampling estimate agrees with the grid quadrature to |error| <
    0.01 (measured: at most 0.0035; standard errors ~0.001 in d = 1, ~0.003 in
    d = 2 at 16384 draws; the model's log Z itself is within 0.05 of 0). The
    command exits non-zero if an error exceeds `log_normalizer.tolerance`.
(b) Cross-fitted plug-in entropy and Fisher information, relative errors for
    model, Scott KDE and SD-KDE with the model's score, on Gaussians (closed
    form) and mixtures (Monte Carlo), d in {1, 2, 5}, n in {1024, 4096}.
    Measured: model / Scott mean |relative error| ~0.4 (entropy) and ~0.2
    (Fisher information), geometric means over the cells; SD-KDE with the
    model's score is worse than Scott. docs/log/ holds the tables.
Cost: 626 s on the shared 2-core CPU (most of it model calls and compilation);
--config.functionals.repeats=6 and log Z also at n = 4096: 1192 s.
"""

import ml_collections

from experiments.configs import prior


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "functionals"  # experiments/harness/functionals.py: its harness.
  config.seed = 0  # One seed -> every distribution, sample set, fold split and IS draw.

  # The training prior of the Gaussian mixtures (prior.py), in the problem's d.
  config.prior = prior.get_config()

  # (a) log Z of the model's exp(log-density): importance sampling vs grid quadrature.
  config.log_normalizer = ml_collections.ConfigDict()
  config.log_normalizer.enabled = True  # False skips (a).
  config.log_normalizer.dims = (1, 2)  # d (the grid costs points_per_dim^d model queries).
  config.log_normalizer.sample_sizes = (1024,)  # n.
  config.log_normalizer.num_problems = 3  # Mixtures per (d, n).
  config.log_normalizer.num_draws = 16384  # Importance-sampling draws (model queries).
  config.log_normalizer.num_replicates = 16  # Randomised replicates (standard error).
  config.log_normalizer.bandwidth_factor = 1.0  # Proposal kernel = factor x Scott (whitened).
  config.log_normalizer.defensive_weight = 0.05  # Share of draws from N(0, scale^2 I)
  config.log_normalizer.defensive_scale = 2.0  # (whitened units).
  # Trapezoid grid points per axis, one entry per entry of dims (128^2 = 16384 = num_draws
  # shares the IS program's compiled shape).
  config.log_normalizer.grid_points_per_dim = (2048, 128)
  config.log_normalizer.grid_padding = 3.0  # Box = sample range +- this many std per axis.
  config.log_normalizer.tolerance = 0.01  # |log Z (IS) - log Z (grid)| above it: exit 1.

  # (b) Cross-fitted plug-in entropy and Fisher information vs the truth.
  config.functionals = ml_collections.ConfigDict()
  config.functionals.enabled = True  # False skips (b).
  config.functionals.families = ("gaussian", "mixture")  # Gaussian: closed-form truth;
  # mixture: the training prior, Monte Carlo truth.
  config.functionals.dims = (1, 2, 5)  # d.
  config.functionals.sample_sizes = (1024, 4096)  # n.
  config.functionals.repeats = 3  # Fresh distribution and samples per repeat.
  config.functionals.num_folds = 2  # Cross-fitting folds (2: halves, swapped).
  # Columns: "exact" (the true density on the same samples: the noise floor), "model",
  # "kde_scott", "sd_kde_model" (SD-KDE whose score step uses the model's score).
  config.functionals.methods = ("exact", "model", "kde_scott", "sd_kde_model")
  config.functionals.gaussian_min_variance = 0.5  # Gaussian covariance eigenvalues
  config.functionals.gaussian_max_variance = 2.0  # log-uniform in [min, max], random rotation.
  config.functionals.monte_carlo_draws = 262144  # Fresh draws for a mixture's truth.
  return config
