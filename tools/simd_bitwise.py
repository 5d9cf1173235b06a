"""Bitwise comparison of the CPU kernels between two builds (e.g. the portable, dispatching build with
RELUFLOW_SIMD=avx2 against a RELUFLOW_NATIVE=ON build on an AVX2 host).

    PYTHONPATH=<build A's python dir> RELUFLOW_SIMD=avx2 python tools/simd_bitwise.py dump a.npz
    PYTHONPATH=<build B's python dir> python tools/simd_bitwise.py dump b.npz
    python tools/simd_bitwise.py compare a.npz b.npz

`dump` runs risk_and_grad and realization of the compiled kernels on fixed problems (shallow and deep
kernels, float32 and float64) and saves every array with the SIMD path that ran; `compare` says which
arrays differ in any bit (exit status 1 if one does).
"""
import sys

import numpy as np

PROBLEMS = {  # name: (widths, K, N)
    "shallow_d2_H2048": ([2, 2048, 1], 2, 4096),
    "shallow_d1_H64": ([1, 64, 1], 3, 3001),
    "shallow_d3_H37_o2": ([3, 37, 2], 2, 1031),
    "deep_2_33_19_1": ([2, 33, 19, 1], 2, 2049),
    "deep_9_21_2": ([9, 21, 2], 2, 1031),
}


def dump(path):
    from reluflow import _core as core

    out = {"simd_path": np.array(core.simd_path())}
    for name, (widths, K, N) in PROBLEMS.items():
        rng = np.random.default_rng(sum(widths))
        P = sum(widths[i + 1] * (widths[i] + 1) for i in range(len(widths) - 1))
        theta64 = rng.normal(size=(K, P))
        x = rng.uniform(-1.0, 1.0, size=(N, widths[0]))
        w = rng.uniform(0.0, 1.0, size=N) / N
        y = rng.normal(size=(N, widths[-1]))
        for dt in (np.float32, np.float64):
            theta = theta64.astype(dt)
            r, g = core.risk_and_grad(widths, theta, x, w, y, True, "auto", 0)
            key = f"{name}_{np.dtype(dt).name}"
            out[key + "_risk"], out[key + "_grad"] = r, g
            out[key + "_out"] = core.realization(widths, theta, x, "auto")
    np.savez(path, **out)
    print(f"{path}: SIMD path {core.simd_path()}, {len(out) - 1} arrays")


def compare(a_path, b_path):
    a, b = np.load(a_path), np.load(b_path)
    print(f"{a_path}: {a['simd_path']}   {b_path}: {b['simd_path']}")
    bad = 0
    for k in a.files:
        if k == "simd_path":
            continue
        same = a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        bad += not same
        if not same:
            print(f"  DIFFERENT {k}: max |a-b| = {np.max(np.abs(a[k] - b[k])):.3g}")
    print(f"{len(a.files) - 1 - bad} arrays bitwise equal, {bad} different")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "dump":
        dump(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
