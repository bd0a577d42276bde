"""Does bf16 autocast make samples worse? Trains the coins scene in fp32 and in bf16 with the same seeds and
compares the EMA generators with `trainer eval`'s offline metrics (pixel diversity, MS-SSIM, distance to
train and near-copies, mask alignment by a UNet trained on the samples, class-frequency gap, patch quality
score), per seed and as mean +- std over seeds, so a bf16 difference can be told from seed-to-seed spread.

    .venv/bin/python bench/bf16_quality.py [--seeds 0,1,2] [--iters 1500] [--max-size 80] [--width 0.25]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METRICS = {  # name: (how to read it from the eval result, better when)
    "pixel diversity": (lambda r: r["diversity"]["pixel_diversity"], "higher"),
    "MS-SSIM between samples": (lambda r: r["diversity"]["ms_ssim"]["mean"], "lower"),
    "dist. to train (mean)": (lambda r: r["memorisation"]["dist_to_train_mean"], "higher"),
    "near-copies": (lambda r: r["memorisation"]["near_copies"], "lower"),
    "mIoU (UNet on samples)": (lambda r: r["mask_alignment"]["miou"], "higher"),
    "mIoU thresholded": (lambda r: r["mask_alignment"]["miou_thresholded"], "higher"),
    "class-frequency TV": (lambda r: r["class_frequencies"]["total_variation"], "lower"),
    "quality score (median)": (lambda r: r["quality_score"]["median"], "lower"),
}


def train(run: Path, precision: str, seed: int, a) -> float:
    trainer = str(Path(sys.executable).with_name("trainer"))
    cmd = [trainer, "fit", str(ROOT / "data/coins/image.png"), "--mask", str(ROOT / "data/coins/mask.png"),
           "--out", str(run), "--max-size", a.max_size, "--width", a.width, "--iters", str(a.iters),
           "--precision", precision, "--seed", str(seed), "--save-every", str(a.iters), "--preview-every",
           str(a.iters), "-q"]
    subprocess.run(cmd, check=True)
    lines = [json.loads(ln) for ln in (run / "losses.jsonl").read_text().splitlines()]
    return float(np.median([ln["time"] for ln in lines]))


def main() -> None:
    from trainer.evaluate import evaluate, gather

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--max-size", default="80")
    ap.add_argument("--width", default="0.25")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--unet-steps", type=int, default=300)
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    values = {p: {m: [] for m in METRICS} for p in ("fp32", "bf16")}
    times = {"fp32": [], "bf16": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for precision in ("fp32", "bf16"):
                run = Path(tmp) / f"{precision}-{seed}"
                times[precision].append(train(run, precision, seed, a))
                r = evaluate(gather(str(run), a.samples, seed=0), seed=0, unet_steps=a.unet_steps)
                for m, (get, _) in METRICS.items():
                    values[precision][m].append(get(r))
                print(f"seed {seed} {precision}: " + ", ".join(f"{m} {values[precision][m][-1]:.4g}"
                                                              for m in METRICS), flush=True)
    print(f"\ncoins, max-size {a.max_size}, width {a.width}, {a.iters} iterations, seeds {a.seeds}, "
          f"{a.samples} samples each")
    print(f"  {'metric':26s} {'better':>6s} {'fp32 mean +- std':>20s} {'bf16 mean +- std':>20s}  bf16-fp32 / fp32 std")
    for m, (_, better) in METRICS.items():
        f, b = np.array(values["fp32"][m]), np.array(values["bf16"][m])
        spread = f.std(ddof=1) if len(f) > 1 else 0.0
        gap = f"{(b.mean() - f.mean()) / spread:+.2f}" if spread > 0 else "n/a"
        print(f"  {m:26s} {better:>6s} {f.mean():11.4f} +- {spread:6.4f} "
              f"{b.mean():11.4f} +- {b.std(ddof=1) if len(b) > 1 else 0:6.4f}  {gap}")
    print(f"  {'median s/iteration':26s} {'':6s} {np.median(times['fp32']):20.4f} {np.median(times['bf16']):20.4f}")


if __name__ == "__main__":
    main()
