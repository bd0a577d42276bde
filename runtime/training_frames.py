"""The one owner of an entry's training frames: training/frame-NNN.png (RGB) and training/mask-NNN.png (palette
PNG whose indices are the class ids), at the training size, so that `trainer eval` works on an entry alone.

Written by the exporter unless the user opts out (`--no-training-data`, for private images); read back with every
check a downloaded file needs: the names come from config.json's file list, which a pull has already hash-checked,
and every picture must have the entry's training size and a class id the entry knows.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from zoo.entry_config import EntryConfig
from zoo.errors import UserError

from .writer import flat_palette, mask_png_bytes, png_bytes

__all__ = ["encode", "has_training_frames", "read"]

FRAME, MASK = "training/frame-{:03d}.png", "training/mask-{:03d}.png"
NAME = re.compile(r"training/(frame|mask)-(\d{3})\.png")
MAX_FRAMES = 1000


def encode(frames: np.ndarray, masks: np.ndarray | None, palette: list[list[int]] | None) -> dict[str, bytes]:
    """frames (N, H, W, 3) uint8, masks (N, H, W) class ids or None -> {entry file name: PNG bytes}."""
    from PIL import Image

    if len(frames) > MAX_FRAMES:
        raise UserError(f"{len(frames)} training frames: an entry holds at most {MAX_FRAMES} "
                        "(export with --no-training-data)")
    out = {}
    # without a palette, grey levels: Pillow renumbers the indices of a palette-less "P" image when it saves
    flat = flat_palette(palette) if palette else [v for c in range(256) for v in (c, c, c)]
    for i, frame in enumerate(frames):
        out[FRAME.format(i)] = png_bytes(Image.fromarray(np.ascontiguousarray(frame), "RGB"), 9)
        if masks is not None:
            out[MASK.format(i)] = mask_png_bytes(np.ascontiguousarray(masks[i]).astype(np.uint8), flat, 9)
    return out


def has_training_frames(config: EntryConfig) -> bool:
    return FRAME.format(0) in config.files


def read(root: Path, config: EntryConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """The frames (N, H, W, 3) uint8 and masks (N, H, W) uint8 class ids (None without a mask branch)."""
    found = {}
    for name in config.files:
        m = NAME.fullmatch(name)
        if m:
            found.setdefault(m[1], set()).add(int(m[2]))
    count = len(found.get("frame", ()))
    if not count or found["frame"] != set(range(count)):
        raise UserError(f"{root}: training/ must hold frame-000.png onwards without gaps")
    if config.has_masks and found.get("mask") != set(range(count)):
        raise UserError(f"{root}: training/ must hold one mask-NNN.png per frame-NNN.png")
    frames = np.stack([_load(root, FRAME.format(i), config, "RGB") for i in range(count)])
    if not config.has_masks:
        return frames, None
    masks = np.stack([_load(root, MASK.format(i), config, "P") for i in range(count)])
    if masks.max() >= len(config.class_names):
        raise UserError(f"{root / 'training'}: a mask holds class {int(masks.max())}, the entry has "
                        f"{len(config.class_names)} classes")
    return frames, masks


def _load(root: Path, name: str, config: EntryConfig, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    path = root / name
    h, w = config.training_size
    try:
        with Image.open(path) as im:
            if im.format != "PNG" or im.size != (w, h) or im.mode != mode:
                raise UserError(f"{path}: expected a {w}x{h} {mode} PNG, found a {im.size[0]}x{im.size[1]} "
                                f"{im.mode} {im.format}")
            return np.asarray(im.convert(mode) if mode == "RGB" else im, dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise UserError(f"{path}: unreadable ({e})") from None
