"""The generator: the single source of truth, imported by the exporter (architecture.md §1).

Module and parameter names follow the reference's state-dict layout (`first_linear`, `body.i.conv1`,
`rgb_converters.i`, `mask_converter`, old-style spectral-norm keys), so reference checkpoints load as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from .config import ModelConfig


def init_conv_weights(module: nn.Module) -> None:
    """Every Conv2d weight ~ N(0, 0.02) (spectral-normed ones via weight_orig); biases keep PyTorch defaults."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            weight = m.weight_orig if hasattr(m, "weight_orig") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)


class GBlock(nn.Module):
    """Pre-activation residual block with nearest x2 upsampling (except in block 0)."""

    def __init__(self, cin: int, cout: int, upsample: bool):
        super().__init__()
        mid = min(cin, cout)
        self.upsample = upsample
        self.conv1 = spectral_norm(nn.Conv2d(cin, mid, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(mid, cout, 3, padding=1))
        self.conv_sc = spectral_norm(nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(x, 0.2)
        # A 1x1 conv commutes with nearest upsampling: run the shortcut at the low resolution (4x cheaper).
        sc = self.conv_sc(x)
        if self.upsample:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            sc = F.interpolate(sc, scale_factor=2.0, mode="nearest")
        h = self.conv2(F.leaky_relu(self.conv1(h), 0.2))
        return h + sc


@dataclass
class GOutput:
    images: list[torch.Tensor]  # tanh RGB of the last `n_rgb` blocks, coarse to fine; images[-1] is the sample
    mask_logits: torch.Tensor | None  # (B, M, H, W) before softmax
    features: list[torch.Tensor]  # tanh of every block's raw output (diversity regularisation); [] unless asked


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.g_channels()
        self.first_linear = nn.ConvTranspose2d(cfg.noise_dim, ch[0], (cfg.grid_h, cfg.grid_w))
        self.body = nn.ModuleList(GBlock(ch[i], ch[i + 1], upsample=i > 0) for i in range(cfg.g_blocks))
        self.rgb_converters = nn.ModuleList(
            spectral_norm(nn.Conv2d(ch[i + 1], 3, 3, padding=1)) for i in range(cfg.g_blocks))
        if cfg.has_masks:
            self.mask_converter = nn.Conv2d(ch[-1], cfg.num_classes, 3, padding=1)
        init_conv_weights(self)

    def latent_features(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, noise_dim) -> the first layer's (B, C0, grid_h, grid_w) map: a linear map of z."""
        return self.first_linear(z.reshape(z.shape[0], -1, 1, 1))

    def forward(self, z: torch.Tensor, n_rgb: int = 1, features: bool = False) -> GOutput:
        return self.synthesize(self.latent_features(z), n_rgb=n_rgb, features=features)

    def synthesize(self, x: torch.Tensor, n_rgb: int = 1, features: bool = False) -> GOutput:
        """Run the blocks on a first-layer map of any grid size (custom grids at export time)."""
        images, feats = [], []
        g = len(self.body)
        for i, block in enumerate(self.body):
            x = block(x)
            if features:
                feats.append(torch.tanh(x))
            if i >= g - n_rgb:
                images.append(torch.tanh(self.rgb_converters[i](x)))
        mask_logits = self.mask_converter(x) if self.cfg.has_masks else None
        return GOutput(images=images, mask_logits=mask_logits, features=feats)
