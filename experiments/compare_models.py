r"""Compares two evaluations of the same problems: the shipping rule and the new-model bars.

  python -m experiments.compare_models --before=/path/shipped/results.json \
      --after=/path/new/results.json [--output_dir=./outputs/compare]

Both files come from `python -m experiments.evaluate` with the same config and seed, one with
the shipped model and one with `--workdir` of the candidate. Writes results.json and
results.md (verdict, bars, paired tables) and prints the markdown.
"""

from absl import app
from absl import flags

from experiments.harness import common
from experiments.harness import model_comparison

_BEFORE = flags.DEFINE_string("before", None, "results.json of the shipped model.")
_AFTER = flags.DEFINE_string("after", None, "results.json of the candidate model.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "./outputs/compare", "Where to write.")
_MAX_CELL_RATIO = flags.DEFINE_float("max_cell_ratio", 1.05,
                                     "Largest allowed benchmark-cell ratio after / before.")
flags.mark_flags_as_required(["before", "after"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  before, after = model_comparison.load(_BEFORE.value), model_comparison.load(_AFTER.value)
  if (before.get("config"), before.get("seed")) != (after.get("config"), after.get("seed")):
    raise app.UsageError("The two evaluations used different configs or seeds: their problems "
                         "differ, so a paired comparison means nothing. Rerun with the same.")
  comparison = model_comparison.compare(before, after, max_cell_ratio=_MAX_CELL_RATIO.value)
  markdown = model_comparison.report_markdown(comparison, "before", "after")
  common.write_results(comparison, markdown, _OUTPUT_DIR.value)
  print(markdown)


if __name__ == "__main__":
  app.run(main)
