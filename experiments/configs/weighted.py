"""Weighted samples: importance-weighted draws from a broad proposal, estimating a target mixture.

Command:
  python -m experiments.run --config=experiments/configs/weighted.py [--workdir=DIR] \
      [--output_dir=./outputs/weighted]

For each cell (d, n): `num_problems` target mixtures from the training prior; n points drawn
from the proposal N(0, proposal_scale^2 I) (it covers the prior's means in [-3, 3]^d), each
weighted by f_target(x) / q(x); queries drawn from the target. Methods: the model and Scott's
KDE with those weights (scipy's convention, effective n = 1 / sum w^2), and as references the
same methods on n_eff unweighted draws from the target itself (what the weights are worth).
Reported: relative score MSE (pooled and on the typical set: queries whose true log-density is
at or above its 5% quantile within their problem, as in the evaluation) and log-density MSE.
Expected result: docs/log/, "Weighted samples" (measured on the 2-core CPU with the gmm
model, 2026-12-02).
"""

import ml_collections

from experiments.configs import prior


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "weighted"  # experiments/harness/weighted.py: its harness.
  config.seed = 0  # Seed of the mixtures, proposal draws and queries.
  config.prior = prior.get_config()  # Target mixtures: the training prior.
  config.dims = (1, 2, 5)  # Dimensions d.
  config.sample_sizes = (512, 2048)  # Proposal draws n per problem.
  config.num_problems = 16  # Target mixtures per cell (one batched call per method).
  config.num_queries = 256  # Queries from each target.
  config.proposal_scale = 3.0  # Proposal N(0, scale^2 I).
  config.typical_quantile = 0.05  # Typical set: true log-density at or above this quantile.
  return config
