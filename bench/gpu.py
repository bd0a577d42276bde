"""The GPU check: minutes on one CUDA GPU with nothing but PyTorch (and this project) installed.

    python bench/gpu.py [--out gpu.json]            # on a GPU machine: a few minutes
    python bench/gpu.py --device cpu --quick        # the same code paths on a CPU, tiny sizes (a test runs it)

Prints one table:
- the physical reference: bf16 matmul throughput (8192^3, torch.matmul), TFLOP/s;
- training: seconds per iteration at 192x320, reference widths, 3 classes, batch 5, in fp32, TF32 and bf16;
- sampling, model only: the torch backend (CUDA graphs, uint8 and argmax on the GPU, pinned buffers) in bf16 and
  fp16 with runs of 64 and 256 latents, samples/s and the share of the bf16 matmul rate their MACs reach;
  onnxruntime CUDA and TensorRT where importable, else "not installed";
- end to end: `runtime sample` with the torch backend (bf16) writing npz and webdataset shards, all CPU cores
  encoding.
The entry is a freshly initialised generator (throughput does not depend on the weights), exported once into a
temp folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn, *, warmup: int, reps: int, sync) -> float:
    """Median seconds of fn() after warm-up; sync() waits for the device."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(device: str, n: int, sync) -> float:
    import torch

    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    return 2 * n ** 3 / timed(lambda: a @ a, warmup=3, reps=10, sync=sync) / 1e12


def train_rows(device: str, size: tuple[int, int], width: float, iters: int, sync) -> list[tuple[str, str]]:
    import numpy as np
    import torch

    from trainer.config import TrainConfig, auto_config
    from trainer.train import Trainer

    cfg = auto_config(*size, num_classes=3, width_mult=width)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (1, 3, cfg.height, cfg.width)).astype(np.float32)
    masks = rng.integers(0, 3, (1, cfg.height, cfg.width)).astype(np.uint8)
    rows = []
    for name, precision, tf32 in (("fp32", "fp32", False), ("TF32", "fp32", True), ("bf16", "bf16", False)):
        if device == "cpu" and tf32:
            rows.append((f"training s/it, {name}", "n/a on CPU"))
            continue
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        tr = Trainer(Path("/nonexistent"), cfg, TrainConfig(iters=10**6, precision=precision, device=device).resolved(),
                     images, masks)
        rows.append((f"training s/it, {name}", f"{timed(tr.step, warmup=2, reps=iters, sync=sync):.4f}"))
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    return rows


def sampling_rows(entry: Path, device: str, runs: tuple[int, ...], reps: int, peak: float, sync) -> list:
    import numpy as np

    from runtime.sampler import Sampler
    from zoo.entry import Entry

    rows = []
    macs = Entry.load(entry).config.macs_per_sample
    for precision in ("bf16", "fp16") if device == "cuda" else ("bf16",):
        for run in runs:
            s = Sampler.from_pretrained(entry, backend="torch", precision=precision, device=device, run_size=run)
            idx = np.arange(4 * run)
            rate = len(idx) / timed(lambda: s.run(idx, 0, s.entry.trained_grid), warmup=1, reps=reps, sync=sync)
            share = 2 * macs * rate / 1e12 / peak
            rows.append((f"torch backend {precision}, runs of {run}", f"{rate:,.0f} samples/s ({share:.2f} of bf16 mm)"))
    rows.append(("onnxruntime CUDA", ort_cuda_rate(entry, reps)))
    rows.append(("TensorRT", tensorrt_rate(entry, reps)))
    return rows


def ort_cuda_rate(entry: Path, reps: int) -> str:
    import numpy as np

    try:
        import onnxruntime as ort
    except ImportError:
        return "not installed"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "not installed (onnxruntime without CUDA)"
    from runtime.sampler import Sampler

    s = Sampler.from_pretrained(entry, device="cuda")
    idx = np.arange(256)
    return f"{len(idx) / timed(lambda: s.run(idx, 0, s.entry.trained_grid), warmup=1, reps=reps, sync=lambda: None):,.0f} samples/s"


def tensorrt_rate(entry: Path, reps: int) -> str:
    import numpy as np

    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "not installed"
    from runtime.sampler import Sampler

    s = Sampler.from_pretrained(entry, backend="tensorrt", precision="fp16", max_batch=256)
    idx = np.arange(256)
    return f"{len(idx) / timed(lambda: s.run(idx, 0, s.entry.trained_grid), warmup=1, reps=reps, sync=lambda: None):,.0f} samples/s"


def end_to_end_rows(entry: Path, device: str, count: int) -> list:
    from runtime.job import sample_to_folder
    from runtime.sampler import Sampler

    rows = []
    s = Sampler.from_pretrained(entry, backend="torch", precision="bf16", device=device)
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("npz", "webdataset"):
            sample_to_folder(s, Path(tmp) / f"warm-{fmt}", scene="bench", count=min(count, 64), quiet=True, argv=[],
                             fmt=fmt)
            r = sample_to_folder(s, Path(tmp) / fmt, scene="bench", count=count, quiet=True, argv=[], fmt=fmt)
            rows.append((f"runtime sample --format {fmt} (torch bf16, {os.cpu_count()} encoders)",
                         f"{r['samples_per_s']:,.0f} samples/s"))
    return rows


def make_entry(folder: Path, size: tuple[int, int], width: float, precisions: tuple[str, ...]) -> Path:
    import torch

    from export.writer import write_entry
    from trainer.config import auto_config
    from trainer.data import default_class_names, default_palette
    from trainer.generator import Generator, refresh_spectral_norms

    torch.manual_seed(0)
    G = Generator(auto_config(*size, num_classes=3, width_mult=width)).eval()
    refresh_spectral_norms(G)
    classes = {"names": default_class_names(3), "palette": default_palette(3).tolist()}
    write_entry(G, folder, classes, {"iterations": 0, "note": "untrained, for benchmarks"}, precisions=precisions)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and counts: checks the code paths, measures nothing")
    ap.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    a = ap.parse_args()
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: this PyTorch sees no CUDA GPU (run with --device cpu --quick to check the script)")
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    size, width = ((64, 96), 0.25) if a.quick else ((192, 320), 1.0)
    t0 = time.perf_counter()
    rows = [("device", torch.cuda.get_device_name() if a.device == "cuda" else "CPU"), ("torch", torch.__version__)]
    peak = matmul_peak(a.device, 512 if a.quick else 8192, sync)
    rows.append(("bf16 matmul (physical reference)", f"{peak:.2f} TFLOP/s"))
    rows += train_rows(a.device, size, width, 2 if a.quick else 10, sync)
    with tempfile.TemporaryDirectory() as tmp:
        # fp16 ONNX: what TensorRT 11 builds its fp16 engine from
        entry = make_entry(Path(tmp) / "entry", size, width, ("fp32", "fp16") if a.device == "cuda" else ("fp32",))
        rows += sampling_rows(entry, a.device, (4,) if a.quick else (64, 256), 2 if a.quick else 10, peak, sync)
        rows += end_to_end_rows(entry, a.device, 16 if a.quick else 8192)
    rows.append(("wall time of this script", f"{time.perf_counter() - t0:.0f} s"))
    width_name = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:{width_name}s}  {v}" for k, v in rows))
    if a.out:
        a.out.write_text(json.dumps(dict(rows), indent=1) + "\n")


if __name__ == "__main__":
    main()
