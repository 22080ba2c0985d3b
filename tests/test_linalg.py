"""Tests of kdeformer.linalg: the LAPACK-free factorisations and the programs that must avoid
LAPACK."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdeformer import distributions
from kdeformer import kde
from kdeformer import linalg


def lapack_calls(hlo_text: str) -> list[str]:
  """The LAPACK custom-call targets in a compiled program's HLO text, in order of appearance."""
  calls = []
  for line in hlo_text.splitlines():
    marker = 'custom_call_target="lapack_'
    if marker in line:
      start = line.index(marker) + len('custom_call_target="')
      calls.append(line[start : line.index('"', start)])
  return calls


def lapack_calls_in_loop_bodies(hlo_text: str) -> list[str]:
  """The LAPACK calls of a compiled program that sit in the body of a while loop (or deeper)."""
  computations, current = {}, None
  for line in hlo_text.splitlines():
    if line and not line[0].isspace() and line.rstrip().endswith("{"):
      current = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
      computations[current] = []
    elif current is not None:
      computations[current].append(line)
  called = {
    name: set(
      re.findall(
        r"(?:body|condition|to_apply|calls|branch_computations)="
        r"\{?%?([\w.\-]+)",
        "\n".join(lines),
      )
    )
    for name, lines in computations.items()
  }
  inside, frontier = set(), set(re.findall(r"body=%?([\w.\-]+)", hlo_text))
  while frontier:  # Everything a loop body calls runs inside the loop too.
    name = frontier.pop()
    if name in inside:
      continue
    inside.add(name)
    frontier |= called.get(name, set())
  return [
    call
    for name in computations
    if name in inside
    for call in lapack_calls("\n".join(computations[name]))
  ]


def spd_batch(dim, batch=6, seed=0):
  rng = np.random.default_rng([seed, dim])
  a = rng.normal(size=(batch, dim, dim))
  return a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(dim)


@pytest.mark.parametrize("dim", [1, 2, 5, 10])
def test_cholesky_matches_numpy(dim):
  matrices = spd_batch(dim)
  factor = np.asarray(linalg.cholesky(jnp.asarray(matrices, jnp.float32)))
  expected = np.linalg.cholesky(matrices)
  np.testing.assert_allclose(factor, expected, rtol=2e-4, atol=2e-5)
  assert np.all(np.triu(factor, 1) == 0)


@pytest.mark.parametrize("dim", [1, 3, 10])
def test_lower_triangular_inverse(dim):
  factor = np.linalg.cholesky(spd_batch(dim, seed=1))
  inverse = np.asarray(linalg.lower_triangular_inverse(jnp.asarray(factor, jnp.float32)))
  np.testing.assert_allclose(
    inverse @ factor, np.broadcast_to(np.eye(dim), factor.shape), atol=2e-4
  )


def test_cholesky_of_indefinite_matrix_is_nan():
  assert np.isnan(np.asarray(linalg.cholesky(jnp.asarray([[1.0, 2.0], [2.0, 1.0]])))).any()


def test_lapack_calls_parses_custom_call_targets():
  text = (
    '%a = f32[2,2]{1,0} custom-call(f32[2,2]{1,0} %x), custom_call_target="lapack_spotrf_ffi"'
    "\n%b = f32[2]{0} add(%y, %z)\n"
    '%c = custom-call(%x), custom_call_target="lapack_strsm_ffi", api_version=API_VERSION'
  )
  assert lapack_calls(text) == ["lapack_spotrf_ffi", "lapack_strsm_ffi"]


def test_lapack_calls_in_loop_bodies_finds_calls_inside_while_bodies():
  def looped(matrices):
    return jax.lax.map(jnp.linalg.cholesky, matrices)

  text = compiled_text(looped, jnp.tile(jnp.eye(3), (4, 2, 1, 1)))
  assert lapack_calls_in_loop_bodies(text) == ["lapack_spotrf_ffi"]
  text = compiled_text(jnp.linalg.cholesky, jnp.tile(jnp.eye(3), (4, 1, 1)))
  assert lapack_calls(text) == ["lapack_spotrf_ffi"]
  assert lapack_calls_in_loop_bodies(text) == []


def test_estimator_programs_call_lapack_once_outside_loops(random_estimator):
  """The whitening's eigendecomposition is the only LAPACK call: once, before every loop."""
  est = random_estimator
  samples = jnp.asarray(np.random.default_rng(0).normal(size=(3, 64, 2)), jnp.float32)
  queries, mask = samples[:, :16], jnp.ones((3, 64), bool)
  variants = {
    "plain": {},
    "rotations": {"rotations": jnp.stack([jnp.eye(2)] * 2)},
    "ttt": {"ttt_steps": jnp.int32(2), "ttt_learning_rate": jnp.float32(1e-5)},
  }
  for name, options in variants.items():
    text = (
      est._predict.lower(est.params, samples, queries, mask, query_chunk_size=8, **options)
      .compile()
      .as_text()
    )
    assert lapack_calls(text) == ["lapack_ssyevd_ffi"], name
    assert lapack_calls_in_loop_bodies(text) == [], name


def compiled_text(fn, *args) -> str:
  return jax.jit(fn).lower(*args).compile().as_text()


def test_batched_kde_baselines_compile_without_lapack():
  """The program shape that hung the evaluation: vmapped KDE query loops, oracle loops included."""
  samples = jnp.asarray(np.random.default_rng(0).normal(size=(3, 64, 5)), jnp.float32)
  queries = samples[:, :16]
  true_score = -queries

  def baselines(samples, queries, true_score):
    def one(s, q, t):
      scott = kde.gaussian_kde(s, q, "scott", query_chunk_size=8)
      oracle, _ = kde.oracle_kde(s, q, true_score=t, criterion="score", query_chunk_size=8)
      sd = kde.sd_kde(s, q, score_fn=None, query_chunk_size=8)
      return scott.score + oracle.score + sd.score

    return jax.vmap(one)(samples, queries, true_score)

  assert lapack_calls(compiled_text(baselines, samples, queries, true_score)) == []


def test_batched_truths_compile_without_lapack():
  student = distributions.student_t(3)
  batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (4,) + jnp.shape(x)), student)
  points = jnp.ones((4, 8, 3))
  fn = jax.vmap(lambda dist, p: dist.log_prob_and_score(p))
  assert lapack_calls(compiled_text(fn, batched, points)) == []
  mixture = functools.partial(distributions.gaussian_mixture, [0.5, 0.5], jnp.zeros((2, 3)))
  assert lapack_calls(compiled_text(mixture, jnp.tile(jnp.eye(3), (2, 1, 1)))) == []


@pytest.mark.parametrize("dim", [1, 3, 10])
def test_orthonormal_columns_is_the_qr_factor_with_positive_diagonal(dim):
  matrices = np.random.default_rng(dim).normal(size=(5, dim, dim)).astype(np.float32)
  q = np.asarray(linalg.orthonormal_columns(jnp.asarray(matrices)), np.float64)
  expected, r = np.linalg.qr(matrices.astype(np.float64))
  expected = expected * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
  np.testing.assert_allclose(q, expected, atol=2e-5)
  np.testing.assert_allclose(
    np.swapaxes(q, -1, -2) @ q, np.broadcast_to(np.eye(dim), q.shape), atol=2e-6
  )


# The training batches' one LAPACK call (the whitening's eigendecomposition) is checked in
# tests/training/test_data.py, on the broad-prior samplers that file compiles anyway.
