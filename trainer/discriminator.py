"""The two-branch discriminator with MSG-GAN image injection and masked content attention (docs/model.md §2).

Feature augmentation is passed in as a callable so the network stays a plain function of its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from .config import ModelConfig
from .generator import init_conv_weights
from .resampling import ConvPool


def _pool(x: torch.Tensor) -> torch.Tensor:
    # Tiny configurations reach 1-pixel maps in the layout branch: stop pooling there.
    return F.avg_pool2d(x, 2) if min(x.shape[-2:]) >= 2 else x


class DBlock(nn.Module):
    """Residual D block. Content variant: 1x1 kernels, no pooling, identity shortcut when cin == cout."""

    def __init__(self, cin: int, cout: int, first: bool = False, kernel: int = 3, pool: bool = True):
        super().__init__()
        mid = min(cin, cout)
        self.first, self.pool = first, pool
        self.conv1 = spectral_norm(nn.Conv2d(cin, mid, kernel, padding=kernel // 2))
        # pooling blocks (always 3x3) fold the 2x2 average pooling into conv2
        conv2 = ConvPool(mid, cout) if pool else nn.Conv2d(mid, cout, kernel, padding=kernel // 2)
        self.conv2 = spectral_norm(conv2)
        learned = not (kernel == 1 and cin == cout)
        self.conv_sc = spectral_norm(nn.Conv2d(cin, cout, 1, bias=False)) if learned else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.leaky_relu(x, 0.2)
        h = self.conv2(F.leaky_relu(self.conv1(h), 0.2))  # pooled by conv2 in pooling blocks
        if self.pool:
            x = _pool(x)  # pooling commutes with the 1x1 shortcut: pool first, 4x cheaper
        return h + (self.conv_sc(x) if self.conv_sc is not None else x)


def _head(cin: int, cout: int = 1) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, 1))


@dataclass
class DOutput:
    lowlevel: list[torch.Tensor]  # patch logit maps (B, 1, h, w), one per low-level block
    content: list[torch.Tensor]  # (B, 1) without masks, (M*B, M+1) class-major with masks
    layout: list[torch.Tensor]  # (B, 1, h, w) maps
    small_mask: torch.Tensor | None  # the mask at the low-level feature resolution (MCA targets use it)


class Discriminator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.d_channels()
        n_ll, n_hi = cfg.d_lowlevel, cfg.d_blocks - cfg.d_lowlevel
        self.from_rgb = spectral_norm(nn.Conv2d(3, ch[0], 3, padding=1))
        self.rgb_to_features = nn.ModuleList(
            spectral_norm(nn.Conv2d(3, ch[i] // 8, 3, padding=1)) for i in range(1, n_ll))
        self.body_ll = nn.ModuleList(
            DBlock(ch[i] + (ch[i] // 8 if i > 0 else 0), ch[i + 1], first=i == 0) for i in range(n_ll))
        self.final_ll = nn.ModuleList(_head(ch[i + 1]) for i in range(n_ll))
        n_out = cfg.num_classes + 1 if cfg.has_masks else 1
        self.body_content = nn.ModuleList(
            DBlock(ch[i], ch[i + 1], kernel=1, pool=False) for i in range(n_ll, cfg.d_blocks))
        self.final_content = nn.ModuleList(_head(ch[i + 1], n_out) for i in range(n_ll, cfg.d_blocks))
        self.body_layout = nn.ModuleList(DBlock(ch[n_ll] if j == 0 else 1, 1) for j in range(n_hi))
        self.final_layout = nn.ModuleList(_head(1) for _ in range(n_hi))
        init_conv_weights(self)

    def lowlevel(self, pyramid: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """pyramid: images fine to coarse (at least d_lowlevel of them). Returns features and patch logits."""
        x = self.from_rgb(pyramid[0])
        logits = []
        for i, block in enumerate(self.body_ll):
            if i > 0:
                x = torch.cat([x, self.rgb_to_features[i - 1](pyramid[i])], dim=1)
            x = block(x)
            logits.append(self.final_ll[i](x))
        return x, logits

    def forward(self, pyramid: list[torch.Tensor], mask: torch.Tensor | None = None,
                augment: FeatureAugment | None = None, mask_resize: str = "nearest") -> DOutput:
        """mask: (B, M, H, W) one-hot (hard or straight-through) at the image resolution, when the model has masks."""
        feats, ll_logits = self.lowlevel(pyramid)
        small_mask = None
        if mask is not None:
            small_mask = F.interpolate(mask, size=feats.shape[-2:], mode=mask_resize)
        content = masked_content(feats, small_mask)
        layout = feats
        if augment is not None:
            content = augment.content(content, feats.shape[0])
            layout = augment.layout(feats, small_mask)
        content_logits = []
        for block, head in zip(self.body_content, self.final_content):
            content = block(content)
            content_logits.append(head(content).flatten(1))
        layout_logits = []
        for block, head in zip(self.body_layout, self.final_layout):
            layout = block(layout)
            layout_logits.append(head(layout))
        return DOutput(lowlevel=ll_logits, content=content_logits, layout=layout_logits, small_mask=small_mask)


def masked_content(feats: torch.Tensor, small_mask: torch.Tensor | None) -> torch.Tensor:
    """Global average pool, per class with a mask (MCA): (B,C,h,w) -> (B,C,1,1) or class-major (M*B,C,1,1)."""
    if small_mask is None:
        return feats.mean(dim=(2, 3), keepdim=True)
    b, c, h, w = feats.shape
    vectors = torch.einsum("bchw,bmhw->mbc", feats, small_mask.to(feats.dtype)) / (h * w)
    return vectors.reshape(-1, c, 1, 1)


class FeatureAugment(Protocol):
    """Feature augmentation of real samples (implemented in feature_aug.py)."""

    def content(self, vectors: torch.Tensor, batch: int) -> torch.Tensor: ...

    def layout(self, feats: torch.Tensor, small_mask: torch.Tensor | None) -> torch.Tensor: ...
