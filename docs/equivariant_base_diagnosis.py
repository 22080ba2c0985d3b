"""Diagnosis of the equivariant network's bases (docs/log/2026-12.md, "Cross-validated bases").

Each base alone (one-hot base weights) against the network: relative score MSE on the paper's
two-component mixture, a spiked Gaussian or a Student-t (nu = 3), n = 1024, 512 queries, seeds
0-2, and the base weights the network chose. Run from the repository root:

  PYTHONPATH=. python docs/equivariant_base_diagnosis.py --dims=10,32 \
      [--workdir=DIR] [--problems=mixture,spiked,student_t]
"""

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.harness import next_network
from kdeformer import checkpoints
from kdeformer import networks

_DIMS = flags.DEFINE_list("dims", ["10", "32"], "Dimensions.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (default: the shipped model).")
_PROBLEMS = flags.DEFINE_list("problems", ["mixture"], "mixture, spiked, student_t.")
NUM_SAMPLES, NUM_QUERIES = 1024, 512


def truth_for(problem, rng, dim):
  if problem == "mixture":
    prior = ml_collections.ConfigDict(
      dict(num_components=2, mean_range=3.0, min_variance=0.2, max_variance=1.0)
    )
    return next_network.paper_mixture(rng, dim, prior)
  if problem == "spiked":
    return next_network.spiked_gaussian(rng, dim, [20.0, 5.0])
  return next_network.student_t(dim, 3.0)


def main(argv):
  del argv
  workdir = _WORKDIR.value or checkpoints.pretrained_dir("equivariant")
  config = checkpoints.load_model_config(workdir)
  model = networks.build_model(config)
  params = checkpoints.restore_params(workdir, networks.init_params(config, jax.random.key(0)))
  names = (
    ["kernel", "gaussian"]
    + [f"mixture{c}" for c in config.mixture_components]
    + [f"t{nu:g}" for nu in config.tail_base_dofs]
  )
  encode = jax.jit(
    lambda s, sm, dm: model.apply({"params": params}, s, sm, dm, method=model.encode)
  )
  decode = jax.jit(
    lambda q, s, e, sm, dm: model.apply({"params": params}, q, s, e, sm, dm, method=model.decode)
  )
  for problem in _PROBLEMS.value:
    for dim in (int(d) for d in _DIMS.value):
      for seed in range(3):
        rng = np.random.default_rng(seed)
        truth = truth_for(problem, rng, dim)
        samples, queries = truth.sample(rng, NUM_SAMPLES), truth.sample(rng, NUM_QUERIES)
        mean = samples.mean(0)
        whitening = np.linalg.inv(np.linalg.cholesky(np.cov(samples, rowvar=False)))
        white_samples = jnp.asarray(((samples - mean) @ whitening.T)[None], jnp.float32)
        white_queries = jnp.asarray(((queries - mean) @ whitening.T)[None], jnp.float32)
        sample_mask, dim_mask = jnp.ones((1, NUM_SAMPLES), bool), jnp.ones((1, dim), bool)
        encoded = encode(white_samples, sample_mask, dim_mask)
        true_score = truth.score(queries)
        scale = np.mean(np.sum(true_score**2, -1))

        def error(
          encoded_problem,
          white_samples=white_samples,
          white_queries=white_queries,
          sample_mask=sample_mask,
          dim_mask=dim_mask,
          whitening=whitening,
          true_score=true_score,
          scale=scale,
        ):
          _, score = decode(white_queries, white_samples, encoded_problem, sample_mask, dim_mask)
          score = np.asarray(score[0], np.float64) @ whitening
          return np.mean(np.sum((score - true_score) ** 2, -1)) / scale

        alone = []
        for index in range(len(names)):
          one_hot = dict(
            encoded, base_log_weights=jnp.log(jnp.eye(len(names))[index] + 1e-30)[None]
          )
          alone.append(error(one_hot))
        weights = np.exp(np.asarray(encoded["base_log_weights"][0]))
        print(
          problem,
          dim,
          seed,
          f"network {error(encoded):.3f} |",
          " ".join(f"{n}={v:.3f}" for n, v in zip(names, alone)),
          "| weights",
          " ".join(f"{w:.2f}" for w in weights),
          flush=True,
        )


if __name__ == "__main__":
  app.run(main)
