"""Golden draws of NumPy's legacy global RandomState (np.random.seed(int) + rand/randn/normal/uniform).

Writes tests/fixtures/numpy_rng.safetensors with float64 arrays (exact bits). Run offline:
    python3 tools/golden/numpy_rng.py
Each array is one scenario; the Rust test replays the same call sequence on dkp::method::rng::NumpyRng.
"""
import os
import numpy as np
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "numpy_rng.safetensors")

t = {}
# 700 doubles = 1400 MT outputs: crosses two state refills (every 624 outputs)
np.random.seed(1)
t["seed1_rand700"] = np.random.rand(700)
# an odd count of normals leaves one value in the Gaussian cache
np.random.seed(0)
t["seed0_randn11"] = np.random.randn(11)
# mixed sequence; the Rust test performs the same calls in the same order
np.random.seed(12345)
seq = [np.random.rand(), np.random.randn(), np.random.rand(), np.random.randn(),
       np.random.uniform(-2.0, 3.0)]
seq += list(np.random.normal(0.5, 2.0, 5))
seq += [np.random.uniform(0.0, 0.0)]
seq += list(np.random.normal(0.0, 0.0, 3))   # consumed even with scale 0
seq += [np.random.rand()]
t["seed12345_mixed"] = np.array(seq, dtype=np.float64)
# largest 32-bit seed
np.random.seed(4294967295)
t["seedmax_rand5_randn5"] = np.concatenate([np.random.rand(5), np.random.randn(5)])
# re-seeding clears the Gaussian cache
np.random.seed(7)
np.random.randn()
np.random.seed(7)
t["seed7_reseed_randn3"] = np.random.randn(3)

save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in t.items()}, OUT,
          metadata={"numpy": np.__version__})
print("wrote", OUT)
