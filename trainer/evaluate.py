"""`trainer eval`: diversity, memorisation, mask alignment, class frequencies and quality of a trained scene,
against its training frames, all computed offline. SIFID and LPIPS only with user-given weight files.

A trainer run is sampled with its EMA generator in PyTorch; an entry (folder or scene id) through the runtime.
Both use the runtime's latent scheme, so sample i is the same image `runtime sample --seed S` writes as i.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runtime.latents import latent_grid, latent_vectors
from zoo.errors import UserError
from zoo.quality import Scorer

from . import metrics
from .run import Run

logger = logging.getLogger(__name__)


@dataclass
class Material:
    """What is evaluated: generated samples and the real frames, at the training size."""

    name: str
    images: np.ndarray
    masks: np.ndarray | None
    frames: np.ndarray
    frame_masks: np.ndarray | None
    class_names: list[str]
    palette: list[list[int]]
    scorer: Scorer


@torch.no_grad()
def _sample_run(run: Run, count: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    from .generator import to_uint8

    if run.model_config.arch == "singan":
        from .singan import sample_uint8

        return sample_uint8(run.singan()[0], np.arange(count), seed)
    G, _ = run.ema_generator()
    cfg = G.cfg
    images, masks = [], []
    for idx in np.array_split(np.arange(count), max(1, count // 16)):
        z = torch.from_numpy(latent_grid(latent_vectors(seed, idx, cfg.noise_dim), (cfg.grid_h, cfg.grid_w)))
        out = G.synthesize(G.grid_features(z))
        img, mask = to_uint8(out.images[-1], out.mask_logits)
        images.append(img.numpy())
        masks.append(None if mask is None else mask.numpy())
    return np.concatenate(images), None if masks[0] is None else np.concatenate(masks)


def _frames_from_files(image: Path, mask: Path | None, size: tuple[int, int], classes: int):
    from .data import load_scene, to_training_arrays

    scene = load_scene(Path(image), Path(mask) if mask else None)
    if mask and scene.num_classes != classes:
        raise UserError(f"{mask}: has {scene.num_classes} classes, the model {classes}")
    return to_training_arrays(scene, *size)


def _entry_frames(target: str, entry) -> tuple[np.ndarray, np.ndarray | None]:
    from runtime import training_frames

    if training_frames.has_training_frames(entry.config):
        return training_frames.read(entry.root, entry.config)
    if (entry.root / "checkpoint" / "data.safetensors").is_file():
        return Run.open(entry.root / "checkpoint").frames()
    raise UserError(f"{target}: the entry holds no training frames (exported with --no-training-data); pass the "
                    "training image with --image (and --mask)")


def gather(target: str, count: int, *, seed: int, image: Path | None = None, mask: Path | None = None,
           index: str | None = None) -> Material:
    path = Path(target)
    if path.is_dir() and Run.is_run(path):
        run = Run.open(path)
        images, masks = _sample_run(run, count, seed)
        frames, frame_masks = run.frames()
        data = run.config.get("data", {})
        return Material(str(path), images, masks, frames, frame_masks, data.get("class_names") or [],
                        data.get("palette") or [], Scorer.from_frames(frames))
    from runtime.sampler import Sampler, find_scene

    scene = find_scene(target, index)
    entry = scene.entry
    size = entry.config.training_size
    if image is None:
        frames, frame_masks = _entry_frames(target, entry)
    else:
        frames, frame_masks = _frames_from_files(image, mask, size, len(entry.class_names))
    if entry.has_masks and frame_masks is None:
        raise UserError(f"{target}: a mask model needs the training mask too (--mask)")
    images, masks = Sampler(entry).sample(indices=np.arange(count), seed=seed)
    q = entry.root / "quality.json"
    scorer = Scorer.load(q) if "quality.json" in entry.config.files else Scorer.from_frames(frames)
    return Material(scene.ref.label, images, masks, frames, frame_masks, entry.class_names, entry.palette, scorer)


def evaluate(m: Material, *, seed: int = 0, unet_steps: int = 500, inception: Path | None = None,
             lpips: Path | None = None) -> dict:
    timing = {}
    t = time.perf_counter()
    dist, matches = metrics.nearest_training_view(m.images, m.frames)
    copy_below = metrics.near_copy_threshold(m.frames)
    image_copy = dist < copy_below
    layout = None if m.masks is None else metrics.layout_iou(m.masks, m.frame_masks, matches, len(m.class_names))
    copy = image_copy if layout is None else image_copy & (layout >= metrics.LAYOUT_COPY)
    scores = m.scorer.scores(m.images)
    pairs = metrics.sample_pairs(len(m.images), 1000, seed)
    result = {
        "scene": m.name, "samples": len(m.images), "seed": seed, "size": list(m.images.shape[1:3]),
        "training_frames": len(m.frames), "classes": m.class_names,
        "diversity": {"pixel_diversity": round(metrics.pixel_diversity(m.images, m.frames), 5),
                      "ms_ssim": metrics.ms_ssim_diversity(m.images, 1000, seed)},
        "memorisation": {"dist_to_train_mean": round(float(dist.mean()), 5),
                         "dist_to_train_min": round(float(dist.min()), 5),
                         "near_copy_threshold": round(copy_below, 5),
                         "image_near_copies": round(float(image_copy.mean()), 5),
                         **({} if layout is None else {"layout_iou_mean": round(float(layout.mean()), 5),
                                                        "layout_copy_threshold": metrics.LAYOUT_COPY}),
                         "near_copies": round(float(copy.mean()), 5)},
        "quality_score": {"score": "patch-frechet-v1", "mean": round(float(scores.mean()), 6),
                          "median": round(float(np.median(scores)), 6),
                          "p85": round(float(np.quantile(scores, 0.85)), 6)},
    }
    timing["diversity_and_memorisation_s"] = round(time.perf_counter() - t, 2)
    if m.masks is not None:
        t = time.perf_counter()
        logger.info(f"mask alignment: training a UNet on {len(m.images)} generated pairs ({unet_steps} steps)")
        from .segmenter import mask_alignment

        n = len(m.class_names)
        result["class_frequencies"] = metrics.class_frequencies(m.masks, m.frame_masks, n)
        result["mask_alignment"] = _rounded(mask_alignment(m.images, m.masks, m.frames, m.frame_masks, n,
                                                           steps=unet_steps, seed=seed))
        timing["mask_alignment_s"] = round(time.perf_counter() - t, 2)
    result["sifid"] = _optional(inception, "--inception-weights", lambda: _sifid(m, inception))
    result["lpips"] = _optional(lpips, "--lpips-weights", lambda: _lpips(m, matches, lpips, pairs))
    per_sifid = result["sifid"].pop("per_sample", None)
    per_lpips = result["lpips"].pop("per_sample_dist", None)
    result["per_sample"] = [
        {"index": i, "quality_score": round(float(scores[i]), 6), "dist_to_train": round(float(dist[i]), 5),
         **({} if layout is None else {"layout_iou": round(float(layout[i]), 5)}), "near_copy": bool(copy[i]),
         "nearest_region": dict(zip(("frame", "flipped", "scale", "y", "x"), matches[i])),
         **({"sifid": per_sifid[i]} if per_sifid else {}), **({"lpips_dist_to_train": per_lpips[i]} if per_lpips else {})}
        for i in range(len(m.images))]
    result["timing"] = timing
    result["definitions"] = metrics.DEFINITIONS
    return result


def _sifid(m: Material, weights: Path) -> dict:
    from .backbones import sifid

    return sifid(m.images, m.frames, weights)


def _lpips(m: Material, matches: list[tuple], weights: Path, pairs: np.ndarray) -> dict:
    from .backbones import lpips_metrics

    nearest = np.stack([metrics.training_view(m.frames, match) for match in matches])
    return lpips_metrics(m.images, nearest, weights, pairs)


def _optional(path: Path | None, flag: str, compute) -> dict:
    if path is None:
        return {"available": False, "reason": f"needs ImageNet backbone weights: pass {flag} FILE (never computed "
                                              "with a random backbone)"}
    return {"available": True, **compute()}


def _rounded(d: dict) -> dict:
    def r(v):
        if isinstance(v, float):
            return round(v, 3)
        if isinstance(v, list):
            return [r(x) for x in v]
        return v

    return {k: r(v) for k, v in d.items()}
