import os
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
import conftest  # noqa
from conftest import make_random_estimator
import jax
import numpy as np

jax.config.update("jax_enable_compilation_cache", False)
est = make_random_estimator()
rng = np.random.default_rng(0)
x = rng.normal(size=(100, 2))
y = rng.normal(size=(50, 2))
t = time.time()
est(x, y)
t1 = time.time() - t
t = time.time()
est(x, y)
t2 = time.time() - t
x = rng.normal(size=(300, 3))
y = rng.normal(size=(70, 3))
t = time.time()
est(x, y)
t3 = time.time() - t
print(f"{os.environ.get('XLA_FLAGS', '')!r}: first {t1:.2f} s, again {t2:.3f}, new shape {t3:.2f}")
