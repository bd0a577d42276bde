"""3x3 convolutions fused with the resampling next to them: same parameters, same function, fewer MACs.

- nearest x2 upsampling then a 3x3 conv (every upsampling generator block) equals one stride-2 transposed
  conv with a 4x4 kernel: each output phase sees only 2x2 distinct input pixels, so 4 instead of 9 MACs
  per output pixel and no upsampled copy of the input.
- a 3x3 conv then 2x2 average pooling (every pooling discriminator block) equals one stride-2 4x4 conv
  whose kernel is the 3x3 kernel box-filtered: 4 instead of 9 MACs per input pixel and no full-resolution
  output.

Both keep nn.Conv2d's parameters (a (out, in, 3, 3) weight and a bias), so state-dict keys, spectral norm
(applied to the 3x3 weight as before) and reference checkpoints are unchanged; the fused kernel is built
from the current weight on every call, so gradients reach the 3x3 weight. Results equal the unfused pair
up to floating-point rounding (tests/test_model.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _upsample_taps(w: torch.Tensor, dim: int) -> torch.Tensor:
    """Per dimension, taps (-1, 0, +1) of the 3x3 kernel -> the 4 taps of the transposed conv."""
    before, centre, after = w.unbind(dim)
    return torch.stack([after, centre + after, before + centre, before], dim)


def upsample_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, 3, 3) conv weight -> (in, out, 4, 4) weight of conv_transpose2d(stride=2, padding=1)."""
    return _upsample_taps(_upsample_taps(weight, 2), 3).transpose(0, 1)


def pool_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, 3, 3) conv weight -> (out, in, 4, 4) weight of conv2d(stride=2, padding=1): the 3x3 kernel
    summed at the 4 offsets of the 2x2 pooling window, divided by 4."""
    return 0.25 * (F.pad(weight, (0, 1, 0, 1)) + F.pad(weight, (1, 0, 0, 1))
                   + F.pad(weight, (0, 1, 1, 0)) + F.pad(weight, (1, 0, 1, 0)))


class UpsampleConv(nn.Conv2d):
    """conv3x3(nearest_upsample_x2(x)) as one transposed conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, upsample_kernel(self.weight), self.bias, stride=2, padding=1)

    def unfused(self) -> nn.Sequential:
        """The same function as nearest upsampling + a plain 3x3 conv, for exported graphs: onnxruntime runs
        ConvTranspose in float even inside int8 (QDQ) graphs, which made the int8 sampler ~1.6x slower, and
        in fp32 the pair is about as fast there."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, padding=1).to(self.weight.device)
        conv.load_state_dict({"weight": self.weight.detach(), "bias": self.bias.detach()})
        return nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), conv)


class ConvPool(nn.Conv2d):
    """avg_pool2d(conv3x3(x), 2) as one strided conv; a plain conv3x3 on maps below 2 pixels, where
    pooling stops (the discriminator's tiny configurations). Odd sides are floored like avg_pool2d."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 2:
            return super().forward(x)
        return F.conv2d(x, pool_kernel(self.weight), self.bias, stride=2, padding=1)
