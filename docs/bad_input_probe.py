"""Every public entry point with wrong arguments: what each says (docs/bad_input_probe_cpu.md)."""

import warnings

import jax
import numpy as np

warnings.simplefilter("ignore")
import kdeformer
from kdeformer import functionals
from kdeformer import kde
from kdeformer import log_normalizer as ln
from kdeformer.sklearn import GaussianKDEDensity
from kdeformer.sklearn import KDEFormerDensity

est = kdeformer.load_pretrained()
rng = np.random.default_rng(0)
X = rng.normal(size=(200, 2))
Q = rng.normal(size=(5, 2))


def run(name, f):
  try:
    out = f()
    vals = [
      np.asarray(v)
      for v in (out if isinstance(out, tuple) else (out,))
      if hasattr(v, "shape") or isinstance(v, (float, int))
    ]
    bad = any(not np.all(np.isfinite(v)) for v in vals if v.dtype.kind == "f")
    print(f"{name:45s} OK{' NONFINITE' if bad else ''}")
  except Exception as e:
    print(f"{name:45s} {type(e).__name__}: {str(e)[:150]}")


run("weights all zero", lambda: est(X, Q, weights=np.zeros(200)).log_density)
run("weights negative", lambda: est(X, Q, weights=-np.ones(200)).log_density)
run("weights nan", lambda: est(X, Q, weights=np.full(200, np.nan)).log_density)
run("weights wrong len", lambda: est(X, Q, weights=np.ones(199)).log_density)
run("weights one nonzero", lambda: est(X, Q, weights=np.r_[1.0, np.zeros(199)]).log_density)
run("weights two nonzero", lambda: est(X, Q, weights=np.r_[1.0, 1.0, np.zeros(198)]).log_density)
run("queries 3 cols", lambda: est(X, rng.normal(size=(5, 3))).log_density)
run("queries 0 rows", lambda: est(X, np.zeros((0, 2))).log_density)
run("samples 1 row", lambda: est(X[:1], Q).log_density)
run("samples 2 rows d=2", lambda: est(X[:2], Q).log_density)
run("samples 3 rows d=2", lambda: est(X[:3], Q).log_density)
run("samples duplicate rows", lambda: est(np.repeat(X[:10], 20, axis=0), Q).log_density)
run("samples int dtype", lambda: est(np.round(X * 10).astype(int), Q).log_density)
run("samples object", lambda: est([[1, "a"], [2, 3]], Q).log_density)
run("samples 1d vector", lambda: est(X[:, 0], Q[:, 0]).log_density)
run("d=11", lambda: est(rng.normal(size=(200, 11)), rng.normal(size=(3, 11))).log_density)
run("queries inf", lambda: est(X, np.array([[np.inf, 0.0]])).log_density)
run("queries far 1e6", lambda: est(X, np.array([[1e6, 0.0]])).log_density)
run("queries far 1e30", lambda: est(X, np.array([[1e30, 0.0]])).log_density)
run("samples huge 1e30 scale", lambda: est(X * 1e30, Q * 1e30).log_density)
run("samples tiny 1e-30 scale", lambda: est(X * 1e-30, Q * 1e-30).log_density)
run("samples 1e300 scale", lambda: est(X * 1e300, Q * 1e300).log_density)
run("bounds lower > upper", lambda: est(np.abs(X), Q, bounds=(1.0, 0.0)).log_density)
run("bounds samples outside", lambda: est(X, Q, bounds=(0.0, np.inf)).log_density)
run("bounds nan", lambda: est(np.abs(X), np.abs(Q), bounds=(np.nan, np.inf)).log_density)
run("bounds query outside", lambda: est(np.abs(X), Q, bounds=(0.0, np.inf)).log_density)
run("normalize no key", lambda: est(X, Q, normalize=True).log_density)
run("ttt_steps -1", lambda: est(X, Q, ttt_steps=-1).log_density)
run("rotations 0", lambda: est(X, Q, rotations=0).log_density)
run("sample n=0", lambda: est.sample(X, 0, key=jax.random.key(0)).points)
run("sample n=-1", lambda: est.sample(X, -1, key=jax.random.key(0)).points)
run("sample step_size -1", lambda: est.sample(X, 4, key=jax.random.key(0), step_size=-1.0).points)
run("sample key int", lambda: est.sample(X, 4, key=0).points)
run("kde bandwidth nan", lambda: kde.gaussian_kde(X, Q, float("nan")).log_density)
run("kde bandwidth 'foo'", lambda: kde.gaussian_kde(X, Q, "foo").log_density)
run("kde weights all zero", lambda: kde.gaussian_kde(X, Q, weights=np.zeros(200)).log_density)
run(
  "sd_kde score_fn nan",
  lambda: kde.sd_kde(X, Q, score_fn=lambda x: np.full(np.shape(x), np.nan)).log_density,
)
run(
  "sd_kde score_fn wrong shape",
  lambda: kde.sd_kde(X, Q, score_fn=lambda x: np.zeros(3)).log_density,
)
run(
  "oracle truth wrong shape",
  lambda: kde.oracle_kde(X, Q, true_score=np.zeros((4, 2)))[0].log_density,
)
run(
  "oracle truth nan",
  lambda: kde.oracle_kde(X, Q, true_score=np.full((5, 2), np.nan))[0].log_density,
)
run(
  "log_normalizer fn nan",
  lambda: ln.log_normalizer(lambda p: np.full(len(p), np.nan), X, jax.random.key(0), 64).log_z,
)
run(
  "log_normalizer fn -inf",
  lambda: ln.log_normalizer(lambda p: np.full(len(p), -np.inf), X, jax.random.key(0), 64).log_z,
)
run(
  "functionals folds 1",
  lambda: functionals.plug_in_functionals(kde.gaussian_kde, X, jax.random.key(0), 1).entropy,
)
run(
  "functionals folds 300",
  lambda: functionals.plug_in_functionals(kde.gaussian_kde, X, jax.random.key(0), 300).entropy,
)
run("sklearn fit nan", lambda: KDEFormerDensity().fit(np.r_[X, [[np.nan, 0]]]))
run(
  "sklearn score_samples wrong d",
  lambda: KDEFormerDensity(normalize=False).fit(X).score_samples(np.zeros((3, 3))),
)
run("sklearn GaussianKDE fit 1 row", lambda: GaussianKDEDensity().fit(X[:1]))
run("load_pretrained bad", lambda: kdeformer.load_pretrained("foo"))
run("load none dir", lambda: kdeformer.load("/nonexistent"))
