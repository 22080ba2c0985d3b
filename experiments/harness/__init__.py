"""The experiment harnesses behind the entry points in `experiments/`.

`python -m experiments.run --config=experiments/configs/<name>.py` runs the module
named by config.experiment (its `run(config, output_dir, workdir)`, and its
`failures(results, config)` for the exit status); experiments/train.py and
experiments/evaluate.py call kdeformer.training and the `evaluation` package.

Evaluation suites, benchmarks, reports and figures. They import the core
(`kdeformer`) and the training package (`kdeformer.training`), never the other
way round, and only they import matplotlib.
"""
