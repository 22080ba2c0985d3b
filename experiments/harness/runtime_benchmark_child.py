r"""One measurement of the runtime benchmark, alone in this fresh process (its child).

  python -m experiments.harness.runtime_benchmark_child --spec=SPEC.json --out=RESULT.json

Internal: `runtime_benchmark.run` (python -m experiments.run
--config=experiments/configs/runtime_benchmark_quick.py) starts one of these per
(method, d, n) through `runtime_benchmark.measure_in_fresh_process`, so that the
peak memory it reads is this process's alone. SPEC.json is a
`runtime_benchmark.run_spec`; the result row of `runtime_benchmark.measure` is
written to RESULT.json. Not meant to be run by hand, except to rerun one row of a
benchmark.
"""

from absl import app
from absl import flags

from experiments.harness import runtime_benchmark

_SPEC = flags.DEFINE_string("spec", None, "JSON spec of one measurement (run_spec).")
_OUT = flags.DEFINE_string("out", None, "Where the JSON result row goes.")
flags.mark_flags_as_required(["spec", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # No host facts logged: the parent records them once, and anything done here
  # before the measurement would only raise the memory baseline.
  runtime_benchmark.measure_spec_file(_SPEC.value, _OUT.value)


if __name__ == "__main__":
  app.run(main)
