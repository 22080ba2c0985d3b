"""The evaluation suite behind `experiments.evaluate`, one module per responsibility.

from experiments.harness import evaluation
results = evaluation.evaluate(estimator, config, output_dir)  # config: evaluate_*.py

problems  drawing the benchmark's prior mixtures and the out-of-family problems, grids
methods   the estimator and the KDE-type baselines on a batch of problems
pooling   a cell's errors pooled into its metrics, model / Scott ratios, geometric means
reports   the Markdown report (results.md)
figures   the PNG figures, from outputs already computed
suite     the benchmark, out-of-family and equivariance parts, the bar checks, `evaluate`
"""

from experiments.harness.evaluation.methods import METHODS
from experiments.harness.evaluation.suite import evaluate

__all__ = ["METHODS", "evaluate"]
