"""kdeformer: turn i.i.d. samples into a log-density and its score with one pretrained transformer.

import kdeformer
est = kdeformer.load_pretrained()    # the general model; "gmm": the mixture specialist
out = est(samples, queries)          # out.log_density (m,), out.score (m, d)
density = est.fit(samples)           # encoded once: density(queries), density.sample(k, key=)
kde = kdeformer.kde.gaussian_kde(samples, queries)   # same output type
density.log_conditional(queries, given=[0]); density.cdf(x); kdeformer.mutual_information(...)
"""

from kdeformer import kde
from kdeformer.dependence import Information
from kdeformer.dependence import entropy
from kdeformer.dependence import mutual_information
from kdeformer.estimate import Estimate
from kdeformer.estimator import Estimator
from kdeformer.estimator import list_pretrained
from kdeformer.estimator import load
from kdeformer.estimator import load_pretrained
from kdeformer.fitted import FittedDensity

__all__ = [
  "Estimate",
  "Estimator",
  "FittedDensity",
  "Information",
  "entropy",
  "kde",
  "list_pretrained",
  "load",
  "load_pretrained",
  "mutual_information",
]
__version__ = "0.1.0"
