"""Build the bundled demo scene: scikit-image's `coins` photograph (public domain, Greek coins from the
Pergamon Museum, Berlin, via Wikimedia Commons) with a two-class coin / background mask made by thresholding.

    .venv/bin/python scripts/make_demo_scene.py data/coins
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import data, filters, morphology


def coin_mask(img: np.ndarray) -> np.ndarray:
    """Coins are brighter than the background; local (block) thresholding copes with the uneven lighting."""
    smooth = filters.gaussian(img, sigma=1.5, preserve_range=True)
    fg = smooth > filters.threshold_local(smooth, block_size=151, offset=-8)
    fg = morphology.remove_small_objects(fg, max_size=150)
    fg = ndimage.binary_fill_holes(ndimage.binary_closing(fg, morphology.disk(3)))
    return ndimage.binary_opening(fg, morphology.disk(2))


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    img = data.coins()
    mask = coin_mask(img).astype(np.uint8)
    Image.fromarray(np.stack([img] * 3, -1)).save(out / "image.png")
    m = Image.fromarray(mask, "P")
    m.putpalette([0, 0, 0, 255, 200, 0])
    m.save(out / "mask.png")
    (out / "classes.txt").write_text("background\ncoin\n")
    print(f"{out}: {img.shape[1]}x{img.shape[0]}, coin pixels {mask.mean():.1%}, "
          f"{ndimage.label(mask)[1]} coins")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "data/coins"))
