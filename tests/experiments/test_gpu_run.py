"""experiments/gpu_run.sh --smoke: the whole GPU window (train, export, paired evaluation,
comparison) on the CPU with a tiny config, and an output folder small enough to copy back."""

import os
import pathlib
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_gpu_run_smoke_leaves_a_small_complete_output_folder(tmp_path):
  out = tmp_path / "window"
  env = dict(os.environ, KDEFORMER_COMPILATION_CACHE=str(tmp_path / "cache"))
  result = subprocess.run(
    ["bash", "experiments/gpu_run.sh", "--smoke", str(out)],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  for name in (
    "metrics.jsonl",
    "config.json",
    "train.log",
    "candidate/config.json",
    "evaluate_candidate/results.json",
    "evaluate_shipped/results.json",
    "compare/results.md",
  ):
    assert (out / name).is_file(), name
  files = [p for p in out.rglob("*") if p.is_file()]
  assert all(p.stat().st_size < 16 << 20 for p in files)
  assert not list(out.rglob("*.png"))
  assert not (out / "candidate" / "checkpoints" / "4" / "training").exists()  # Params only.
  assert "next window: bash experiments/gpu_run.sh" in result.stdout
  assert os.listdir(tmp_path / "cache")  # The compiled programs for the next window.
