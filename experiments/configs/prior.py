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
