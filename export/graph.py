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


# How exported graphs upsample (trainer/resampling.py has the forms). Measured with onnxruntime 1.2x on this
# project's CPUs, 192x320 reference widths, 3 classes, batch 8, trainings paused, 7 interleaved runs (docs/performance.md):
# - "phases" (4 taps per output pixel): fp32 30.2 samples/s against 25.1 for "resize"; the float graphs use it;
# - "resize" (nearest resize + 3x3 conv, 9 taps): int8 49.2 against 48.0 for phases, whose selector stays float
#   in QDQ graphs; int8 variants are quantized from it. The torch backend keeps it too (PyTorch runs it well).
UPSAMPLING = ("phases", "resize")


def fold_spectral_norm(G: Generator, *, upsampling: str = "resize") -> Generator:
    """A copy of G in eval mode with every spectral norm folded into plain weights (sigma from the stored
    u and v, no further power iteration: the eval-mode function), and the upsampling convs in the given form."""
    if upsampling not in UPSAMPLING:
        raise ValueError(f"upsampling must be one of {UPSAMPLING}, got {upsampling!r}")
    G = copy.deepcopy(G).eval()
    for module in G.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, SpectralNorm):
                torch.nn.utils.remove_spectral_norm(module)
    for block in G.body:
        if isinstance(block.conv1, UpsampleConv):
            block.conv1 = block.conv1.phased() if upsampling == "phases" else block.conv1.unfused()
    return G.requires_grad_(False)


class SamplerGraph(nn.Module):
    """z (B, noise_dim, gh, gw) float32 -> image (B, H, W, 3) uint8, mask (B, H, W) uint8 [, probs (B, M, H, W)]."""

    def __init__(self, G: Generator, probabilities: bool = False, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.G = G.to(dtype)
        self.dtype = dtype
        self.probabilities = probabilities and G.cfg.has_masks

    def forward(self, z: torch.Tensor):
        """dtype: weights and arithmetic inside (fp16/bf16 for GPUs); the latent comes in as float32 and the
        post-processing runs in float32."""
        out = self.G.synthesize(self.G.grid_features(z.to(self.dtype)), n_rgb=1)
        image, mask = to_uint8(out.images[-1], out.mask_logits)
        if mask is None:
            return (image,)
        if self.probabilities:
            return image, mask, F.softmax(out.mask_logits.float(), dim=1)
        return image, mask


def output_names(cfg: ModelConfig, probabilities: bool = False) -> list[str]:
    if not cfg.has_masks:
        return ["image"]
    return ["image", "mask", "probs"] if probabilities else ["image", "mask"]
