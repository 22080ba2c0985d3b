"""Training: the synthetic data with exact targets, the train loop, checkpoints of a run.

Imports the core (`kdeformer`), never the other way round.
"""
