"""Multi-process training: two local processes joined by jax.distributed act as one.

The processes are real (`python -m experiments.train`, two CPU devices each, cross-process
collectives through gloo, JAX's CPU default), so this is the command a two-machine run uses
with 127.0.0.1 in place of the chief's address. Their mesh of four devices on two hosts is
also the suite's multi-device test: a batch of 4 is one problem per device, and the run must
follow the one-device run step by step (this replaced test_train.py's separate four-device,
one-process run). Every wait has a deadline and every process is killed on the way out: a
broken collective must fail the test, not hang it.
"""

import json
import logging
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest

from experiments.configs import tiny
from kdeformer import checkpoints
from kdeformer import estimator as estimator_lib
from kdeformer.training import train
from tests.training import tiny_shared

REPO = str(pathlib.Path(__file__).resolve().parents[2])
# The tiny config as the training tests run it (tiny_shared.py: a warm-up of 3 steps), one
# bucket (compilation dominates), four steps: checkpoints at steps 3 (every 3) and 4 (the
# last). A time budget far beyond the run: the length is decided after one timed step (step 2,
# inside the warm-up) and capped at the four steps. The single-process reference is then the
# program test_train.py's one-bucket runs compile (loaded from the suite's compilation cache).
STEPS = [
  *tiny_shared.ONE_BUCKET,
  "--config.num_train_steps=4",
  "--config.time_budget_s=1e6",
  "--config.calibration_steps=1",
]
# Given to process 1 only: a spent budget would end its run at step 3. It must follow the
# chief's decision instead (4 steps); on its own it would leave the chief waiting forever in
# the all-reduce of step 4. Timing noise makes processes disagree the same way in real runs.
SPENT_BUDGET = "--config.time_budget_s=1e-3"
NUM_PROCESSES = 2
# Two CPU devices per process: a mesh of 4 devices on 2 hosts, one problem of the batch of 4
# per device (so sharding within a host and across hosts both enter).
DEVICES_PER_PROCESS = 2
NUM_DEVICES = NUM_PROCESSES * DEVICES_PER_PROCESS
# Generous for a loaded 2-core machine (the test takes ~1-2 min); a hang ends here.
DEADLINE_S = 480


def free_port() -> int:
  """A TCP port nobody listens on now (the OS picks it for a socket bound to port 0)."""
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def start_training(workdir: str, log_path: pathlib.Path, *overrides: str) -> subprocess.Popen:
  """Starts the entry point on the tiny config; its output goes to log_path."""
  command = [
    sys.executable,
    "-m",
    "experiments.train",
    f"--config={tiny_shared.CONFIG_FILE}",
    f"--workdir={workdir}",
    *STEPS,
    *overrides,
  ]
  # DEVICES_PER_PROCESS CPU devices per process (the mesh spans all of both processes').
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(DEVICES_PER_PROCESS))
  with open(log_path, "w") as log_file:  # Popen keeps its own descriptor.
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def single_process_config() -> ml_collections.ConfigDict:
  """STEPS as a config, for the single-process reference run in the test process."""
  config = tiny_shared.one_bucket_config()
  config.num_train_steps, config.time_budget_s, config.calibration_steps = 4, 1e6, 1
  return config


def kill_all(processes: dict[str, subprocess.Popen]) -> None:
  for process in processes.values():
    if process.poll() is None:
      process.kill()
    process.wait()


def wait_all(
  processes: dict[str, subprocess.Popen], logs: dict[str, pathlib.Path], deadline: float
) -> None:
  """Waits for every process until `deadline` (time.time()); kills them all if one fails or
  time runs out."""
  try:
    while time.time() < deadline:
      codes = {name: process.poll() for name, process in processes.items()}
      failed = [name for name, code in codes.items() if code not in (None, 0)]
      if failed or all(code == 0 for code in codes.values()):
        break
      time.sleep(0.2)
  finally:
    kill_all(processes)
  # The cause first: a process that failed on its own before those this function killed.
  failed = sorted(
    (processes[name].returncode == -signal.SIGKILL, name)
    for name in processes
    if processes[name].returncode != 0
  )
  assert not failed, "\n\n".join(
    f"{name} exited with {processes[name].returncode} (-9: killed at the {DEADLINE_S} s "
    f"deadline or after another process failed):\n{logs[name].read_text()[-3000:]}"
    for _, name in failed
  )


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_two_processes_train_as_one(tmp_path, caplog):
  # One test, not several sharing a fixture: pytest-xdist could run such a fixture once per
  # worker, and these runs are the slow part.
  single, multi = str(tmp_path / "single"), str(tmp_path / "multi")
  address = f"127.0.0.1:{free_port()}"
  # On a CPU the single-process reference trains in this process while the two processes
  # start (a process of its own would pay the start-up again); elsewhere in a CPU process.
  in_process = jax.default_backend() == "cpu"
  names = ["process0", "process1"] + ([] if in_process else ["single"])
  logs = {name: tmp_path / f"{name}.log" for name in names}
  start = time.time()
  processes = {}
  try:
    for process_id in range(NUM_PROCESSES):
      processes[f"process{process_id}"] = start_training(
        multi,
        logs[f"process{process_id}"],
        "--config.multihost=True",
        f"--config.distributed.coordinator_address={address}",
        f"--config.distributed.num_processes={NUM_PROCESSES}",
        f"--config.distributed.process_id={process_id}",
        *([SPENT_BUDGET] if process_id == 1 else []),
      )
    if in_process:
      caplog.set_level(logging.INFO)
      train.train(single_process_config(), single)
      single_log = caplog.text
    else:
      processes["single"] = start_training(single, logs["single"])
  except BaseException:
    kill_all(processes)  # Nothing may outlive the test.
    raise
  wait_all(processes, logs, start + DEADLINE_S)
  print(f"single- and two-process runs took {time.time() - start:.1f} s together")
  if not in_process:
    single_log = logs["single"].read_text()

  # Both processes joined one mesh of all their devices.
  for process_id in range(NUM_PROCESSES):
    log = logs[f"process{process_id}"].read_text()
    assert f"process {process_id}/{NUM_PROCESSES}" in log
    assert f"Mesh: {NUM_DEVICES} device(s) cpu on {NUM_PROCESSES} host(s)." in log
    assert "-> 4 steps." in log  # The chief's length, in both processes.
  assert "Mesh: 1 device(s) cpu on 1 host(s)." in single_log and "-> 4 steps." in single_log

  # The same trajectory, one record per step: only the chief writes metrics.jsonl.
  single_records, multi_records = read_metrics(single), read_metrics(multi)
  assert [r["step"] for r in multi_records] == [r["step"] for r in single_records] == [1, 2, 3, 4]
  for name in ["loss", "log_density_mse", "relative_score_mse", "grad_norm"]:
    np.testing.assert_allclose(
      [r[name] for r in multi_records],
      [r[name] for r in single_records],
      rtol=1e-4,
      atol=1e-6,
      err_msg=name,
    )
  # The entry point also plots the curves (the chief, once).
  assert os.path.getsize(os.path.join(multi, "training_curves.png")) > 1000

  # Each checkpoint written once and completely: nothing but finished step directories (no
  # temporary or per-process copies), the same steps as the single-process run's.
  steps = sorted(os.listdir(os.path.join(multi, "checkpoints")))
  assert steps == sorted(os.listdir(os.path.join(single, "checkpoints"))) == ["3", "4"]
  for step in steps:
    step_dir = os.path.join(multi, "checkpoints", step)
    assert os.path.isfile(os.path.join(step_dir, "_CHECKPOINT_METADATA"))
    assert sorted(n for n in os.listdir(step_dir) if not n.startswith("_") and "." not in n) == [
      "params",
      "training",
    ]
  assert checkpoints.latest_step(multi) == 4
  saved = checkpoints.load_config(multi)
  assert saved.multihost and saved.distributed.num_processes == NUM_PROCESSES

  # Inference restores the two-process run like any other, to the single-process parameters.
  from_multi = estimator_lib.Estimator.restore(multi)
  from_single = estimator_lib.Estimator.restore(single)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6),
    from_multi.params,
    from_single.params,
  )
  rng = np.random.default_rng(0)
  samples, queries = rng.normal(size=(50, 2)), rng.normal(size=(7, 2))
  estimate, expected = from_multi(samples, queries), from_single(samples, queries)
  np.testing.assert_allclose(
    np.asarray(estimate.log_density), np.asarray(expected.log_density), rtol=1e-4, atol=1e-5
  )
  np.testing.assert_allclose(
    np.asarray(estimate.score), np.asarray(expected.score), rtol=1e-4, atol=1e-5
  )


def test_single_process_configs_do_not_start_jax_distributed():
  train.initialize_distributed(tiny.get_config())
  assert not jax.distributed.is_initialized()


def test_distributed_fields_without_multihost_are_an_error():
  config = tiny.get_config()
  config.distributed.process_id = 1
  with pytest.raises(ValueError, match="multihost"):
    train.initialize_distributed(config)
  # A config.json from before config.distributed existed still loads and trains alone.
  legacy = ml_collections.ConfigDict({"multihost": False})
  train.initialize_distributed(legacy)
  assert not jax.distributed.is_initialized()
