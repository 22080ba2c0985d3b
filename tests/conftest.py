"""Faster XLA compilation for the tests: no LLVM optimisation, one shared on-disk cache.

Most of the suite's time is XLA compilation of small programs that then run
for milliseconds. Two settings, both inherited by xdist workers and by the
subprocesses some tests start (through the environment):

- XLA_FLAGS gains --xla_backend_optimization_level=0 (LLVM without
  optimisation; XLA's own graph passes, fusion included, still run): the
  training batch sampler compiled in 13.4 s at the default level, 2.6 s at 0.
  Where this jaxlib knows them (probed once, since XLA aborts on an unknown
  flag), also --xla_cpu_use_fusion_emitters=false (the older loop emitters:
  the tiny model's predict compiles in 0.8 s instead of 1.3 s) and
  --xla_llvm_disable_expensive_passes=true; the suite went from 706 s to 469 s (2026-12-05).
  --xla_cpu_parallel_codegen_split_count=1 compiles each program's LLVM module in one piece:
  the xdist workers already fill both cores, so splitting it across threads only adds work
  (test_equivariant and test_pretrained_equivariant: 139 instead of 153 CPU-s, median of 3
  pairs, 2026-12-07).
  Programs compute the same functions; the tests' tolerances cover the
  round-off differences. Set KDEFORMER_TEST_XLA_OPTIMIZE=1 to test the default
  settings.
- JAX's persistent compilation cache in one directory per run: many tests
  compile the same programs (every Estimator instance has its own jit caches,
  the xdist workers are separate processes, and some tests start subprocesses:
  training resume, the benchmark's fresh processes), so a program compiled once
  is loaded from disk everywhere else (programs that compiled in under 0.1 s are
  not written: recompiling them is as cheap). The directory is created by the first
  process (the xdist controller, or plain pytest) and removed when that process
  ends, so every run starts cold and nothing accumulates. Set
  KDEFORMER_TEST_COMPILATION_CACHE=0 to test without it.
"""

import os
import shutil
import subprocess
import sys
import tempfile

_CACHE_DIR_VARIABLE = "JAX_COMPILATION_CACHE_DIR"
_OWNER_VARIABLE = "KDEFORMER_TEST_COMPILATION_CACHE_OWNER"


_FAST_COMPILATION_FLAGS = (
  "--xla_backend_optimization_level=0",
  "--xla_cpu_use_fusion_emitters=false",
  "--xla_llvm_disable_expensive_passes=true",
  "--xla_cpu_parallel_codegen_split_count=1",
)


def _xla_starts_with(flags: list[str]) -> bool:
  """Whether XLA starts with `flags` (it aborts the process on a flag it does not know)."""
  env = dict(os.environ, XLA_FLAGS=" ".join(flags), JAX_PLATFORMS="cpu")
  probe = subprocess.run(
    [sys.executable, "-c", "import jax; jax.numpy.zeros(1)"],
    env=env,
    capture_output=True,
    timeout=120,
    check=False,
  )
  return probe.returncode == 0


def _fast_compilation() -> None:
  if os.environ.get("KDEFORMER_TEST_XLA_OPTIMIZE", "0") == "1":
    return
  flags = os.environ.get("XLA_FLAGS", "")
  # Inherited by the xdist workers and subprocesses: only the first process probes.
  missing = [f for f in _FAST_COMPILATION_FLAGS if f.split("=")[0] not in flags]
  if missing and not _xla_starts_with(missing):
    missing = [f for f in missing if _xla_starts_with([f])]
  os.environ["XLA_FLAGS"] = " ".join([flags, *missing]).strip()


def _enable_shared_compilation_cache() -> None:
  if os.environ.get("KDEFORMER_TEST_COMPILATION_CACHE", "1") == "0":
    return
  if _CACHE_DIR_VARIABLE not in os.environ:
    os.environ[_CACHE_DIR_VARIABLE] = tempfile.mkdtemp(prefix="kdeformer-test-xla-cache-")
    os.environ[_OWNER_VARIABLE] = str(os.getpid())
  # Programs that compiled in 0.1 s or more: writing every tiny one (eager operations are most
  # of the suite's ~5,600 compilations) cost more than reading them back saved. 14 modules
  # under -n 2: 405 and 408 user CPU-s at 0.1 s, 440 and 446 at 0 (every program), 500 with
  # no cache (2026-12-07, docs/log/suite/cache_threshold_2026-12-07_c675859.txt).
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
  import jax  # pylint: disable=g-import-not-at-top  (after the environment is set)

  jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_DIR_VARIABLE])
  jax.config.update(
    "jax_persistent_cache_min_compile_time_secs",
    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
  )
  jax.config.update(
    "jax_persistent_cache_min_entry_size_bytes",
    int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]),
  )


_fast_compilation()
_enable_shared_compilation_cache()


def environment_without_test_settings() -> dict[str, str]:
  """os.environ without this file's XLA flags and compilation cache: for a subprocess that
  must run as a user's command does, at XLA's defaults (runtime-bound work)."""
  flag_names = {flag.split("=")[0] for flag in _FAST_COMPILATION_FLAGS}
  cache_variables = {
    _CACHE_DIR_VARIABLE,
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
  }
  env = {name: value for name, value in os.environ.items() if name not in cache_variables}
  env["XLA_FLAGS"] = " ".join(
    flag for flag in env.get("XLA_FLAGS", "").split() if flag.split("=")[0] not in flag_names
  )
  return env


def pytest_unconfigure(config):
  del config
  if os.environ.get(_OWNER_VARIABLE) == str(os.getpid()):
    shutil.rmtree(os.environ[_CACHE_DIR_VARIABLE], ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Shared fixtures: the tiny model of experiments/configs/tiny.py with random parameters.

import functools  # pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position  (after the settings above)
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


@functools.partial(jax.jit, static_argnames="perturb")
def _perturbed(params, key, perturb: float):
  """params + N(0, perturb^2) noise per leaf, in one program (perturbing ~100 leaves eagerly
  compiles ~100 ops, ~35 s on 2 cores); perturb a constant of it, as it always was (a traced
  scale changes the parameters by an ulp)."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(
    tree, [x + perturb * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  )


@functools.cache
def random_params(perturb: float = 0.1, seed: int = 0):
  """The tiny config's random parameters (see make_random_estimator), made once per process:
  jax arrays are immutable, so every estimator built on them can share them."""
  from experiments.configs import tiny  # pylint: disable=g-import-not-at-top
  from kdeformer import networks  # pylint: disable=g-import-not-at-top

  params = networks.init_params(tiny.get_config(), jax.random.key(seed))
  if perturb:
    params = _perturbed(params, jax.random.key(seed + 1), perturb=perturb)
  return params


def make_random_estimator(perturb: float = 0.1, seed: int = 0, **estimator_options):
  """The tiny config's Estimator with random parameters: a new instance (its own jit caches
  and warnings) on parameters made once per process.

  perturb > 0 adds N(0, perturb^2) noise to every parameter (the zero-initialised
  heads included), so the outputs depend on all of them; 0 keeps the initialisation
  (the untrained network is then its kernel bank's Scott KDE).
  """
  from experiments.configs import tiny  # pylint: disable=g-import-not-at-top
  from kdeformer import estimator as estimator_lib  # pylint: disable=g-import-not-at-top

  return estimator_lib.Estimator(
    random_params(perturb, seed), tiny.get_config(), **estimator_options
  )


@pytest.fixture(scope="module")
def tiny_config():
  from experiments.configs import tiny  # pylint: disable=g-import-not-at-top

  return tiny.get_config()


@pytest.fixture(scope="module")
def random_estimator():
  """The tiny model with perturbed random parameters (see make_random_estimator)."""
  return make_random_estimator()


@pytest.fixture(scope="session")
def random_estimator_factory():
  """make_random_estimator, for tests that need other options or seeds."""
  return make_random_estimator


# ---------------------------------------------------------------------------------------------
# The shipped models, loaded once per test process (each Estimator has its own jit caches, so
# one instance per model also compiles each program once).


@pytest.fixture(scope="session")
def general_model():
  """kdeformer.load_pretrained("general"), the default model."""
  import kdeformer  # pylint: disable=g-import-not-at-top

  return kdeformer.load_pretrained("general")


@pytest.fixture(scope="session")
def gmm_model():
  """kdeformer.load_pretrained("gmm"), the Gaussian-mixture specialist."""
  import kdeformer  # pylint: disable=g-import-not-at-top

  return kdeformer.load_pretrained("gmm")


@pytest.fixture(scope="session")
def equivariant_model():
  """kdeformer.load_pretrained("equivariant"), the any-d network; the default hands it d = 1,
  d >= 9 and n > 16,384."""
  import kdeformer  # pylint: disable=g-import-not-at-top

  return kdeformer.load_pretrained("equivariant")


# ---------------------------------------------------------------------------------------------
# Order: the longest modules first. pytest.ini's --dist=loadscope hands whole modules to the
# workers in collection order; collected alphabetically, the training modules (minutes of
# subprocess runs) came last and left one worker busy alone at the end of the run.

_LONGEST_MODULES = (
  "tests/test_notebook.py",
  "tests/training/test_multihost.py",
  "tests/training/test_train.py",
  "tests/experiments/test_gpu_run.py",
  "tests/experiments/test_evaluate_heavy_cell.py",
  "tests/test_pretrained_equivariant.py",
)


def pytest_collection_modifyitems(config, items):
  """Moves the tests of _LONGEST_MODULES to the front, in that order; the rest keep theirs."""
  root = str(config.rootpath)

  def rank(item) -> int:
    path = os.path.relpath(str(item.path), root)
    return _LONGEST_MODULES.index(path) if path in _LONGEST_MODULES else len(_LONGEST_MODULES)

  items.sort(key=rank)  # Stable: within a module, and among the other modules, nothing moves.
