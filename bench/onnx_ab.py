"""Side-by-side speed of ONNX generator files, run the way the CPU Sampler runs them.

    .venv/bin/python bench/onnx_ab.py A.onnx B.onnx [...] [--grid 3x5] [--rounds 15] [--batch 32]

Each file gets one single-threaded onnxruntime session shared by one thread per core, each thread running
micro-batches of 4 latents (runtime.sampler's CPU scheme). Rounds alternate between the files, so the machine's
drift and its neighbours' noise fall on all of them alike; medians over rounds, with min-max, and each file's
median against the first file's. Compare files of the same scene and size (for example one exported before a
change to the graph and one after); latents are random, weights do not change the speed.
"""

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort

RUN = 4   # runtime.sampler.MICRO_BATCH["cpu"]


def session(path: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--grid", default="3x5", help="latent grid, rows x columns (192x320 reference entries: 3x5)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=32, help="samples per round and file")
    a = ap.parse_args()
    gh, gw = map(int, a.grid.split("x"))
    sessions = [session(f) for f in a.files]
    noise_dim = sessions[0].get_inputs()[0].shape[1]
    z = np.random.default_rng(0).standard_normal((a.batch, noise_dim, gh, gw)).astype(np.float32)
    runs = [z[i:i + RUN] for i in range(0, a.batch, RUN)]
    lanes = os.cpu_count() or 1
    pool = ThreadPoolExecutor(lanes)
    for s in sessions:   # warm-up: onnxruntime plans its buffers on the first runs
        list(pool.map(lambda r, s=s: s.run(None, {"z": r}), runs))
    rates = [[] for _ in sessions]
    for _ in range(a.rounds):
        for k, s in enumerate(sessions):
            t = time.perf_counter()
            list(pool.map(lambda r, s=s: s.run(None, {"z": r}), runs))
            rates[k].append(a.batch / (time.perf_counter() - t))
    base = float(np.median(rates[0]))
    print(f"{lanes} lanes x 1 thread, micro-batches of {RUN}, {a.batch} samples per round, {a.rounds} rounds, "
          f"grid {gh}x{gw}")
    for f, r in zip(a.files, rates):
        m = float(np.median(r))
        print(f"  {f:60s} {m:7.2f} samples/s  ({min(r):.2f}-{max(r):.2f})  {m / base:5.2f}x")


if __name__ == "__main__":
    main()
