"""Tests of the cross-fitted plug-in entropy and Fisher information and their truths."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdeformer import distributions
from kdeformer import functionals
from kdeformer import kde
from kdeformer.estimate import Estimate


def test_gaussian_closed_forms_match_monte_carlo():
  covariance = np.array([[1.5, 0.6], [0.6, 0.8]])
  gaussian = distributions.gaussian_mixture([1.0], np.zeros((1, 2)), covariance[None])
  np.testing.assert_allclose(
    functionals.gaussian_entropy(np.eye(2)), math.log(2 * math.pi * math.e)
  )
  np.testing.assert_allclose(functionals.gaussian_fisher_information(np.eye(3)), 3.0)
  mc = functionals.monte_carlo_functionals(gaussian, jax.random.key(0), 65536)
  assert abs(mc.entropy - functionals.gaussian_entropy(covariance)) < 4 * mc.entropy_standard_error
  assert (
    abs(mc.fisher_information - functionals.gaussian_fisher_information(covariance))
    < 4 * mc.fisher_standard_error
  )


def test_cross_fitting_never_evaluates_a_sample_on_a_fit_that_contains_it():
  samples = np.random.default_rng(0).normal(size=(101, 2)).astype(np.float32)

  def nearest_fit_distance(fit, queries):
    distance = jnp.min(jnp.sum((queries[:, None] - fit[None]) ** 2, -1), axis=1)
    return Estimate(distance, queries)  # score = the query itself, to check the order.

  for folds in (2, 3):
    out = functionals.cross_fitted_estimates(
      nearest_fit_distance, samples, jax.random.key(1), folds
    )
    assert np.all(np.asarray(out.log_density) > 0)  # No query is in its fit.
    np.testing.assert_array_equal(out.score, samples)  # Returned in the samples' order.
  with pytest.raises(ValueError, match="num_folds"):
    functionals.cross_fitted_estimates(nearest_fit_distance, samples, jax.random.key(1), 1)
  # More folds than pairs of samples left empty folds, refused only as "queries is empty".
  with pytest.raises(ValueError, match=r"num_folds .* at most n // 2 = 50; got 51"):
    functionals.cross_fitted_estimates(nearest_fit_distance, samples, jax.random.key(1), 51)


def test_self_inclusion_lowers_the_entropy_and_cross_fitting_does_not():
  samples = np.random.default_rng(1).normal(size=(1024, 1)).astype(np.float32)
  narrow = lambda fit, queries: kde.gaussian_kde(fit, queries, 0.05)
  exact = functionals.functionals_from_values(
    -0.5 * samples[:, 0] ** 2 - 0.5 * math.log(2 * math.pi), samples
  )
  self_included = -float(jnp.mean(narrow(samples, samples).log_density))
  cross_fitted = functionals.plug_in_functionals(narrow, samples, jax.random.key(0))
  # Each sample's own kernel inflates f at it (entropy too low); held out, a narrow KDE
  # has the usual upward bias of -log of a noisy estimate.
  assert self_included < exact.entropy - 0.03
  assert cross_fitted.entropy > exact.entropy + 0.1


def test_sd_kde_estimator_uses_the_given_score():
  samples = np.random.default_rng(2).normal(size=(200, 2)).astype(np.float32)
  queries = samples[:7] + 0.1
  standard = lambda fit, points: Estimate(-0.5 * jnp.sum(points**2, -1), -points)
  out = functionals.sd_kde_estimator(standard)(samples, queries)
  expected = kde.sd_kde(samples, queries, score_fn=lambda x: -x)
  np.testing.assert_allclose(out.log_density, expected.log_density, rtol=1e-6)
  np.testing.assert_allclose(out.score, expected.score, rtol=1e-6)


def test_model_entropy_of_a_2d_gaussian_within_5_percent_at_n_4096(general_model):
  model = general_model
  covariance = np.array([[1.5, 0.6], [0.6, 0.8]])
  gaussian = distributions.gaussian_mixture([1.0], np.zeros((1, 2)), covariance[None])
  samples = gaussian.sample(jax.random.key(0), 4096)
  out = functionals.plug_in_functionals(model, samples, jax.random.key(1))
  truth = functionals.gaussian_entropy(covariance)
  assert abs(out.entropy - truth) / truth < 0.05
  fisher = functionals.gaussian_fisher_information(covariance)
  assert abs(out.fisher_information - fisher) / fisher < 0.15
