"""What every harness shares: one model loader, one results writer, one Markdown table builder.

estimator, info = common.load_model(workdir)          # workdir or the shipped model
common.write_results(results, markdown, output_dir)   # results.json + results.md
common.markdown_table(["d", "n"], [["2", "512"]])
raise common.ConfigError("...")                      # a config the experiment cannot run
"""

import datetime
import json
import math
import os
import platform
import sys

import jax
import numpy as np

from kdeformer import checkpoints
from kdeformer import estimator as estimator_lib


class ConfigError(ValueError):
  """A config or flag an experiment cannot run with.

  `python -m experiments.run` reports it as a usage error (the message, exit status 1)
  instead of a traceback.
  """


def model_info(estimator, source: str, step: int | None = None) -> dict:
  """Facts about a model for a report: where it came from, its step, size and shape."""
  # The network's hyperparameters are its `model.ModelConfig` (an estimator's model_config);
  # a stand-in without one (a KDE, a test double) reports None.
  config = getattr(estimator, "model_config", None)
  params = getattr(estimator, "params", None)
  info = {
    "source": source,
    "step": step,
    "num_parameters": int(sum(x.size for x in jax.tree.leaves(params))) if params else 0,
  }
  for field in ("width", "num_layers", "num_heads", "mlp_ratio"):
    value = getattr(config, field, None)
    info[field] = None if value is None else int(value)
  return info


# The name experiments give the default, `kdeformer.load_pretrained()` (configs and --workdir).
DEFAULT_MODEL = "default"


def load_model(workdir: str | None, **estimator_options) -> tuple[estimator_lib.Estimator, dict]:
  """The estimator of a training workdir (latest step) or of a shipped model.

  Args:
    workdir: a workdir of experiments/train.py; the name of a shipped model
      (`kdeformer.list_pretrained()`); or None or DEFAULT_MODEL for the default
      (`kdeformer.load_pretrained()`: the general network, handing d = 1, d >= 9 and
      n > 16,384 to the equivariant one).
    **estimator_options: passed to the Estimator (e.g. key_chunk_size).

  Returns:
    (the estimator, `model_info` of it).

  Raises:
    FileNotFoundError: no such workdir or checkpoint, or no pretrained model shipped.
    ValueError: the checkpoint is corrupt or does not fit its config.
  """
  if workdir == DEFAULT_MODEL:
    workdir = None
  estimator = estimator_lib.load(workdir, **estimator_options)
  if workdir is None or workdir in checkpoints.PRETRAINED_MODELS:
    name = workdir or checkpoints.DEFAULT_PRETRAINED
    directory = checkpoints.pretrained_dir(name)
    call = f"kdeformer.load_pretrained({workdir!r})" if workdir else "kdeformer.load_pretrained()"
    source = f"pretrained {name!r} ({call})"
    if estimator.handoff is not None:
      source += f", handing {estimator.handoff} on"
  else:
    directory, source = workdir, f"workdir {workdir}"
  return estimator, model_info(estimator, source, checkpoints.latest_step(directory))


def _json_ready(tree):
  """Plain Python values: numpy scalars unwrapped, non-finite floats as None (JSON null)."""
  if isinstance(tree, dict):
    return {str(k): _json_ready(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [_json_ready(v) for v in tree]
  if isinstance(tree, np.ndarray):
    return _json_ready(tree.tolist())
  if isinstance(tree, (np.floating, np.integer, np.bool_)):
    tree = tree.item()
  if isinstance(tree, float) and not math.isfinite(tree):
    return None
  return tree


def write_results(results: dict, markdown: str | None, output_dir: str) -> dict[str, str]:
  """Writes results.json (non-finite numbers as null) and, if given, results.md into output_dir.

  Returns:
    {"json": path, "markdown": path or None}.
  """
  os.makedirs(output_dir, exist_ok=True)
  paths = {"json": os.path.join(output_dir, "results.json"), "markdown": None}
  with open(paths["json"] + ".tmp", "w") as f:
    json.dump(_json_ready(results), f, indent=2, default=str)
  os.replace(paths["json"] + ".tmp", paths["json"])
  if markdown is not None:
    paths["markdown"] = os.path.join(output_dir, "results.md")
    with open(paths["markdown"], "w") as f:
      f.write(markdown)
  return paths


def run_on_model(
  evaluate, results_markdown, config, output_dir: str, workdir: str | None, **evaluate_options
) -> dict:
  """A harness's `run`: loads workdir's model (None: the shipped one), evaluates it
  (`evaluate(estimator, config, info, **evaluate_options)`), writes results.json and
  results.md into output_dir and prints the tables. Returns the results."""
  estimator, info = load_model(workdir)
  results = evaluate(estimator, config, info, **evaluate_options)
  markdown = results_markdown(results)
  write_results(results, markdown, output_dir)
  print(markdown)
  return results


def format_number(value, style: str = "g") -> str:
  """A table cell: '-' for missing, 'nan' for non-finite, else 4 significant digits or 2.1e."""
  if value is None:
    return "-"
  if not math.isfinite(value):
    return "nan"
  return f"{value:.2e}" if style == "e" else f"{value:.4g}"


def markdown_table(header: list[str], rows: list[list]) -> str:
  """A GitHub Markdown table; cells are converted with str()."""
  lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
  return "\n".join(lines)


def machine_facts() -> dict:
  """Where and how a harness ran: platform, versions, devices, date, command, nice, load."""
  argv = sys.argv
  if argv and argv[0].endswith(os.path.join("experiments", "run.py")):
    command = "python -m experiments.run " + " ".join(argv[1:])
  else:
    command = " ".join(argv)
  return {
    "platform": platform.platform(),
    "python": platform.python_version(),
    "cpu_count": os.cpu_count(),
    "jax": jax.__version__,
    "numpy": np.__version__,
    "devices": [str(d) for d in jax.devices()],
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "command": command,
    "nice": os.nice(0),
    "load_average_start": os.getloadavg(),
  }
