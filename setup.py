"""kdeformer: density and score estimation with one pretrained transformer."""

import os

import setuptools


def pretrained_files():
  """Every file of the shipped checkpoint (Orbax writes nested directories)."""
  root = os.path.join("kdeformer", "pretrained")
  return [
    os.path.relpath(os.path.join(folder, name), "kdeformer")
    for folder, _, names in os.walk(root)
    for name in names
  ]


setuptools.setup(
  name="kdeformer",
  version="0.1.0",
  description=(
    "Amortised density and score estimation with a permutation-equivariant "
    "transformer, benchmarked against kernel density estimation."
  ),
  long_description=open("README.md").read(),
  long_description_content_type="text/markdown",
  packages=setuptools.find_packages(include=["kdeformer", "kdeformer.*"]),
  package_data={"kdeformer": pretrained_files()},
  python_requires=">=3.10",
  install_requires=[
    "jax>=0.6",
    "flax>=0.10",
    "optax",
    "orbax-checkpoint>=0.11",
    "chex",
    "absl-py",
    "ml_collections",
    "numpy",
    "scipy",
  ],
  # The experiment harnesses (experiments/) draw figures; the core never imports matplotlib.
  # kdeformer.sklearn (scikit-learn estimators) needs scikit-learn >= 1.6 (validate_data);
  # `import kdeformer` does not import it. The tests run docs/quickstart.ipynb (nbclient);
  # CI lints with ruff (ruff.toml); the real-data experiment reads its data sets with
  # pandas. statsmodels: the density-queries experiment's peers (conditional KDE,
  # KDEUnivariate) and the real-data experiment's bundled sets.
  extras_require={
    "experiments": ["matplotlib", "statsmodels"],
    "sklearn": ["scikit-learn>=1.6"],
    "test": [
      "pytest",
      "pytest-xdist",
      "pytest-timeout",
      "matplotlib",
      "ruff",
      "scikit-learn>=1.6",
      "pandas",  # The real-data experiment's tables (as_frame).
      "nbclient",
      "nbformat",
      "ipykernel",
    ],
  },
)
