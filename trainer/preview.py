"""Preview grids: each generated image beside its coloured class mask."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .data import default_palette


def colorize(mask: np.ndarray, palette: list[list[int]] | None) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) colours."""
    table = np.asarray(palette, dtype=np.uint8) if palette else default_palette(256)
    if table.shape[0] <= int(mask.max()):
        table = np.concatenate([table, default_palette(256)[table.shape[0]:]])
    return table[mask]


def preview_grid(images: np.ndarray, masks: np.ndarray | None, palette: list[list[int]] | None,
                 columns: int = 2, pad: int = 2) -> bytes:
    """images (N, H, W, 3) uint8, masks (N, H, W) -> PNG bytes of a grid of (image | mask) tiles."""
    n, h, w, _ = images.shape
    tile_w = 2 * w + pad if masks is not None else w
    rows = -(-n // columns)
    canvas = np.full((rows * (h + pad) + pad, columns * (tile_w + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        y = pad + (i // columns) * (h + pad)
        x = pad + (i % columns) * (tile_w + pad)
        canvas[y:y + h, x:x + w] = images[i]
        if masks is not None:
            canvas[y:y + h, x + w + pad:x + 2 * w + pad] = colorize(masks[i], palette)
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    return buf.getvalue()
