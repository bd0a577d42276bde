"""SinGAN (Shaham et al., ICCV 2019), with masks: a pyramid of fully convolutional patch GANs, coarse to fine.

Scale n (0 = coarsest) generates x_n = up(x_{n-1}) + F_n(amp_n * z_n + up(x_{n-1})), with F_n five 3x3
conv-BatchNorm-LeakyReLU(0.2) blocks (the last a plain conv + tanh) and x_{-1} = 0; its discriminator has the
same five blocks and scores every patch (WGAN-GP). With masks, an image has 3 + M channels: RGB in [-1, 1] and the
mask's one-hot classes mapped to [-1, 1] (SinGAN-Seg's extra channels, for M classes); every scale generates and
discriminates them together, and the sampled mask is the argmax of the class channels at the finest scale.

Choices where the paper leaves a detail open (also in the README):
- every conv pads by 1 (zeros), so a scale's noise map has the scale's output size, whatever that size is;
- the pyramid keeps the aspect ratio: the shorter side is COARSEST px at scale 0 and the factor between scales
  is the one closest to 4/3 that lands exactly on the training size;
- resizing: bilinear upsampling between scales; the real pyramid is antialiased bicubic for the image and area
  averages of the one-hot mask (class fractions, then mapped to [-1, 1]).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ConfigError

__all__ = ["SinGANConfig", "SinGAN", "pyramid_sizes", "scale_channels", "to_channels", "from_channels"]

FACTOR = 4 / 3          # the paper's scale factor, approximately
COARSEST = 25           # px, the shorter side at the coarsest scale
BASE_CHANNELS = 32      # kernels per block at the coarsest scale...
DOUBLE_EVERY = 4        # ...doubled every this many scales
MAX_CHANNELS = 128


def pyramid_sizes(h: int, w: int, *, coarsest: int = COARSEST, factor: float = FACTOR) -> list[tuple[int, int]]:
    """(H, W) per scale, coarsest first, the last exactly (h, w)."""
    short = min(h, w)
    if short < coarsest:
        raise ConfigError(f"SinGAN needs a shorter side of at least {coarsest} px, got {h}x{w}")
    n = round(math.log(short / coarsest) / math.log(factor)) + 1
    if n == 1:
        return [(h, w)]
    r = (short / coarsest) ** (1 / (n - 1))
    return [(max(1, round(h / r ** (n - 1 - i))), max(1, round(w / r ** (n - 1 - i)))) for i in range(n)]


def scale_channels(n_scales: int) -> list[int]:
    return [min(MAX_CHANNELS, BASE_CHANNELS * 2 ** (i // DOUBLE_EVERY)) for i in range(n_scales)]


@dataclass(frozen=True)
class SinGANConfig:
    """Everything needed to rebuild the pyramid; serialised into config.json (with "arch": "singan")."""

    sizes: tuple[tuple[int, int], ...]
    num_classes: int = 0   # mask classes including background; 0 = image only

    arch = "singan"

    @classmethod
    def for_size(cls, h: int, w: int, num_classes: int = 0) -> "SinGANConfig":
        return cls(tuple(pyramid_sizes(h, w)), num_classes)

    @classmethod
    def for_image(cls, h: int, w: int, *, max_size: int, num_classes: int = 0) -> "SinGANConfig":
        """The pyramid for an h x w image whose longer side is capped at max_size (the paper: 250)."""
        scale = min(1.0, max_size / max(h, w))
        return cls.for_size(max(1, round(h * scale)), max(1, round(w * scale)), num_classes)

    @classmethod
    def from_dict(cls, d: dict) -> "SinGANConfig":
        return cls(tuple(tuple(s) for s in d["sizes"]), int(d.get("num_classes", 0)))

    def to_dict(self) -> dict:
        return {"arch": self.arch, **asdict(self), "sizes": [list(s) for s in self.sizes]}

    @property
    def channels(self) -> int:
        return 3 + self.num_classes

    @property
    def has_masks(self) -> bool:
        return self.num_classes > 0

    @property
    def height(self) -> int:
        return self.sizes[-1][0]

    @property
    def width(self) -> int:
        return self.sizes[-1][1]

    def kernels(self) -> list[int]:
        return scale_channels(len(self.sizes))


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


def _body(cin: int, width: int, cout: int) -> nn.Sequential:
    """Five 3x3 convs: four conv-BN-LReLU blocks and a plain conv."""
    return nn.Sequential(_block(cin, width), *[_block(width, width) for _ in range(3)],
                         nn.Conv2d(width, cout, 3, padding=1))


class ScaleGenerator(nn.Module):
    def __init__(self, channels: int, width: int):
        super().__init__()
        self.body = _body(channels, width, channels)

    def forward(self, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """noise: already scaled by the scale's amplitude; prev: the coarser output at this size."""
        return prev + torch.tanh(self.body(noise + prev))


class ScaleDiscriminator(nn.Module):
    def __init__(self, channels: int, width: int):
        super().__init__()
        self.body = _body(channels, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)   # one score per patch


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="bilinear",
                                                                       align_corners=False)


class SinGAN(nn.Module):
    """The generators of all scales and their noise amplitudes (a buffer: amp_0 = 1, amp_n from the RMSE)."""

    def __init__(self, cfg: SinGANConfig):
        super().__init__()
        self.cfg = cfg
        self.gens = nn.ModuleList(ScaleGenerator(cfg.channels, k) for k in cfg.kernels())
        self.register_buffer("noise_amp", torch.ones(len(cfg.sizes)))

    def forward(self, noises: list[torch.Tensor], upto: int | None = None) -> torch.Tensor:
        """noises[n]: unit-variance noise of scale n's size (N, C, H_n, W_n); generates scales 0 .. upto."""
        upto = len(self.gens) - 1 if upto is None else upto
        x = torch.zeros_like(noises[0])
        for n in range(upto + 1):
            x = self.gens[n](self.noise_amp[n] * noises[n], resize(x, noises[n].shape[-2:]))
        return x

    def noise(self, batch: int, generator: torch.Generator | None = None,
              sizes: list[tuple[int, int]] | None = None) -> list[torch.Tensor]:
        device = self.noise_amp.device
        return [torch.randn(batch, self.cfg.channels, h, w, generator=generator, device=device)
                for h, w in (sizes or self.cfg.sizes)]


def to_channels(images: torch.Tensor, masks: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """images (N, 3, H, W) in [-1, 1], masks (N, H, W) class ids -> (N, 3 + M, H, W) in [-1, 1]."""
    if masks is None or num_classes == 0:
        return images
    one_hot = F.one_hot(masks.long(), num_classes).permute(0, 3, 1, 2).to(images.dtype)
    return torch.cat([images, one_hot * 2 - 1], 1)


def from_channels(x: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """-> images (N, 3, H, W) clamped to [-1, 1], masks (N, H, W) int64 (argmax of the class channels) or None."""
    images = x[:, :3].clamp(-1, 1)
    return images, (x[:, 3:].argmax(1) if num_classes else None)


def uint8_outputs(x: torch.Tensor, num_classes: int):
    """The sampled output format of every entry (trainer.generator.to_uint8): image (N, H, W, 3) uint8 and the
    class channels' argmax as (N, H, W) uint8, or None without masks."""
    from .generator import to_uint8

    return to_uint8(x[:, :3].clamp(-1, 1), x[:, 3:] if num_classes else None)


def real_pyramid(real: torch.Tensor, sizes, num_classes: int) -> list[torch.Tensor]:
    """The training image (and mask) at every scale, in the channel layout of to_channels."""
    images, rest = real[:, :3], real[:, 3:]
    out = []
    for size in sizes:
        same = tuple(size) == tuple(images.shape[-2:])
        img = images if same else F.interpolate(images, size=size, mode="bicubic", antialias=True,
                                                align_corners=False).clamp(-1, 1)
        if num_classes:
            share = (rest + 1) / 2 if same else F.interpolate((rest + 1) / 2, size=size, mode="area")   # fractions
            img = torch.cat([img, share * 2 - 1], 1)
        out.append(img)
    return out


@torch.no_grad()
def sample_uint8(model: SinGAN, indices, seed: int, *, batch: int = 8):
    """Samples of the runtime's multi-input latent scheme (runtime.latents.latent_maps, at the trained sizes) as
    (N, H, W, 3) uint8 images and (N, H, W) uint8 class ids (None without masks): sample i depends only on
    (seed, i)."""
    import numpy as np

    from runtime.latents import latent_maps

    model = model.eval()
    shapes = [(model.cfg.channels, h, w) for h, w in model.cfg.sizes]
    images, masks = [], []
    indices = np.asarray(indices, np.int64)
    for part in np.array_split(indices, max(1, -(-len(indices) // batch))):
        x = model([torch.from_numpy(z) for z in latent_maps(seed, part, shapes)])
        img, mask = uint8_outputs(x, model.cfg.num_classes)
        images.append(img.numpy())
        masks.append(None if mask is None else mask.numpy())
    return np.concatenate(images), None if masks[0] is None else np.concatenate(masks)
