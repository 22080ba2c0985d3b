"""Outputs of the shipped models on fixed problems, saved to an npz (run in two checkouts)."""

import sys
import warnings

import jax
import numpy as np

import kdeformer

warnings.simplefilter("ignore")
out = {}
rng = np.random.default_rng(0)
for name in ("general", "gmm"):
  est = kdeformer.load_pretrained(name)
  x = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 3))
  q = rng.normal(size=(70, 3))
  w = rng.uniform(size=300)
  r = est(x, q)
  out[f"{name}_plain"] = np.asarray(r.log_density)
  out[f"{name}_plain_s"] = np.asarray(r.score)
  r = est(x, q, weights=w)
  out[f"{name}_w"] = np.asarray(r.log_density)
  r = est(np.stack([x, x[::-1] * 2]), np.stack([q, q]))
  out[f"{name}_batch"] = np.asarray(r.score)
  r = est(x[:, :1], q[:, :1], normalize=True, key=jax.random.key(1))
  out[f"{name}_norm"] = np.asarray(r.log_density)
  r = est(x, q, ttt_steps=2, rotations=2, key=jax.random.key(2))
  out[f"{name}_ttt_rot"] = np.asarray(r.log_density)
  out[f"{name}_sample"] = np.asarray(est.sample(x, 20, key=jax.random.key(3), num_steps=6).points)
  f = est.fit(x)
  out[f"{name}_fit"] = np.asarray(f(q).log_density)
  out[f"{name}_bounds"] = np.asarray(
    est(np.abs(x) + 0.01, np.abs(q) + 0.01, bounds=(0, np.inf)).log_density
  )
  if name == "general":
    big = rng.normal(size=(5000, 2))
    out["general_big"] = np.asarray(est(big, big[:50]).log_density)
# The equivariant network and the default (its hand-offs): d = 1, 2 and 16, fit and weights.
for name in ("equivariant", None):
  est = kdeformer.load_pretrained(name)
  for d, n in ((1, 300), (2, 500), (16, 512)):
    x = rng.standard_t(4, size=(n, d)) @ rng.normal(size=(d, d)) + 3.0
    q = x[:64] + 0.1
    tag = f"{name or 'default'}_{d}"
    r = est(x, q, weights=rng.uniform(0.2, 2.0, n))
    out[f"{tag}_w"], out[f"{tag}_w_s"] = np.asarray(r.log_density), np.asarray(r.score)
    out[f"{tag}_fit"] = np.asarray(est.fit(x)(q, normalize=True, key=jax.random.key(4)).log_density)
np.savez(sys.argv[1], **out)
print("saved", len(out))
