"""3x3 convolutions fused with the resampling next to them: same parameters, same function, fewer MACs.

- nearest x2 upsampling then a 3x3 conv (every upsampling generator block) equals one stride-2 transposed
  conv with a 4x4 kernel: each output phase sees only 2x2 distinct input pixels, so 4 instead of 9 MACs
  per output pixel and no upsampled copy of the input.
- a 3x3 conv then 2x2 average pooling (every pooling discriminator block) equals one stride-2 4x4 conv
  whose kernel is the 3x3 kernel box-filtered: 4 instead of 9 MACs per input pixel and no full-resolution
  output.

For exported graphs the upsampling pair has more forms (UpsampleConv.unfused / .phased, export/graph.py says
which graph uses which): the plain pair, and two 4-tap phase forms, one 2x2 conv giving the four output phases of
each channel, then data movement, not arithmetic, that puts every phase value in its pixel: in fp32 a grouped
stride-2 transposed conv with 0/1 weights (onnxruntime's fastest way there), in int8 slices, a concat and a
transpose in channels-last layout (ops onnxruntime runs on uint8 next to its channels-last int8 convs).

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


PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))   # output (row, column) parity; phase p = 2 * row + column


def _phase_taps(w: torch.Tensor, dim: int, parity: int) -> torch.Tensor:
    """Per dimension, taps (-1, 0, +1) of the 3x3 kernel on the upsampled map -> the 2 taps on the input that
    output pixels of this parity see (input offsets -1, 0 for even outputs; 0, +1 for odd ones)."""
    before, centre, after = w.unbind(dim)
    return torch.stack([before, centre + after] if parity == 0 else [before + centre, after], dim)


def phase_kernels(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, 3, 3) conv weight -> (4 * out, in, 2, 2): at 4c + p, output channel c's kernel for phase p,
    applied with padding 1 (so phase (a, b) of input pixel (i, j) sits at (i + a, j + b) of the result)."""
    k = torch.stack([_phase_taps(_phase_taps(weight, 2, a), 3, b) for a, b in PHASES], 1)
    return k.reshape(-1, *k.shape[2:])


def phase_selector(channels: int) -> torch.Tensor:
    """(4 * channels, 1, 2, 2) 0/1 weight of conv_transpose2d(stride=2, padding=1, groups=channels) that moves
    phase (a, b) at (i + a, j + b) to output pixel (2i + a, 2j + b): one nonzero tap per output pixel."""
    select = torch.zeros(4 * channels, 1, 2, 2)
    for p, (a, b) in enumerate(PHASES):
        select[p::4, 0, 1 - a, 1 - b] = 1.0
    return select


class PhaseUpsampleConv(nn.Module):
    """conv3x3(nearest_upsample_x2(x)) with 4 MACs per output pixel (plus a one-pixel border) in ops that
    onnxruntime's CPU kernels run at full speed. interleave: how the phases reach their pixels,
    "selector" (a grouped ConvTranspose that only moves values, fp32) or "nhwc" (Slice, Concat, Transpose in
    channels-last layout, which onnxruntime keeps in uint8 inside QDQ graphs)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, *, interleave: str = "selector"):
        super().__init__()
        out, cin = weight.shape[:2]
        kernels, biases = phase_kernels(weight), bias.repeat_interleave(4)
        if interleave == "nhwc":   # phase-major channels (p * out + c): each phase one contiguous channel range
            kernels = kernels.reshape(out, 4, cin, 2, 2).transpose(0, 1).reshape(4 * out, cin, 2, 2)
            biases = bias.repeat(4)
        elif interleave != "selector":
            raise ValueError(f"interleave must be selector or nhwc, got {interleave!r}")
        self.conv = nn.Conv2d(cin, 4 * out, 2, padding=1).to(weight.device)
        self.conv.load_state_dict({"weight": kernels, "bias": biases})
        if interleave == "selector":
            self.register_buffer("select", phase_selector(out).to(weight.device))
        self.channels, self.interleave = out, interleave

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phases = self.conv(x)
        if self.interleave == "selector":
            return F.conv_transpose2d(phases, self.select, stride=2, padding=1, groups=self.channels)
        n, _, h, w = x.shape
        c = self.channels
        p = phases.permute(0, 2, 3, 1)
        y = torch.cat([p[:, a:a + h, b:b + w, k * c:(k + 1) * c] for k, (a, b) in enumerate(PHASES)], -1)
        y = y.reshape(n, h, w, 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, c)
        return y.permute(0, 3, 1, 2)


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
        """The same function as nearest upsampling + a plain 3x3 conv (the torch sampling backend's form: PyTorch
        runs it well). Not for int8 graphs of the fused form: onnxruntime runs ConvTranspose in float even inside
        QDQ graphs (the fused form made the int8 sampler ~1.6x slower)."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, padding=1).to(self.weight.device)
        conv.load_state_dict({"weight": self.weight.detach(), "bias": self.bias.detach()})
        return nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), conv)

    def phased(self, *, interleave: str = "selector") -> PhaseUpsampleConv:
        """The same function in a 4-tap phase form, for exported graphs."""
        return PhaseUpsampleConv(self.weight.detach(), self.bias.detach(), interleave=interleave)


class ConvPool(nn.Conv2d):
    """avg_pool2d(conv3x3(x), 2) as one strided conv; a plain conv3x3 on maps below 2 pixels, where
    pooling stops (the discriminator's tiny configurations). Odd sides are floored like avg_pool2d."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 2:
            return super().forward(x)
        return F.conv2d(x, pool_kernel(self.weight), self.bias, stride=2, padding=1)
