"""Export time, and images/s at 192x320 (reference widths, 3 classes) for the fp32 and int8 ONNX in
onnxruntime vs the PyTorch model in eager mode (inference mode, channels_last, best batch size).

Each backend runs in its own process, alternating over --rounds; medians are printed side by side.
The model is freshly initialised (speed does not depend on the weights; int8 quality numbers of an untrained
model mean little, so only speed is reported here; exports of trained runs record their own quality).

    .venv/bin/python bench/export.py [--size 192x320] [--rounds 2] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCHES = (1, 4, 8)


def build(size: str, folder: Path) -> dict:
    import torch

    from export.onnx_export import export_onnx, grid_bounds
    from export.quantize import grid_feed, int8_variant
    from trainer.config import auto_config
    from zoo.sizes import parse_hw
    from trainer.generator import Generator, refresh_spectral_norms

    torch.manual_seed(0)
    G = Generator(auto_config(*parse_hw(size), num_classes=3)).eval()
    refresh_spectral_norms(G)  # a fresh model's u, v are random: give it the exact ones, as training would
    from safetensors.torch import save_file
    save_file(G.state_dict(), str(folder / "G.safetensors"))
    t0 = time.perf_counter()
    export_onnx(G, folder / "fp32.onnx")
    t_fp32 = time.perf_counter() - t0
    t0 = time.perf_counter()
    data, _ = int8_variant((folder / "fp32.onnx").read_bytes(), grid_feed(64, (G.cfg.grid_h, G.cfg.grid_w)),
                           "int8", has_masks=False)
    (folder / "int8.onnx").write_bytes(data)
    return {"export_fp32_s": t_fp32, "quantize_int8_s": time.perf_counter() - t0, "grid_bounds": grid_bounds(G)}


def worker(backend: str, size: str, folder: Path, reps: int) -> dict:
    import numpy as np

    from trainer.config import auto_config
    from zoo.sizes import parse_hw

    cfg = auto_config(*parse_hw(size), num_classes=3)
    rng = np.random.default_rng(0)
    from export.onnx_export import cpu_session, latents

    result = {}
    if backend == "torch":
        import torch
        from safetensors.torch import load_file

        from export.graph import SamplerGraph, fold_spectral_norm
        from trainer.generator import Generator
        G = Generator(cfg)
        G.load_state_dict(load_file(str(folder / "G.safetensors")))
        graph = SamplerGraph(fold_spectral_norm(G)).eval().to(memory_format=torch.channels_last)

        def run(z):
            with torch.inference_mode():
                graph(torch.from_numpy(z))
    else:
        sess = cpu_session(str(folder / f"{backend}.onnx"))

        def run(z):
            sess.run(None, {"z": z})
    for b in BATCHES:
        z = latents(rng, b, 64, (cfg.grid_h, cfg.grid_w))
        run(z)  # warm-up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            run(z)
            times.append(time.perf_counter() - t0)
        result[b] = b / statistics.median(times)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="192x320")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--worker")
    ap.add_argument("--folder")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.size, Path(a.folder), a.reps)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        info = build(a.size, folder)
        print(f"export {a.size}: fp32 ONNX (export + checks + parity) {info['export_fp32_s']:.1f} s, "
              f"int8 quantization + quality check {info['quantize_int8_s']:.1f} s")
        speeds = defaultdict(lambda: defaultdict(list))
        for _ in range(a.rounds):
            for backend in ("torch", "fp32", "int8"):
                cmd = [sys.executable, __file__, "--worker", backend, "--size", a.size, "--folder", tmp,
                       "--reps", str(a.reps)]
                out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                for b, v in out.items():
                    speeds[backend][int(b)].append(v)
    best = {}
    print(f"images/s at {a.size} (median over {a.rounds} rounds x {a.reps} reps), by batch size:")
    for backend, label in (("torch", "PyTorch eager"), ("fp32", "onnxruntime fp32"), ("int8", "onnxruntime int8")):
        med = {b: statistics.median(v) for b, v in speeds[backend].items()}
        best[backend] = max(med.values())
        cells = "  ".join(f"b{b}: {v:6.2f}" for b, v in sorted(med.items()))
        print(f"  {label:18s} {cells}   best {best[backend]:6.2f}")
    print(f"  fp32 ONNX / PyTorch eager: {best['fp32'] / best['torch']:.2f}x;  int8 / fp32: "
          f"{best['int8'] / best['fp32']:.2f}x")


if __name__ == "__main__":
    main()
