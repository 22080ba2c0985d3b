r"""What users ask of a density: conditionals, the CDF and quantiles, mutual information.

Command:
  python -m experiments.run --config=experiments/configs/density_queries.py \
      [--workdir=/path/to/training/workdir] [--output_dir=./outputs/density_queries]
Any field can be overridden, e.g. --config.repeats=1 --config.conditional.sample_sizes='(500,)'
--config.mutual_information.enabled=False.

Four parts, each against exact values and the peers (statsmodels, scikit-learn, Scott KDEs):
(a) conditionals log f(x_rest | x_given) on a correlated Gaussian (rho 0.8), a banana and a
    4-D Gaussian (2 given 2): mean |error| at fresh draws for the model's
    `log_conditional` (ratio and normalize=True), the ratio of Scott KDEs and statsmodels'
    KDEMultivariateConditional with bw='cv_ml'; (b) a real data set (scikit-learn's diabetes:
    the target given the 9 continuous features, d = 10): held-out conditional log-likelihood,
    2-fold; (c) the CDF and quantiles in 1-D (Gaussian, exponential with bounds, bimodal
    mixture) against statsmodels' KDEUnivariate and the empirical CDF; (d) mutual information
    (Gaussian rho 0.8, 2+2 Gaussian blocks, independent pair, banana by numerical
    integration) against KSG (mutual_info_regression), the Scott KDE plug-in and the
    covariance's Gaussian MI.

Expected result (shipped general model, this config): docs/results_density_queries_cpu.md and
WORKSPACE.md, "Density queries": the model's normalised conditional has a lower mean |error|
than the Scott KDE ratio on the Gaussian and the banana at n = 2000; its bias-corrected mutual
information is within 0.05 nats of the exact value on the Gaussian (rho 0.8) and the blocks.
The command exits non-zero if either done-bar (conditional error, MI error) fails
(`failures`). Runtime: about 10 minutes on the loaded 2-core CPU.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "density_queries"  # experiments/harness/density_queries.py.
  config.seed = 0  # One seed -> every data set, test set, fold split and importance draw.
  config.repeats = 2  # Fresh sample sets per cell of (a), (c) and (d).

  # (a) Conditionals against the exact conditional.
  config.conditional = ml_collections.ConfigDict()
  config.conditional.enabled = True
  config.conditional.cases = ("gaussian", "banana", "gaussian4")  # See the harness.
  config.conditional.sample_sizes = (500, 2000)  # n.
  config.conditional.num_test = 400  # Fresh draws at which the conditional is compared.
  config.conditional.num_draws = 256  # normalize=True: importance draws per test point.
  # "model" (ratio), "model_normalized", "kde_ratio" (Scott), "statsmodels" (cv_ml).
  config.conditional.methods = ("model", "model_normalized", "kde_ratio", "statsmodels")
  config.conditional.statsmodels_max_n = 2000  # Larger n skip statsmodels (cv_ml is O(n^2)).
  config.conditional.rho = 0.8  # The 2-D Gaussian's correlation.
  config.conditional.banana_curvature = 0.5  # x2 = c x1^2 + noise_scale * eps.
  config.conditional.banana_noise = 0.5

  # (b) Real data: held-out conditional log-likelihood of one column given the others.
  config.real = ml_collections.ConfigDict()
  config.real.enabled = True
  config.real.dataset = "diabetes"  # sklearn.datasets.load_diabetes, target appended.
  config.real.drop_columns = (1,)  # "sex" takes two values: no density.
  config.real.target_column = -1  # Conditional of this column (after the drop) given the rest.
  config.real.num_folds = 2  # Train on one fold, test on the other, and swap.
  config.real.methods = ("model", "model_normalized", "kde_ratio", "statsmodels", "gaussian")

  # (c) The CDF and quantiles in d = 1.
  config.cdf = ml_collections.ConfigDict()
  config.cdf.enabled = True
  config.cdf.cases = ("gaussian", "exponential", "bimodal")
  config.cdf.sample_size = 1000
  config.cdf.grid_points = 401  # The sup distance to the exact CDF is taken on this grid.
  config.cdf.probabilities = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)  # Quantiles compared.
  config.cdf.methods = ("model", "statsmodels", "empirical")

  # (d) Mutual information.
  config.mutual_information = ml_collections.ConfigDict()
  config.mutual_information.enabled = True
  config.mutual_information.cases = ("gaussian", "blocks", "independent", "banana")
  config.mutual_information.sample_size = 2000
  config.mutual_information.num_references = 4  # Gaussian references of the bias correction.
  # "model" (kdeformer.mutual_information's defaults: normal scores, Gaussian-reference
  # correction), "model_reference_only" (the correction without normal scores),
  # "model_plugin" (naive), "kde_plugin" (naive), "kde_corrected" (Scott, the defaults),
  # "ksg" (mutual_info_regression, 1-D groups), "gaussian" (from the covariance).
  config.mutual_information.methods = (
    "model",
    "model_reference_only",
    "model_plugin",
    "kde_plugin",
    "kde_corrected",
    "ksg",
    "gaussian",
  )
  config.mutual_information.ksg_neighbors = 3
  config.mutual_information.tolerance = 0.05  # The done-bar: |MI - exact| (nats).
  return config
