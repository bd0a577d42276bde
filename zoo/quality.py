"""Part of the entry format: the per-sample quality score behind `runtime sample --drop-worst` and `trainer eval` (numpy only).

Score "patch-frechet-v1": SIFID's recipe with raw-pixel patch features instead of Inception features, so it
needs no network weights. Each image is box-downscaled 2x; every 5x5 RGB patch (stride 2) of it is a
75-d feature in [0, 1]; the score is the Fréchet distance between the Gaussian of a sample's patches and the
Gaussian of the training frames' patches (stored in the entry's quality.json at export). Lower is better.
It flags the failures the OSMIS paper filters (noise, smears, colour casts, broken textures); it does not judge
layout plausibility, which patch statistics cannot see.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import UserError

SCORE = "patch-frechet-v1"
FORMAT = "oneshot-gan-quality/1"
DOWNSCALE, PATCH, STRIDE = 2, 5, 2


def patch_features(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (n, 75) float64 patch vectors."""
    x = image.astype(np.float64) / 255.0
    h, w = (x.shape[0] // DOWNSCALE) * DOWNSCALE, (x.shape[1] // DOWNSCALE) * DOWNSCALE
    x = x[:h, :w].reshape(h // DOWNSCALE, DOWNSCALE, w // DOWNSCALE, DOWNSCALE, 3).mean((1, 3))
    win = np.lib.stride_tricks.sliding_window_view(x, (PATCH, PATCH), axis=(0, 1))[::STRIDE, ::STRIDE]
    return win.reshape(-1, 3 * PATCH * PATCH)


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(0), np.cov(features, rowvar=False)


def frechet(mu1: np.ndarray, c1: np.ndarray, mu2: np.ndarray, c2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(c1 + c2 - 2 (c1 c2)^1/2); Tr of the square root from the eigenvalues of c1 c2
    (real and non-negative up to rounding, as both are PSD)."""
    eig = np.linalg.eigvals(c1 @ c2)
    root = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return max(0.0, float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * root))


def reference(frames: np.ndarray) -> dict:
    """quality.json content for training frames (N, H, W, 3) uint8: their pooled patch Gaussian."""
    scorer = Scorer.from_frames(frames)
    return {"format": FORMAT, "score": SCORE, "downscale": DOWNSCALE, "patch": PATCH, "stride": STRIDE,
            "mean": np.round(scorer.mean, 7).tolist(), "cov": np.round(scorer.cov, 9).tolist(),
            "training_frame_scores": [round(s, 6) for s in scorer.scores(frames)]}


class Scorer:
    def __init__(self, mean, cov):
        self.mean, self.cov = np.asarray(mean, np.float64), np.asarray(cov, np.float64)

    @classmethod
    def from_frames(cls, frames: np.ndarray) -> "Scorer":
        return cls(*gaussian(np.concatenate([patch_features(f) for f in frames])))

    @classmethod
    def load(cls, path: Path) -> "Scorer":
        try:
            data = json.loads(Path(path).read_text())
            if not isinstance(data, dict) or data.get("score") != SCORE:
                raise ValueError(f"unknown score {data.get('score') if isinstance(data, dict) else data!r}")
            scorer = cls(data["mean"], data["cov"])
            d = scorer.mean.shape
            if scorer.mean.ndim != 1 or scorer.cov.shape != d * 2 or not (np.isfinite(scorer.mean).all()
                                                                          and np.isfinite(scorer.cov).all()):
                raise ValueError("mean and cov must be a finite vector and its square matrix")
            return scorer
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
            raise UserError(f"{path}: not a usable quality reference ({e})") from None

    def scores(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N,) scores, lower = closer to the training frames' patch statistics."""
        return np.array([frechet(*gaussian(patch_features(im)), self.mean, self.cov) for im in images])


def drop_threshold(scores: np.ndarray, fraction: float) -> float:
    """The largest kept score when the worst `fraction` of `scores` are dropped."""
    n = len(scores)
    keep = n - int(np.floor(fraction * n))
    return float(np.sort(scores)[max(keep, 1) - 1])
