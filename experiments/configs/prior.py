"""The training prior of the Gaussian mixtures: one definition for training and every evaluation.

Not an experiment of its own (no command): default.py puts these fields in its
config.data (under the same names, which training and old checkpoints'
config.json read), and the evaluation, refinements and functionals configs put
them in their config.prior, so every benchmark draws its mixtures from the
distribution the shipped model was trained on, whatever config the evaluated
model was trained with. Each mixture (`kdeformer.distributions.
sample_mixture_prior`) has a uniform number of components, Dirichlet weights,
uniform means and covariances R diag(v) R^T with v uniform and R Haar-random.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  prior = ml_collections.ConfigDict()
  prior.min_modes = 1  # Fewest mixture components.
  prior.max_modes = 10  # Most mixture components.
  prior.mean_range = 3.0  # Means uniform in [-mean_range, mean_range]^d.
  prior.min_variance = 0.2  # Component variances (before rotation) uniform in
  prior.max_variance = 1.0  # [min_variance, max_variance].
  prior.weight_concentration = 1.0  # Dirichlet concentration of the mixture weights.
  return prior


def get_broad_config() -> ml_collections.ConfigDict:
  """What the broad prior adds to the mixtures above (`distributions.sample_warped_prior`).

  Training draws a config.data.broad_fraction of its problems from it (0 in the configs of
  the Gaussian-mixture models); the evaluation's out-of-family rows are separate fixed
  distributions, not draws from this prior.
  """
  broad = ml_collections.ConfigDict()
  # Component kinds: Gaussian, Student-t, Laplace-type (product of Laplaces).
  broad.kind_probabilities = (0.4, 0.4, 0.2)
  broad.min_dof = 2.0  # Student-t degrees of freedom, log-uniform in [min_dof, max_dof].
  broad.max_dof = 30.0
  broad.min_scale = 0.03  # Each component's overall scale, log-uniform: 100x between them.
  broad.max_scale = 3.0
  broad.warp_probability = 0.5  # Chance of a per-coordinate sinh-arcsinh warp of the problem,
  broad.max_skew = 1.0  # with skew uniform in [-max_skew, max_skew]
  broad.min_tail_weight = 0.6  # and tail weight log-uniform in [min, max] (< 1: heavier tails).
  broad.max_tail_weight = 1.5
  broad.rotation_probability = 1.0  # Chance of a Haar rotation of the whole problem.
  return broad
