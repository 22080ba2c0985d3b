"""The package's shape: imports go one way (harnesses -> training -> core), the core stays light.

Two halves. Statically, every module under kdeformer/ and experiments/ is parsed
with `ast` and the graph of the project's own imports (module-level and inside
functions) must be acyclic and point one way: no kdeformer module imports
experiments or matplotlib, and no core module imports kdeformer.training. Then,
in fresh interpreters, what a notebook does (`import kdeformer`, load the shipped
model, call it) must leave the caller's matplotlib backend alone, import neither
matplotlib nor the training or experiment code, and print no warnings.
"""

import ast
import os
import pathlib
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("kdeformer", "experiments")
CORE = "kdeformer"
TRAINING = "kdeformer.training"


def module_name(path: pathlib.Path) -> str:
  """'kdeformer/training/data.py' -> 'kdeformer.training.data'; an __init__.py is its package."""
  parts = list(path.relative_to(REPO).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def project_modules() -> dict[str, pathlib.Path]:
  """Every module of the project's packages, by dotted name."""
  return {
    module_name(path): path
    for package in PACKAGES
    for path in sorted((REPO / package).rglob("*.py"))
  }


def imported_names(path: pathlib.Path, name: str, modules) -> set[str]:
  """Dotted names a module imports anywhere in its body (functions included).

  `from package import name` counts as an import of `package.name` when that is a
  module of the project, else of `package`; relative imports are resolved.
  """
  is_package = path.name == "__init__.py"
  names = set()
  for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = name.split(".")
        anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
        base = ".".join(anchor + ([base] if base else []))
      for alias in node.names:
        submodule = f"{base}.{alias.name}"
        names.add(submodule if submodule in modules else base)
  return names


def import_graph() -> dict[str, set[str]]:
  """module -> the project modules it imports (imports of outside packages are dropped)."""
  modules = project_modules()
  return {
    name: {
      imported
      for imported in imported_names(path, name, modules)
      if imported in modules and imported != name
    }
    for name, path in modules.items()
  }


def external_imports() -> dict[str, set[str]]:
  """module -> every dotted name it imports, the outside world's included."""
  modules = project_modules()
  return {name: imported_names(path, name, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One cycle of the directed graph as [a, b, ..., a], or None (iterative depth-first search)."""
  unvisited, in_progress, done = 0, 1, 2
  state = dict.fromkeys(graph, unvisited)
  for root in sorted(graph):
    if state[root] != unvisited:
      continue
    path, stack = [root], [iter(sorted(graph[root]))]
    state[root] = in_progress
    while stack:
      successor = next(stack[-1], None)
      if successor is None:
        state[path.pop()] = done
        stack.pop()
      elif state.get(successor, done) == in_progress:
        return path[path.index(successor) :] + [successor]
      elif state.get(successor, done) == unvisited:
        state[successor] = in_progress
        path.append(successor)
        stack.append(iter(sorted(graph[successor])))
  return None


def is_under(name: str, package: str) -> bool:
  return name == package or name.startswith(package + ".")


def test_cycle_finder_finds_a_cycle_and_accepts_a_tree():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_graph_sees_module_level_function_level_and_relative_imports():
  """Guards the checks below against a parser that silently finds no imports."""
  graph = import_graph()
  assert {"kdeformer.checkpoints", "kdeformer.training.data"} <= graph["kdeformer.training.train"]
  assert "kdeformer.training.train" in graph["experiments.train"]
  assert "kdeformer.checkpoints" in graph["kdeformer.estimator"]  # `from kdeformer import x`.
  assert "kdeformer.estimator" in graph["kdeformer"]  # The package's __init__.
  assert "experiments.configs.default" in graph["experiments.configs.tiny"]
  # runtime_benchmark imports matplotlib inside a function only.
  assert "matplotlib" in external_imports()["experiments.harness.runtime_benchmark"]


def test_project_imports_have_no_cycle():
  cycle = find_cycle(import_graph())
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_core_and_training_import_neither_experiments_nor_matplotlib():
  forbidden = ("experiments", "matplotlib")
  offenders = {
    name: sorted(
      imported for imported in imported if any(is_under(imported, package) for package in forbidden)
    )
    for name, imported in external_imports().items()
    if is_under(name, CORE)
  }
  assert not {name: bad for name, bad in offenders.items() if bad}


def test_core_does_not_import_training():
  offenders = {
    name: sorted(imported for imported in imported if is_under(imported, TRAINING))
    for name, imported in external_imports().items()
    if is_under(name, CORE) and not is_under(name, TRAINING)
  }
  assert not {name: bad for name, bad in offenders.items() if bad}


# What a notebook does: import the package, load the shipped model, call it once.
NOTEBOOK = """
import numpy as np
import kdeformer
est = kdeformer.load_pretrained()
out = est(np.random.default_rng(0).normal(size=(300, 2)))
assert out.score.shape == (300, 2), out.score.shape
"""


def run_python(script: str) -> subprocess.CompletedProcess:
  """Runs script in a fresh interpreter in the repository root."""
  # Default verbosity: nothing in the environment may quieten absl, XLA or JAX.
  env = {
    key: value
    for key, value in os.environ.items()
    if key not in ("TF_CPP_MIN_LOG_LEVEL", "JAX_LOGGING_LEVEL", "ABSL_MIN_LOG_LEVEL")
  }
  return subprocess.run(
    [sys.executable, "-c", textwrap.dedent(script)],
    capture_output=True,
    text=True,
    env=env,
    timeout=600,
    cwd=str(REPO),
  )


def test_using_the_model_keeps_the_callers_matplotlib_backend():
  result = run_python(
    'import matplotlib\nmatplotlib.use("svg")\n'
    + NOTEBOOK
    + 'print("backend", matplotlib.get_backend())\n'
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "backend svg" in result.stdout, result.stdout


def test_using_the_model_imports_only_the_core_and_prints_no_warning():
  result = run_python(
    NOTEBOOK
    + textwrap.dedent("""
      import sys
      print("loaded", " ".join(sorted(sys.modules)))
      """)
  )
  assert result.returncode == 0, result.stderr[-3000:]
  (line,) = [line for line in result.stdout.splitlines() if line.startswith("loaded ")]
  loaded = line.split()[1:]
  assert "kdeformer.estimator" in loaded  # The listing is the real one.
  assert not [name for name in loaded if is_under(name, "matplotlib")]
  assert not [name for name in loaded if is_under(name, TRAINING) or is_under(name, "experiments")]
  assert not [line for line in result.stderr.splitlines() if "WARNING" in line], result.stderr


# The library reads in short functions (issue 29): a longer one is split into named steps.
MAX_FUNCTION_LINES = 80


def test_no_library_function_is_longer_than_the_limit():
  long = []
  for path in sorted((REPO / "kdeformer").rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        length = node.end_lineno - node.lineno + 1
        if length > MAX_FUNCTION_LINES:
          long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
  assert not long, long
