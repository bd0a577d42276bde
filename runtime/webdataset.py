"""WebDataset shards: a tar per block of samples, readable by the `webdataset` package or `read_shards`.

Each sample is `<key>.png` (RGB image) and `<key>.mask.png` (palette PNG, pixel = class id) with
key = the 9-digit sample index (keys must not contain dots). Decoding masks with webdataset's `"pil"` or
`"l8"` decoders converts palette images to colours or luminance and destroys the class ids: use
`decode_mask` (e.g. `dataset.map_dict(**{"mask.png": decode_mask})`) or `read_shards`, which keep them.
"""

from __future__ import annotations

import io
import tarfile
from typing import Iterator

import numpy as np
from PIL import Image

from .writer import image_png_bytes, mask_png_bytes


def decode_mask(data: bytes) -> np.ndarray:
    """PNG bytes of a palette mask -> (H, W) uint8 class ids (the palette indices, not colours)."""
    img = Image.open(io.BytesIO(data))
    if img.mode not in ("P", "L"):
        raise ValueError(f"expected a palette or grayscale class-id mask, got mode {img.mode}")
    return np.asarray(img)


def shard_bytes(indices, images: np.ndarray, masks: np.ndarray | None, palette: list[int],
                compress_level: int = 1) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for k, index in enumerate(indices):
            key = f"{int(index):09d}"
            files = [(f"{key}.png", image_png_bytes(images[k], compress_level))]
            if masks is not None:
                files.append((f"{key}.mask.png", mask_png_bytes(masks[k], palette, compress_level)))
            for name, data in files:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def read_shards(paths) -> Iterator[dict]:
    """Yields {"index", "image" (H, W, 3) uint8, "mask" (H, W) uint8 class ids} in shard order; paths may be URIs
    (`s3://...`, read through fsspec)."""
    import fsspec

    for path in paths:
        with fsspec.open(str(path), "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
            group: dict[str, bytes] = {}
            key = None
            for member in tar:
                k, _, ext = member.name.partition(".")
                if key is not None and k != key:
                    yield _decode(key, group)
                    group = {}
                key = k
                group[ext] = tar.extractfile(member).read()
            if key is not None:
                yield _decode(key, group)


def _decode(key: str, group: dict[str, bytes]) -> dict:
    item = {"index": int(key), "image": np.asarray(Image.open(io.BytesIO(group["png"])).convert("RGB"))}
    if "mask.png" in group:
        item["mask"] = decode_mask(group["mask.png"])
    return item
