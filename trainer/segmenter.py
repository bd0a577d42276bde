"""The OSMIS mask-alignment protocol, offline: a small UNet trained from scratch on generated image/mask pairs
and tested on the real pair(s) under the training's geometric augmentation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .augment import random_affine, warp
from .metrics import iou_per_class, mean_present, thresholded_iou


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyUNet(nn.Module):
    """Ronneberger's UNet, narrow: `depth` poolings, channels base .. base * 2^depth, bilinear upsampling."""

    def __init__(self, classes: int, base: int = 16, depth: int = 3):
        super().__init__()
        chans = [base * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(3, chans[0])] + [_block(chans[i], chans[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([_block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2, ceil_mode=True))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)


def _to_input(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def _augment(x: torch.Tensor, y: torch.Tensor, p: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    theta = random_affine(len(x), p, aspect=x.shape[-1] / x.shape[-2], generator=gen)
    y = warp(y[:, None].float(), theta, mode="nearest")[:, 0].long()
    return warp(x, theta), y


def train_unet(images: np.ndarray, masks: np.ndarray, classes: int, *, steps: int = 600, batch: int = 8,
               seed: int = 0, base: int = 16, quiet: bool = True) -> TinyUNet:
    """Adam, cross-entropy, every batch augmented with probability 0.5 (flip, crops, zoom, rotation, shift)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = TinyUNet(classes, base)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    x_all, y_all = _to_input(images), torch.from_numpy(masks.astype(np.int64))
    model.train()
    for _ in tqdm(range(steps), desc="unet", disable=quiet, leave=False):
        idx = torch.randint(0, len(x_all), (batch,), generator=gen)
        x, y = _augment(x_all[idx], y_all[idx], 0.5, gen)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def score_unet(model: TinyUNet, frames: np.ndarray, masks: np.ndarray, classes: int, views: int = 24,
              seed: int = 0) -> dict:
    """IoU on the real pair(s): as they are and under `views` augmented copies each (every one augmented)."""
    gen = torch.Generator().manual_seed(seed + 1)
    x0, y0 = _to_input(frames), torch.from_numpy(masks.astype(np.int64))
    xs, ys = [x0], [y0]
    for _ in range(views):
        x, y = _augment(x0, y0, 1.0, gen)
        xs.append(x)
        ys.append(y)
    x, gt = torch.cat(xs), torch.cat(ys).numpy()
    probs = torch.cat([model(c).softmax(1) for c in x.split(16)]).numpy()
    plain = iou_per_class(probs.argmax(1), gt, classes)
    thresh = thresholded_iou(probs, gt)
    return {"per_class_iou": plain, "miou": mean_present(plain, gt),
            "per_class_iou_thresholded": thresh, "miou_thresholded": mean_present(thresh, gt),
            "test_views": len(x)}


def mask_alignment(images, masks, frames, frame_masks, classes: int, *, steps: int = 600, seed: int = 0,
                   quiet: bool = True) -> dict:
    model = train_unet(images, masks, classes, steps=steps, seed=seed, quiet=quiet)
    return {**score_unet(model, frames, frame_masks, classes, seed=seed), "train_pairs": len(images), "steps": steps}
