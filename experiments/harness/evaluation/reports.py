"""The evaluation's Markdown report (results.md) from its results dict.

  markdown = reports.results_markdown(results)
  common.write_results(results, markdown, output_dir)

Tables are built with `common.markdown_table` and numbers formatted with
`common.format_number`, as in every harness's report. A relative score error
above 1 - worse than predicting a zero score - is marked in every table, and a
model / Scott ratio is marked as no win where the model's error is above 1.
"""

from experiments.harness import common
from experiments.harness.evaluation.methods import METHOD_LABELS
from experiments.harness.evaluation.pooling import METRIC_LABELS
from experiments.harness.evaluation.pooling import METRICS
from experiments.harness.evaluation.pooling import worse_than_zero

ORACLE_NOTE = (
  "KDE oracle h: the factor of Cov(X) on a 25-point log grid in [0.02, 2], chosen per "
  "problem and per metric with the truth: by the score error at the queries "
  "(kde.oracle_kde criterion='score') for the score metrics, by the log-density "
  "error at the queries (criterion='log_density') for the log-density MSE, and by "
  "the squared density error on the grid for the MISE."
)
_KEY_COLUMN_NAMES = {"dim": "d", "n": "n", "family": "distribution"}
WORSE_THAN_ZERO = "worse than zero"
NO_WIN = "no win: model worse than zero"
SKIPPED = "skipped"
WORSE_THAN_ZERO_NOTE = (
  f'Marked "{WORSE_THAN_ZERO}": a relative score error above 1, where '
  "predicting a zero score everywhere would do better; a model / Scott "
  f'ratio there is marked "{NO_WIN}", whatever its value. '
  f'"{SKIPPED}": not run on the cell (a baseline above '
  "max_baseline_samples, the model below its min_samples)."
)


def metric_cell(metric: str, value, *, percent: bool = False) -> str:
  """A table cell of `metric`, marked if it is worse than predicting zero ('-' if missing).

  Args:
    metric: a name from METRICS (the relative score errors can be marked).
    value: the number or None.
    percent: write it as a percentage with two decimals (the paper's style).
  """
  text = common.format_number(value) if value is None or not percent else f"{100 * value:.2f}%"
  return f"{text} ({WORSE_THAN_ZERO})" if worse_than_zero(metric, value) else text


def cell_table(rows: list[dict], metric: str, methods, *, key_columns=("dim", "n")) -> str:
  """One metric: a row per cell, a column per method, plus model / Scott where available.

  Errors worse than predicting zero are marked (`metric_cell`), and so is a ratio whose model
  error is; a method not run on a cell (a baseline above max_baseline_samples, the model below
  its min_samples) says "skipped".

  Args:
    rows: cell rows with the key columns, "metrics" {method: {metric: value}} and
      optionally "model_over_scott" {metric: ratio}.
    metric: a name from METRICS.
    methods: the method columns, in order.
    key_columns: the row fields that name a cell ("dim", "n", "family").

  Returns:
    A Markdown table.
  """
  with_ratio = any("model_over_scott" in row for row in rows)
  header = [_KEY_COLUMN_NAMES[k] for k in key_columns] + [METHOD_LABELS[m] for m in methods]
  header += ["model / Scott"] if with_ratio else []
  body = []
  for row in rows:
    line = [str(row[k]) for k in key_columns]
    line += [
      metric_cell(metric, row["metrics"][m][metric]) if m in row["metrics"] else SKIPPED
      for m in methods
    ]
    if with_ratio:
      ratio = common.format_number(row.get("model_over_scott", {}).get(metric))
      model = row["metrics"].get("model", {}).get(metric)
      line.append(f"{ratio} ({NO_WIN})" if worse_than_zero(metric, model) else ratio)
    body.append(line)
  return common.markdown_table(header, body)


def _metric_tables(rows: list[dict], methods, summary: dict, *, key_columns) -> list[str]:
  """A titled table per metric that some row has, the typical set right after the pooled one.

  Each comes with its model / Scott summary (if given) and, where a cell is marked, the note
  on what the mark means.
  """
  lines = []
  for metric in METRICS:
    with_metric = [r for r in rows if any(v.get(metric) is not None for v in r["metrics"].values())]
    if not with_metric:
      continue
    lines += [
      f"### {METRIC_LABELS[metric]}",
      "",
      cell_table(with_metric, metric, methods, key_columns=key_columns),
      "",
    ]
    if any(
      worse_than_zero(metric, v.get(metric)) for r in with_metric for v in r["metrics"].values()
    ):
      lines += [WORSE_THAN_ZERO_NOTE, ""]
    if summary.get(metric):
      lines += [_summary_line(summary[metric]), ""]
  return lines


def _summary_line(summary: dict) -> str:
  line = (
    f"Geometric mean over the cells of model / Scott: "
    f"{common.format_number(summary['geometric_mean_model_over_scott'])}; worst cell "
    f"{common.format_number(summary['max_model_over_scott'])}."
  )
  if summary.get("model_worse_than_zero"):
    line += (
      f" In {summary['model_worse_than_zero']} of the cells the model is worse than "
      "predicting zero: their ratios are no win."
    )
  return line


def _model_line(results: dict) -> str:
  info = results["model"]
  step = f", step {info['step']}" if info.get("step") is not None else ""
  return (
    f"Model: {info.get('source', '?')}{step}, {info['num_parameters']:,} parameters "
    f"(width {info['width']}, {info['num_layers']} layers, {info['num_heads']} heads). "
    f"Config: {results['config_name']}. Wall time {results['seconds']['total']:.0f} s."
  )


def _typical_note(results: dict) -> str:
  quantile = results.get("config", {}).get("typical_quantile")
  return (
    ""
    if quantile is None
    else f" Typical set: per problem, the queries whose true log-density is at or above the "
    f"{quantile:g} quantile of its queries' true log-densities."
  )


def _benchmark_section(results: dict) -> list[str]:
  bench = results["benchmark"]
  if not bench["rows"]:
    return []
  row0 = bench["rows"][0]
  lines = [
    "## Standard benchmark: Gaussian mixtures of the training prior",
    "",
    f"{row0['num_problems']} mixtures per cell (seed {results['seed']}), "
    f"{row0['num_queries']} queries drawn from each true mixture. {ORACLE_NOTE}"
    f"{_typical_note(results)}",
    "",
  ]
  return lines + _metric_tables(
    bench["rows"], results["methods"], bench["summary"], key_columns=("dim", "n")
  )


def _out_of_family_section(results: dict) -> list[str]:
  part = results.get("out_of_family", {})
  rows = part.get("rows", [])
  if not rows:
    return []
  row0 = rows[0]
  lines = [
    "## Out of family: heavy tails, a Laplace peak, skew, two scales",
    "",
    f"{row0['num_problems']} independent sample sets per cell, {row0['num_queries']} "
    "queries drawn from the true distribution. The oracle and SD-KDE exact use the "
    f"true density and score.{_typical_note(results)}",
    "",
  ]
  lines += [
    f"- {name}: {description}" for name, description in part.get("distributions", {}).items()
  ] + [""]
  return lines + _metric_tables(rows, results["methods"], {}, key_columns=("family", "n"))


def _paper_section(results: dict) -> list[str]:
  """The paper's headline relative score MSE beside ours (config.paper_reference)."""
  reference = results.get("config", {}).get("paper_reference") or ()
  if not reference:
    return []
  ours = {(row["dim"], row["n"]): row for row in results["benchmark"]["rows"]}
  first = next(iter(ours.values()), {"num_problems": 0, "num_queries": 0})

  def our_cells(row, method):
    if row is None:
      return ["not run"] * 2
    if method not in row["metrics"]:
      return [SKIPPED] * 2
    values = row["metrics"][method]
    return [
      metric_cell(metric, values[metric], percent=True)
      for metric in ("relative_score_mse", "typical_relative_score_mse")
    ]

  body = []
  for dim, n, paper_model, paper_kde in reference:
    row = ours.get((dim, n))
    paper_kde = (
      "out of memory (paper)"
      if paper_kde is None
      else metric_cell("relative_score_mse", paper_kde, percent=True)
    )
    body.append(
      [str(dim), str(n), metric_cell("relative_score_mse", paper_model, percent=True)]
      + our_cells(row, "model")
      + [paper_kde]
      + our_cells(row, "kde_scott")
    )
  header = [
    "d",
    "n",
    "paper: transformer",
    "ours: model",
    "ours: model, typical set",
    "paper: Scott KDE",
    "ours: Scott KDE",
    "ours: Scott KDE, typical set",
  ]
  return [
    "## Against the paper: relative score MSE on training-prior Gaussian mixtures",
    "",
    "Paper: Ilin & Sushko (arXiv 2511.05924), headline table, transformer against "
    "Scott's KDE on their GMM test sets (their KDE ran out of GPU memory above 2^14 "
    "samples). Ours: the model evaluated here and Scott's KDE, "
    f"{first['num_problems']} mixtures of the same prior per cell, "
    f"{first['num_queries']} queries each, pooled sum ||s_hat - s||^2 / sum ||s||^2 "
    "(100% is predicting zero); their test mixtures are not published, so the "
    f'comparison is indicative.{_typical_note(results)} "not run": the cell is not '
    'in this run\'s benchmark; "skipped": n above max_baseline_samples (a baseline) or '
    "below the model's min_samples (the model).",
    "",
    common.markdown_table(header, body),
    "",
  ]


def _equivariance_section(results: dict) -> list[str]:
  rows = results.get("equivariance", {}).get("rows", [])
  if not rows:
    return []
  number = lambda value: common.format_number(value, "e")
  return [
    "## Equivariance (the paper's Table 1)",
    "",
    f"Relative MSE sum ||new - expected||^2 / sum ||expected||^2 of the transformed "
    f"problem's outputs against the exactly transformed original outputs "
    f"(log f - log|det A|, score A^-T), mean and max over {rows[0]['num_trials']} trials "
    "(training-prior mixtures). The symmetric whitening makes permutations, "
    "translations and isotropic scalings exact; an anisotropic scaling, a rotation or "
    "an affine map leaves an orthogonal map in whitened coordinates, which the network "
    "respects only approximately. Rotations are proper (det +1).",
    "",
    common.markdown_table(
      ["transform", "d", "log-density mean", "log-density max", "score mean", "score max"],
      [
        [
          r["transform"],
          str(r["dim"]),
          number(r["log_density_mean"]),
          number(r["log_density_max"]),
          number(r["score_mean"]),
          number(r["score_max"]),
        ]
        for r in rows
      ],
    ),
    "",
  ]


def _checks_section(results: dict) -> list[str]:
  checks = results.get("checks", [])
  if not checks:
    return []
  return [
    "## Bars of the pretrained-model issue",
    "",
    common.markdown_table(
      ["check", "value", "bar", "passed"],
      [
        [
          c["check"],
          common.format_number(c["value"]),
          common.format_number(c["bar"]),
          "yes" if c["passed"] else "NO",
        ]
        for c in checks
      ],
    ),
    "",
  ]


def results_markdown(results: dict) -> str:
  """The tables as Markdown (what `experiments.evaluate` prints and writes to results.md).

  Args:
    results: the dict `suite.evaluate` returns.

  Returns:
    The report: model and config, the paper comparison (if configured), benchmark tables
    with their model / Scott summaries, out-of-family tables, the equivariance table, the
    bar checks and the figure links.
  """
  lines = ["# kdeformer evaluation", "", _model_line(results), ""]
  lines += _paper_section(results)
  lines += _benchmark_section(results)
  lines += _out_of_family_section(results)
  lines += _equivariance_section(results)
  lines += _checks_section(results)
  if results.get("figures"):
    lines += ["## Figures", ""] + [f"![{name}]({name})" for name in results["figures"]] + [""]
  return "\n".join(lines)
