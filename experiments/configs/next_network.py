r"""The next network (equivariant) against the general model, Scott's KDE and one fitted Gaussian.

Command (the full config; ~12 min on the shared 2-core CPU):
  nice -n 19 python -m experiments.run --config=experiments/configs/next_network.py \
      --output_dir=/tmp/next_network_full [--workdir=/work/runs/eq_main]
--workdir (or --config.new_model) names the `new` network: a training workdir or a shipped
model's name (default "equivariant"). Any field can be overridden, e.g. a quick look:
  --config.mixture.seeds='(0,)' --config.mixture.dims='(2, 16)' --config.consistency.enabled=False

Six parts, each switchable (`<part>.enabled`) and sized here:
1. mixture: the paper's two-component mixtures, d = 2..100, n = 1024, 512 queries from the truth.
2. other_high_d: Student-t (nu = 3) and a two-spike Gaussian in d = 16, 32.
3. smooth_1d: ISE and the curve's total variation on N(0, 1) and a standardised Gamma(4).
4. integral_1d: the integral of exp(log f_hat) on Student-t samples (nu = 2, 3, 5), far tails.
5. consistency: N(0, I) in d = 2 up to n = 2^17.
6. cost: wall time per call at n = 4096, d = 2, m = 1024.

Expected result: results.json and results.md in output_dir, with a line per part naming the
cells where `new` loses. The command exits non-zero if a bar (config.bars) fails for a method in
`bars.methods` (see `experiments.harness.next_network.failures`).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "next_network"  # experiments/harness/next_network.py: its harness.
  config.seed = 0  # With the part and cell, seeds every distribution, sample set and query set.
  # The `new` method: a training workdir or a shipped model's name (--workdir overrides it).
  config.new_model = "equivariant"
  # The network methods skip any d above their max_dim (0: any d), so "general" measures the
  # old network itself instead of the model it hands d > 10 to.

  # 1. The paper's mixture: means uniform in [-mean_range, mean_range]^d, diagonal variances
  # uniform in [min_variance, max_variance], equal weights.
  config.mixture = ml_collections.ConfigDict()
  config.mixture.enabled = True
  config.mixture.dims = (2, 5, 10, 16, 32, 64, 100)
  config.mixture.seeds = (0, 1, 2, 3, 4)  # A fresh mixture, sample set and query set per seed.
  config.mixture.num_samples = 1024  # n.
  config.mixture.num_queries = 512  # m, drawn from the truth.
  config.mixture.num_components = 2
  config.mixture.mean_range = 3.0
  config.mixture.min_variance = 0.2
  config.mixture.max_variance = 1.0
  # default: what kdeformer.load_pretrained() answers (the general network at 2 <= d <= 8,
  # the equivariant one elsewhere); at d >= 16 it is `new`'s call again.
  config.mixture.methods = ("new", "general", "default", "scott", "gaussian")

  # 2. Beyond mixtures in high d: Student-t (identity scale) and a Gaussian with covariance
  # I + spike_variances[0] u u^T + spike_variances[1] v v^T (u, v random orthonormal).
  config.other_high_d = ml_collections.ConfigDict()
  config.other_high_d.enabled = True
  config.other_high_d.families = ("student_t", "spiked")
  config.other_high_d.dims = (16, 32)
  config.other_high_d.seeds = (0, 1, 2)
  config.other_high_d.num_samples = 1024
  config.other_high_d.num_queries = 512
  config.other_high_d.student_t_dof = 3.0
  config.other_high_d.spike_variances = (9.0, 4.0)
  config.other_high_d.methods = ("new", "general", "scott", "gaussian")

  # 3. Smooth unimodal 1-D densities: ISE and total variation of the curve on a grid.
  config.smooth_1d = ml_collections.ConfigDict()
  config.smooth_1d.enabled = True
  config.smooth_1d.families = ("normal", "gamma")  # gamma: Gamma(gamma_shape) standardised.
  config.smooth_1d.sample_sizes = (256, 1024, 4096)
  # Ten seeds: Scott's ISE varies 5x between sample sets at n = 256, so three decide nothing.
  config.smooth_1d.seeds = tuple(range(10))
  config.smooth_1d.gamma_shape = 4.0
  config.smooth_1d.grid_limit = 6.0  # The grid is [-grid_limit, grid_limit].
  config.smooth_1d.grid_points = 601  # Spacing 0.02; queries cost the networks most.
  config.smooth_1d.methods = ("new", "general", "default", "scott")

  # 4. The 1-D integral of exp(log f_hat) on Student-t samples, on y = centre + s sinh(t),
  # t in [-t_max, t_max] (s: the samples' IQR / 1.349; sinh(10) ~ 1.1e4).
  config.integral_1d = ml_collections.ConfigDict()
  config.integral_1d.enabled = True
  config.integral_1d.dofs = (2.0, 3.0, 5.0)
  config.integral_1d.sample_sizes = (256, 4096, 16384)
  config.integral_1d.seeds = (0,)
  config.integral_1d.t_max = 10.0
  config.integral_1d.grid_points = 8001
  # scott: a check of the quadrature.
  config.integral_1d.methods = ("new", "general", "default", "scott")

  # 5. Consistency: N(0, I) in d = 2 as n grows.
  config.consistency = ml_collections.ConfigDict()
  config.consistency.enabled = True
  config.consistency.dim = 2
  config.consistency.sample_sizes = (2**10, 2**12, 2**14, 2**17)
  config.consistency.seeds = (0,)
  config.consistency.num_queries = 1024
  config.consistency.methods = ("new", "general", "default", "scott", "gaussian")

  # 6. Cost per call: one call to compile, then the median of `repeats` timed calls.
  config.cost = ml_collections.ConfigDict()
  config.cost.enabled = True
  config.cost.num_samples = 4096
  config.cost.dim = 2
  config.cost.num_queries = 1024
  config.cost.repeats = 5
  # scipy: scipy.stats.gaussian_kde(samples.T).logpdf(queries.T), construction included; it
  # has no score, so it does less work than the others.
  config.cost.methods = ("new", "general", "jax_kde", "scipy")

  # The bars that `failures` checks, for these methods.
  config.bars = ml_collections.ConfigDict()
  # The bars hold for whatever answers: the new network and the default (load_pretrained()).
  config.bars.methods = ("new", "default")
  config.bars.integral_range = (0.9, 1.1)  # integral_1d: every cell inside.
  # mixture: at d >= this, the mean relative score MSE must beat scott's or gaussian's.
  config.bars.mixture_min_dim = 16
  # mixture: at these d, the mean relative score MSE must beat gaussian's (the fitted Gaussian
  # beat the general network at d = 9 and 10).
  config.bars.beats_gaussian_dims = (10,)
  # smooth_1d: mean ISE below scott's in every cell, and the curve's total variation at most
  # (1 + tv_tolerance) times the truth's (its peak estimate alone varies by a few %).
  config.bars.tv_tolerance = 0.05
  # consistency: at the largest n, both errors at most scott's; and below those at the smallest n.
  # cost: seconds per call at most cost_ratio times the general model's.
  config.bars.cost_ratio = 1.0
  return config
