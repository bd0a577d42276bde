"""Seconds per training iteration at 192x320, batch 5, 3 classes (reference widths), fp32 vs bf16.

Each precision runs in its own process (these machines are noisy); the script alternates them for --rounds
and prints medians over all timed iterations after warm-up, the ratio against the authors' implementation
(anchor: about 4.8-5.2 s per such iteration on this CPU) and the share of the step spent in augmentation,
feature augmentation, diversity regularisation and masked content attention, forward and backward: every
call of these parts in one step is recorded with its inputs and replayed alone (forward, then backward
from random output gradients, under the step's autocast), and the replay times are divided by the median
step time.

    .venv/bin/python bench/train_step.py [--size 192x320] [--iters 5] [--warmup 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# the authors' implementation on this CPU, seconds per iteration (192x320: midpoint of the 4.8-5.2 s measured)
ANCHORS_S = {"192x320": 5.0, "64x96": 0.47}


def _tensors(x) -> list:
    """Every tensor in a nested output (tensors, lists, tuples)."""
    import torch

    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for item in x for t in _tensors(item)]
    return []


def _copy_inputs(x):
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach().clone().requires_grad_(x.requires_grad and x.is_floating_point())
    if isinstance(x, (list, tuple)):
        return type(x)(_copy_inputs(item) for item in x)
    return x


def replay_seconds(calls: list, autocast) -> float:
    """Forward + backward time of recorded calls (fn, args, kwargs), replayed alone."""
    import torch

    total = 0.0
    for fn, args, kwargs in calls:
        args, kwargs = _copy_inputs(args), {k: _copy_inputs(v) for k, v in kwargs.items()}
        t0 = time.perf_counter()
        with autocast():
            out = fn(*args, **kwargs)
        outs = [t for t in _tensors(out) if t.requires_grad]
        if outs:
            torch.autograd.backward(outs, [torch.randn_like(t) for t in outs])
        total += time.perf_counter() - t0
    return total


def worker(size: str, precision: str, iters: int, warmup: int, classes: int) -> dict:
    import numpy as np
    import torch

    import trainer.discriminator as dmod
    import trainer.train as tmod
    from trainer.config import auto_config
    from zoo.sizes import parse_hw
    from trainer.feature_aug import FeatureAugment
    from trainer.config import TrainConfig
    from trainer.train import Trainer

    recorded = defaultdict(list)
    recording = [False]

    def recorder(name, fn):
        def wrapper(*a, **k):
            if recording[0]:
                recorded[name].append((fn, _copy_inputs(a), {key: _copy_inputs(v) for key, v in k.items()}))
            return fn(*a, **k)
        return wrapper

    tmod.augment = recorder("augmentation", tmod.augment)
    tmod.diversity = recorder("diversity_reg", tmod.diversity)
    dmod.masked_content = recorder("mca", dmod.masked_content)
    FeatureAugment.content = recorder("feature_aug", FeatureAugment.content)
    FeatureAugment.layout = recorder("feature_aug", FeatureAugment.layout)

    h, w = parse_hw(size)
    cfg = auto_config(h, w, num_classes=classes)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (1, 3, cfg.height, cfg.width)).astype(np.float32)
    masks = rng.integers(0, classes, (1, cfg.height, cfg.width)).astype(np.uint8)
    tr = Trainer(Path("/nonexistent"), cfg, TrainConfig(iters=10**6, precision=precision, device="cpu").resolved(),
                 images, masks)
    for _ in range(warmup):
        tr.step()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        tr.step()
        times.append(time.perf_counter() - t0)
    recording[0] = True
    tr.step()
    recording[0] = False
    step = statistics.median(times)
    share = {name: replay_seconds(calls, tr.autocast) / step for name, calls in recorded.items()}
    return {"precision": precision, "times": times, "threads": torch.get_num_threads(), "share": share}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="192x320")
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--worker", choices=["fp32", "bf16"])
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.size, a.worker, a.iters, a.warmup, a.classes)))
        return
    results = defaultdict(list)
    shares = defaultdict(lambda: defaultdict(list))
    for _ in range(a.rounds):
        for precision in ("fp32", "bf16"):
            cmd = [sys.executable, __file__, "--worker", precision, "--size", a.size, "--iters", str(a.iters),
                   "--warmup", str(a.warmup), "--classes", str(a.classes)]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            results[precision] += r["times"]
            for k, v in r["share"].items():
                shares[precision][k].append(v)
    print(f"train step, {a.size}, batch 5, {a.classes} classes, reference widths, "
          f"{a.rounds} rounds x {a.iters} iterations (after {a.warmup} warm-up)")
    med = {}
    for precision, times in results.items():
        med[precision] = statistics.median(times)
        share = ", ".join(f"{k} {100 * statistics.median(v):.1f}%" for k, v in sorted(shares[precision].items()))
        a_s = ANCHORS_S.get(a.size)
        anchor = f"{a_s / med[precision]:.2f}x the authors' ~{a_s} s/it; " if a_s else ""
        print(f"  {precision}: median {med[precision]:.3f} s/it (min {min(times):.3f}, max {max(times):.3f}); "
              f"{anchor}share (forward + backward): {share}")
    print(f"  bf16 vs fp32: {med['fp32'] / med['bf16']:.2f}x")


if __name__ == "__main__":
    main()
