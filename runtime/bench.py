"""`runtime bench`: throughput measured side by side, each measurement in its own process.

- peak: fp32 GEMM (2048^3 MatMul) through onnxruntime, the machine's practical fp32 peak;
- model-only: onnxruntime fp32 and int8 (and fp16 when present), images/s at the auto batch size, batches
  computed as `runtime sample` computes them (Sampler.iter_batches);
- torch, torch_bf16: the torch backend on the CPU in fp32 and bf16 (registered by the exporter:
  export.backends) when torch and the entry's model.safetensors are available;
- end-to-end: `runtime sample` into a temp folder, PNG images and palette masks written.
GFLOP/s = 2 x MACs per sample x samples/s, with MACs from the entry's config.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np

MATMUL = Path(__file__).with_name("assets") / "matmul.onnx"
MODEL_BATCHES = 8   # batches per timed repetition of the model-only rates


def _median_rate(fn, items: int, reps: int, warmup_s: float = 1.5) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < warmup_s:  # warm caches, thread pools and the clock's boost
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return items / statistics.median(times)


def measure(kind: str, scene: str, reps: int) -> dict:
    from zoo.sessions import open_session

    from .job import auto_batch, sample_to_folder
    from .sampler import Sampler, find_scene

    if kind == "peak":
        n = 2048  # large enough that MatMul runs at its steady rate (1024 was noisy here)
        sess = open_session(MATMUL)
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        rate = _median_rate(lambda: sess.run(None, {"a": a, "b": a}), 1, reps)
        return {"gflops": 2 * n ** 3 * rate / 1e9}
    entry = find_scene(scene).entry
    if kind in ("torch", "torch_bf16"):
        return {"samples_per_s": _torch_rate(entry, reps, "bf16" if kind == "torch_bf16" else "fp32")}
    if kind == "end_to_end":
        sampler = Sampler(entry)
        # long enough (10-20 s) that starting the encoding processes (~1 s of CPU) weighs little on the rate
        count = max(512, 64 * auto_batch(sampler.output_size(entry.trained_grid)))
        with tempfile.TemporaryDirectory() as tmp:
            sample_to_folder(sampler, Path(tmp) / "w", scene=scene, count=min(16, count), quiet=True, argv=[])  # warm-up
            s = sample_to_folder(sampler, Path(tmp) / "o", scene=scene, count=count, quiet=True, argv=[])
        return {"samples_per_s": s["samples_per_s"], "count": count}
    sampler = Sampler(entry, precision=kind)
    b = auto_batch(sampler.output_size(entry.trained_grid))
    # as `runtime sample` drives the model (iter_batches, batches in flight), without the encoding
    batches = lambda: deque(sampler.iter_batches(0, MODEL_BATCHES * b, batch_size=b), maxlen=0)  # noqa: E731
    return {"samples_per_s": _median_rate(batches, MODEL_BATCHES * b, reps), "batch": b}


def _torch_rate(entry, reps: int, precision: str) -> float | None:
    """The torch backend (registered by the exporter) on the CPU, best of batches 1, 4 and 8; None where it
    cannot run."""
    from zoo.errors import UserError

    from .sampler import load_backend

    try:
        sampler = load_backend("torch")(entry, precision, device="cpu")
    except UserError:   # no torch, no exporter, or no model.safetensors
        return None
    grid = entry.trained_grid
    return max(_median_rate(lambda: sampler.run(np.arange(b), 0, grid), b, reps) for b in (1, 4, 8))


def run_bench(scene: str, reps: int = 5) -> dict:
    from .sampler import find_scene

    entry = find_scene(scene).entry
    kinds = ["peak", *entry.precisions(), "torch", "torch_bf16", "end_to_end"]
    results = {}
    for kind in kinds:
        cmd = [sys.executable, "-m", "runtime.bench", kind, scene, str(reps)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            results[kind] = {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
            continue
        results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    macs = entry.config.macs_per_sample
    peak = results["peak"].get("gflops")
    for kind, r in results.items():
        if r.get("samples_per_s") and macs:
            r["gflops"] = 2 * macs * r["samples_per_s"] / 1e9
            r["fraction_of_peak"] = r["gflops"] / peak if peak else None
    fp32 = results.get("fp32", {}).get("samples_per_s")
    summary = {"scene": scene, "size": list(entry.config.training_size), "macs_per_sample": macs,
               "results": results}
    if fp32:
        summary["int8_vs_fp32"] = (results.get("int8", {}).get("samples_per_s") or 0) / fp32 or None
        summary["end_to_end_vs_model"] = results["end_to_end"].get("samples_per_s", 0) / fp32
        if results["torch"].get("samples_per_s"):
            summary["fp32_vs_torch"] = fp32 / results["torch"]["samples_per_s"]
        if results["torch_bf16"].get("samples_per_s"):
            summary["torch_bf16_vs_fp32"] = results["torch_bf16"]["samples_per_s"] / fp32
    return summary


def format_bench(s: dict) -> str:
    lines = [f"scene {s['scene']} at {s['size'][0]}x{s['size'][1]}"
             + (f", {s['macs_per_sample'] / 1e9:.2f} GMAC per sample" if s["macs_per_sample"] else "")]
    names = {"peak": "fp32 GEMM peak (onnxruntime MatMul)", "fp32": "model only, onnxruntime fp32",
             "int8": "model only, onnxruntime int8", "fp16": "model only, onnxruntime fp16",
             "torch": "model only, torch backend fp32", "torch_bf16": "model only, torch backend bf16",
             "end_to_end": "runtime sample, PNGs written"}
    for kind, r in s["results"].items():
        if "error" in r:
            lines.append(f"  {names[kind]:38s} failed: {r['error']}")
        elif kind == "peak":
            lines.append(f"  {names[kind]:38s} {r['gflops']:8.1f} GFLOP/s")
        elif r.get("samples_per_s") is None:
            lines.append(f"  {names[kind]:38s} n/a (needs torch, the trainer and model.safetensors)")
        else:
            extra = f"  {r['gflops']:7.1f} GFLOP/s = {r['fraction_of_peak']:.2f} of peak" if r.get("gflops") else ""
            lines.append(f"  {names[kind]:38s} {r['samples_per_s']:8.2f} samples/s{extra}")
    for key, label in (("int8_vs_fp32", "int8 / fp32"), ("fp32_vs_torch", "onnxruntime fp32 / PyTorch fp32"),
                       ("torch_bf16_vs_fp32", "PyTorch bf16 / onnxruntime fp32"),
                       ("end_to_end_vs_model", "end-to-end / model-only fp32")):
        if s.get(key):
            lines.append(f"  {label:38s} {s[key]:8.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
