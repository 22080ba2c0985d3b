"""Tests of kdeformer.sample_order: one canonical order for every ordering of a sample set."""

import numpy as np

from kdeformer import sample_order


def test_every_ordering_gives_the_same_array():
  rng = np.random.default_rng(0)
  samples = rng.normal(size=(2000, 3)).astype(np.float32)
  canonical = sample_order.in_canonical_order(samples)
  for ordering in (
    np.argsort(samples[:, 0]),
    np.argsort(-samples[:, 2]),
    rng.permutation(2000),
    np.arange(2000)[::-1],
  ):
    np.testing.assert_array_equal(sample_order.in_canonical_order(samples[ordering]), canonical)
  # A permutation of the same rows, nothing lost or duplicated.
  np.testing.assert_array_equal(np.sort(canonical, axis=0), np.sort(samples, axis=0))


def test_first_k_of_sorted_data_is_spread_over_the_data():
  """The first k of the canonical order of column-sorted data cover the range like a random
  subset."""
  samples = np.sort(np.random.default_rng(1).normal(size=(16384, 1)).astype(np.float32), axis=0)
  first = sample_order.in_canonical_order(samples)[:4096, 0]
  # A random 4096-subset's quartiles sit within ~0.03 of the population's.
  np.testing.assert_allclose(
    np.quantile(first, [0.25, 0.5, 0.75]), np.quantile(samples[:, 0], [0.25, 0.5, 0.75]), atol=0.06
  )


def test_batched_sets_are_ordered_independently():
  rng = np.random.default_rng(2)
  batch = rng.normal(size=(3, 100, 2)).astype(np.float32)
  ordered = sample_order.in_canonical_order(batch)
  for index in range(3):
    np.testing.assert_array_equal(ordered[index], sample_order.in_canonical_order(batch[index]))


def test_negative_zero_hashes_like_zero():
  samples = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
  flipped = np.array([[-0.0, 1.0], [2.0, 3.0]], np.float32)
  np.testing.assert_array_equal(sample_order.value_hash(samples), sample_order.value_hash(flipped))
