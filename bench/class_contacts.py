"""Where each class sits: for every class, the share of its pixels that touch each other class (3x3
neighbourhood) or lie within 2 pixels of the frame border, in a run's samples against its training masks.

The suite's criteria (presence, class shares, mIoU) accept a small object class drawn as strips along a region
edge or the frame border (docs/robustness/experiments.md, sections 8 and 15); this table shows it: on the
balloons scene, balloons never touch the ground in the training mask, and 30 % of the balloon pixels did in the
samples of a run with the prior at 1.0 (its default until experiment 16).

    .venv/bin/python bench/class_contacts.py RUN_DIR [RUN_DIR ...] [--samples 100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BORDER = 2


def contacts(masks: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C + 1): row c, column d = share of class c's pixels with a class-d pixel in their 3x3 neighbourhood;
    last column: share within BORDER pixels of the frame's edge. Rows of absent classes are 0."""
    ids = torch.from_numpy(masks.astype(np.int64))
    onehot = F.one_hot(ids, num_classes).permute(0, 3, 1, 2).float()
    near = F.max_pool2d(onehot, 3, 1, 1) > 0
    border = torch.zeros(ids.shape, dtype=torch.bool)
    border[:, :BORDER], border[:, -BORDER:], border[:, :, :BORDER], border[:, :, -BORDER:] = True, True, True, True
    table = np.zeros((num_classes, num_classes + 1))
    for c in range(num_classes):
        pixels = onehot[:, c] > 0
        n = int(pixels.sum())
        if n:
            for d in range(num_classes):
                if d != c:
                    table[c, d] = int((pixels & near[:, d]).sum()) / n
            table[c, -1] = int((pixels & border).sum()) / n
    return table


def print_table(title: str, table: np.ndarray, names: list[str]) -> None:
    print(f"  {title}: % of the row class's pixels touching ...")
    print("    " + " " * 12 + "".join(f"{n[:9]:>10s}" for n in names) + "    border")
    for c, name in enumerate(names):
        print(f"    {name[:12]:12s}" + "".join("         -" if d == c else f"{100 * table[c, d]:10.0f}"
                                           for d in range(len(names))) + f"{100 * table[c, -1]:10.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--samples", type=int, default=100)
    args = ap.parse_args()
    from trainer.evaluate import gather

    for run in args.runs:
        m = gather(str(run), args.samples, seed=0)
        if m.masks is None:
            print(f"{run}: no masks")
            continue
        k = max(len(m.class_names), int(m.frame_masks.max()) + 1, int(m.masks.max()) + 1)
        names = (m.class_names + [f"class {i}" for i in range(len(m.class_names), k)])[:k]
        print(run)
        print_table("training masks", contacts(m.frame_masks, k), names)
        print_table(f"{args.samples} samples", contacts(m.masks, k), names)


if __name__ == "__main__":
    main()
