r"""Attention is a Gaussian KDE: the construction checked numerically, and trained heads fitted.

Command:
  python -m experiments.kde_equivalence [--workdir=/tmp/kdeformer_cpu] \
      [--output_dir=./outputs/kde_equivalence] [--config.construction.tolerance=1e-4 ...]
or, the same, python -m experiments.run --config=experiments/configs/kde_equivalence.py [...]

Expected result:
  (a) The constructed one-head cross-attention block (kdeformer.kde_attention)
      reproduces our KDE (kde.kde_with_covariance with H = h^2 I) and
      scipy.stats.gaussian_kde with the same kernel covariance for every d in
      {1, 2, 5, 10} and h in {0.2, 0.5, 1} (4 mixtures per d): max relative
      error of log-density ~1e-6 and of the score ~1e-5 in float32, under the
      1e-4 tolerance; the command exits non-zero if any error exceeds it. The
      score's margin depends on attention.dense_attention normalising by the
      sum of exp(logits - max): with weights exp(logits - logsumexp), which
      sum to 1 only up to ulp(logsumexp), the worst score error is ~7e-5 at
      h = 0.2 and above 1e-4 at h = 0.1 for most draws. About a minute on a
      2-core CPU, mostly compilation.
  (b) With a trained model (--workdir, else the shipped model config.model, "gmm";
      skipped with a log line if neither exists): per head of the first cross-attention layer,
      the fitted isotropic and anisotropic kernel bandwidths, the KL divergence
      KL(attention || kernel) and the correlation of the weights, next to
      KL(attention || uniform) (the no-kernel reference) and how much the
      weights depend on the query at all; and attention_weights_d2.png,
      query-centred weight maps beside the fitted kernel's, as in the paper's
      Figure 1. The paper gives no numbers here; docs/log/ records ours.
"""

import ml_collections

from experiments.configs import prior


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "kde_equivalence"  # experiments/harness/kde_equivalence.py: its harness.
  config.seed = 0  # One seed -> every mixture, sample and query of both parts.
  # Part (b) without --workdir: this shipped model (kdeformer.list_pretrained()). The mixture
  # specialist, whose heads docs/log/ analyses; --config.model=general for the default.
  config.model = "gmm"

  # The distribution everything is drawn from: the training prior (prior.py: Gaussian
  # mixtures), in the problem's d.
  config.prior = prior.get_config()

  # (a) The constructed attention block against our KDE and scipy's.
  config.construction = ml_collections.ConfigDict()
  config.construction.dims = (1, 2, 5, 10)  # Dimensions d checked.
  config.construction.bandwidths = (0.2, 0.5, 1.0)  # Kernel bandwidths h (covariance h^2 I),
  # in whitened units: the samples are exactly whitened (mean 0, covariance I)
  # so that scipy's rule "covariance = Cov(samples) * factor^2" with factor = h
  # gives the kernel covariance h^2 I.
  config.construction.num_problems = 4  # Independent mixtures per d (max error reported).
  config.construction.num_samples = 1024  # n.
  config.construction.num_queries = 256  # m.
  config.construction.tail_fraction = 0.25  # Fraction of queries pushed into the tails,
  config.construction.tail_scale = 1.0  # by N(0, tail_scale^2 I) noise (whitened units).
  config.construction.tolerance = 1e-4  # Largest allowed relative error (float32); any
  # larger error makes the command exit non-zero.
  # Relative step of the central differences that give scipy's KDE a score
  # (scipy has no score): step = fd_relative_step * h, in float64.
  config.construction.fd_relative_step = 1e-4

  # (b) Heads of a trained model's first cross-attention layer against Gaussian kernels.
  config.attention = ml_collections.ConfigDict()
  config.attention.enabled = True  # False skips (b) even when a model is available.
  config.attention.layer = 0  # Which cross-attention layer (0 = the first).
  config.attention.dims = (1, 2, 5, 10)  # One mixture problem per d.
  config.attention.num_samples = 1024  # n per problem.
  config.attention.num_queries = 8  # Queries whose weights are fitted.
  config.attention.min_bandwidth = 0.02  # Isotropic fit: log-spaced grid of h over
  config.attention.max_bandwidth = 20.0  # [min_bandwidth, max_bandwidth] (whitened units)
  config.attention.num_bandwidths = 241  # with this many points (3% spacing).
  config.attention.anisotropic = True  # Also fit a full kernel covariance per head.
  config.attention.anisotropic_steps = 400  # Adam steps of the full-covariance fit,
  config.attention.anisotropic_learning_rate = 0.05  # at this learning rate.
  config.attention.figure_dim = 2  # The d of the weight-map figure (2 -> scatter maps).
  config.attention.figure_queries = 3  # Queries shown per head in the figure.
  config.attention.figure_max_heads = 4  # Heads shown (rows) in the figure.
  return config
