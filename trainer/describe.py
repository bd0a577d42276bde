"""`trainer describe`: the architecture that a size would get, with parameter and MAC counts.

MACs are counted with forward hooks on one sample. Our blocks run the 1x1 shortcut at the lower of the two
resolutions (it commutes with nearest upsampling and average pooling); `*_macs` reports the reference's
forward (shortcut at the higher resolution, every RGB head), so the numbers compare with architecture.md,
and `g_macs_sampling` what our exported sampler computes (final RGB head and mask head only).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig, auto_config
from .discriminator import DBlock, Discriminator
from .generator import GBlock, Generator


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _count_macs(model: nn.Module, run) -> tuple[int, int]:
    """(MACs of our forward, MACs of the reference's forward) per sample (batch 1)."""
    ours, sc_ours, sc_ref = [0], [0], [0]
    hooks = []

    def conv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1]
        if isinstance(m, nn.ConvTranspose2d):
            ours[0] += inp[0].shape[1] * out.shape[1] * k * inp[0].shape[2] * inp[0].shape[3]
        else:
            ours[0] += out.numel() * (m.in_channels // m.groups) * k

    def block_hook(m, inp, out):
        if m.conv_sc is None:
            return
        n = inp[0].shape[0]
        area_in, area_out = inp[0].shape[2] * inp[0].shape[3], out.shape[2] * out.shape[3]
        cin, cout = m.conv_sc.in_channels, m.conv_sc.out_channels
        sc_ours[0] += n * cin * cout * min(area_in, area_out)
        sc_ref[0] += n * cin * cout * max(area_in, area_out)

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            hooks.append(m.register_forward_hook(conv_hook))
        if isinstance(m, (GBlock, DBlock)):
            hooks.append(m.register_forward_hook(block_hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    return ours[0], ours[0] - sc_ours[0] + sc_ref[0]


def describe(cfg: ModelConfig) -> dict:
    G, D = Generator(cfg).eval(), Discriminator(cfg).eval()
    z = torch.zeros(1, cfg.noise_dim)
    _, g_ref = _count_macs(G, lambda: G(z, n_rgb=cfg.g_blocks))
    g_sampling, _ = _count_macs(G, lambda: G(z, n_rgb=1))
    pyramid = [torch.zeros(1, 3, cfg.height >> i, cfg.width >> i) for i in range(cfg.d_lowlevel)]
    mask = torch.zeros(1, cfg.num_classes, cfg.height, cfg.width) if cfg.has_masks else None
    _, d_ref = _count_macs(D, lambda: D(pyramid, mask))
    return {
        "training_size": [cfg.height, cfg.width],
        "latent_grid": [cfg.grid_h, cfg.grid_w],
        "noise_dim": cfg.noise_dim,
        "classes": cfg.num_classes,
        "width": cfg.width_mult,
        "g_blocks": cfg.g_blocks,
        "g_channels": cfg.g_channels(),
        "d_blocks": cfg.d_blocks,
        "d_lowlevel": cfg.d_lowlevel,
        "d_channels": cfg.d_channels(),
        "g_params": count_params(G),
        "d_params": count_params(D),
        "g_macs": g_ref,
        "g_macs_sampling": g_sampling,
        "d_macs": d_ref,
    }


def describe_size(height: int, width: int, classes: int = 0, width_mult: float = 1.0,
                  max_size: int | None = None) -> dict:
    cfg = auto_config(height, width, max_size=max_size, num_classes=classes, width_mult=width_mult)
    return {"requested_size": [height, width], **describe(cfg)}


def format_text(info: dict) -> str:
    h, w = info["training_size"]
    gh, gw = info["latent_grid"]
    lines = [
        f"training size   {h}x{w} (latent grid {gh}x{gw}, x{2 ** (info['g_blocks'] - 1)})",
        f"classes         {info['classes'] or 'no mask branch'}",
        f"generator       {info['g_blocks']} blocks, channels {' -> '.join(map(str, info['g_channels']))}",
        f"                {info['g_params']:,} parameters, {info['g_macs'] / 1e9:.2f} GMAC per sample "
        f"({info['g_macs_sampling'] / 1e9:.2f} GMAC in our sampler)",
        f"discriminator   {info['d_blocks']} blocks ({info['d_lowlevel']} low-level), "
        f"channels {' -> '.join(map(str, info['d_channels']))}",
        f"                {info['d_params']:,} parameters, {info['d_macs'] / 1e9:.2f} GMAC per sample",
    ]
    return "\n".join(lines)
