"""The evaluation's Markdown report (results.md) from its results dict.

  markdown = reports.results_markdown(results)
  common.write_results(results, markdown, output_dir)

Tables are built with `common.markdown_table` and numbers formatted with
`common.format_number`, as in every harness's report.
"""

from experiments.harness import common
from experiments.harness.evaluation.methods import METHOD_LABELS
from experiments.harness.evaluation.pooling import METRIC_LABELS
from experiments.harness.evaluation.pooling import METRICS

ORACLE_NOTE = ("KDE oracle h: the factor of Cov(X) on a 25-point log grid in [0.02, 2], chosen per "
               "problem and per metric with the truth: by the score error at the queries "
               "(kde.oracle_kde criterion='score') for the score metrics, by the log-density "
               "error at the queries (criterion='log_density') for the log-density MSE, and by "
               "the squared density error on the grid for the MISE.")
_KEY_COLUMN_NAMES = {"dim": "d", "n": "n", "family": "distribution"}


def cell_table(rows: list[dict], metric: str, methods, *, key_columns=("dim", "n")) -> str:
  """One metric: a row per cell, a column per method, plus model / Scott where available.

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
    line += [common.format_number(row["metrics"][m][metric]) for m in methods]
    if with_ratio:
      line.append(common.format_number(row.get("model_over_scott", {}).get(metric)))
    body.append(line)
  return common.markdown_table(header, body)


def _model_line(results: dict) -> str:
  info = results["model"]
  step = f", step {info['step']}" if info.get("step") is not None else ""
  return (f"Model: {info.get('source', '?')}{step}, {info['num_parameters']:,} parameters "
          f"(width {info['width']}, {info['num_layers']} layers, {info['num_heads']} heads). "
          f"Config: {results['config_name']}. Wall time {results['seconds']['total']:.0f} s.")


def _benchmark_section(results: dict) -> list[str]:
  methods = results["methods"]
  bench = results["benchmark"]
  if not bench["rows"]:
    return []
  row0 = bench["rows"][0]
  lines = ["## Standard benchmark: Gaussian mixtures of the training prior", "",
           f"{row0['num_problems']} mixtures per cell (seed {results['seed']}), "
           f"{row0['num_queries']} queries drawn from each true mixture. {ORACLE_NOTE}", ""]
  for metric in METRICS:
    rows = [r for r in bench["rows"] if r["metrics"][methods[0]][metric] is not None]
    if not rows:
      continue
    lines += [f"### {METRIC_LABELS[metric]}", "", cell_table(rows, metric, methods), ""]
    summary = bench["summary"].get(metric)
    if summary:
      lines += [f"Geometric mean over the cells of model / Scott: "
                f"{common.format_number(summary['geometric_mean_model_over_scott'])}; worst cell "
                f"{common.format_number(summary['max_model_over_scott'])}.", ""]
  return lines


def _out_of_family_section(results: dict) -> list[str]:
  rows = results.get("out_of_family", {}).get("rows", [])
  if not rows:
    return []
  row0 = rows[0]
  lines = ["## Out of family: 2-D Laplace and 2-D Student-t (the paper's Tables 3 and 4)", "",
           f"{row0['num_problems']} independent sample sets per cell, {row0['num_queries']} "
           "queries drawn from the true distribution. The oracle and SD-KDE exact use the "
           "true density and score.", ""]
  for metric in METRICS:
    lines += [f"### {METRIC_LABELS[metric]}", "",
              cell_table(rows, metric, results["methods"], key_columns=("family", "n")), ""]
  return lines


def _equivariance_section(results: dict) -> list[str]:
  rows = results.get("equivariance", {}).get("rows", [])
  if not rows:
    return []
  number = lambda value: common.format_number(value, "e")
  return ["## Equivariance (the paper's Table 1)", "",
          f"Relative MSE sum ||new - expected||^2 / sum ||expected||^2 of the transformed "
          f"problem's outputs against the exactly transformed original outputs "
          f"(log f - log|det A|, score A^-T), mean and max over {rows[0]['num_trials']} trials "
          "(training-prior mixtures). The symmetric whitening makes permutations, "
          "translations and isotropic scalings exact; an anisotropic scaling, a rotation or "
          "an affine map leaves an orthogonal map in whitened coordinates, which the network "
          "respects only approximately. Rotations are proper (det +1).", "",
          common.markdown_table(
              ["transform", "d", "log-density mean", "log-density max", "score mean",
               "score max"],
              [[r["transform"], str(r["dim"]), number(r["log_density_mean"]),
                number(r["log_density_max"]), number(r["score_mean"]), number(r["score_max"])]
               for r in rows]), ""]


def _checks_section(results: dict) -> list[str]:
  checks = results.get("checks", [])
  if not checks:
    return []
  return ["## Bars of the pretrained-model issue", "",
          common.markdown_table(["check", "value", "bar", "passed"],
                                [[c["check"], common.format_number(c["value"]),
                                  common.format_number(c["bar"]),
                                  "yes" if c["passed"] else "NO"] for c in checks]), ""]


def results_markdown(results: dict) -> str:
  """The tables as Markdown (what `experiments.evaluate` prints and writes to results.md).

  Args:
    results: the dict `suite.evaluate` returns.

  Returns:
    The report: model and config, benchmark tables with their model / Scott summaries,
    out-of-family tables, the equivariance table, the bar checks and the figure links.
  """
  lines = ["# kdeformer evaluation", "", _model_line(results), ""]
  lines += _benchmark_section(results)
  lines += _out_of_family_section(results)
  lines += _equivariance_section(results)
  lines += _checks_section(results)
  if results.get("figures"):
    lines += ["## Figures", ""] + [f"![{name}]({name})" for name in results["figures"]] + [""]
  return "\n".join(lines)
