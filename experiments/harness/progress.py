"""Progress lines for long experiment stages: stage, item, elapsed time and an ETA.

  progress = Progress("benchmark", total=len(cells))
  for cell in cells:
    ...
    progress.done(f"d={d} n={n}")   # logs "benchmark [3/12] d=2 n=4096: 41 s elapsed, ETA 2 min"

The ETA assumes the remaining items cost the mean of the finished ones; it is a
guide, not a bound (later cells are often the larger ones).
"""

import time

from absl import logging


def _duration(seconds: float) -> str:
  if seconds < 90:
    return f"{seconds:.0f} s"
  if seconds < 5400:
    return f"{seconds / 60:.1f} min"
  return f"{seconds / 3600:.1f} h"


class Progress:
  """Counts finished items of a stage and logs each with the elapsed time and an ETA."""

  def __init__(self, stage: str, total: int):
    self.stage = stage
    self.total = int(total)
    self.finished = 0
    self.start = time.monotonic()

  def eta_seconds(self) -> float:
    if not self.finished:
      return float("nan")
    elapsed = time.monotonic() - self.start
    return elapsed / self.finished * (self.total - self.finished)

  def done(self, item: str, details: str = "") -> str:
    """Marks one item finished and logs (and returns) its progress line."""
    self.finished += 1
    elapsed = time.monotonic() - self.start
    line = (
      f"{self.stage} [{self.finished}/{self.total}] {item}: {_duration(elapsed)} elapsed, "
      f"ETA {_duration(self.eta_seconds())}"
    )
    if details:
      line += f" | {details}"
    logging.info("%s", line)
    return line
