"""Tests of experiments/run.py, the one runner: dispatch by config.experiment, errors, exit status.

No model work: a stand-in harness module takes the place of a real one.
"""

import glob
import importlib
import os
import sys
import types

from absl import app
import ml_collections
import pytest

from experiments import run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def fake_experiment(monkeypatch):
  """A harness module experiments.harness.fake: records its call, fails when told to."""
  module = types.ModuleType("experiments.harness.fake")
  module.calls = []

  def fake_run(config, output_dir, workdir):
    module.calls.append((config.experiment, output_dir, workdir))
    return {"bad": list(config.bad)}

  module.run = fake_run
  module.failures = lambda results, config: [f"{name} failed" for name in results["bad"]]
  monkeypatch.setitem(sys.modules, "experiments.harness.fake", module)
  monkeypatch.setattr(run, "EXPERIMENTS", run.EXPERIMENTS + ("fake",))
  return module


def config_of(**fields) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(fields)


def test_dispatches_to_the_named_harness_with_the_default_output_dir(fake_experiment):
  results, failures = run.run_experiment(config_of(experiment="fake", bad=()), workdir="gmm")
  assert fake_experiment.calls == [("fake", os.path.join(".", "outputs", "fake"), "gmm")]
  assert results == {"bad": []} and failures == []
  _, failures = run.run_experiment(config_of(experiment="fake", bad=("x",)), "/tmp/out")
  assert fake_experiment.calls[-1] == ("fake", "/tmp/out", None)
  assert failures == ["x failed"]


def test_unknown_or_missing_experiment_is_a_usage_error(fake_experiment):
  with pytest.raises(app.UsageError, match="unknown experiment 'nonsense'.*known: bounded"):
    run.run_experiment(config_of(experiment="nonsense"), config_name="configs/x.py")
  with pytest.raises(app.UsageError, match="names no experiment.*experiments.evaluate"):
    run.run_experiment(config_of(seed=0))
  # "common" is a harness module, but not an experiment.
  with pytest.raises(app.UsageError, match="unknown experiment 'common'"):
    run.experiment_module(config_of(experiment="common"))
  assert fake_experiment.calls == []


def test_every_experiment_config_names_a_harness_with_run():
  """Each config with config.experiment: a known one, whose module has run (and failures, if)."""
  named = {}
  for path in sorted(glob.glob(os.path.join(REPO, "experiments", "configs", "*.py"))):
    name = os.path.splitext(os.path.basename(path))[0]
    module = importlib.import_module(f"experiments.configs.{name}")
    config = module.get_config() if hasattr(module, "get_config") else None
    if isinstance(config, ml_collections.ConfigDict) and "experiment" in config:
      named[name] = config.experiment
      harness = run.experiment_module(config, name)
      assert callable(harness.run), name
      assert name.startswith(config.experiment), (name, config.experiment)  # Name == harness.
  assert set(named.values()) == set(run.EXPERIMENTS), named
  assert {name for name, experiment in named.items() if experiment == "runtime_benchmark"} == {
    "runtime_benchmark_quick",
    "runtime_benchmark_full",
    "runtime_benchmark_scale",
  }
