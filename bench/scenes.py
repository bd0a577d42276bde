"""The robustness suite's scenes, composed from scikit-image's bundled images (licence-clean, installed from the
package index) with exact masks: every mask is drawn together with its image, never estimated from it.

    .venv/bin/python bench/scenes.py OUT_DIR [NAME ...]

writes OUT_DIR/NAME/ with image.png + mask.png (palette PNG, pixel = class id) + classes.txt, or frames/ and
masks/ folders for the video scene, or image.png alone for the scene without a mask. Every scene is a pure
function of its name (fixed seeds), so the suite can be rebuilt anywhere.

skimage.data images used: grass, brick, gravel (textures, public domain, Brodatz-like photographs by
Stéfan van der Walt / the scikit-image team), coins (public domain), retina (CC0, Häggström), hubble_deep_field
(public domain, NASA), immunohistochemistry (public domain).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class SceneSpec:
    name: str
    what: str  # one line for the suite table
    frames: list[np.ndarray]  # (H, W, 3) uint8
    masks: list[np.ndarray] | None  # (H, W) uint8 class ids
    classes: list[str] = field(default_factory=list)
    palette: list[tuple[int, int, int]] = field(default_factory=list)
    binary: bool = False  # save the mask black/white (the binary encoding) instead of as a palette PNG


# -- helpers ------------------------------------------------------------------------------------------------
def _texture(name: str, h: int, w: int, scale: float = 1.0, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A grayscale skimage texture as float in [0, 1], resized by `scale` and cropped/tiled to (h, w)."""
    from skimage import data

    img = Image.fromarray(getattr(data, name)())
    if scale != 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    a = np.asarray(img, np.float32) / 255.0
    need = (max(0, h + offset[0] - a.shape[0]), max(0, w + offset[1] - a.shape[1]))
    a = np.pad(a, ((0, need[0]), (0, need[1])), mode="symmetric")  # mirrored, so no seam
    return a[offset[0]:offset[0] + h, offset[1]:offset[1] + w]


def _tint(gray: np.ndarray, dark: tuple, light: tuple) -> np.ndarray:
    """Map a [0, 1] texture to colours between `dark` and `light` (RGB 0-255), float (H, W, 3)."""
    g = (gray - gray.mean()) / (gray.std() + 1e-6) * 0.18 + 0.5
    g = np.clip(g, 0, 1)[..., None]
    return np.asarray(dark, np.float32) * (1 - g) + np.asarray(light, np.float32) * g


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> tuple[np.ndarray, np.ndarray]:
    """Boolean ellipse and its normalised radius field (0 at the centre, 1 on the rim)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
    return r <= 1.0, r


def _shade(mask_r: np.ndarray, colour: tuple, h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """A lit sphere-like shading: a highlight up-left of the centre, darker towards the rim."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.sqrt(((y - (cy - 0.35 * ry)) / ry) ** 2 + ((x - (cx - 0.35 * rx)) / rx) ** 2)
    light = np.clip(1.15 - 0.55 * d, 0.35, 1.15)[..., None]
    return np.clip(np.asarray(colour, np.float32) * light + 40 * np.clip(0.35 - d, 0, 1)[..., None] / 0.35, 0, 255)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


# -- the scenes ---------------------------------------------------------------------------------------------
def balloons() -> SceneSpec:
    """The scene of the collapse report: sky gradient, grass ground below a wavy horizon, six shaded balloons
    (~6 % of the pixels) on thin dark strings that are labelled sky. 320x180, 3 classes."""
    h, w = 180, 320
    rng = np.random.default_rng(11)
    y = np.arange(h, dtype=np.float32)[:, None, None] / h
    sky = np.asarray([40, 90, 190], np.float32) * (1 - y) + np.asarray([175, 205, 235], np.float32) * y
    img = np.broadcast_to(sky, (h, w, 3)).copy() + rng.normal(0, 2.0, (h, w, 3))
    xs = np.arange(w)
    horizon = 0.66 * h + 7 * np.sin(xs / w * 2 * np.pi * 1.5 + 0.7) + 3 * np.sin(xs / w * 2 * np.pi * 4.2)
    ground = np.arange(h)[:, None] >= horizon[None, :]
    grass = _tint(_texture("grass", h, w, scale=0.6), (35, 80, 25), (130, 185, 70))
    img[ground] = grass[ground]
    mask = ground.astype(np.uint8)
    colours = [(215, 40, 40), (240, 200, 30), (60, 90, 220), (235, 120, 30), (160, 50, 190), (40, 170, 90)]
    centres = [(32, 38), (55, 95), (28, 160), (62, 212), (36, 262), (70, 300)]
    for (cy, cx), colour in zip(centres, colours):
        cy, cx = cy + rng.integers(-4, 5), cx + rng.integers(-4, 5)
        ry, rx = 15 + rng.integers(-1, 2), 12 + rng.integers(-1, 2)
        # the string: a thin dark line from the knot down, wavering a little; it stays "sky"
        top = int(cy + ry)
        bottom = int(min(horizon[int(cx)] - 2, top + 28 + rng.integers(0, 10)))
        for yy in range(top, bottom):
            xx = int(round(cx + 2 * np.sin((yy - top) / 6.0)))
            if not ground[yy, xx]:
                img[yy, xx] = (45, 40, 35)
        inside, r = _ellipse(h, w, cy, cx, ry, rx)
        img[inside] = _shade(r, colour, h, w, cy, cx, ry, rx)[inside]
        mask[inside] = 2
    return SceneSpec("balloons", "sky gradient / grass ground / 6 small balloons on strings (3 classes)",
                     [_u8(img)], [mask], ["sky", "ground", "balloon"],
                     [(70, 130, 220), (60, 160, 60), (230, 60, 60)])


def stones() -> SceneSpec:
    """Objects on a texture: seven shaded, gravel-textured stones lying on a brick pavement. 320x192, 2 classes."""
    h, w = 192, 320
    rng = np.random.default_rng(12)
    img = _tint(_texture("brick", h, w, scale=0.55), (95, 50, 40), (200, 130, 100))
    mask = np.zeros((h, w), np.uint8)
    grain = _texture("gravel", h, w, scale=0.5)
    for cy, cx in [(40, 50), (35, 170), (80, 260), (100, 110), (150, 40), (155, 190), (150, 285)]:
        cy, cx = cy + rng.integers(-6, 7), cx + rng.integers(-6, 7)
        ry, rx = rng.uniform(14, 22), rng.uniform(16, 26)
        inside, r = _ellipse(h, w, cy, cx, ry, rx)
        colour = np.asarray([150, 150, 140]) * rng.uniform(0.7, 1.1)
        stone = _shade(r, tuple(colour), h, w, cy, cx, ry, rx) * (0.75 + 0.5 * grain[..., None])
        img[inside] = stone[inside]
        mask[inside] = 1
    return SceneSpec("stones", "objects on a texture: 7 stones on brick pavement (2 classes)",
                     [_u8(img)], [mask], ["pavement", "stone"], [(0, 0, 0), (255, 200, 0)])


def wires() -> SceneSpec:
    """Thin structures: three sagging cables (2-3 px at the training size) across a sky and a brick wall,
    with two thin poles. 320x180, 3 classes."""
    h, w = 180, 320
    rng = np.random.default_rng(13)
    y = np.arange(h, dtype=np.float32)[:, None, None] / h
    img = np.broadcast_to(np.asarray([70, 120, 200], np.float32) * (1 - y)
                          + np.asarray([190, 210, 235], np.float32) * y, (h, w, 3)).copy()
    img += rng.normal(0, 2.0, img.shape)
    wall = np.arange(h)[:, None] >= 0.58 * h + np.zeros((1, w))
    img[wall] = _tint(_texture("brick", h, w, scale=0.45), (110, 55, 45), (210, 140, 110))[wall]
    mask = wall.astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    thin = np.zeros((h, w), bool)
    for x0 in (70, 250):  # poles, 5 px wide
        thin |= (np.abs(xx - x0) <= 2.5) & (yy >= 20)
    for base, sag in ((30, 22), (48, 26), (66, 30)):  # cables: parabolas between the poles and beyond
        t = (xx - 160) / 90.0
        cy = base + sag * (t ** 2) * -1 + sag
        thin |= np.abs(yy - cy) <= 2.2
    img[thin] = (35, 30, 30)
    mask[thin] = 2
    return SceneSpec("wires", "thin structures: cables and poles over sky and brick wall (3 classes)",
                     [_u8(img)], [mask], ["sky", "wall", "wire"], [(70, 130, 220), (180, 90, 60), (255, 255, 0)])


def beads() -> SceneSpec:
    """Many small objects, binary mask: 40 small dark beads (radius 4-8 px) on a tissue section
    (skimage immunohistochemistry). 320x192; the mask is saved black/white (binary encoding)."""
    h, w = 192, 320
    rng = np.random.default_rng(14)
    from skimage import data

    img = np.asarray(Image.fromarray(data.immunohistochemistry()[:307]).resize((w, h), Image.BILINEAR), np.float32)
    mask = np.zeros((h, w), np.uint8)
    placed = []
    while len(placed) < 40:
        cy, cx, rad = rng.uniform(8, h - 8), rng.uniform(8, w - 8), rng.uniform(4, 8)
        if any((cy - a) ** 2 + (cx - b) ** 2 < (rad + c + 4) ** 2 for a, b, c in placed):
            continue
        placed.append((cy, cx, rad))
        inside, r = _ellipse(h, w, cy, cx, rad, rad)
        bead = _shade(r, (70, 45, 110), h, w, cy, cx, rad, rad)
        img[inside] = bead[inside]
        mask[inside] = 1
    return SceneSpec("beads", "many small objects: 40 beads on a tissue section (binary black/white mask)",
                     [_u8(img)], [mask], ["tissue", "bead"], [(0, 0, 0), (255, 255, 255)], binary=True)


def valley() -> SceneSpec:
    """5+ classes: sky, blue-grey hills, a brick wall band, grass, a gravel path, and four red balls.
    320x192, 6 classes."""
    h, w = 192, 320
    rng = np.random.default_rng(15)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    y = yy[..., None] / h
    img = np.asarray([60, 110, 200], np.float32) * (1 - y) + np.asarray([200, 215, 235], np.float32) * y
    mask = np.zeros((h, w), np.uint8)
    hills = yy >= 0.30 * h + 12 * np.sin(xx / w * 2 * np.pi * 1.2 + 1.0) + 6 * np.sin(xx / w * 2 * np.pi * 3.1)
    img[hills] = _tint(_texture("gravel", h, w, scale=0.7), (70, 85, 110), (140, 155, 180))[hills]
    mask[hills] = 1
    wall = (yy >= 0.50 * h) & (yy < 0.64 * h)
    img[wall] = _tint(_texture("brick", h, w, scale=0.35), (120, 60, 45), (215, 150, 115))[wall]
    mask[wall] = 2
    grass = yy >= 0.64 * h
    img[grass] = _tint(_texture("grass", h, w, scale=0.5), (40, 90, 30), (135, 190, 75))[grass]
    mask[grass] = 3
    path = grass & (np.abs(xx - (0.55 * w + (yy - 0.64 * h) * 1.1)) <= 8 + (yy - 0.64 * h) * 0.45)
    img[path] = _tint(_texture("gravel", h, w, scale=0.4, offset=(50, 90)), (120, 105, 85), (215, 200, 170))[path]
    mask[path] = 4
    for cy, cx in [(150, 50), (168, 110), (155, 250), (178, 290)]:
        cy, cx, rad = cy + rng.integers(-3, 4), cx + rng.integers(-5, 6), rng.uniform(7, 10)
        inside, r = _ellipse(h, w, cy, cx, rad, rad)
        img[inside] = _shade(r, (210, 35, 35), h, w, cy, cx, rad, rad)[inside]
        mask[inside] = 5
    return SceneSpec("valley", "6 classes: sky, hills, wall, grass, path, balls",
                     [_u8(img)], [mask], ["sky", "hills", "wall", "grass", "path", "ball"],
                     [(70, 130, 220), (110, 120, 150), (180, 90, 60), (60, 160, 60), (200, 180, 140), (230, 40, 40)])


def rolling() -> SceneSpec:
    """A short video: 6 frames of a camera panning over a brick wall above gravel ground while three balls
    roll and bounce. 288x176 per frame, 3 classes."""
    h, w, n = 176, 288, 6
    pano_w = w + 5 * 16
    wall_tex = _tint(_texture("brick", h, pano_w, scale=0.5), (115, 60, 45), (210, 145, 110))
    ground_tex = _tint(_texture("gravel", h, pano_w, scale=0.6), (100, 95, 85), (200, 190, 170))
    yy, xx = np.mgrid[0:h, 0:pano_w].astype(np.float32)
    ground = yy >= 0.55 * h + 4 * np.sin(xx / 40.0)
    base = np.where(ground[..., None], ground_tex, wall_tex)
    frames, masks = [], []
    balls = [((250, 130, 20), 60, 22.0, 14.0), ((40, 140, 220), 170, -18.0, 12.0), ((240, 220, 40), 250, 12.0, 10.0)]
    for f in range(n):
        img, mask = base.copy(), ground.astype(np.uint8)
        for colour, x0, vx, rad in balls:
            cx = x0 + vx * f
            cy = 0.55 * h + 30 - abs(np.sin(f * 0.9 + x0)) * 45
            inside, r = _ellipse(h, pano_w, cy, cx, rad, rad)
            img[inside] = _shade(r, colour, h, pano_w, cy, cx, rad, rad)[inside]
            mask[inside] = 2
        off = 16 * f
        frames.append(_u8(img[:, off:off + w]))
        masks.append(mask[:, off:off + w].copy())
    return SceneSpec("rolling", "video, 6 frames: camera pan over wall and ground, 3 bouncing balls (3 classes)",
                     frames, masks, ["wall", "ground", "ball"], [(180, 90, 60), (150, 140, 120), (240, 240, 60)])


def galaxies() -> SceneSpec:
    """No mask: a crop of the Hubble deep field (public domain, NASA), many small galaxies on black. 320x192."""
    from skimage import data

    img = data.hubble_deep_field()[300:684, 200:840]
    img = np.asarray(Image.fromarray(img).resize((320, 192), Image.BILINEAR))
    return SceneSpec("galaxies", "no mask: Hubble deep field crop, many small galaxies", [img], None)


SCENES = {f.__name__: f for f in (balloons, stones, wires, beads, valley, rolling, galaxies)}


# -- writing ------------------------------------------------------------------------------------------------
def _save_mask(path: Path, mask: np.ndarray, spec: SceneSpec) -> None:
    if spec.binary:
        Image.fromarray((mask > 0).astype(np.uint8) * 255, "L").save(path)
        return
    m = Image.fromarray(mask, "P")
    m.putpalette([c for rgb in spec.palette for c in rgb])
    m.save(path)


def write_scene(spec: SceneSpec, out: Path) -> dict:
    """Write a scene folder; returns the trainer arguments (source, and mask/classes when it has a mask)."""
    out.mkdir(parents=True, exist_ok=True)
    if len(spec.frames) == 1:
        Image.fromarray(spec.frames[0]).save(out / "image.png")
        source, mask = out / "image.png", out / "mask.png"
        if spec.masks is not None:
            _save_mask(mask, spec.masks[0], spec)
    else:
        source, mask = out / "frames", out / "masks"
        source.mkdir(exist_ok=True)
        mask.mkdir(exist_ok=True)
        for i, frame in enumerate(spec.frames):
            Image.fromarray(frame).save(source / f"{i:03d}.png")
            if spec.masks is not None:
                _save_mask(mask / f"{i:03d}.png", spec.masks[i], spec)
    args = {"source": str(source)}
    if spec.masks is not None:
        (out / "classes.txt").write_text("".join(c + "\n" for c in spec.classes))
        args.update(mask=str(mask), classes=str(out / "classes.txt"))
    return args


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    for name in argv[1:] or list(SCENES):
        spec = SCENES[name]()
        write_scene(spec, out / name)
        shares = ""
        if spec.masks is not None:
            counts = np.bincount(np.concatenate([m.ravel() for m in spec.masks]), minlength=len(spec.classes))
            shares = ", ".join(f"{c} {n / counts.sum():.1%}" for c, n in zip(spec.classes, counts))
        h, w = spec.frames[0].shape[:2]
        print(f"{name}: {len(spec.frames)} frame(s) {w}x{h}; {shares or 'no mask'}")


if __name__ == "__main__":
    main(sys.argv[1:])
