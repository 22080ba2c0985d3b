"""A canonical order of a sample set that does not depend on the order the samples came in.

Beyond its key budget k the network's self-attention uses the first k samples as keys; sorting
by a hash of the values makes them a pseudo-random subset and the output the same, bit for bit,
for every order of the same samples (docs/DESIGN.md says why).
"""

import numpy as np

# Part of the estimator's definition: it picks the key samples beyond the budget.
HASH_SEED = 0x5EED1234


def _mix(hash_values: np.ndarray) -> np.ndarray:
  """MurmurHash3's 32-bit finaliser (a bijection of uint32 with full avalanche)."""
  hash_values = hash_values ^ (hash_values >> np.uint32(16))
  hash_values = hash_values * np.uint32(0x85EBCA6B)
  hash_values = hash_values ^ (hash_values >> np.uint32(13))
  hash_values = hash_values * np.uint32(0xC2B2AE35)
  return hash_values ^ (hash_values >> np.uint32(16))


def value_hash(samples: np.ndarray) -> np.ndarray:
  """A uint32 hash (..., n) of each sample's float64 coordinates (..., n, d).

  float64, not float32: timestamps (~1.7e9 s) that differ by seconds share a float32 value.
  """
  bits = (np.asarray(samples, np.float64) + 0.0).view(np.uint32)  # -0.0 -> +0.0
  bits = bits.reshape(bits.shape[:-1] + (-1,))  # Two 32-bit words per coordinate.
  hash_values = np.full(bits.shape[:-1], HASH_SEED, np.uint32)
  with np.errstate(over="ignore"):
    for word in range(bits.shape[-1]):
      hash_values = _mix(hash_values ^ _mix(bits[..., word] + np.uint32(word)))
  return hash_values


def canonical_order(samples: np.ndarray) -> np.ndarray:
  """Indices (..., n) that sort each sample set (..., n, d) into its canonical order.

  The order is by the value hash, ties broken by the coordinates themselves, so
  two orderings of the same multiset of samples map to the same array (equal
  samples are interchangeable).
  """
  samples = np.asarray(samples, np.float64) + 0.0
  keys = [samples[..., coordinate] for coordinate in reversed(range(samples.shape[-1]))]
  keys.append(value_hash(samples))  # np.lexsort: the last key is the primary one.
  return np.lexsort(keys, axis=-1)


def in_canonical_order(samples: np.ndarray) -> np.ndarray:
  """The samples (..., n, d) rearranged into their canonical order (their own dtype)."""
  samples = np.asarray(samples)
  order = canonical_order(samples)
  return np.take_along_axis(samples, order[..., None], axis=-2)
