"""The output type shared by the transformer and every baseline."""

from typing import NamedTuple

import jax


class Estimate(NamedTuple):
  """Per-query estimates of the log-density and the score.

  Attributes:
    log_density: (..., m) natural log of the estimated density (not the density).
    score: (..., m, d) gradient of the log-density with respect to the query,
      row-vector convention.
  """

  log_density: jax.Array
  score: jax.Array
