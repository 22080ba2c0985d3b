"""The experiment harnesses behind the thin entry points in `experiments/`.

Evaluation suites, benchmarks, reports and figures. They import the core
(`kdeformer`) and the training package (`kdeformer.training`), never the other
way round, and only they import matplotlib.
"""
