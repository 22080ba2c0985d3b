"""Two evaluations of the same problems side by side: the shipping rule and the new-model bars.

  python -m experiments.run --config=experiments/configs/model_comparison.py \
      --config.before=SHIPPED/results.json --config.after=CANDIDATE/results.json

Both results.json files come from `experiments.evaluate` with the same config and seed (so the
same mixtures, sample sets and queries): every ratio below is paired, problem for problem,
which is what lets a 5% rule be read off cells of a few tens of problems.

The shipping rule (docs/log/, "Estimator v2"): a new model replaces the shipped one only
when no standard-benchmark cell's relative score MSE is more than `max_cell_ratio` (1.05)
times the shipped model's and, out of family, the geometric mean of the same ratio is below 1
on the pooled and on the typical-set error.
"""

import json
import math

import ml_collections

from experiments.harness import common

SCORE, TYPICAL, LOG_DENSITY = "relative_score_mse", "typical_relative_score_mse", "log_density_mse"


def load(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def _cells(results: dict, part: str) -> dict:
  """{(family, d, n): metrics per method} of the benchmark or out_of_family rows."""
  return {
    (row.get("family", "gmm"), row["dim"], row["n"]): row["metrics"]
    for row in results.get(part, {}).get("rows", [])
  }


def _geomean(values) -> float:
  values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
  return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def _ratio(after, before):
  if after is None or before is None or not before or not math.isfinite(before):
    return None
  return after / before


def paired_rows(before: dict, after: dict, part: str) -> list[dict]:
  """Per cell: both models' pooled, typical-set and log-density errors, and Scott's."""
  old, new = _cells(before, part), _cells(after, part)
  rows = []
  for key in sorted(set(old) & set(new)):  # (family, d, n): n in numeric order.
    b, a = old[key]["model"], new[key]["model"]
    scott = new[key].get("kde_scott", {})
    oracle = new[key].get("kde_oracle", {})
    rows.append(
      {
        "family": key[0],
        "dim": key[1],
        "n": key[2],
        "before": b,
        "after": a,
        "scott": scott,
        "oracle": oracle,
        "score_ratio": _ratio(a.get(SCORE), b.get(SCORE)),
        "typical_ratio": _ratio(a.get(TYPICAL), b.get(TYPICAL)),
      }
    )
  return rows


def rotation_error(results: dict, dim: int = 5) -> float | None:
  for row in results.get("equivariance", {}).get("rows", []):
    if row["transform"] == "rotation" and row["dim"] == dim:
      return row["score_mean"]
  return None


def compare(before: dict, after: dict, *, max_cell_ratio: float = 1.05) -> dict:
  """The paired tables, the shipping verdict and the new-model bars (see the module doc)."""
  gmm = paired_rows(before, after, "benchmark")
  oof = paired_rows(before, after, "out_of_family")
  worst = max((r["score_ratio"] for r in gmm if r["score_ratio"] is not None), default=None)
  oof_pooled = _geomean(r["score_ratio"] for r in oof)
  oof_typical = _geomean(r["typical_ratio"] for r in oof)
  gmm_ok = worst is not None and worst <= max_cell_ratio
  oof_ok = oof_pooled < 1 and oof_typical < 1
  bars = []
  student = [r for r in oof if r["family"] == "student_t3_d2" and r["n"] >= 512]
  if student:
    errors = [r["after"][SCORE] for r in student]
    bars.append(
      (
        "Student-t nu=3 d=2, n=512..4096: relative score MSE <= 0.4, not rising",
        ", ".join(f"{e:.3g}" for e in errors),
        max(errors) <= 0.4 and all(b <= a * 1.1 for a, b in zip(errors, errors[1:])),
      )
    )
    ld = [(r["after"][LOG_DENSITY], r["oracle"].get(LOG_DENSITY)) for r in student]
    bars.append(
      (
        "Student-t nu=3 d=2: log-density MSE within 3x the oracle KDE's",
        ", ".join(f"{a:.3g} vs {o:.3g}" for a, o in ld if o is not None),
        all(o is not None and a <= 3 * o for a, o in ld),
      )
    )
  laplace = [r for r in oof if r["family"] == "laplace_d2" and r["n"] in (512, 2048)]
  if laplace:
    ratios = [r["after"][TYPICAL] / r["scott"][TYPICAL] for r in laplace if r["scott"]]
    bars.append(
      (
        "Laplace 2-D, n=512 and 2048: typical-set error <= 0.7x Scott's",
        ", ".join(f"{x:.3g}x" for x in ratios),
        bool(ratios) and max(ratios) <= 0.7,
      )
    )
  small = [r for r in oof if r["n"] in (32, 64) and r["scott"]]
  if small:
    losses = [
      f"{r['family']} n={r['n']}"
      for r in small
      if r["after"][SCORE] > r["scott"][SCORE] or r["after"][TYPICAL] > r["scott"][TYPICAL]
    ]
    bars.append(
      (
        "n = 32, 64: no worse than Scott (pooled and typical), every row",
        (f"worse in {len(losses)}/{len(small)}: " + "; ".join(losses) if losses else "none worse"),
        not losses,
      )
    )
  rotation = rotation_error(after)
  if rotation is not None:
    bars.append(
      (
        "Rotation error of the score, d = 5: <= 5e-3",
        f"{rotation:.2e} (before {rotation_error(before) or float('nan'):.2e})",
        rotation <= 5e-3,
      )
    )
  return {
    "gmm": gmm,
    "out_of_family": oof,
    "worst_gmm_ratio": worst,
    "out_of_family_geomean_pooled": oof_pooled,
    "out_of_family_geomean_typical": oof_typical,
    "ship": bool(gmm_ok and oof_ok),
    "gmm_ok": gmm_ok,
    "out_of_family_ok": oof_ok,
    "max_cell_ratio": max_cell_ratio,
    "bars": bars,
  }


def report_markdown(comparison: dict, before_name: str, after_name: str) -> str:
  """The verdict, the bars and both paired tables."""
  fmt = common.format_number
  marked = lambda value: fmt(value) + (" (worse than 0)" if value is not None and value > 1 else "")
  lines = [
    f"# {after_name} against {before_name} (paired: same problems)",
    "",
    f"**Ship: {'yes' if comparison['ship'] else 'no'}.** Worst standard-benchmark cell "
    f"(relative score MSE after / before): {fmt(comparison['worst_gmm_ratio'])} (rule: at "
    f"most {comparison['max_cell_ratio']}); out of family, geometric mean of after / "
    f"before: pooled {fmt(comparison['out_of_family_geomean_pooled'])}, typical set "
    f"{fmt(comparison['out_of_family_geomean_typical'])} (rule: both below 1).",
    "",
    "## Bars for the new model",
    "",
    common.markdown_table(
      ["bar", "measured", "met"],
      [[b, m, "yes" if ok else "**no**"] for b, m, ok in comparison["bars"]],
    ),
  ]
  for title, part in (
    ("Standard benchmark (training-prior mixtures)", "gmm"),
    ("Out of family", "out_of_family"),
  ):
    rows = [
      [
        r["family"],
        r["dim"],
        r["n"],
        marked(r["before"].get(SCORE)),
        marked(r["after"].get(SCORE)),
        fmt(r["score_ratio"]),
        fmt(r["before"].get(TYPICAL)),
        fmt(r["after"].get(TYPICAL)),
        fmt(r["typical_ratio"]),
        marked(r["scott"].get(SCORE)),
        fmt(r["scott"].get(TYPICAL)),
        fmt(r["before"].get(LOG_DENSITY)),
        fmt(r["after"].get(LOG_DENSITY)),
        fmt(r["oracle"].get(LOG_DENSITY)),
      ]
      for r in comparison[part]
    ]
    lines += [
      "",
      f"## {title}",
      "",
      common.markdown_table(
        [
          "family",
          "d",
          "n",
          f"{before_name} pooled",
          f"{after_name} pooled",
          "ratio",
          f"{before_name} typical",
          f"{after_name} typical",
          "ratio",
          "Scott pooled",
          "Scott typical",
          f"{before_name} log-density MSE",
          f"{after_name} log-density MSE",
          "oracle KDE log-density MSE",
        ],
        rows,
      ),
    ]
  return "\n".join(lines) + "\n"


def run(config: ml_collections.ConfigDict, output_dir: str, workdir: str | None = None) -> dict:
  """Compares config.before with config.after; writes results.json and results.md, prints them.

  The verdict is information: no `failures`, the command exits 0 whether or not the candidate
  ships.

  Raises:
    common.ConfigError: a --workdir (this experiment runs no model), a missing file name, or
      two evaluations of different configs or seeds.
  """
  if workdir:
    raise common.ConfigError(
      "compares two results.json files and runs no model: give "
      "--config.before and --config.after, not --workdir."
    )
  if not config.before or not config.after:
    raise common.ConfigError(
      "give both --config.before=<shipped results.json> and "
      "--config.after=<candidate results.json>."
    )
  before, after = load(config.before), load(config.after)
  if (before.get("config"), before.get("seed")) != (after.get("config"), after.get("seed")):
    raise common.ConfigError(
      "The two evaluations used different configs or seeds: their "
      "problems differ, so a paired comparison means nothing. Rerun "
      "with the same."
    )
  comparison = compare(before, after, max_cell_ratio=config.max_cell_ratio)
  markdown = report_markdown(comparison, "before", "after")
  common.write_results(comparison, markdown, output_dir)
  print(markdown)
  return comparison
