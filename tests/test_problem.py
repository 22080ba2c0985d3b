"""Tests of kdeformer.problem: the rules in one place, canonical order, and the one wrapper."""

import dataclasses

import numpy as np
import pytest

from kdeformer import problem as problem_lib
from kdeformer import whitening
from kdeformer.estimate import Estimate
from kdeformer.model import ModelConfig

SAMPLES = np.random.default_rng(0).normal(size=(64, 3)) @ np.diag([1.0, 1e3, 1e-3]) + 5.0


def test_max_dim_zero_means_any_dimension():
  """A network without a d limit (ModelConfig.max_dim = 0) is limited nowhere else."""
  wide = np.random.default_rng(1).normal(size=(40, 12))
  any_d = problem_lib.Rules.for_model(ModelConfig(max_dim=0))
  assert problem_lib.prepare(wide, rules=any_d).dim == 12
  with pytest.raises(ValueError, match="supports d <= 10"):
    problem_lib.prepare(wide, rules=problem_lib.Rules.for_model(ModelConfig(max_dim=10)))


def test_the_model_minimum_comes_from_the_model_config():
  rules = problem_lib.Rules.for_model(ModelConfig(min_samples=7, smallest_trained_size=16))
  assert (rules.min_samples, rules.measured, rules.trained_from) == (7, True, 16)
  floor = problem_lib.Rules.for_model(ModelConfig())
  assert (floor.min_samples, floor.measured) == (problem_lib.MIN_MODEL_SAMPLES, False)
  with pytest.raises(ValueError, match="n = 6 samples is below the 7 this model answers for"):
    problem_lib.prepare(SAMPLES[:6], rules=rules)
  with pytest.raises(ValueError, match="n = 3 rows; at least 4"):
    problem_lib.prepare(SAMPLES[:3], rules=floor)


def test_beyond_the_key_budget_the_order_of_the_samples_does_not_matter():
  rules = dataclasses.replace(problem_lib.KDE_RULES, key_budget=16)
  weights = np.random.default_rng(2).uniform(size=64)
  order = np.random.default_rng(3).permutation(64)
  first = problem_lib.prepare(SAMPLES, weights=weights, rules=rules)
  second = problem_lib.prepare(SAMPLES[order], weights=weights[order], rules=rules)
  np.testing.assert_array_equal(first.samples, second.samples)
  np.testing.assert_array_equal(first.weights, second.weights)
  np.testing.assert_array_equal(first.unwhitened[0], SAMPLES)  # The caller's order kept too.


def test_run_whitens_and_maps_back_in_float64():
  """A standard normal in whitened coordinates is N(mean, Cov) in the data's."""
  problem = problem_lib.prepare(SAMPLES)
  queries = SAMPLES[:5] + 0.1
  seen = []

  def standard_normal(samples, whitened_queries, weights):
    seen.append((samples, whitened_queries, weights))
    log_density = -0.5 * np.sum(whitened_queries**2, -1) - 1.5 * np.log(2 * np.pi)
    return Estimate(log_density, -whitened_queries)

  out = problem.run(standard_normal, queries)
  samples, whitened_queries, weights = seen[0]
  host = whitening.fit_host_whitening(SAMPLES)
  np.testing.assert_allclose(samples, host.whiten(SAMPLES), atol=1e-12)
  np.testing.assert_allclose(whitened_queries, host.whiten(queries), atol=1e-12)
  assert weights is None
  covariance = np.cov(SAMPLES.T)
  centred = queries - SAMPLES.mean(axis=0)
  expected = (
    -0.5 * np.einsum("mi,ij,mj->m", centred, np.linalg.inv(covariance), centred)
    - 0.5 * np.linalg.slogdet(2 * np.pi * covariance)[1]
  )
  np.testing.assert_allclose(out.log_density, expected, rtol=1e-5)
  np.testing.assert_allclose(out.score, -centred @ np.linalg.inv(covariance), rtol=1e-4)


def test_far_queries_are_refused_only_where_the_rules_say():
  far = SAMPLES[:2] + 1e12
  problem_lib.prepare(SAMPLES).prepare_queries(far)  # The KDE evaluates them in closed form.
  model_rules = problem_lib.Rules.for_model(ModelConfig())
  with pytest.raises(ValueError, match="sample standard deviations"):
    problem_lib.prepare(SAMPLES, rules=model_rules).prepare_queries(far)
