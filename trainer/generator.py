"""The generator: the single source of truth, imported by the exporter (docs/model.md §1).

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
from .resampling import UpsampleConv


def init_conv_weights(module: nn.Module) -> None:
    """Every Conv2d weight ~ N(0, 0.02) (spectral-normed ones via weight_orig); biases keep PyTorch defaults."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            weight = m.weight_orig if hasattr(m, "weight_orig") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)


SN_VECTORS = ("weight_u", "weight_v")


@torch.no_grad()
def refresh_spectral_norms(module: nn.Module) -> None:
    """Set every spectral norm's u and v to the exact top singular vectors of its current weight.

    For the EMA generator: its weights are averages, so the power-iteration vectors of the training G do
    not belong to them, and averaging u and v as well (what the reference does) shrinks them while they
    still rotate, which underestimates sigma and inflates the EMA model's weights (up to 75x seen in a short
    run). With exact vectors the eval-mode weight is weight / (its spectral norm).
    """
    for m in module.modules():
        if hasattr(m, "weight_orig") and hasattr(m, "weight_u"):
            w = m.weight_orig.detach().reshape(m.weight_orig.shape[0], -1).float()
            u, _, vh = torch.linalg.svd(w, full_matrices=False)
            m.weight_u.copy_(u[:, 0])
            m.weight_v.copy_(vh[0])


class GBlock(nn.Module):
    """Pre-activation residual block with nearest x2 upsampling (except in block 0)."""

    def __init__(self, cin: int, cout: int, upsample: bool):
        super().__init__()
        mid = min(cin, cout)
        self.upsample = upsample
        self.conv1 = spectral_norm(UpsampleConv(cin, mid) if upsample else nn.Conv2d(cin, mid, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(mid, cout, 3, padding=1))
        self.conv_sc = spectral_norm(nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(x, 0.2)
        # A 1x1 conv commutes with nearest upsampling: run the shortcut at the low resolution (4x cheaper).
        sc = self.conv_sc(x)
        if self.upsample:  # conv1 upsamples h itself
            sc = F.interpolate(sc, scale_factor=2.0, mode="nearest")
        h = self.conv2(F.leaky_relu(self.conv1(h), 0.2))
        return h + sc


def activation_bounds(x: torch.Tensor, ceiling: float, floor: float) -> torch.Tensor:
    """Penalty keeping a block output (B, C, H, W) in the range healthy training stays in; zero inside it.

    - ceiling: mean(relu(|x| - ceiling)^2). Spectral norm bounds each 3x3 kernel reshaped into a matrix, which
      still lets a convolution amplify a spatially constant input 3x (its nine taps add up): collapsing runs
      grew block outputs ~10x per block until tanh saturated to one flat colour (healthy: RMS 0.1-0.8).
    - floor: relu(floor - r)^2, r = the mean std over the batch / the RMS of x: how much of the output
      depends on the latent. In collapsing runs it fell to 0.04-0.10 in the last blocks, every latent giving
      the same image (healthy: 0.3-0.6). Scale-free, so it cannot be met by growing activations.
    (issue 11, docs/robustness/experiments.md)
    """
    xf = x.float()
    penalty = F.relu(xf.abs() - ceiling).square().mean() if ceiling > 0 else xf.new_zeros(())
    if floor > 0 and x.shape[0] > 1:
        ratio = xf.std(0).mean() / (xf.square().mean().sqrt() + 1e-6)
        penalty = penalty + F.relu(floor - ratio).square()
    return penalty


@dataclass
class GOutput:
    images: list[torch.Tensor]  # tanh RGB of the last `n_rgb` blocks, coarse to fine; images[-1] is the sample
    mask_logits: torch.Tensor | None  # (B, M, H, W) before softmax
    features: list[torch.Tensor]  # tanh of every block's raw output (diversity regularisation); [] unless asked
    bounds: torch.Tensor | None = None  # the activation bounds' penalty (activation_bounds), when asked for


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

    def grid_features(self, z: torch.Tensor) -> torch.Tensor:
        """Custom latent grids: z (B, noise_dim, gh, gw), one latent per grid cell, -> (B, C0, gh, gw).

        The first layer's kernel (noise_dim, C0, grid_h, grid_w) is resampled bilinearly to the requested
        grid and applied cell by cell. A latent broadcast to every cell therefore gives the trained first-layer
        map resampled to the new grid (at the trained grid: exactly the trained map), and different latents
        per cell vary the layout locally. Sizes come from z's shape, so one exported graph serves every grid.
        """
        b, k, gh, gw = z.shape
        w = self.first_linear.weight  # (k, C0, h0, w0)
        c0 = w.shape[1]
        w = F.interpolate(w.reshape(1, k * c0, *w.shape[2:]), size=(gh, gw), mode="bilinear", align_corners=False)
        w = w.reshape(k, c0, gh * gw).permute(2, 0, 1)  # (cells, k, C0)
        x = torch.matmul(z.reshape(b, k, gh * gw).permute(2, 0, 1), w)  # (cells, B, C0)
        return x.permute(1, 2, 0).reshape(b, c0, gh, gw) + self.first_linear.bias.view(1, c0, 1, 1)

    def forward(self, z: torch.Tensor, n_rgb: int = 1, features: bool = False,
                bounds: tuple[float, float] | None = None) -> GOutput:
        return self.synthesize(self.latent_features(z), n_rgb=n_rgb, features=features, bounds=bounds)

    def synthesize(self, x: torch.Tensor, n_rgb: int = 1, features: bool = False,
                   bounds: tuple[float, float] | None = None) -> GOutput:
        """Run the blocks on a first-layer map of any grid size (custom grids at export time). `bounds`
        (ceiling, floor), in training only, adds activation_bounds() of every block output to the output."""
        images, feats = [], []
        penalty = None
        g = len(self.body)
        for i, block in enumerate(self.body):
            x = block(x)
            if features:
                feats.append(torch.tanh(x))
            if bounds is not None:
                term = activation_bounds(x, *bounds)
                penalty = term if penalty is None else penalty + term
            if i >= g - n_rgb:
                images.append(torch.tanh(self.rgb_converters[i](x)))
        mask_logits = self.mask_converter(x) if self.cfg.has_masks else None
        return GOutput(images=images, mask_logits=mask_logits, features=feats, bounds=penalty)


def to_uint8(image: torch.Tensor, mask_logits: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The sampled output format: image (B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8; logits -> (B, H, W)
    uint8 class ids. Clamp last: a value a hair below 0 after rounding would wrap to 255 in the cast."""
    image = ((image.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return image, None if mask_logits is None else mask_logits.float().argmax(1).to(torch.uint8)
