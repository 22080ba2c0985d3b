r"""Attention is a Gaussian KDE: (a) the construction checked, (b) trained heads fitted.

  python -m experiments.kde_equivalence [--config=experiments/configs/kde_equivalence.py] \
      [--workdir=/tmp/kdeformer_cpu] [--output_dir=./outputs/kde_equivalence]

The runner (experiments/run.py) with this config as the default: the same as
`python -m experiments.run --config=experiments/configs/kde_equivalence.py [...]`.
Exits non-zero if any error of (a) exceeds config.construction.tolerance. Part
(b) uses --workdir, else the shipped model config.model ("gmm"), and is skipped (with a log line)
if neither exists. See experiments/harness/kde_equivalence.py.
"""

import os

from experiments import run

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "kde_equivalence.py")

if __name__ == "__main__":
  run.run_main(DEFAULT_CONFIG)
