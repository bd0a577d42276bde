"""Differentiable augmentation (the SIV-GAN paper's set), batched, one geometry per sample for every scale.

Each sample is augmented with probability p by one transform drawn uniformly from: 2x zoom + random crop,
random crop of 75-100 % resized back, rotation of up to +-8 degrees with a 0.8 centre crop, horizontal flip,
and a vertical + horizontal shift of 5-30 % with mirrored fill. Every transform is one affine map in normalised
coordinates, so the same matrix resamples each level of the image pyramid and the mask: images bilinearly,
masks with nearest sampling (they stay hard one-hot maps; gradients still reach a straight-through mask).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

N_OPS = 5
ZOOM, CROP, ROTATE, FLIP, SHIFT = range(N_OPS)


def random_affine(batch: int, p: float, aspect: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 2, 3) matrices mapping normalised output to input coordinates; identity for unaugmented samples.

    aspect = width / height: a rotation in normalised coordinates needs it to stay a rotation in pixels.
    """
    u = torch.rand(batch, 6, generator=generator)
    op = torch.randint(0, N_OPS, (batch,), generator=generator)
    apply = u[:, 0] < p
    scale = torch.ones(batch)
    angle = torch.zeros(batch)
    tx, ty = torch.zeros(batch), torch.zeros(batch)
    flip = torch.ones(batch)

    zoom = apply & (op == ZOOM)  # 2x zoom, crop anywhere inside the image
    scale = torch.where(zoom, 0.5, scale)
    tx = torch.where(zoom, (u[:, 1] - 0.5), tx)
    ty = torch.where(zoom, (u[:, 2] - 0.5), ty)

    crop = apply & (op == CROP)  # crop 75-100 % of each side, resized back
    s = 0.75 + 0.25 * u[:, 3]
    scale = torch.where(crop, s, scale)
    tx = torch.where(crop, (1 - s) * (2 * u[:, 1] - 1), tx)
    ty = torch.where(crop, (1 - s) * (2 * u[:, 2] - 1), ty)

    rot = apply & (op == ROTATE)  # rotation, centre crop 0.8 to hide the corners
    angle = torch.where(rot, math.radians(8.0) * (2 * u[:, 1] - 1), angle)
    scale = torch.where(rot, 0.8, scale)

    flip = torch.where(apply & (op == FLIP), -1.0, flip)

    shift = apply & (op == SHIFT)  # 5-30 % in each direction with a random sign; mirrored fill
    sign_x = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
    sign_y = torch.where(u[:, 5] < 0.5, -1.0, 1.0)
    tx = torch.where(shift, sign_x * 2 * (0.05 + 0.25 * u[:, 1]), tx)
    ty = torch.where(shift, sign_y * 2 * (0.05 + 0.25 * u[:, 2]), ty)

    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin / aspect, tx], 1),
                         torch.stack([sin * aspect * flip, cos, ty], 1)], 1)
    return theta


def warp(x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Resample (B, C, H, W) with per-sample affine matrices; reflection padding gives the mirrored fill."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="reflection", align_corners=False)


def augment(pyramid: list[torch.Tensor], mask: torch.Tensor | None, p: float,
            generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Augment an image pyramid (fine to coarse) and its one-hot mask with one geometry per sample."""
    if p <= 0:
        return pyramid, mask
    b, _, h, w = pyramid[0].shape
    theta = random_affine(b, p, aspect=w / h, generator=generator).to(pyramid[0].device)
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], device=theta.device)
    if torch.equal(theta, identity.expand_as(theta)):
        return pyramid, mask
    pyramid = [warp(img, theta) for img in pyramid]
    if mask is not None:
        mask = warp(mask, theta, mode="nearest")
    return pyramid, mask
