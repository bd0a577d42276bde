"""The inference graph that gets exported: latent grid in, uint8 image and class-id mask out."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.spectral_norm import SpectralNorm

from trainer.config import ModelConfig
from trainer.generator import Generator, to_uint8
from trainer.resampling import UpsampleConv
from zoo.errors import UserError

IMAGE_LAYOUT = "NHWC"  # rows of RGB triplets: what PNG encoders and numpy image code take without a copy


class ExportError(UserError):
    """Something about a model or an export request that makes the export impossible."""


# How exported graphs upsample (trainer/resampling.py has the forms). Measured with bench/onnx_ab.py the way the CPU
# sampler runs them, 192x320 reference widths, 3 classes, 2 cores, samples/s (docs/performance.md):
# - "phases" (4 taps per output pixel, the phases put in place by a 0/1 grouped ConvTranspose): fp32 31.5 against
#   22.9 for the resize form with two heads (24.4 with one); the fp32 graphs use it;
# - "phases-nhwc" (the same taps, the phases put in place by Slice/Concat/Transpose in channels-last layout): int8
#   69.2 against 46.4 for the resize form (onnxruntime keeps ConvTranspose in float inside QDQ graphs, but moves
#   these ops in uint8), fp32 27.1; int8 variants are quantized from it;
# - "resize" (nearest resize + 3x3 conv, 9 taps): the torch backend's (PyTorch runs it well).
UPSAMPLING = ("phases", "phases-nhwc", "resize")


def remove_spectral_norms(G: Generator) -> Generator:
    """G itself, every spectral norm replaced by the plain weight it computes now."""
    for module in G.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, SpectralNorm):
                torch.nn.utils.remove_spectral_norm(module)
    return G


def fold_spectral_norm(G: Generator, *, upsampling: str = "resize") -> Generator:
    """A copy of G in eval mode with every spectral norm folded into plain weights (sigma from the stored
    u and v, no further power iteration: the eval-mode function), and the upsampling convs in the given form."""
    if upsampling not in UPSAMPLING:
        raise ValueError(f"upsampling must be one of {UPSAMPLING}, got {upsampling!r}")
    G = remove_spectral_norms(copy.deepcopy(G).eval())
    for block in G.body:
        if isinstance(block.conv1, UpsampleConv):
            block.conv1 = (block.conv1.unfused() if upsampling == "resize"
                           else block.conv1.phased(interleave="nhwc" if upsampling == "phases-nhwc" else "selector"))
    return G.requires_grad_(False)


def merged_heads(G: Generator) -> nn.Conv2d:
    """The last RGB conv and the mask conv as one conv with 3 + M outputs (image channels first): both read the
    last block's map, and onnxruntime pads every conv's outputs to its 8- or 16-channel block, so two 3-channel
    heads cost as much as two 16-channel convs at full resolution (12 % of the fp32 graph's time and 18 % of the
    int8 graph's, which keeps the heads in float, at 192x320 reference widths, 3 classes)."""
    rgb, mask = G.rgb_converters[-1], G.mask_converter
    conv = nn.Conv2d(rgb.in_channels, 3 + mask.out_channels, 3, padding=1).to(rgb.weight.device, rgb.weight.dtype)
    conv.load_state_dict({"weight": torch.cat([rgb.weight, mask.weight]), "bias": torch.cat([rgb.bias, mask.bias])})
    return conv.requires_grad_(False)


class SamplerGraph(nn.Module):
    """z (B, noise_dim, gh, gw) float32 -> image (B, H, W, 3) uint8, mask (B, H, W) uint8 [, probs (B, M, H, W)].
    G: a generator from fold_spectral_norm (plain weights)."""

    def __init__(self, G: Generator, probabilities: bool = False, dtype: torch.dtype = torch.float32):
        super().__init__()
        if any(isinstance(h, SpectralNorm) for m in G.modules() for h in m._forward_pre_hooks.values()):
            raise ValueError("SamplerGraph needs plain weights: pass fold_spectral_norm(G)")
        self.G = G.to(dtype)
        self.dtype = dtype
        self.probabilities = probabilities and G.cfg.has_masks
        self.heads = merged_heads(self.G) if G.cfg.has_masks else None

    def forward(self, z: torch.Tensor):
        """dtype: weights and arithmetic inside (fp16/bf16 for GPUs); the latent comes in as float32 and the
        post-processing runs in float32."""
        x = self.G.grid_features(z.to(self.dtype))
        for block in self.G.body:
            x = block(x)
        if self.heads is None:
            return (to_uint8(torch.tanh(self.G.rgb_converters[-1](x)), None)[0],)
        out = self.heads(x)
        logits = out[:, 3:]
        image, mask = to_uint8(torch.tanh(out[:, :3]), logits)
        if self.probabilities:
            return image, mask, F.softmax(logits.float(), dim=1)
        return image, mask


def output_names(cfg: ModelConfig, probabilities: bool = False) -> list[str]:
    if not cfg.has_masks:
        return ["image"]
    return ["image", "mask", "probs"] if probabilities else ["image", "mask"]
