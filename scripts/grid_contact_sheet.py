"""Contact sheet of one entry sampled at several latent grids (custom-size broadcasting).

    .venv/bin/python scripts/grid_contact_sheet.py ENTRY_DIR OUT.png [--grids 4x5,4x10,7x6] [--samples 3]
Rows: `runtime sample` indices 0..N-1 of the seed (one latent each, broadcast over every grid); columns: the grids
(image above its coloured mask).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.sampler import Sampler  # noqa: E402
from trainer.preview import colorize  # noqa: E402
from zoo.entry import Entry  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("entry", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--grids", default=None, help="comma-separated HxW grids [trained, wider, taller]")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    sampler = Sampler(Entry.load(a.entry))
    gh, gw = sampler.entry.trained_grid
    grids = ([tuple(map(int, g.split("x"))) for g in a.grids.split(",")] if a.grids
             else [(gh, gw), (gh, 2 * gw), (2 * gh, gw)])
    palette = sampler.entry.palette or None
    columns = []
    for grid in grids:
        image, mask = sampler.sample(count=a.samples, seed=a.seed, grid=grid)
        tiles = [np.concatenate([image[i], colorize(mask[i], palette)], 0) if mask is not None else image[i]
                 for i in range(a.samples)]
        columns.append((grid, tiles))
    pad, label = 6, 16
    width = sum(t[0].shape[1] for _, t in columns) + pad * (len(columns) + 1)
    height = label + sum(max(t[i].shape[0] for _, t in columns) + pad for i in range(a.samples)) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    x = pad
    for grid, tiles in columns:
        rows = tiles[0].shape[0] // (2 if mask is not None else 1)
        draw.text((x, 2), f"grid {grid[0]}x{grid[1]} -> {rows}x{tiles[0].shape[1]} px", fill="black")
        y = label
        for i, tile in enumerate(tiles):
            sheet.paste(Image.fromarray(tile), (x, y))
            y += max(t[i].shape[0] for _, t in columns) + pad
        x += tiles[0].shape[1] + pad
    a.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(a.out)
    print(f"{a.out}: grids {', '.join(f'{h}x{w}' for h, w in grids)}")


if __name__ == "__main__":
    main()
