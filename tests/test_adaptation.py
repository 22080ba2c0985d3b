"""Tests of test-time training (kdeformer.adaptation and Estimator(ttt_steps=...)).

One estimator for all calls (conftest.py's tiny model with every parameter perturbed, so both
heads depend on all of them), so its compiled programs are shared by the tests.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdeformer import adaptation
from kdeformer import estimator as estimator_lib
from kdeformer import networks
from kdeformer import whitening


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  return rng.standard_t(3, size=(2, 100, 2)), rng.standard_t(3, size=(2, 37, 2))


def whitened_problem(model, samples, bucket):
  """Whitened, padded samples of one problem (n = len(samples)) in a bucket of that size."""
  samples = jnp.asarray(samples, jnp.float32)
  n, d = samples.shape
  padded = jnp.pad(samples, [(0, bucket - n), (0, 0)])[None]
  mask = (jnp.arange(bucket) < n)[None]
  affine_map = whitening.fit_affine_map(padded, mask)
  whitened = whitening.whiten(padded, affine_map) * mask[..., None]
  whitened = jnp.pad(whitened, [(0, 0), (0, 0), (0, model.max_dim - d)])
  return whitened, mask, (jnp.arange(model.max_dim) < d)[None]


def test_zero_steps_is_exactly_the_plain_call(random_estimator, data):
  params, config = random_estimator.params, random_estimator.model_config
  adapting = estimator_lib.Estimator(params, config, ttt_steps=3, ttt_learning_rate=1e-2)
  expected = random_estimator(*data)
  out = adapting(*data, ttt_steps=0)
  np.testing.assert_array_equal(out.log_density, expected.log_density)
  np.testing.assert_array_equal(out.score, expected.score)


def test_estimator_defaults_apply_when_the_call_does_not_say(random_estimator, data):
  explicit = random_estimator(*data, ttt_steps=3, ttt_learning_rate=1e-2)
  compilations = random_estimator.num_compilations
  random_estimator.ttt_steps, random_estimator.ttt_learning_rate = 3, 1e-2
  try:
    default = random_estimator(*data, ttt_steps=None)
    random_estimator(*data, ttt_steps=5, ttt_learning_rate=1e-3)
  finally:
    random_estimator.ttt_steps = 0
    random_estimator.ttt_learning_rate = estimator_lib.DEFAULT_TTT_LEARNING_RATE
  np.testing.assert_array_equal(default.score, explicit.score)
  # Step count and learning rate are traced: one TTT program serves them all.
  assert random_estimator.num_compilations == compilations


def test_caller_parameters_are_unchanged_and_outputs_change(random_estimator, data):
  params = random_estimator.params
  before = jax.tree.map(np.array, params)
  plain = random_estimator(*data)
  adapted = random_estimator(*data, ttt_steps=3, ttt_learning_rate=1e-2)
  jax.tree.map(
    np.testing.assert_array_equal, jax.tree.map(np.asarray, random_estimator.params), before
  )
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, params), before)
  assert np.all(np.isfinite(adapted.score)) and np.all(np.isfinite(adapted.log_density))
  assert np.max(np.abs(adapted.score - plain.score)) > 1e-3
  # The plain call afterwards is unchanged too.
  again = random_estimator(*data)
  np.testing.assert_array_equal(again.score, plain.score)


def test_each_problem_is_adapted_on_its_own(random_estimator, data):
  samples, queries = data
  batched = random_estimator(samples, queries, ttt_steps=2, ttt_learning_rate=1e-2)
  single = random_estimator(samples[1], queries[1], ttt_steps=2, ttt_learning_rate=1e-2)
  np.testing.assert_allclose(batched.score[1], single.score, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(batched.log_density[1], single.log_density, rtol=1e-5, atol=1e-5)


def test_loss_ignores_padded_samples_and_coordinates(random_estimator, data):
  params, config = random_estimator.params, random_estimator.model_config
  model = networks.build_model(config)
  samples = data[0][0]
  loss = jax.jit(functools.partial(adaptation.consistency_loss, model))
  exact = loss(params, *whitened_problem(model, samples, 100))
  padded = loss(params, *whitened_problem(model, samples, 128))
  assert float(exact) > 0
  np.testing.assert_allclose(padded, exact, rtol=1e-5)


def test_consistency_loss_decreases_over_the_steps(random_estimator, data):
  params, config = random_estimator.params, random_estimator.model_config
  model = networks.build_model(config)
  whitened, mask, dim_mask = whitened_problem(model, data[0][0], 128)

  @jax.jit
  def loss_after(steps):
    # Adam moves every parameter by about the learning rate per step: at 3e-3 the fourth step
    # overshoots (0.138, 0.056, 0.015, then 0.026 at step 4); 1e-3 descends steadily.
    adapted = adaptation.adapt(
      model, params, whitened, mask, dim_mask, steps=steps, learning_rate=1e-3
    )
    return adaptation.consistency_loss(model, adapted, whitened, mask, dim_mask)

  losses = [float(loss_after(steps)) for steps in (0, 1, 2, 4)]
  assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
  assert losses[-1] < 0.5 * losses[0], losses


def test_negative_steps_are_rejected(random_estimator, data):
  with pytest.raises(ValueError, match="ttt_steps"):
    random_estimator(*data, ttt_steps=-1)
