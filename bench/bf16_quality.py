"""Does bf16 autocast make samples worse? Trains the same scene twice with the same seed, fp32 and bf16, and
compares the EMA generators' samples with offline statistics (no pretrained networks are available here):

- pixel diversity (SinGAN's: per-pixel std over samples / std of the training image, averaged);
- distance to train: mean L1 (in [0, 1] units) of each sample to the nearest of the training image and its
  horizontal flip (lower = closer to a copy);
- patch-statistics gap: L1 distance between the histograms of 3x3 gradient magnitudes of samples and of the
  training image (lower = textures closer to the real ones);
- mask-image agreement: the fraction of pixels where thresholding the sample's brightness at the training
  image's best coin/background threshold gives the generated mask (the coins scene: coins are brighter);
- foreground share of generated masks vs the training mask.

    .venv/bin/python bench/bf16_quality.py [--iters 1500] [--max-size 80] [--width 0.25]
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


def samples(run: Path, n: int = 64):
    import torch

    from export.graph import load_run_generator

    G, _, _ = load_run_generator(run)
    z = torch.from_numpy(np.random.default_rng(7).standard_normal((n, G.cfg.noise_dim), dtype=np.float32))
    with torch.no_grad():
        out = G(z)
    img = ((out.images[-1] + 1) / 2).clamp(0, 1).mean(1).numpy()  # grayscale scene
    return img, out.mask_logits.argmax(1).numpy()


def grad_hist(img: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(img, axis=(-2, -1))
    mag = np.sqrt(gx ** 2 + gy ** 2)
    h, _ = np.histogram(mag, bins=32, range=(0, 0.5))
    return h / max(h.sum(), 1)


def metrics(run: Path) -> dict:
    from safetensors.torch import load_file

    data = load_file(str(run / "data.safetensors"))
    real = data["images"].numpy()[0].mean(-1) / 255.0
    real_mask = data["masks"].numpy()[0]
    img, mask = samples(run)
    refs = np.stack([real, real[:, ::-1]])
    dist = np.abs(img[:, None] - refs[None]).mean((2, 3)).min(1)
    thresholds = np.linspace(0.05, 0.95, 91)
    best_t = thresholds[np.argmax([((real > t) == (real_mask > 0)).mean() for t in thresholds])]
    return {
        "pixel_diversity": float(img.std(0).mean() / real.std()),
        "dist_to_train": float(dist.mean()),
        "patch_stat_gap": float(np.abs(grad_hist(img) - grad_hist(real)).sum()),
        "mask_image_agreement": float(((img > best_t) == (mask > 0)).mean()),
        "real_mask_image_agreement": float(((real > best_t) == (real_mask > 0)).mean()),
        "fg_share": float((mask > 0).mean()),
        "real_fg_share": float((real_mask > 0).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--max-size", default="80")
    ap.add_argument("--width", default="0.25")
    ap.add_argument("--seed", default="0")
    a = ap.parse_args()
    trainer = str(Path(sys.executable).with_name("trainer"))
    results, times = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            run = Path(tmp) / precision
            cmd = [trainer, "fit", str(ROOT / "data/coins/image.png"), "--mask", str(ROOT / "data/coins/mask.png"),
                   "--out", str(run), "--max-size", a.max_size, "--width", a.width, "--iters", str(a.iters),
                   "--precision", precision, "--seed", a.seed, "--save-every", str(a.iters), "--preview-every",
                   str(a.iters), "-q"]
            subprocess.run(cmd, check=True)
            results[precision] = metrics(run)
            lines = [json.loads(ln) for ln in (run / "losses.jsonl").read_text().splitlines()]
            times[precision] = float(np.median([ln["time"] for ln in lines]))
    print(f"coins, max-size {a.max_size}, width {a.width}, {a.iters} iterations, seed {a.seed}")
    print(f"  {'metric':28s} {'fp32':>9s} {'bf16':>9s}")
    for k in results["fp32"]:
        print(f"  {k:28s} {results['fp32'][k]:9.4f} {results['bf16'][k]:9.4f}")
    print(f"  {'median s/iteration':28s} {times['fp32']:9.4f} {times['bf16']:9.4f}")


if __name__ == "__main__":
    main()
