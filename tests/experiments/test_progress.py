"""Tests of experiments.harness.progress."""

import math

from experiments.harness import progress as progress_lib


def fake_clock(monkeypatch, *readings):
  """time.monotonic returns these readings in turn: the start, then two per `done`."""
  clock = iter(readings)
  monkeypatch.setattr(progress_lib.time, "monotonic", lambda: next(clock))


def test_line_counts_items_and_extrapolates_the_mean_item_time(monkeypatch):
  fake_clock(monkeypatch, 100.0, 110.0, 110.0, 130.0, 130.0)
  progress = progress_lib.Progress("stage", total=4)
  assert math.isnan(progress.eta_seconds())  # Unknown before the first item, not zero.
  assert progress.done("first", "ok") == "stage [1/4] first: 10 s elapsed, ETA 30 s | ok"
  # Two items in 30 s: 15 s each, two left.
  assert progress.done("second") == "stage [2/4] second: 30 s elapsed, ETA 30 s"


def test_long_durations_in_minutes_and_hours(monkeypatch):
  fake_clock(monkeypatch, 0.0, 600.0, 600.0)
  progress = progress_lib.Progress("stage", total=10)
  assert progress.done("first") == "stage [1/10] first: 10.0 min elapsed, ETA 1.5 h"
