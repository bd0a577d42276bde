"""Does bf16 autocast make samples worse? Trains the coins scene in fp32 and in bf16 with the same seeds and
compares the EMA generators with `trainer eval`'s offline metrics (pixel diversity, MS-SSIM, distance to
train and near-copies, mask alignment by a UNet trained on the samples, class-frequency gap, patch quality
score). Seeds are paired: the same seed gives both precisions the same initial weights and data order, so
the per-seed difference bf16 - fp32 removes most of the run-to-run spread. Printed per metric: means +- std
over seeds, the mean paired difference with its 90 % confidence interval (t distribution), and in how many
seeds bf16 came out better.

Every (seed, precision) job runs in its own single-threaded process, --jobs at a time (on small models two
single-threaded runs do about twice the work of one two-threaded run); results do not depend on timing.

    .venv/bin/python bench/bf16_quality.py [--seeds 0-11] [--iters 1500] [--max-size 80] [--width 0.25]
        [--jobs 2] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
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
PRECISIONS = ("fp32", "bf16")


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def job(precision: str, seed: int, a, tmp: Path) -> dict:
    """Train and evaluate one run in a single-threaded subprocess; returns its metrics and s/iteration."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--worker", precision, "--seed", str(seed), "--iters", str(a.iters),
           "--max-size", a.max_size, "--width", a.width, "--samples", str(a.samples),
           "--unet-steps", str(a.unet_steps), "--tmp", str(tmp)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def worker(a) -> dict:
    import torch

    from trainer.evaluate import evaluate, gather

    torch.set_num_threads(1)
    run = Path(a.tmp) / f"{a.worker}-{a.seed}"
    subprocess.run([sys.executable, "-m", "trainer.cli", "fit", str(ROOT / "data/coins/image.png"), "--mask", str(ROOT / "data/coins/mask.png"),
                    "--out", str(run), "--max-size", a.max_size, "--width", a.width, "--iters", str(a.iters),
                    "--precision", a.worker, "--seed", str(a.seed), "--save-every", str(a.iters),
                    "--preview-every", str(a.iters), "-q"], check=True, cwd=ROOT)
    lines = [json.loads(ln) for ln in (run / "losses.jsonl").read_text().splitlines()]
    r = evaluate(gather(str(run), a.samples, seed=0), seed=0, unet_steps=a.unet_steps)
    return {"precision": a.worker, "seed": a.seed, "s_per_it": float(np.median([ln["time"] for ln in lines])),
            "metrics": {m: float(get(r)) for m, (get, _) in METRICS.items()}}


def t_quantile_95(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.95, df))


def summarise(results: list[dict], a) -> None:
    seeds = sorted({r["seed"] for r in results})
    by = {(r["precision"], r["seed"]): r for r in results}
    print(f"\ncoins, max-size {a.max_size}, width {a.width}, {a.iters} iterations, {len(seeds)} seeds "
          f"({a.seeds}), {a.samples} samples each")
    print(f"  {'metric':24s} {'better':>6s} {'fp32 mean +- std':>18s} {'bf16 mean +- std':>18s}"
          f"  {'bf16 - fp32 [90 % CI]':>28s}  bf16 better")
    for m, (_, better) in METRICS.items():
        f = np.array([by["fp32", s]["metrics"][m] for s in seeds])
        b = np.array([by["bf16", s]["metrics"][m] for s in seeds])
        d = b - f
        half = t_quantile_95(len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        wins = int(np.sum(d > 0) if better == "higher" else np.sum(d < 0))
        ties = int(np.sum(d == 0))
        print(f"  {m:24s} {better:>6s} {f.mean():9.4f} +- {f.std(ddof=1):5.3f} {b.mean():9.4f} +- {b.std(ddof=1):5.3f}"
              f"  {d.mean():+9.4f} [{d.mean() - half:+.4f}, {d.mean() + half:+.4f}]  {wins}/{len(d)}"
              + (f" ({ties} ties)" if ties else ""))
    s = {p: np.median([by[p, x]["s_per_it"] for x in seeds]) for p in PRECISIONS}
    print(f"  median s/iteration (single-threaded, {a.jobs} jobs at once): fp32 {s['fp32']:.4f}, bf16 {s['bf16']:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0-11")
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--max-size", default="80")
    ap.add_argument("--width", default="0.25")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--unet-steps", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--arms", default="fp32,bf16", help="run only some precisions (summary needs both)")
    ap.add_argument("--json", type=Path, help="also write every run's numbers here")
    ap.add_argument("--worker", choices=PRECISIONS)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--tmp")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a)))
        return
    jobs = [(p, s) for s in parse_seeds(a.seeds) for p in a.arms.split(",")]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(a.jobs) as pool:
        results = []
        for r in pool.map(lambda ps: job(*ps, a, Path(tmp)), jobs):
            results.append(r)
            print(f"seed {r['seed']} {r['precision']}: " + ", ".join(f"{m} {v:.4g}" for m, v in r["metrics"].items()),
                  flush=True)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")
    if {r["precision"] for r in results} == set(PRECISIONS):
        summarise(results, a)


if __name__ == "__main__":
    main()
