"""Probes behind the default's hand-off (docs/results_default_routing_cpu.md).

PYTHONPATH=. python docs/default_routing_probe.py general_vs_gaussian   # d = 6..10
PYTHONPATH=. python docs/default_routing_probe.py one_dim                # 1-D Gaussian start
PYTHONPATH=. python docs/default_routing_probe.py gamma_seeds            # 40 seeds on Gamma(4)
"""

import dataclasses
import sys
import warnings

import ml_collections
import numpy as np

from experiments.harness import next_network as nn_h
import kdeformer
from kdeformer import metrics

warnings.filterwarnings("ignore")


def general_vs_gaussian():
  """Relative score MSE on the paper's two-component mixture, n = 1024, 512 queries, 4 seeds."""
  cfg = ml_collections.ConfigDict(
    dict(num_components=2, mean_range=3.0, min_variance=0.2, max_variance=1.0)
  )
  gen = kdeformer.load_pretrained("general")
  eq = kdeformer.load_pretrained("equivariant")
  for d in [6, 7, 8, 9, 10]:
    rows = {"general": [], "equivariant": [], "gaussian": []}
    for seed in range(4):
      rng = np.random.default_rng(1000 * d + seed)
      truth = nn_h.paper_mixture(rng, d, cfg)
      x = truth.sample(rng, 1024)
      q = truth.sample(rng, 512)
      s = truth.score(q)
      for name, f in (
        ("general", lambda x=x, q=q: np.asarray(gen(x, q).score)),
        ("equivariant", lambda x=x, q=q: np.asarray(eq(x, q).score)),
        ("gaussian", lambda x=x, q=q: nn_h.fitted_gaussian(x, q)[1]),
      ):
        rows[name].append(float(metrics.relative_score_mse(f(), s)))
    print(
      d,
      " ".join(f"{k}={np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})" for k, v in rows.items()),
      flush=True,
    )


def one_dim():
  """ISE and total variation on a 601-point grid on [-6, 6], 10 seeds: the equivariant network
  without (old) and with (new) one_dim_gaussian_start, against Scott's KDE."""
  shipped = kdeformer.load_pretrained("equivariant")
  base = kdeformer.Estimator(
    shipped.params, dataclasses.replace(shipped.model_config, one_dim_gaussian_start=False)
  )
  new = kdeformer.Estimator(
    shipped.params, dataclasses.replace(shipped.model_config, one_dim_gaussian_start=True)
  )
  grid = np.linspace(-6, 6, 601)
  for fam in ["gamma", "normal"]:
    for n in [256, 1024, 4096]:
      res = {"old": [], "new": [], "scott": []}
      tv = {"old": [], "new": []}
      for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        truth = nn_h.standard_gamma(4.0) if fam == "gamma" else nn_h.gaussian(np.eye(1))
        x = truth.sample(rng, n)
        f = np.exp(truth.log_density(grid[:, None]))
        for k, est in (("old", base), ("new", new)):
          fh = np.exp(np.asarray(est(x, grid[:, None]).log_density, np.float64))
          res[k].append(np.trapezoid((fh - f) ** 2, grid))
          tv[k].append(np.sum(np.abs(np.diff(fh))))
        sc = nn_h.scott_kde(x, grid[:, None])[0]
        res["scott"].append(np.trapezoid((np.exp(sc) - f) ** 2, grid))
      print(
        fam,
        n,
        " ".join(f"{k}={np.mean(v):.2e}" for k, v in res.items()),
        "tv",
        {k: round(float(np.mean(v)), 3) for k, v in tv.items()},
        "truthTV",
        round(float(np.sum(np.abs(np.diff(f)))), 3),
        "wins",
        int(np.sum(np.array(res["new"]) < np.array(res["scott"]))),
        flush=True,
      )


def gamma_seeds():
  """Gamma(4), standardised: ISE on [-3, 8] over 40 seeds (20 at n = 4,096), the shipped model
  against Scott's KDE and numpy Gaussian-start estimates (reach: the start's clip)."""
  import math

  from scipy import stats

  est = kdeformer.load_pretrained("equivariant")
  g = np.linspace(-3, 8, 551)
  truth = stats.gamma(4.0, loc=-2.0, scale=0.5).pdf(g)

  def hg(x, q, reach):
    m, s = x.mean(), x.std(ddof=1)
    z, zq = (x - m) / s, (q - m) / s
    h = len(x) ** -0.2
    r = h * h / (1 + h * h)
    zc = np.clip(z, -reach, reach)
    lw = 0.5 * r * zc**2
    w = np.exp(lw - lw.max())
    w /= w.sum()
    return (
      w[None] * stats.norm.pdf(zq[:, None], (z - r * zc)[None], h / math.sqrt(1 + h * h))
    ).sum(1) / s

  for n in (256, 1024, 4096):
    res = {"net": [], "scott": [], "hg_inf": [], "hg3": [], "hg4": []}
    for seed in range(40 if n < 4096 else 20):
      x = (np.random.default_rng(1000 + seed).gamma(4.0, size=(n, 1)) - 4.0) / 2.0
      ise = lambda f: np.trapezoid((f - truth) ** 2, g)
      res["net"].append(ise(np.exp(np.asarray(est(x, g[:, None]).log_density, np.float64))))
      res["scott"].append(ise(stats.gaussian_kde(x[:, 0])(g)))
      for k, reach in (("hg_inf", 1e9), ("hg3", 3.0), ("hg4", 4.0)):
        res[k].append(ise(hg(x[:, 0], g, reach)))
    wins = int(np.sum(np.array(res["net"]) < np.array(res["scott"])))
    print(
      n,
      " ".join(f"{k}={np.mean(v):.3e}" for k, v in res.items()),
      "net<scott",
      wins,
      "of",
      len(res["net"]),
      flush=True,
    )


if __name__ == "__main__":
  {"general_vs_gaussian": general_vs_gaussian, "one_dim": one_dim, "gamma_seeds": gamma_seeds}[
    sys.argv[1]
  ]()
