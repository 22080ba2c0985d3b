"""Wall time, peak memory and accuracy versus n: the model, our JAX KDE and scipy's KDE.

`python -m experiments.run --config=experiments/configs/runtime_benchmark_quick.py` (or
_full, _scale) calls `run`. For every d, one fixed Gaussian
mixture from the training prior is drawn once (samples are nested: the run at
n uses the first n of them; the m queries and their exact log-density and
score are shared). Every (method, d, n) is then measured by `measure` in a
fresh Python process (`python -m experiments.harness.runtime_benchmark_child
--spec=SPEC.json --out=RESULT.json`, which calls `measure_spec_file`), so its peak resident
memory is not polluted by earlier runs:

  first_call_s   the first call, which includes tracing and compilation;
  seconds        median of the timed calls after it (the steady state); with
                 repeats = 0 (large n), the first call itself, compilation
                 included (the table says "incl.");
  compile_s      first_call_s - seconds;
  baseline_rss_mb  resident memory just before the first call (after imports,
                 data and model loading);
  peak_rss_mb    peak resident memory during the calls (VmHWM, reset just
                 before the first call; the whole process's peak where the
                 reset is unavailable: see peak_rss_scope), and
                 process_peak_rss_mb, the peak of the whole process;
  relative_score_mse, log_density_mse   against the exact mixture.

Methods ("model", "jax_kde", "scipy_kde") all answer log-density and score at
the m queries. scipy.stats.gaussian_kde has no score, so its score is a
central difference of its logpdf (2d extra logpdf calls, timed with it); its
logpdf-only time is reported too (logpdf_s). scipy's evaluation is
single-threaded; JAX uses every core.
"""

import importlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import logging
import jax
import ml_collections
import numpy as np

from experiments.harness import common
from experiments.harness import references
from experiments.harness.progress import Progress
from kdeformer import checkpoints
from kdeformer import estimator as estimator_lib
from kdeformer import metrics
from kdeformer import networks

METHODS = ("model", "jax_kde", "scipy_kde")
METHOD_LABELS = {
  "model": "model (KDEFormer)",
  "jax_kde": "our JAX KDE",
  "scipy_kde": "scipy.stats.gaussian_kde",
}
RANDOM_MODEL_WARNING = (
  "NO TRAINED MODEL: the 'model' rows time a RANDOMLY INITIALISED network ({source}); "
  "its timings and memory are representative, its errors are MEANINGLESS."
)


# ----------------------------------------------------------------------------------------------
# Problems.


def draw_problem(
  seed: int, dim: int, max_samples: int, num_queries: int, prior: ml_collections.ConfigDict
) -> dict[str, np.ndarray]:
  """The fixed mixture of d = dim (`references.sliced_prior_problem`) and its exact truth.

  Returns:
    {"samples" (max_n, d), "queries" (m, d), "log_density" (m,), "score" (m, d)}
    as numpy float32.
  """
  key = jax.random.fold_in(jax.random.key(seed), dim)
  samples, queries, truth = references.sliced_prior_problem(
    key, dim, max_samples, num_queries, prior
  )
  return dict(
    samples=np.asarray(samples),
    queries=np.asarray(queries),
    log_density=np.asarray(truth.log_density),
    score=np.asarray(truth.score),
  )


# ----------------------------------------------------------------------------------------------
# One measurement (runs in the child process).


def _status_mib(field: str) -> float | None:
  """A memory field of /proc/self/status (Linux) in MiB, or None where unavailable."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) / 1024.0  # Reported in kB.
  except OSError:
    pass
  return None


def current_rss_mb() -> float | None:
  """Resident memory of this process now, in MiB."""
  return _status_mib("VmRSS")


def peak_rss_mb() -> float:
  """Peak resident memory of this process image, in MiB.

  VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork and
  exec, so a child started from a large parent would report the parent's
  size (measured: every child of a 518 MiB parent reported exactly 518 MiB).
  """
  peak = _status_mib("VmHWM")
  return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
  """Resets VmHWM to the current RSS (Linux >= 4.0); False where not possible."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def model_options(spec: dict) -> dict:
  """The Estimator options of a measurement spec (see `run_spec`).

  max_self_attention_keys: None, the Estimator's default (sub-quadratic sample
  mixing beyond 4096 samples); 0, full self-attention; k, the first k samples.
  """
  return dict(
    query_chunk_size=spec["model_query_chunk_size"],
    key_chunk_size=spec["model_key_chunk_size"],
    max_self_attention_keys=spec.get("model_max_self_attention_keys"),
  )


def model_estimator(source: dict, **estimator_options) -> estimator_lib.Estimator:
  """The Estimator described by a model source (see `resolve_model_source`).

  Trained models ("workdir", "pretrained") load through `common.load_model`;
  a "random" source is an initialisation of its config (JSON) with its seed.
  """
  if source["kind"] in ("workdir", "pretrained"):
    return common.load_model(source.get("workdir"), **estimator_options)[0]
  if source["kind"] == "random":
    config = ml_collections.ConfigDict(json.loads(source["config"]))
    params = networks.init_params(config, jax.random.key(source.get("seed", 0)))
    return estimator_lib.Estimator(params, config, **estimator_options)
  raise ValueError(f"Unknown model source kind {source['kind']!r}.")


def scipy_kde_estimate(
  samples: np.ndarray, queries: np.ndarray, bandwidth: str, fd_relative_step: float
) -> tuple[np.ndarray, np.ndarray, float]:
  """scipy.stats.gaussian_kde log-density and central-difference score, in float64.

  Returns:
    (log_density (m,), score (m, d), seconds spent in the logpdf call alone).
  """
  import scipy.stats  # pylint: disable=g-import-not-at-top

  samples = np.asarray(samples, np.float64)
  queries = np.asarray(queries, np.float64)
  estimator = scipy.stats.gaussian_kde(samples.T, bw_method=bandwidth)
  start = time.perf_counter()
  log_density = estimator.logpdf(queries.T)
  logpdf_seconds = time.perf_counter() - start
  step = fd_relative_step * math.sqrt(
    float(np.min(np.linalg.eigvalsh(np.atleast_2d(estimator.covariance))))
  )
  score = references.central_difference_score(
    lambda points: estimator.logpdf(points.T), queries, step
  )
  return log_density, score, logpdf_seconds


def make_method(spec: dict):
  """A callable (samples, queries) -> (log_density, score, extras) as numpy (blocking)."""
  method = spec["method"]
  if method == "model":
    estimator = model_estimator(spec["model_source"], **model_options(spec))

    def call(samples, queries):
      out = estimator(samples, queries)
      return np.asarray(out.log_density), np.asarray(out.score), {}

    return call
  if method == "jax_kde":
    from kdeformer import kde  # pylint: disable=g-import-not-at-top

    def call(samples, queries):
      out = kde.gaussian_kde(
        samples,
        queries,
        spec["bandwidth"],
        query_chunk_size=spec["kde_query_chunk_size"],
        key_chunk_size=spec["kde_key_chunk_size"],
      )
      return np.asarray(out.log_density), np.asarray(out.score), {}

    return call
  if method == "scipy_kde":
    import scipy.stats  # noqa: F401  (imported before the timed baseline)

    def call(samples, queries):
      log_density, score, logpdf_seconds = scipy_kde_estimate(
        samples, queries, spec["bandwidth"], spec["fd_relative_step"]
      )
      return log_density, score, {"logpdf_s": logpdf_seconds}

    return call
  raise ValueError(f"Unknown method {method!r}; expected one of {METHODS}.")


def measure(spec: dict) -> dict:
  """Times one (method, d, n) and measures its peak memory and error; see the module doc.

  Args:
    spec: method, dim, num_samples, problem_path (an .npz of `draw_problem`),
      repeats, max_timed_seconds, and the method's settings (see `run_spec`).

  Returns:
    The spec's method/dim/num_samples plus first_call_s, seconds, compile_s,
    timed_calls, baseline_rss_mb, peak_rss_mb, relative_score_mse,
    log_density_mse, status "ok" (and logpdf_s for scipy).
  """
  with np.load(spec["problem_path"]) as problem:
    samples = np.array(problem["samples"][: spec["num_samples"]])
    queries = np.array(problem["queries"])
    true_log_density = np.array(problem["log_density"])
    true_score = np.array(problem["score"])
  call = make_method(spec)
  process_peak_before = peak_rss_mb()  # Imports, data and model loading.
  peak_was_reset = reset_peak_rss()
  baseline = current_rss_mb() or process_peak_before
  start = time.perf_counter()
  log_density, score, extras = call(samples, queries)
  first = time.perf_counter() - start
  times = []
  for _ in range(spec["repeats"]):
    start = time.perf_counter()
    log_density, score, extras = call(samples, queries)
    times.append(time.perf_counter() - start)
    if sum(times) > spec["max_timed_seconds"]:
      break
  seconds = statistics.median(times) if times else first
  return dict(
    method=spec["method"],
    dim=spec["dim"],
    num_samples=spec["num_samples"],
    num_queries=int(queries.shape[0]),
    status="ok",
    first_call_s=first,
    seconds=seconds,
    compile_s=max(first - seconds, 0.0),
    timed_calls=len(times),
    baseline_rss_mb=baseline,
    peak_rss_mb=peak_rss_mb(),
    process_peak_rss_mb=max(peak_rss_mb(), process_peak_before),
    peak_rss_scope="during the calls" if peak_was_reset else "whole process",
    relative_score_mse=float(metrics.relative_score_mse(score, true_score)),
    log_density_mse=float(np.mean((np.asarray(log_density, np.float64) - true_log_density) ** 2)),
    finite=bool(np.all(np.isfinite(log_density)) and np.all(np.isfinite(score))),
    **extras,
  )


def measure_spec_file(spec_path: str, out_path: str) -> dict:
  """`measure` of the JSON spec at spec_path, written as JSON to out_path (atomically).

  The body of the child process (experiments/harness/runtime_benchmark_child.py).
  """
  with open(spec_path) as f:
    spec = json.load(f)
  result = measure(spec)
  with open(out_path + ".tmp", "w") as f:
    json.dump(result, f)
  os.replace(out_path + ".tmp", out_path)
  return result


# experiments/harness/runtime_benchmark.py -> the repository root, which the child
# needs on its path to import `experiments`.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


CHILD_MODULE = "experiments.harness.runtime_benchmark_child"  # Runs `measure_spec_file`.


def measure_in_fresh_process(spec: dict, timeout_seconds: float) -> dict:
  """`measure(spec)` in a new Python process; a timeout or crash becomes a status row."""
  env = dict(os.environ)
  env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
  with tempfile.TemporaryDirectory() as tmp:
    spec_path, out_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "out.json")
    with open(spec_path, "w") as f:
      json.dump(spec, f)
    base = dict(method=spec["method"], dim=spec["dim"], num_samples=spec["num_samples"])
    try:
      completed = subprocess.run(
        [sys.executable, "-m", CHILD_MODULE, f"--spec={spec_path}", f"--out={out_path}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
        check=False,
      )
    except subprocess.TimeoutExpired:
      return dict(base, status=f"timeout (> {timeout_seconds:g} s)")
    if completed.returncode != 0 or not os.path.exists(out_path):
      tail = (completed.stderr or "").strip().splitlines()[-3:]
      return dict(base, status=f"failed (exit {completed.returncode}): {' | '.join(tail)}")
    with open(out_path) as f:
      return json.load(f)


# ----------------------------------------------------------------------------------------------
# The whole benchmark (parent process).


def resolve_model_source(
  workdir: str | None, fallback_config: ml_collections.ConfigDict, fallback_name: str
) -> dict:
  """Which model the 'model' rows use: --workdir, else the shipped one, else a random init.

  The model is loaded once here (`common.load_model`), so a bad workdir fails
  before any measurement; each child process loads it again from this source.

  Returns:
    A JSON-able source: {"kind": "workdir"|"pretrained"|"random", "description":
    str, ...}; trained sources carry "workdir" (None: the shipped model) and
    "info" (`common.model_info`); random ones the fallback config as JSON and a
    warning.
  Raises:
    FileNotFoundError: an explicitly given workdir does not exist.
    ValueError: its checkpoint is corrupt or does not fit its config.
  """
  if workdir and workdir not in checkpoints.PRETRAINED_MODELS:
    workdir = os.path.abspath(workdir)
  workdir = workdir or None
  try:
    _, info = common.load_model(workdir)
  except FileNotFoundError:
    if workdir:
      raise  # A workdir that was asked for must load; only the shipped model may be absent.
    description = f"random initialisation of experiments/configs/{fallback_name}.py"
    return dict(
      kind="random",
      config=fallback_config.to_json(),
      seed=0,
      description=description,
      warning=RANDOM_MODEL_WARNING.format(source=description),
    )
  kind = "pretrained" if not workdir or workdir in checkpoints.PRETRAINED_MODELS else "workdir"
  return dict(
    kind=kind,
    workdir=workdir,
    info=info,
    description=f"{info['source']} (checkpoint step {info['step']})",
  )


def run_spec(
  config: ml_collections.ConfigDict,
  method: str,
  dim: int,
  num_samples: int,
  problem_path: str,
  model_source: dict,
) -> dict:
  """The JSON-serialisable description of one measurement."""
  return dict(
    method=method,
    dim=dim,
    num_samples=num_samples,
    problem_path=problem_path,
    repeats=config.repeats,
    max_timed_seconds=config.max_timed_seconds,
    bandwidth=config.bandwidth,
    fd_relative_step=config.fd_relative_step,
    model_source=model_source,
    model_query_chunk_size=config.model_query_chunk_size,
    model_key_chunk_size=config.model_key_chunk_size,
    model_max_self_attention_keys=config.get("model_max_self_attention_keys"),
    kde_query_chunk_size=config.kde_query_chunk_size,
    kde_key_chunk_size=config.kde_key_chunk_size,
  )


def host_facts() -> dict:
  return dict(
    platform=platform.platform(),
    python=platform.python_version(),
    jax=jax.__version__,
    devices=[str(d) for d in jax.devices()],
    cpu_count=os.cpu_count(),
  )


def run(
  config: ml_collections.ConfigDict,
  output_dir: str,
  workdir: str | None = None,
  *,
  model_source: dict | None = None,
) -> dict:
  """Measures every (d, n, method) and writes results.json, results.md and benchmark.png.

  Args:
    config: see experiments/configs/runtime_benchmark_quick.py.
    output_dir: created if missing.
    workdir: the model (a training workdir or a shipped model's name); None: the
      shipped one, else a random initialisation of config.fallback_model_config
      (`resolve_model_source`).
    model_source: a `resolve_model_source` result to use instead (workdir is then ignored).

  Returns:
    {"rows": [...], "model": model_source, "host": ..., "load_average": ...}.
  """
  for method in config.methods:
    if method not in METHODS:
      raise ValueError(f"Unknown method {method!r}; expected some of {METHODS}.")
  if model_source is None:
    fallback = importlib.import_module(f"experiments.configs.{config.fallback_model_config}")
    model_source = resolve_model_source(
      workdir, fallback.get_config(), config.fallback_model_config
    )
  logging.info("Model: %s", model_source.get("description", model_source.get("kind")))
  os.makedirs(output_dir, exist_ok=True)
  if model_source.get("warning") and "model" in config.methods:
    banner = "!" * 100
    logging.warning("\n%s\n%s\n%s", banner, model_source["warning"], banner)
  load_before = os.getloadavg()
  rows = []
  progress = Progress(
    "runtime benchmark", len(config.dims) * len(config.sample_sizes) * len(config.methods)
  )
  with tempfile.TemporaryDirectory() as tmp:
    for dim in config.dims:
      problem = draw_problem(
        config.seed, dim, max(config.sample_sizes), config.num_queries, config.prior
      )
      problem_path = os.path.join(tmp, f"problem_d{dim}.npz")
      np.savez(problem_path, **problem)
      for num_samples in config.sample_sizes:
        for method in config.methods:
          row = measure_row(config, method, dim, num_samples, problem_path, model_source)
          rows.append(row)
          progress.done(f"{method} d={dim} n={num_samples}", format_row(row))
  results = dict(
    rows=rows,
    model=model_source,
    host=host_facts(),
    load_average=dict(before=load_before, after=os.getloadavg()),
    config=config.to_dict(),
  )
  results["time_to_accuracy"] = time_to_accuracy(rows, tuple(config.accuracy_targets))
  results["figure"] = plot_benchmark(rows, config, os.path.join(output_dir, "benchmark.png"))
  markdown = results_markdown(results, config)
  common.write_results(results, markdown, output_dir)
  print(markdown)
  return results


def measure_row(
  config: ml_collections.ConfigDict,
  method: str,
  dim: int,
  num_samples: int,
  problem_path: str,
  model_source: dict,
) -> dict:
  """One row of `run`: measured (in a fresh process unless config says not), or skipped."""
  if method == "scipy_kde" and num_samples > config.scipy_max_samples:
    return dict(
      method=method,
      dim=dim,
      num_samples=num_samples,
      status=f"skipped (n > scipy_max_samples = {config.scipy_max_samples})",
    )
  spec = run_spec(config, method, dim, num_samples, problem_path, model_source)
  load = os.getloadavg()[0]
  if config.fresh_process:
    row = measure_in_fresh_process(spec, config.subprocess_timeout_seconds)
  else:
    row = dict(measure(spec), isolation="in-process: memory not isolated")
  return dict(row, load_average_1min=load)


def time_to_accuracy(rows: list[dict], targets) -> list[dict]:
  """For each (d, method) and error target: the cheapest steady-state call that reached it.

  A method "reaches" a target relative score MSE at the smallest per-call time
  among its measured n whose error is at or below the target (errors need not
  fall monotonically with n, so every n counts).

  Args:
    rows: measurement rows of `run` (failed or skipped rows are ignored).
    targets: relative score MSE levels.

  Returns:
    One dict per (dim, method): dim, method, best_error, best_error_n, and
    reached: {target: {"seconds", "num_samples"} or None}.
  """
  table = []
  for dim, method in dict.fromkeys((r["dim"], r["method"]) for r in rows):
    ok = [r for r in rows if r["dim"] == dim and r["method"] == method and r.get("status") == "ok"]
    if not ok:
      continue
    best = min(ok, key=lambda r: r["relative_score_mse"])
    reached = {}
    for target in targets:
      hits = [r for r in ok if r["relative_score_mse"] <= target]
      fastest = min(hits, key=lambda r: r["seconds"]) if hits else None
      reached[target] = (
        dict(seconds=fastest["seconds"], num_samples=fastest["num_samples"]) if fastest else None
      )
    table.append(
      dict(
        dim=dim,
        method=method,
        best_error=best["relative_score_mse"],
        best_error_n=best["num_samples"],
        reached=reached,
      )
    )
  return table


def format_row(row: dict) -> str:
  """One row as a log line: its status, or time, first call, peak memory and error."""
  head = f"{row['method']:>9} d={row['dim']:<2} n={row['num_samples']:<6}"
  if row.get("status") != "ok":
    return f"{head} {row.get('status')}"
  return (
    f"{head} {row['seconds']:.4f} s (first call {row['first_call_s']:.2f} s), "
    f"peak RSS {row['peak_rss_mb']:.0f} MiB, rel score MSE "
    f"{row['relative_score_mse']:.4f}"
  )


def _self_attention_keys_label(max_keys: int | None) -> str:
  if max_keys is None:
    return "the Estimator's default (the first 4096 samples beyond n = 4096)"
  return "all (full O(n^2) self-attention)" if max_keys == 0 else f"the first {max_keys} samples"


def _measurement_cells(row: dict) -> list:
  """One row of the measurement table; a failed or skipped row shows its status."""
  cells = [row["dim"], row["num_samples"], METHOD_LABELS[row["method"]]]
  if row.get("status") != "ok":
    return cells + [row.get("status"), "", "", "", "", ""]
  seconds = common.format_number(row["seconds"])
  if "logpdf_s" in row:
    seconds += f" ({common.format_number(row['logpdf_s'])})"
  compile_s = "incl." if row.get("timed_calls") == 0 else common.format_number(row["compile_s"])
  return cells + [
    seconds,
    compile_s,
    f"{row['peak_rss_mb']:.0f} ({row['baseline_rss_mb']:.0f})",
    common.format_number(row["relative_score_mse"]),
    common.format_number(row["log_density_mse"]),
    common.format_number(row.get("load_average_1min")),
  ]


def results_markdown(results: dict, config: ml_collections.ConfigDict) -> str:
  """The tables of results.md."""
  model = results["model"]
  host = results["host"]
  load = results["load_average"]
  lines = ["# Runtime, memory and accuracy versus n", ""]
  if model.get("warning"):
    lines += [f"**WARNING: {model['warning']}**", ""]
  lines += [
    f"Model: {model['description']}. m = {config.num_queries} queries; KDE bandwidth rule: "
    f"{config.bandwidth}; model key chunk {config.model_key_chunk_size}, KDE key chunk "
    f"{config.kde_key_chunk_size}; model self-attention keys "
    f"{_self_attention_keys_label(config.get('model_max_self_attention_keys'))}.",
    f"Host: {host['platform']}, {host['cpu_count']} CPUs, JAX {host['jax']} on "
    f"{', '.join(host['devices'])}. Load average (1 min) before {load['before'][0]:.2f}, "
    f"after {load['after'][0]:.2f}: timings are only meaningful on an idle machine.",
    "",
    "seconds: median steady-state call (after a warm-up call); compile: first call minus "
    "that; peak RSS: the process's peak resident memory while the method runs (the peak is "
    "reset just before the first call, so it includes what was already resident: "
    "interpreter, JAX, data, model; that baseline in brackets), each (method, d, n) in a "
    "fresh process"
    + ("" if config.fresh_process else " — NOT here: fresh_process=False, memory polluted")
    + ". scipy's score is a central difference of its logpdf (2d extra calls, included; "
    "logpdf alone in brackets); scipy runs single-threaded.",
    "",
    common.markdown_table(
      [
        "d",
        "n",
        "method",
        "seconds",
        "compile s",
        "peak RSS MiB (baseline)",
        "rel score MSE",
        "log-density MSE",
        "load",
      ],
      [_measurement_cells(row) for row in results["rows"]],
    ),
  ]
  targets = tuple(config.accuracy_targets)
  lines += [
    "",
    "## Time to accuracy",
    "",
    "Seconds per steady-state call (m = "
    f"{config.num_queries} queries) needed to reach a relative score MSE at or below each "
    'target: the fastest measured n that reached it (that n in brackets); "not reached" '
    "if no measured n did. Compilation excluded (see the compile column above).",
    "",
    common.markdown_table(
      ["d", "method"] + [f"<= {t:g}" for t in targets] + ["best error (n)"],
      [
        [entry["dim"], METHOD_LABELS[entry["method"]]]
        + [
          f"{common.format_number(hit['seconds'])} s ({hit['num_samples']})"
          if hit
          else "not reached"
          for hit in entry["reached"].values()
        ]
        + [f"{common.format_number(entry['best_error'])} ({entry['best_error_n']})"]
        for entry in results["time_to_accuracy"]
      ],
    ),
  ]
  if results.get("figure"):
    lines += ["", f"![benchmark]({os.path.basename(results['figure'])})"]
  return "\n".join(lines) + "\n"


def plot_benchmark(rows: list[dict], config: ml_collections.ConfigDict, path: str) -> str:
  """Per d: time vs n (log-log), peak RSS vs n, relative score MSE vs seconds. Returns path."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  dims = list(config.dims)
  fig, axes = plt.subplots(len(dims), 3, figsize=(15, 4 * len(dims)), squeeze=False)
  for i, dim in enumerate(dims):
    for method in config.methods:
      ok = sorted(
        (r for r in rows if r["dim"] == dim and r["method"] == method and r.get("status") == "ok"),
        key=lambda r: r["num_samples"],
      )
      if not ok:
        continue
      n = [r["num_samples"] for r in ok]
      seconds = [r["seconds"] for r in ok]
      label = METHOD_LABELS[method]
      axes[i, 0].loglog(n, seconds, "o-", label=label, base=2)
      (line,) = axes[i, 1].semilogx(n, [r["peak_rss_mb"] for r in ok], "o-", label=label, base=2)
      axes[i, 1].semilogx(
        n, [r["baseline_rss_mb"] for r in ok], ":", color=line.get_color(), base=2
      )
      axes[i, 2].loglog(
        seconds, [max(r["relative_score_mse"], 1e-12) for r in ok], "o-", label=label
      )
      for r in ok:
        axes[i, 2].annotate(
          f"{r['num_samples']}", (r["seconds"], r["relative_score_mse"]), fontsize=6, alpha=0.7
        )
    axes[i, 0].set(
      xlabel="n (samples)",
      ylabel="seconds per call (steady)",
      title=f"d = {dim}: time vs n (m = {config.num_queries})",
    )
    axes[i, 1].set(
      xlabel="n (samples)",
      ylabel="peak RSS during the calls (MiB)",
      title=f"d = {dim}: peak memory vs n (dotted: before the first call)",
    )
    axes[i, 2].set(
      xlabel="seconds per call",
      ylabel="relative score MSE",
      title=f"d = {dim}: error vs compute (points labelled by n)",
    )
    for ax in axes[i]:
      ax.grid(alpha=0.3, which="both")
      ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
