"""Tests of the evaluation suite (experiments.harness.evaluation, .equivariance, .figures)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import evaluate_tiny
from experiments.configs import tiny
from experiments.harness import equivariance
from kdeformer import estimator as estimator_lib
from experiments.harness import evaluation
from experiments.harness import figures
from kdeformer import kde
from kdeformer.training import train
from kdeformer.estimate import Estimate

FIGURES = ("error_vs_n_score.png", "error_vs_n_log_density.png", "score_field_2d.png",
           "density_1d.png")


def random_estimator(perturb: float = 0.0) -> estimator_lib.Estimator:
  """The tiny model, randomly initialised; `perturb` adds noise so the zero-init heads are live."""
  config = tiny.get_config()
  params = train.init_params(config, jax.random.key(0))
  if perturb:  # numpy noise: no per-shape compilation.
    rng = np.random.default_rng(1)
    params = jax.tree.map(
        lambda x: (np.asarray(x) + perturb * rng.standard_normal(x.shape)).astype(np.float32),
        params)
  return estimator_lib.Estimator(params, config)


def batched_kde(covariance_fn):
  """A batched estimator from a KDE with kernel covariance covariance_fn(samples)."""
  def one(samples, queries):
    return kde.kde_with_covariance(samples, queries, covariance_fn(samples))
  batched = jax.jit(jax.vmap(one))
  return lambda samples, queries: batched(jnp.asarray(samples, jnp.float32),
                                          jnp.asarray(queries, jnp.float32))


SCOTT_KDE = batched_kde(lambda x: kde.sample_covariance(x) * kde.scott_factor(*x.shape)**2)
FIXED_BANDWIDTH_KDE = batched_kde(lambda x: 0.3 * jnp.eye(x.shape[1]))


def gaussian_problems(num: int = 4, n: int = 128, m: int = 32, d: int = 2):
  key_samples, key_queries, key_mix = jax.random.split(jax.random.key(7), 3)
  mix = jax.random.normal(key_mix, (num, d, d)) + 2 * jnp.eye(d)
  samples = jnp.einsum("bni,bij->bnj", jax.random.normal(key_samples, (num, n, d)), mix)
  queries = jnp.einsum("bni,bij->bnj", jax.random.normal(key_queries, (num, m, d)), mix)
  return samples, queries


@pytest.fixture(scope="module")
def estimator():
  """One random estimator for the module: its compiled programs are shared by the tests."""
  return random_estimator(perturb=0.1)


@pytest.fixture(scope="module")
def tiny_run(estimator, tmp_path_factory):
  """One tiny end-to-end run (compilation dominates its cost), checked by several tests."""
  config = evaluate_tiny.get_config()
  output_dir = str(tmp_path_factory.mktemp("evaluate_tiny"))
  results = evaluation.evaluate(estimator, config, output_dir, config_name="evaluate_tiny")
  return config, output_dir, results


def test_writes_results_and_figures(tiny_run):
  _, output_dir, results = tiny_run
  for name in ("results.json", "results.md") + FIGURES:
    path = os.path.join(output_dir, name)
    assert os.path.isfile(path), name
    assert os.path.getsize(path) > 100, name
  assert sorted(results["figures"]) == sorted(FIGURES)
  with open(os.path.join(output_dir, "score_field_2d.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_benchmark_rows(tiny_run):
  config, output_dir, _ = tiny_run
  with open(os.path.join(output_dir, "results.json")) as f:
    results = json.load(f)
  bench = config.benchmark
  rows = results["benchmark"]["rows"]
  assert [(r["dim"], r["n"]) for r in rows] == [(d, n) for d in bench.dims
                                                for n in bench.sample_sizes]
  for row in rows:
    assert row["num_problems"] == bench.mixtures_per_cell
    assert list(row["metrics"]) == list(evaluation.METHODS)
    for method, values in row["metrics"].items():
      for metric in ("relative_score_mse", "score_mse", "log_density_mse"):
        assert np.isfinite(values[metric]) and values[metric] > 0, (method, metric)
      assert values["mise"] > 0.0  # Every tiny cell has d <= 2, so a grid.
    ratio = (row["metrics"]["model"]["relative_score_mse"]
             / row["metrics"]["kde_scott"]["relative_score_mse"])
    assert row["model_over_scott"]["relative_score_mse"] == pytest.approx(ratio)
    assert set(row["oracle_factor"]) == {"score", "log_density", "mise"}
    assert all(0.02 <= factor <= 2.0 for factor in row["oracle_factor"].values())
    # The oracle's factor grid brackets Scott's: chosen per metric by that metric's error, it is
    # never much worse than Scott on it.
    for metric in ("score_mse", "log_density_mse", "mise"):
      assert (row["metrics"]["kde_oracle"][metric]
              < 1.05 * row["metrics"]["kde_scott"][metric]), metric
  geo = results["benchmark"]["summary"]["relative_score_mse"]["geometric_mean_model_over_scott"]
  ratios = [r["model_over_scott"]["relative_score_mse"] for r in rows]
  assert geo == pytest.approx(float(np.exp(np.mean(np.log(ratios)))))
  assert [c["passed"] for c in results["checks"]][:3] == [False, False, False]  # Untrained.


def test_out_of_family_and_equivariance_rows(tiny_run):
  config, _, results = tiny_run
  oof = config.out_of_family
  rows = results["out_of_family"]["rows"]
  assert [(r["family"], r["n"]) for r in rows] == [(name, n) for name in oof.distributions
                                                   for n in oof.sample_sizes]
  assert all(r["dim"] == 2 and r["num_problems"] == oof.repeats for r in rows)
  eq = results["equivariance"]["rows"]
  assert [r["transform"] for r in eq] == (list(equivariance.TRANSFORMS)
                                          * len(config.equivariance.dims))
  for row in eq:
    assert 0.0 <= row["log_density_mean"] <= row["log_density_max"] < 1.0, row
    assert 0.0 <= row["score_mean"] <= row["score_max"] < 1.0, row


def test_markdown_tables(tiny_run):
  config, output_dir, _ = tiny_run
  with open(os.path.join(output_dir, "results.md")) as f:
    text = f.read()
  header = "| d | n | " + " | ".join(evaluation.METHOD_LABELS[m] for m in evaluation.METHODS)
  assert header + " | model / Scott |" in text
  assert text.count(header) == 4  # One table per metric; MISE too since every d <= 2.
  bench = config.benchmark
  for d in bench.dims:
    for n in bench.sample_sizes:
      assert text.count(f"\n| {d} | {n} | ") == 4
  for title in ("Standard benchmark", "Out of family", "Equivariance", "Figures",
                "criterion='score'", "Geometric mean", "| laplace | 64 |", "| student_t | 64 |"):
    assert title in text
  for name in FIGURES:
    assert f"![{name}]({name})" in text


def test_error_sums_pool_over_problems():
  sums = evaluation.ErrorSums()
  true_score = np.array([[[1.0, 0.0]], [[0.0, 3.0]]])  # Two problems, one query each.
  estimated = np.array([[[0.0, 0.0]], [[0.0, 2.0]]])
  problems = evaluation.Problems(
      samples=np.zeros((2, 4, 2)), queries=np.zeros((2, 1, 2)),
      true_log_density=np.array([[0.0], [1.0]]), true_score=true_score,
      true_sample_score=np.zeros((2, 4, 2)), true_grid_log_density=np.zeros((2, 0)),
      true_grid_score=np.zeros((2, 0, 2)))
  output = evaluation.MethodOutput(np.array([[1.0], [1.0]]), estimated, np.zeros((2, 0)),
                                   np.zeros((2, 0, 2)))
  sums.add(output, problems, 0.0)
  result = sums.result()
  # Pooled: (1 + 1) / (1 + 9), not the mean of per-problem ratios (1 + 1/9) / 2.
  assert result["relative_score_mse"] == pytest.approx(0.2)
  assert result["score_mse"] == pytest.approx(1.0)
  assert result["log_density_mse"] == pytest.approx(0.5)
  assert result["mise"] is None


def test_padded_mixture_problems_match_their_dimension():
  config = evaluate_tiny.get_config()
  config.grid.points_2d = 41
  grid, _ = evaluation.evaluation_grid(2, config)
  keys = jax.random.split(jax.random.key(0), 2)
  # Padded to 5 coordinates, sliced back to 2.
  problems, modes = evaluation.draw_mixture_problems(
      keys, 2, grid, prior=evaluation.mixture_prior(config), max_dim=5, num_samples=64,
      num_queries=16)
  assert problems.samples.shape == (2, 64, 2)
  assert np.all(np.std(problems.samples, axis=1) > 0.1)
  assert problems.true_grid_score.shape == (2, grid.shape[0], 2)
  assert np.all((modes >= config.prior.min_modes) & (modes <= config.prior.max_modes))
  # The grid truth is a normalised 2-D density: it integrates to about one on [-6, 6]^2 (the
  # prior's means lie in [-3, 3], so little mass leaves the box).
  spacing = (2 * config.grid.limit / (config.grid.points_2d - 1))**2
  mass = np.exp(problems.true_grid_log_density).sum(axis=1) * spacing
  np.testing.assert_allclose(mass, 1.0, atol=0.15)
  # Scores are the gradient of the log-density (finite differences along the grid's axis 0).
  log_density = problems.true_grid_log_density[0].reshape(config.grid.points_2d, -1)
  step = 2 * config.grid.limit / (config.grid.points_2d - 1)
  finite_difference = (log_density[2:, 20] - log_density[:-2, 20]) / (2 * step)
  score = problems.true_grid_score[0, :, 0].reshape(config.grid.points_2d, -1)[1:-1, 20]
  assert np.median(np.abs(finite_difference - score)) < 0.2 * np.median(np.abs(score))


def test_figures_validate_cells():
  config = evaluate_tiny.get_config()
  config.figures.field_num_samples = 100
  with pytest.raises(ValueError, match="benchmark cell"):
    evaluation.figure_cells(config)


def test_fitted_slope():
  sizes = np.array([256, 1024, 4096])
  assert figures.fitted_slope(sizes, 3.0 * sizes**-0.5) == pytest.approx(-0.5)
  assert np.isnan(figures.fitted_slope(sizes, [1.0, np.nan, np.nan]))


def test_affine_equivariant_kde_has_zero_errors():
  samples, queries = gaussian_problems()
  errors = equivariance.transform_errors(SCOTT_KDE, samples, queries,
                                         np.random.default_rng(0))
  assert list(errors) == list(equivariance.TRANSFORMS)
  for kind, per_output in errors.items():
    for output, values in per_output.items():
      assert values.shape == (4,)
      assert values.max(), 1e-8 < (kind, output)


def test_fixed_bandwidth_kde_breaks_scaling_only():
  samples, queries = gaussian_problems()
  errors = equivariance.transform_errors(FIXED_BANDWIDTH_KDE, samples, queries,
                                         np.random.default_rng(0))
  for kind in ("permutation", "translation", "rotation"):  # An isotropic kernel keeps these.
    assert errors[kind]["score"].max() < 1e-8, kind
  for kind in ("isotropic_scaling", "anisotropic_scaling", "affine"):
    assert errors[kind]["score"].min() > 1e-3, kind
    assert errors[kind]["log_density"].min() > 1e-4, kind


def test_random_model_is_exactly_equivariant_except_rotation(estimator):
  # The shapes of evaluate_tiny's equivariance table, so the compiled model is reused.
  samples, queries = gaussian_problems(num=2, n=32, m=8)
  errors = equivariance.transform_errors(estimator, samples, queries, np.random.default_rng(1))
  for kind in ("permutation", "translation", "isotropic_scaling"):
    for output in ("log_density", "score"):
      assert errors[kind][output].max() < 1e-8, (kind, output)
  # Whitening leaves an orthogonal transform that the network only approximately respects.
  for kind in ("rotation", "affine"):
    for output in ("log_density", "score"):
      assert np.all(np.isfinite(errors[kind][output]))
      assert errors[kind][output].max() > 1e-8, (kind, output)


@pytest.mark.parametrize("kind", equivariance.TRANSFORMS)
def test_transforms_are_what_they_say(kind):
  rng = np.random.default_rng(3)
  t = equivariance.random_transforms(rng, kind, num=5, dim=3, num_samples=10, min_scale=0.1,
                                     max_scale=10.0, max_shift=5.0)
  assert t.matrix.shape == (5, 3, 3)
  moved = kind in ("translation", "affine")
  assert bool(np.any(t.shift != 0)) == moved
  assert bool(np.any(t.permutation != np.arange(10))) == (kind == "permutation")
  gram = np.einsum("bji,bjk->bik", t.matrix, t.matrix)
  if kind in ("permutation", "translation", "rotation"):
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(3), gram.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(t.matrix), 1.0, atol=1e-12)
  else:
    assert not np.allclose(gram, np.eye(3))


def test_expected_outputs_follow_the_change_of_variables():
  # A standard normal in d = 2 mapped by A: the truth is N(mu, A^T A) in row convention.
  matrix = np.array([[[2.0, 0.5], [0.0, 1.0]]])
  shift = np.array([[1.0, -2.0]])
  transform = equivariance.Transform(matrix, shift, np.arange(4)[None])
  y = np.array([[[0.3, -0.7], [1.0, 2.0]]])
  original = Estimate(-0.5 * np.sum(y**2, -1) - np.log(2 * np.pi), -y)
  expected = equivariance.expected_outputs(original, transform)
  y_new = y @ matrix[0] + shift
  covariance = matrix[0].T @ matrix[0]
  diff = y_new[0] - shift[0]
  precision = np.linalg.inv(covariance)
  log_density = (-0.5 * np.einsum("mi,ij,mj->m", diff, precision, diff) - np.log(2 * np.pi)
                 - 0.5 * np.log(np.linalg.det(covariance)))
  np.testing.assert_allclose(expected.log_density[0], log_density, rtol=1e-12)
  np.testing.assert_allclose(expected.score[0], -diff @ precision, rtol=1e-12)


