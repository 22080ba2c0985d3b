"""The CPU cost of an estimator call at a new (n, m) inside an already compiled bucket.

Run in two checkouts (PYTHONPATH=checkout), or under farm-bench for the whole process:
20 calls of the general network at n = 300-319, m = 50-69 after one call at (299, 49).
"""

import time
import warnings

import numpy as np

import kdeformer

warnings.filterwarnings("ignore")
est = kdeformer.load_pretrained("general")
rng = np.random.default_rng(0)
est(rng.normal(size=(299, 2)), rng.normal(size=(49, 2)))  # Compiles the bucket's programs.
start = time.process_time()
for i in range(20):
  est(rng.normal(size=(300 + i, 2)), rng.normal(size=(50 + i, 2)))
print(f"{(time.process_time() - start) / 20 * 1000:.1f} ms CPU per call at a new (n, m)")
