"""Pinned accuracy of each shipped model on fixed, seeded problems.

A test fails when a relative score MSE rises more than 10% above the value stored here, or when
the 1-D integral of exp(log f) leaves [0.9, 1.1]. The stored values were measured with this
file's own settings (tests/conftest.py: XLA at -O0, CPU); re-measure with
`python -m tests.test_pretrained_accuracy` after an intended change of a shipped model.
"""

import functools

import jax
import numpy as np
import pytest

import kdeformer
from kdeformer import distributions
from kdeformer import metrics

# The small n of each model: the general model's smallest trained size; the gmm model's
# min_samples (below it the estimator refuses: README, "Small samples").
SAMPLE_SIZES = {"general": (16, 512), "gmm": (48, 512)}
NUM_QUERIES = 256
MAX_RISE = 1.10
INTEGRAL_RANGE = (0.9, 1.1)
# 1-D quadrature of exp(log f) for N(0, 1) samples: trapezoid on a grid wide enough for its tails.
GRID = np.linspace(-10.0, 10.0, 2001)
# (model, n) -> integral measured at n; the mixture specialist refuses n = 16 (its integral there
# was about 145, README "Is it a density") and integrates to 1.29 at its minimum, 48, so only
# n = 512 is pinned for it.
INTEGRAL_SIZES = {"general": (16, 512), "gmm": (512,)}

# Relative score MSE per (model, problem, n), measured 2026-12-04 on the 2-core CPU
# (integrals then: general 1.006 at n = 16, 1.028 at 512; gmm 193 at 16, 0.992 at 512); the
# gmm model's n = 48 cells 2026-12-06 (its integral there 1.29), when n = 16 became refused.
PINNED_ERRORS = {
  "general": {
    "mixture_d2_n16": 0.7006,
    "mixture_d2_n512": 0.0903,
    "mixture_d5_n16": 0.3503,
    "mixture_d5_n512": 0.0276,
    "student_t3_d2_n16": 0.5561,
    "student_t3_d2_n512": 0.1574,
    "laplace_d2_n16": 0.5527,
    "laplace_d2_n512": 0.2672,
  },
  "gmm": {
    "mixture_d2_n48": 0.3184,
    "mixture_d2_n512": 0.0752,
    "mixture_d5_n48": 0.4658,
    "mixture_d5_n512": 0.0162,
    "student_t3_d2_n48": 0.5598,
    "student_t3_d2_n512": 1.6328,
    "laplace_d2_n48": 0.8758,
    "laplace_d2_n512": 0.3667,
  },
}


def _prior_mixture(seed: int, dim: int) -> distributions.GaussianMixture:
  return distributions.sample_mixture_prior(
    jax.random.key(seed),
    dim,
    max_dim=dim,
    min_modes=1,
    max_modes=10,
    mean_range=3.0,
    min_variance=0.2,
    max_variance=1.0,
    weight_concentration=1.0,
  )


PROBLEMS = {
  "mixture_d2": functools.partial(_prior_mixture, 3, 2),
  "mixture_d5": functools.partial(_prior_mixture, 4, 5),
  "student_t3_d2": lambda: distributions.student_t(2, dof=3.0),
  "laplace_d2": lambda: distributions.laplace(2),
}


def relative_score_error(model, problem: str, num_samples: int) -> float:
  """The model's relative score MSE on one fixed problem: n samples, NUM_QUERIES true queries."""
  distribution = PROBLEMS[problem]()
  key = jax.random.fold_in(jax.random.key(sorted(PROBLEMS).index(problem)), num_samples)
  sample_key, query_key = jax.random.split(key)
  samples = np.asarray(distribution.sample(sample_key, num_samples))
  queries = np.asarray(distribution.sample(query_key, NUM_QUERIES))
  truth = distribution.log_prob_and_score(queries)
  return float(metrics.relative_score_mse(model(samples, queries).score, truth.score))


def normal_integral(model, num_samples: int) -> float:
  """Trapezoid integral of exp(log f) over GRID, f fitted to n draws of N(0, 1)."""
  samples = np.random.default_rng(num_samples).normal(size=(num_samples, 1))
  log_density = np.asarray(model(samples, GRID[:, None]).log_density, np.float64)
  return float(np.trapezoid(np.exp(log_density), GRID))


@pytest.fixture
def shipped_models(general_model, gmm_model):
  return {"general": general_model, "gmm": gmm_model}


@pytest.mark.parametrize("name", sorted(PINNED_ERRORS))
def test_errors_stay_at_their_pinned_values(shipped_models, name):
  model = shipped_models[name]
  measured = {
    f"{problem}_n{n}": relative_score_error(model, problem, n)
    for problem in PROBLEMS
    for n in SAMPLE_SIZES[name]
  }
  assert set(measured) == set(PINNED_ERRORS[name]), "PINNED_ERRORS is missing a problem"
  risen = {
    cell: (value, PINNED_ERRORS[name][cell])
    for cell, value in measured.items()
    if value > MAX_RISE * PINNED_ERRORS[name][cell]
  }
  assert not risen, f"{name}: (measured, pinned) errors more than 10% above the pins: {risen}"


@pytest.mark.parametrize("name", sorted(PINNED_ERRORS))
def test_exp_log_density_integrates_to_about_one(shipped_models, name):
  model = shipped_models[name]
  integrals = {n: normal_integral(model, n) for n in INTEGRAL_SIZES[name]}
  low, high = INTEGRAL_RANGE
  assert all(low <= value <= high for value in integrals.values()), integrals


if __name__ == "__main__":
  import os
  import sys

  sys.path.insert(0, os.path.dirname(__file__))
  import conftest  # noqa: F401  (the suite's XLA settings)

  for model_name in sorted(PINNED_ERRORS):
    estimator = kdeformer.load_pretrained(model_name)
    print(
      model_name,
      {
        f"{problem}_n{n}": round(relative_score_error(estimator, problem, n), 4)
        for problem in PROBLEMS
        for n in SAMPLE_SIZES[model_name]
      },
    )
    print(
      model_name,
      "integrals",
      {n: round(normal_integral(estimator, n), 4) for n in SAMPLE_SIZES[model_name]},
    )
