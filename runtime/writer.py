"""Writing samples as a dataset folder that tools read directly.

    images/000000000.png   RGB
    masks/000000000.png    palette PNG, pixel value = class id
    previews/000000000.png coloured mask (only with --mask-preview)
    metadata.jsonl         file_name, mask_file_name, index, seed (HF `imagefolder` reads the pairs)
    dataset.json           provenance

Every file is written to a temp name and renamed. The mask is written before the image, so a sample is
complete exactly when its image exists.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from zoo import files

NAME = "{:09d}.png"


def atomic_write(path: Path, data: bytes) -> None:
    """Samples are many small files: no fsync (a resumed job rebuilds its list from the files that are whole), and
    one job writes each name (zoo.files.write_whole)."""
    files.write_whole(path, data)


def png_bytes(img: Image.Image, compress_level: int) -> bytes:
    """PNG of an image through Pillow (masks, previews, training frames; images at levels other than 1)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


PAETH_ROWS = 256   # rows filtered at a time


def image_png_bytes(rgb: np.ndarray, compress_level: int) -> bytes:
    """PNG of a sampled (H, W, 3) uint8 image. Level 1 (the default) writes every row with the Paeth filter and
    zlib's Huffman-only coding: after the row filter, LZ77 finds almost nothing in sampled images, so it gives about
    zlib level 6's size (coins: 36.9 KiB; Pillow 36.8 with Huffman-only coding, 37.1 at level 1, 35.9 at level 6) in
    two thirds of Pillow's time (0.74-0.83 against 1.15-1.22 ms with Huffman-only coding, 2.5 ms at level 1): Pillow
    tries all five row filters on every row and has no setting for the filter. Other levels go through Pillow.
    Pixels are the same either way."""
    if compress_level != 1:
        return png_bytes(Image.fromarray(rgb), compress_level)
    h, w, _ = rgb.shape
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
    # in blocks of rows, so that a large custom size does not hold a dozen int16 copies of the image
    data = [deflate.compress(_paeth_rows(rgb[max(0, r - 1):r + PAETH_ROWS], above=r > 0))
            for r in range(0, h, PAETH_ROWS)]
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", b"".join(data) + deflate.flush()) + _chunk(b"IEND", b""))


def _paeth_rows(rgb: np.ndarray, *, above: bool) -> np.ndarray:
    """(H, W, 3) uint8 -> PNG scanlines, each filter type 4: every byte minus the Paeth predictor of its left (a),
    upper (b) and upper-left (c) neighbours, zero outside the image (PNG spec 9.4). With `above`, rgb's first row
    is the row above the block: it only gives the upper neighbours of the next."""
    h, w, _ = rgb.shape
    x = rgb.reshape(h, 3 * w).astype(np.int16)
    a, b, c = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    a[:, 3:], b[1:], c[1:, 3:] = x[:, :-3], x[:-1], x[:-1, :-3]
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)   # |p - a|, |p - b|, |p - c| for p = a + b - c
    predictor = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    rows = np.empty((h, 1 + 3 * w), np.uint8)
    rows[:, 0] = 4
    np.subtract(x, predictor, out=rows[:, 1:], casting="unsafe")   # modulo 256
    return rows[1:] if above else rows


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def mask_png_bytes(mask: np.ndarray, palette: list[int], compress_level: int) -> bytes:
    """A class-id mask as a palette PNG: pixel values are class ids, and viewers show the class colours."""
    img = Image.fromarray(mask, "P")
    img.putpalette(palette)
    return png_bytes(img, compress_level)


def encode_batch(out: str, indices: np.ndarray, images: np.ndarray, masks: np.ndarray | None,
                 palette: list[int], compress_level: int, preview: bool) -> list[int]:
    """Runs in a worker process: write one batch of samples; returns the indices written."""
    root = Path(out)
    done = []
    for k, index in enumerate(indices):
        name = NAME.format(int(index))
        if masks is not None:
            atomic_write(root / "masks" / name, mask_png_bytes(masks[k], palette, compress_level))
            if preview:
                colours = np.asarray(palette, np.uint8).reshape(-1, 3)[masks[k]]
                atomic_write(root / "previews" / name, image_png_bytes(colours, compress_level))
        atomic_write(root / "images" / name, image_png_bytes(images[k], compress_level))
        done.append(int(index))
    return done


SHARD_EXT = {"webdataset": ".tar", "npz": ".npz"}


def complete_indices(out, fmt: str = "png") -> set[int]:
    """Samples already written to `out` (an Output, a folder or a URI): PNGs whose image exists, or every index of
    a shard that exists."""
    from .output import Output

    output = out if isinstance(out, Output) else Output(out)
    if fmt == "png":
        return {int(n[:-4]) for n in output.names("images") if n.endswith(".png") and n[:-4].isdigit()}
    done: set[int] = set()
    for n in output.names("shards"):
        first, _, last = n.removesuffix(SHARD_EXT[fmt]).partition("-") if n.endswith(SHARD_EXT[fmt]) else ("", "", "")
        if first.isdigit() and last.isdigit():
            done.update(range(int(first), int(last) + 1))
    return done


def shard_name(indices) -> str:
    return f"{int(indices[0]):09d}-{int(indices[-1]):09d}"


def npz_bytes(indices, images, masks) -> bytes:
    """One shard of raw arrays (no encoding cost)."""
    buf = io.BytesIO()
    arrays = {"indices": np.asarray(indices, np.int64), "images": images}
    if masks is not None:
        arrays["masks"] = masks
    np.savez(buf, **arrays)
    return buf.getvalue()


def write_metadata(out: Path, indices: set[int], seed: int, has_masks: bool) -> None:
    lines = []
    for i in sorted(indices):
        row = {"file_name": f"images/{NAME.format(i)}"}
        if has_masks:
            row["mask_file_name"] = f"masks/{NAME.format(i)}"
        lines.append(json.dumps({**row, "index": i, "seed": seed}))
    atomic_write(out / "metadata.jsonl", ("\n".join(lines) + "\n" if lines else "").encode())


def flat_palette(palette: list[list[int]]) -> list[int]:
    flat = [c for rgb in palette for c in rgb]
    return flat + [0] * (768 - len(flat))
