r"""Held-out log-likelihood on real tabular data shipped inside scikit-learn and statsmodels.

Command (the default config; ~10 min on the shared 2-core CPU):
  nice -n 19 python -m experiments.run --config=experiments/configs/real_data.py \
      [--workdir=/path/to/training/workdir] [--output_dir=./outputs/real_data]
--workdir adds one training workdir to config.workdirs (loaded with `kdeformer.load`): how a
newly trained model is compared with the shipped ones. Any field can be overridden, e.g.
  --config.splits='(0,)' --config.datasets='("iris", "engel")' --config.models='("general",)'

Every data set ships inside an installed package (no download): scikit-learn's bundled sets
(`sklearn.datasets.load_<name>`) and statsmodels' (`statsmodels.datasets.<name>`). Each is
cleaned the same way (numeric columns only, index columns such as year dropped, columns more
than max_nan_fraction missing dropped, then rows with a NaN, then constant, duplicate and
collinear columns) and yields one problem per prefix of its columns (the first k columns,
k in prefix_sizes up to its column count D) plus one with all its columns when D > 10 (the
first max_columns when it has more; a one-column set gives d = 1). Each problem is split
train/test (train_fraction) once per seed in `splits`; every method is fitted on the train rows
and scored by the mean log-density of the test rows (nats per point, on the data's original
scale, higher is better).

Methods: the shipped models by name (`models`, `kdeformer.load_pretrained`), the training
workdirs (`workdirs`, `kdeformer.load`), and the baselines (`baselines`): "scott" (Scott's
Gaussian KDE, `kdeformer.kde.gaussian_kde`), "cv_kde" (scikit-learn KernelDensity on the
whitened train rows, bandwidth by GridSearchCV, log-Jacobian added back) and "gaussian" (the
sample mean and covariance).

Expected result: results.json and results.md in output_dir: per problem each method's held-out
log-likelihood (mean over splits, +- the spread), its non-finite test values and refusals;
then per method the problems where it beats the CV KDE and its mean rank, for d <= 10 and
d > 10 apart. docs/results_real_data_cpu.md holds the default run's report.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "real_data"  # experiments/harness/real_data.py: its harness.
  config.seed = 0  # With the split seed: the row subsample, each split and the CV folds.

  # Data sets: scikit-learn's bundled ones (iris, wine, breast_cancer, diabetes, linnerud; the
  # diabetes and linnerud targets are appended as columns, class labels are not) and
  # statsmodels.datasets.<name> for any other name.
  config.datasets = (
    # scikit-learn
    "iris",
    "wine",
    "breast_cancer",
    "diabetes",
    # statsmodels, continuous
    "engel",
    "nile",
    "sunspots",
    "co2",
    "statecrime",
    "macrodata",
    "cancer",
    "star98",
    # statsmodels, small n or partly discrete (flagged in the table)
    "stackloss",
    "scotland",
    "strikes",
    "anes96",
    "fair",
  )
  # Problems: the first k columns for each k here up to the column count D; and all columns
  # (the first max_columns) when D > all_columns_above, or D is below every k. Few distinct d
  # keep the run short: the equivariant network compiles once per (sample bucket, d).
  config.prefix_sizes = (2, 5, 10)
  config.all_columns_above = 10
  config.max_columns = 40
  # Columns that index rows rather than measure them (case-insensitive names).
  config.drop_columns = ("year", "quarter", "time", "individual", "firm")
  config.max_nan_fraction = 0.1  # Columns missing more than this are dropped before the rows.
  config.collinear_rtol = 1e-8  # A column whose correlation with the kept ones leaves the
  # smallest eigenvalue below rtol * the largest is dropped (the models refuse such data).
  config.max_rows = 360  # Larger data sets are subsampled (seeded) to this many rows
  # (n_train <= 252: the networks' sample buckets up to 256, so few compilations).
  config.min_train = 12  # Problems with fewer train rows, or fewer than 2 (d + 1), are skipped.
  config.discrete_max_unique = 10  # A column with at most this many distinct values is discrete.

  config.train_fraction = 0.7
  config.splits = (0, 1, 2)  # One train/test split per seed; the table gives mean +- std.

  # Methods.
  config.models = ("general", "equivariant")  # Shipped models (kdeformer.load_pretrained).
  config.workdirs = ()  # Training workdirs (kdeformer.load); --workdir appends one.
  config.baselines = ("scott", "cv_kde", "gaussian")
  # normalize=True subtracts an importance-sampled log Z from the networks' log-densities
  # (one more program per shape and ~1 s per call here): off by default, see the report.
  config.normalize = False
  config.normalize_draws_seed = 0

  # The CV KDE: bandwidth = Scott's factor n^(-1/(d+4)) times a grid factor, in whitened units.
  config.cv_kde = ml_collections.ConfigDict()
  config.cv_kde.min_factor = 0.05
  config.cv_kde.max_factor = 2.0
  config.cv_kde.num_bandwidths = 16
  config.cv_kde.folds = 5
  return config
