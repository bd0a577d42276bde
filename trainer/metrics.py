"""Offline metrics of generated samples against the training frames (no pretrained networks).

Every function takes uint8 arrays: samples / frames (N, H, W, 3), masks (N, H, W) class ids.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# A sample is a near-copy when its dist_to_train is below NEAR_COPY x the spread (std) of the training frames at the
# same blurred 1/2 resolution: 0.06 for the coins image (spread 0.158), where flips, shifts, crops and zooms of the
# image score <= 0.05 and generated samples 0.12-0.17. Relative, because an absolute 0.06 called every sample of a
# low-contrast scene a copy (Hubble deep field, spread 0.056) and new stone layouts on a brick pavement too
# (spread 0.123: 0.046-0.058).
NEAR_COPY = 0.38
# With a mask, a near-copy must also repeat the layout: its mask agrees with the matched training region's mask at a
# mean per-class IoU >= LAYOUT_COPY. Flips, shifts, crops and zooms of a training mask score >= 0.85; on a brick
# pavement, samples with the stones in new places came within the image distance of a copy (66 % of one run) at
# layout IoU 0.42-0.71, because the unchanged pavement dominates the whole-frame distance.
LAYOUT_COPY = 0.8
THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)  # the OSMIS evaluation's IoU thresholds

DEFINITIONS = {
    "pixel_diversity": "SinGAN: std over samples of each pixel value (RGB, 0-255), averaged over pixels, divided "
                       "by the std of the training frames' pixel values; 0 = identical samples",
    "ms_ssim": "mean MS-SSIM over pairs of samples (pytorch-msssim, data range 255); lower = more diverse",
    "dist_to_train": "per sample: RMS difference (fraction of the intensity range, at 1/2 resolution, blurred) to the "
                     "closest region of a training frame or its mirror image, searched over every position of the "
                     "frame reflection-padded by 30 % and region sizes 50-100 % of the frame: the training-time "
                     "flips, shifts, crops and 2x zooms of a frame are all at distance ~0",
    "image_near_copies": f"share of samples whose dist_to_train is below {NEAR_COPY} x the spread (std) of the "
                         "training frames at the same blurred 1/2 resolution (0.06 for the coins image)",
    "layout_iou": "per sample: mean per-class IoU between its mask and the mask of the training region its image "
                  "matched (classes in either mask); 1 = the training layout repeated",
    "near_copies": "share of samples that are image near-copies and, for a mask model, also repeat the matched "
                   f"region's layout (layout_iou >= {LAYOUT_COPY}); a copy of both the picture and its labels",
    "class_frequencies": "share of pixels of each class in generated masks vs the training mask(s); "
                         "total_variation = half the L1 distance between the two distributions",
    "miou": "mask alignment (OSMIS protocol): a small UNet trained from scratch on the generated image/mask pairs, "
            "tested on the real pair(s) under geometric augmentation; plain per-class IoU of the argmax (%), "
            "mean over classes present in the real mask",
    "miou_thresholded": "the OSMIS evaluation's variant: per class, pixels with probability > t, IoU averaged over "
                        "t = 0.50, 0.55, ..., 0.95, then over classes (%)",
    "quality_score": "per sample: patch-frechet-v1 (zoo.quality), the Fréchet distance between the sample's and the "
                     "training frames' 5x5 RGB patch statistics at half resolution; lower = better; "
                     "`runtime sample --drop-worst` filters on it",
    "sifid": "per sample: single-image FID with InceptionV3 features before the first pooling (64-d), against "
             "each training frame; sifid = min over frames; mean over samples (needs --inception-weights)",
    "lpips": "LPIPS (AlexNet, v0.1): mean over pairs of samples (diversity), and per sample against its closest "
             "training region as dist_to_train finds it (distance to train) (needs --lpips-weights)",
}


def pixel_diversity(samples: np.ndarray, frames: np.ndarray) -> float:
    per_pixel = samples.astype(np.float64).std(0).mean()
    return float(per_pixel / frames.astype(np.float64).std())


def sample_pairs(n: int, max_pairs: int, seed: int = 0) -> np.ndarray:
    """All pairs (i < j) when there are at most max_pairs, else a seeded random subset."""
    i, j = np.triu_indices(n, 1)
    pairs = np.stack([i, j], 1)
    if len(pairs) > max_pairs:
        pairs = pairs[np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False)]
    return pairs


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(images, copy=True)).permute(0, 3, 1, 2).float()


def ms_ssim_diversity(samples: np.ndarray, max_pairs: int = 1000, seed: int = 0) -> dict:
    """Mean pairwise MS-SSIM; the Gaussian window shrinks (odd, 3..11) so that 5 scales fit the image."""
    from pytorch_msssim import ms_ssim, ssim

    side = min(samples.shape[1:3])
    win = next((w for w in (11, 9, 7, 5, 3) if side > (w - 1) * 16), None)
    pairs = sample_pairs(len(samples), max_pairs, seed)
    x = _nchw(samples)
    values = []
    for chunk in np.array_split(pairs, max(1, len(pairs) // 64)):
        a, b = x[chunk[:, 0]], x[chunk[:, 1]]
        v = ms_ssim(a, b, data_range=255, size_average=False, win_size=win) if win else \
            ssim(a, b, data_range=255, size_average=False, win_size=min(11, side // 2 * 2 - 1))
        values.append(v)
    return {"mean": float(torch.cat(values).mean()), "pairs": len(pairs),
            "variant": f"ms-ssim, window {win}" if win else "ssim (image too small for 5 scales)"}


SCALES = tuple(np.round(np.arange(1.0, 0.49, -0.05), 2))  # region side / frame side: crops and 2x zooms
FACTOR, PAD = 2, 0.3  # search at 1/2 resolution; reflection padding covers the training's 5-30 % shifts
BLUR = torch.tensor([1.0, 4, 6, 4, 1]) / 16  # binomial blur: tolerance to sub-pixel misalignment


def _low(images: torch.Tensor) -> torch.Tensor:
    x = F.avg_pool2d(images / 255.0, FACTOR)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), BLUR.view(1, 1, 1, 5).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), BLUR.view(1, 1, 5, 1).repeat(c, 1, 1, 1), groups=c)


def near_copy_threshold(frames: np.ndarray) -> float:
    """The dist_to_train below which a sample counts as a copy of these training frames."""
    return NEAR_COPY * float(_low(_nchw(frames)).std())


def nearest_training_view(samples: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, list[tuple]]:
    """Per sample, the RMS difference (fraction of the intensity range, at blurred 1/2 resolution) to the closest region
    of a training frame or its mirror image, over every position of a reflection-padded frame and region sizes
    SCALES: a flipped, shifted, cropped or zoomed copy of a training frame is at distance ~0. Returns the
    distances and each sample's best match (frame, flipped, scale, y, x) for training_view()."""
    s_low = _low(_nchw(samples))
    n, _, h, w = s_low.shape
    best = torch.full((n,), float("inf"))
    where: list[tuple] = [None] * n
    for f, frame in enumerate(_nchw(frames)):
        for flip in (False, True):
            t = _low((frame.flip(-1) if flip else frame)[None])
            ph, pw = round(PAD * h), round(PAD * w)
            t = F.pad(t, (pw, pw, ph, ph), mode="reflect")
            for scale in SCALES:
                hs, ws = max(1, round(h * scale)), max(1, round(w * scale))
                k = F.interpolate(s_low, (hs, ws), mode="area")
                cross = F.conv2d(t, k)[0]                                     # (n, P, Q)
                t2 = F.conv2d(t * t, torch.ones(1, 3, hs, ws))[0, 0]          # (P, Q)
                mse = (t2 - 2 * cross + (k * k).sum((1, 2, 3))[:, None, None]) / (3 * hs * ws)
                val, pos = mse.flatten(1).min(1)
                for i in torch.nonzero(val < best).flatten().tolist():
                    best[i] = val[i]
                    where[i] = (f, flip, scale, (pos[i] // mse.shape[2]).item() - ph, (pos[i] % mse.shape[2]).item() - pw)
    return best.clamp(min=0).sqrt().numpy(), where


def _region(frame: torch.Tensor, match: tuple, mode: str) -> torch.Tensor:
    """The full-resolution region of a (1, C, H, W) frame that a match names, resized to H x W."""
    _, flip, scale, y, x = match
    frame = frame.flip(-1) if flip else frame
    H, W = frame.shape[-2:]
    ph, pw = round(PAD * (H // FACTOR)) * FACTOR, round(PAD * (W // FACTOR)) * FACTOR
    padded = F.pad(frame, (pw, pw, ph, ph), mode="reflect")
    hs, ws = round(H // FACTOR * scale) * FACTOR, round(W // FACTOR * scale) * FACTOR
    y0, x0 = y * FACTOR + ph, x * FACTOR + pw
    crop = padded[:, :, y0:y0 + hs, x0:x0 + ws]
    return F.interpolate(crop, (H, W), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))


def training_view(frames: np.ndarray, match: tuple) -> np.ndarray:
    """The full-resolution training region a sample matched, resized to the sample size (for the report)."""
    view = _region(_nchw(frames[match[0]:match[0] + 1]), match, "bilinear")
    return view[0].round().clamp(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()


def layout_iou(masks: np.ndarray, frame_masks: np.ndarray, matches: list[tuple], num_classes: int) -> np.ndarray:
    """Per sample: mean IoU, over the classes in either mask, of its mask against the training mask of the region
    its image matched (nearest_training_view's matches)."""
    out = np.empty(len(masks))
    for i, match in enumerate(matches):
        frame = torch.from_numpy(frame_masks[match[0]].astype(np.float32))[None, None]
        view = _region(frame, match, "nearest")[0, 0].round().to(torch.uint8).numpy()
        out[i] = np.nanmean([np.nan if v is None else v / 100 for v in iou_per_class(masks[i], view, num_classes)])
    return out


def class_frequencies(masks: np.ndarray, train_masks: np.ndarray, num_classes: int) -> dict:
    gen = np.bincount(masks.ravel(), minlength=num_classes)[:num_classes] / masks.size
    real = np.bincount(train_masks.ravel(), minlength=num_classes)[:num_classes] / train_masks.size
    return {"generated": gen.round(5).tolist(), "training": real.round(5).tolist(),
            "total_variation": round(float(np.abs(gen - real).sum() / 2), 5)}


def iou_per_class(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> list[float | None]:
    """Plain IoU (%) per class over all pixels; None for a class in neither prediction nor ground truth."""
    out = []
    for c in range(num_classes):
        p, g = pred == c, gt == c
        union = np.logical_or(p, g).sum()
        out.append(None if union == 0 else float(100 * np.logical_and(p, g).sum() / union))
    return out


def thresholded_iou(probs: np.ndarray, gt: np.ndarray) -> list[float | None]:
    """Per class: IoU (%) of `probability > t` against the class, averaged over THRESHOLDS."""
    out = []
    for c in range(probs.shape[1]):
        g = gt == c
        if not g.any():
            out.append(None)
            continue
        vals = [np.logical_and(probs[:, c] > t, g).sum() / max(np.logical_or(probs[:, c] > t, g).sum(), 1)
                for t in THRESHOLDS]
        out.append(float(100 * np.mean(vals)))
    return out


def mean_present(values: list[float | None], gt: np.ndarray) -> float:
    present = [v for c, v in enumerate(values) if v is not None and (gt == c).any()]
    return float(np.mean(present)) if present else float("nan")
