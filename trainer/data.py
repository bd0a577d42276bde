"""Training data: one image, a folder of frames, or a video, each optionally with segmentation masks.

Mask encodings: palette PNG or 8-bit grayscale holding class ids (0 = background), binary black/white object
masks (anti-aliased edges are thresholded at 128), and RGB colour masks (each distinct colour is a class;
black, or else the most frequent colour, is background). Class ids found across all masks are renumbered
0..M-1 in ascending order; the original ids / colours and the palette are kept for config.json.

Frames of different sizes are resized to the first frame's size with a warning (as the reference does);
a mask must always have the size of its own frame.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from zoo.errors import UserError
from zoo.files import sha256_file

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif"}
MAX_CLASSES = 255


class DataError(UserError):
    """A user's input file that cannot be used; the message names the file and the problem."""


@dataclass
class Frame:
    name: str
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray | None = None  # (H, W) raw mask pixels before class renumbering (ids or packed colours)


@dataclass
class Scene:
    frames: list[np.ndarray]  # (H, W, 3) uint8, all one size
    masks: list[np.ndarray] | None  # (H, W) uint8 class ids 0..M-1
    names: list[str]
    class_names: list[str] = field(default_factory=list)
    palette: list[list[int]] = field(default_factory=list)  # RGB per class
    source_ids: list[int] = field(default_factory=list)  # original id (or packed RGB) per class
    mask_encoding: str | None = None
    fingerprint: dict = field(default_factory=dict)  # file name -> sha256

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.masks is not None else 0

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].shape[:2]


def _open_image(path: Path) -> Image.Image:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        img = Image.open(path)
        img.load()
        return img
    except Image.DecompressionBombError:
        raise DataError(f"{path}: more than {Image.MAX_IMAGE_PIXELS:,} pixels (Pillow's decompression-bomb limit); "
                        "resize it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({e.__class__.__name__}: {e})") from None


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8, upright: the EXIF orientation of phone photos is applied (masks carry none, so a
    mask must be drawn on the upright picture), 16-bit and float pixels are scaled, not clipped."""
    img = _open_image(path)
    try:
        img = ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError) as e:   # a broken EXIF block
        raise DataError(f"{path}: cannot read its EXIF orientation ({e})") from None
    if img.mode in WIDE_MODES:
        return _wide_to_rgb(np.asarray(img), img.mode, path)
    if img.mode not in NARROW_MODES:
        raise DataError(f"{path}: unsupported image mode {img.mode}; save it as 8- or 16-bit RGB or grayscale")
    return np.asarray(img.convert("RGB"))


NARROW_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"}
WIDE_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


def _wide_to_rgb(arr: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """16-bit, 32-bit integer and float grayscale -> 8-bit: Pillow's own conversion clips them at 255."""
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: the image holds NaN or infinite pixels")
    lo, hi = arr.min(), arr.max()
    if mode == "F" and lo >= 0 and hi <= 1:
        arr = arr * 255          # float images in 0..1
    elif mode.startswith("I;16") or (mode == "I" and 255 < hi <= 65535 and lo >= 0):
        arr = arr / 257          # 16-bit: 65535 -> 255
    elif lo < 0 or hi > 255:
        raise DataError(f"{path}: {mode} pixels range {lo:g} .. {hi:g}, which has no 8-bit reading; "
                        "save it as 8- or 16-bit, or as float in 0..1")
    gray = np.rint(arr).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def read_mask_pixels(path: Path) -> tuple[np.ndarray, str, list[int] | None]:
    """Raw mask values (H, W) as int64, the encoding, and the file's palette (flat RGB list) if it has one.

    RGB colours are packed as r<<16 | g<<8 | b; binary masks are thresholded to {0, 1}.
    """
    img = _open_image(path)
    if img.mode == "P":
        return np.asarray(img).astype(np.int64), "palette", img.getpalette()
    if img.mode == "1":
        return np.asarray(img).astype(np.int64), "binary", None
    if img.mode in ("RGB", "RGBA"):
        rgb = np.asarray(img.convert("RGB")).astype(np.int64)
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return _gray_values(rgb[..., 0])
        return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2], "rgb", None
    if img.mode in ("L", "LA", "I", "I;16", "I;16B", "F"):
        arr = np.asarray(img.convert("L") if img.mode in ("LA", "F") else img).astype(np.int64)
        if img.mode.startswith("I") and arr.max() > 255:
            raise DataError(f"{path}: mask has ids above 255 (more than {MAX_CLASSES} classes)")
        return _gray_values(arr)
    raise DataError(f"{path}: unsupported mask mode {img.mode}")


def _gray_values(arr: np.ndarray) -> tuple[np.ndarray, str, None]:
    """Binary black/white (possibly anti-aliased) masks -> {0, 1}; anything else holds class ids."""
    extremes = np.count_nonzero((arr == 0) | (arr == 255))
    if arr.max() == 255 and extremes >= 0.9 * arr.size:
        return (arr >= 128).astype(np.int64), "binary", None
    return arr, "ids", None


def _class_table(masks: list[np.ndarray], encoding: str, file_palette: list[int] | None,
                 where: str) -> tuple[list[int], list[list[int]]]:
    """Sorted source ids (background first) and an RGB palette per class."""
    values = np.unique(np.concatenate([np.unique(m) for m in masks]))
    if encoding == "rgb":
        counts = {int(v): 0 for v in values}
        for m in masks:
            u, c = np.unique(m, return_counts=True)
            for v, n in zip(u, c):
                counts[int(v)] += int(n)
        background = 0 if 0 in counts else max(counts, key=counts.get)
        ids = [background] + sorted(v for v in counts if v != background)
    else:
        ids = sorted(set(int(v) for v in values) | {0})
    if len(ids) > MAX_CLASSES:
        raise DataError(f"{where}: mask has {len(ids)} classes, more than {MAX_CLASSES}"
                        + (" (a JPEG-compressed colour mask? save masks as PNG)" if encoding == "rgb" else ""))
    if len(ids) < 2:
        raise DataError(f"{where}: mask has only background (class 0); nothing to segment")
    if encoding == "rgb":
        palette = [[(v >> 16) & 255, (v >> 8) & 255, v & 255] for v in ids]
    elif file_palette is not None:
        palette = [file_palette[3 * v: 3 * v + 3] for v in ids]
    else:
        palette = [[int(v) for v in c] for c in default_palette(len(ids))]  # JSON needs ints, not numpy
    return ids, palette


def default_palette(n: int) -> np.ndarray:
    """Pascal VOC's colour map: class 0 black, then well-separated colours."""
    out = np.zeros((max(n, 256), 3), dtype=np.uint8)
    for i in range(out.shape[0]):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out[:n]


def _list_dir(folder: Path, exts: set[str], what: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in exts and p.is_file())
    if not files:
        raise DataError(f"{folder}: no {what} found (looked for {', '.join(sorted(exts))})")
    return files


def _match_masks(frames: list[Path], mask_dir: Path) -> list[Path]:
    masks = {p.stem: p for p in _list_dir(mask_dir, IMAGE_EXTS, "mask images")}
    out = []
    for f in frames:
        if f.stem not in masks:
            raise DataError(f"{f}: no matching mask '{f.stem}.*' in {mask_dir}")
        out.append(masks[f.stem])
    return out


def read_video(path: Path, every: int = 1, max_frames: int | None = None) -> list[tuple[str, np.ndarray]]:
    """Decode frames 0, every, 2*every, ... with the ffmpeg binary shipped by imageio-ffmpeg."""
    import imageio_ffmpeg

    if not path.exists():
        raise DataError(f"{path}: no such file")
    out: list[tuple[str, np.ndarray]] = []
    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        w, h = meta["size"]
        for i, buf in enumerate(reader):
            if i % every == 0:
                out.append((f"{i:06d}", np.frombuffer(buf, np.uint8).reshape(h, w, 3).copy()))
                if max_frames is not None and len(out) >= max_frames:
                    break
        reader.close()
    except (RuntimeError, OSError, StopIteration, KeyError, ValueError) as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else e.__class__.__name__
        raise DataError(f"{path}: cannot decode video ({msg})") from None
    if not out:
        raise DataError(f"{path}: video has no decodable frames")
    return out


def load_scene(source: Path, mask: Path | None = None, every: int = 1, max_frames: int | None = None,
               class_names_file: Path | None = None, use_masks: bool = True) -> Scene:
    """Read and validate every input before anything is written."""
    source = Path(source)
    mask = Path(mask) if (mask is not None and use_masks) else None
    fingerprint: dict[str, str] = {}
    mask_paths: list[Path] | None = None
    if source.is_dir():
        paths = _list_dir(source, IMAGE_EXTS, "frame images")[::every][:max_frames]
        if mask is not None:
            mask_paths = _match_masks(paths, mask)
        named = [(p.stem, read_image(p)) for p in paths]
        for p in paths:
            fingerprint[p.name] = sha256_file(p)
    elif source.suffix.lower() in VIDEO_EXTS:
        named = read_video(source, every, max_frames)
        fingerprint[source.name] = sha256_file(source)
        if mask is not None:
            masks_by_stem = {p.stem: p for p in _list_dir(mask, IMAGE_EXTS, "mask images")}
            mask_paths = []
            for name, _ in named:
                hit = masks_by_stem.get(name) or masks_by_stem.get(str(int(name)))
                if hit is None:
                    raise DataError(f"{mask}: no mask for video frame {int(name)} (expected '{name}.png')")
                mask_paths.append(hit)
    else:
        named = [(source.stem, read_image(source))]
        fingerprint[source.name] = sha256_file(source)
        if mask is not None:
            if mask.is_dir():
                raise DataError(f"{mask}: a single image needs a mask file, not a folder")
            mask_paths = [mask]

    frames, names = _same_size([img for _, img in named], [n for n, _ in named], source)
    scene = Scene(frames=frames, masks=None, names=names, fingerprint=fingerprint)
    if mask_paths is not None:
        _attach_masks(scene, [img for _, img in named], mask_paths, fingerprint)
    if class_names_file is not None:
        _attach_names(scene, Path(class_names_file))
    return scene


def _same_size(frames: list[np.ndarray], names: list[str], source: Path) -> tuple[list[np.ndarray], list[str]]:
    h, w = frames[0].shape[:2]
    out = []
    for name, f in zip(names, frames):
        if f.shape[:2] != (h, w):
            warnings.warn(f"{source}: frame {name} is {f.shape[1]}x{f.shape[0]}, resizing to {w}x{h} like the first")
            f = np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR))
        out.append(f)
    return out, names


def _attach_masks(scene: Scene, originals: list[np.ndarray], paths: list[Path], fingerprint: dict) -> None:
    raw, encodings, file_palette = [], set(), None
    for img, p in zip(originals, paths):
        values, enc, pal = read_mask_pixels(p)
        if values.shape != img.shape[:2]:
            raise DataError(f"{p}: mask is {values.shape[1]}x{values.shape[0]} but its image is "
                            f"{img.shape[1]}x{img.shape[0]}")
        raw.append(values)
        encodings.add(enc)
        file_palette = file_palette or pal
        fingerprint[p.name] = sha256_file(p)
    if len(encodings) > 1:
        raise DataError(f"{paths[0].parent}: masks mix encodings ({', '.join(sorted(encodings))})")
    enc = encodings.pop()
    ids, palette = _class_table(raw, enc, file_palette, str(paths[0] if len(paths) == 1 else paths[0].parent))
    lut = {v: i for i, v in enumerate(ids)}
    h, w = scene.size
    masks = []
    for values in raw:
        u, inv = np.unique(values, return_inverse=True)
        m = np.array([lut[int(v)] for v in u], dtype=np.uint8)[inv].reshape(values.shape)
        if m.shape != (h, w):
            m = np.asarray(Image.fromarray(m).resize((w, h), Image.NEAREST))
        masks.append(m)
    scene.masks = masks
    scene.source_ids = ids
    scene.palette = palette
    scene.mask_encoding = enc
    scene.class_names = default_class_names(len(ids))


def default_class_names(count: int) -> list[str]:
    """Names for `count` mask classes when none are given: background, class_1, class_2, ..."""
    return ["background"] + [f"class_{i}" for i in range(1, count)]


def _attach_names(scene: Scene, path: Path) -> None:
    if scene.masks is None:
        raise DataError(f"{path}: class names given but no masks")
    try:
        names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read class names ({e})") from None
    if len(names) != scene.num_classes:
        raise DataError(f"{path}: {len(names)} names for {scene.num_classes} classes in the masks "
                        "(one name per line, background first)")
    scene.class_names = names


def to_training_arrays(scene: Scene, height: int, width: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Frames resized (bilinear) to the training resolution, (N, H, W, 3) uint8; masks resized nearest,
    (N, H, W) uint8 class ids."""
    imgs = np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in scene.frames])
    masks = None
    if scene.masks is not None:
        masks = np.stack([np.asarray(Image.fromarray(m).resize((width, height), Image.NEAREST)) for m in scene.masks])
    return imgs, masks
