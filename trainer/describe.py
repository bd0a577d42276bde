"""`trainer describe`: the architecture that a size would get, with parameter and MAC counts.

MACs are counted with forward hooks on one sample. Our blocks compute the same functions with fewer MACs:
the 1x1 shortcut at the lower of the two resolutions (it commutes with nearest upsampling and average
pooling) and the 3x3 convs next to a resampling fused with it (trainer/resampling.py). `g_macs`/`d_macs`
report the reference's forward (every RGB head), so they compare with docs/model.md; `*_macs_training`
what our training forward computes, `g_macs_sampling` our exported fp32 sampler (final RGB and mask heads only,
upsampling in the phase form export/graph.py writes: 4 taps per output pixel plus a one-pixel border).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import SINGAN_RECIPE, ModelConfig, auto_config
from .discriminator import DBlock, Discriminator
from .generator import GBlock, Generator
from .resampling import ConvPool, UpsampleConv


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _conv_macs(m: nn.Module, inp: torch.Tensor, out: torch.Tensor, sampling: bool) -> tuple[int, int]:
    """(ours, the reference's) MACs of one conv call."""
    k = m.kernel_size[0] * m.kernel_size[1]
    cin = m.in_channels // m.groups
    if isinstance(m, UpsampleConv):  # reference: 3x3 on the upsampled map; ours: 4 taps per output pixel
        if sampling:  # the phase form: one 2x2 conv with 4x the channels over the input grown by one pixel
            b, _, h, w = inp.shape
            return b * 4 * m.out_channels * (h + 1) * (w + 1) * cin * 4, out.numel() * cin * k
        return out.numel() * cin * 4, out.numel() * cin * k
    if isinstance(m, ConvPool) and out.shape[-1] < inp.shape[-1]:  # reference: 3x3 at full res, then pool
        return out.numel() * cin * 16, inp.shape[0] * m.out_channels * inp.shape[2] * inp.shape[3] * cin * k
    return out.numel() * cin * k, out.numel() * cin * k


def _count_macs(model: nn.Module, run, sampling: bool = False) -> tuple[int, int]:
    """(MACs of our forward, MACs of the reference's forward) per sample (batch 1). sampling: the upsampling
    convs as exported fp32 graphs run them (trainer.resampling.PhaseUpsampleConv)."""
    ours, ref = [0], [0]
    hooks = []

    def conv_hook(m, inp, out):
        o, r = _conv_macs(m, inp[0], out, sampling)
        ours[0] += o
        ref[0] += r

    def block_hook(m, inp, out):  # the reference runs the 1x1 shortcut at the higher resolution
        if m.conv_sc is None:
            return
        area_in, area_out = inp[0].shape[2] * inp[0].shape[3], out.shape[2] * out.shape[3]
        ref[0] += inp[0].shape[0] * m.conv_sc.in_channels * m.conv_sc.out_channels * abs(area_in - area_out)

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        if isinstance(m, (GBlock, DBlock)):
            hooks.append(m.register_forward_hook(block_hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    return ours[0], ref[0]


def describe(cfg: ModelConfig) -> dict:
    G, D = Generator(cfg).eval(), Discriminator(cfg).eval()
    z = torch.zeros(1, cfg.noise_dim)
    g_training, g_ref = _count_macs(G, lambda: G(z, n_rgb=cfg.g_blocks))
    g_sampling, _ = _count_macs(G, lambda: G(z, n_rgb=1), sampling=True)
    pyramid = [torch.zeros(1, 3, cfg.height >> i, cfg.width >> i) for i in range(cfg.d_lowlevel)]
    mask = torch.zeros(1, cfg.num_classes, cfg.height, cfg.width) if cfg.has_masks else None
    d_ours, d_ref = _count_macs(D, lambda: D(pyramid, mask))
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
        "g_macs_training": g_training,
        "g_macs_sampling": g_sampling,
        "d_macs": d_ref,
        "d_macs_training": d_ours,
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
        f"(ours: {info['g_macs_training'] / 1e9:.2f} in training, {info['g_macs_sampling'] / 1e9:.2f} sampling)",
        f"discriminator   {info['d_blocks']} blocks ({info['d_lowlevel']} low-level), "
        f"channels {' -> '.join(map(str, info['d_channels']))}",
        f"                {info['d_params']:,} parameters, {info['d_macs'] / 1e9:.2f} GMAC per sample "
        f"(ours: {info['d_macs_training'] / 1e9:.2f})",
    ]
    return "\n".join(lines)


def describe_singan(height: int, width: int, classes: int = 0, max_size: int | None = None) -> dict:
    """The SinGAN pyramid (trainer/singan.py) a size would get: per scale its size, kernels, generator and
    critic parameters and the generator's MACs per sample (all convs are 3x3 at the scale's size)."""
    from .singan import ScaleDiscriminator, ScaleGenerator, SinGANConfig

    cfg = SinGANConfig.for_image(height, width, max_size=max_size or SINGAN_RECIPE["max_size"], num_classes=classes)
    scales = []
    for (h, w), k in zip(cfg.sizes, cfg.kernels()):
        G, D = ScaleGenerator(cfg.channels, k), ScaleDiscriminator(cfg.channels, k)
        macs = sum(h * w * m.in_channels * m.out_channels * 9 for m in G.modules() if isinstance(m, nn.Conv2d))
        scales.append({"size": [h, w], "kernels": k, "g_params": count_params(G), "d_params": count_params(D),
                       "g_macs": macs})
    return {"arch": "singan", "requested_size": [height, width], "training_size": [cfg.height, cfg.width],
            "classes": classes, "channels": cfg.channels, "scales": scales,
            "g_params": sum(s["g_params"] for s in scales), "d_params": sum(s["d_params"] for s in scales),
            "g_macs": sum(s["g_macs"] for s in scales)}


def format_singan(info: dict) -> str:
    h, w = info["training_size"]
    layout = "RGB" if info["channels"] == 3 else f"RGB + {info['classes']} classes"
    lines = [f"training size   {h}x{w}, {len(info['scales'])} scales (SinGAN), {info['channels']} channels ({layout})",
             f"generators      {info['g_params']:,} parameters, {info['g_macs'] / 1e9:.2f} GMAC per sample",
             f"critics         {info['d_params']:,} parameters"]
    for n, s in enumerate(info["scales"]):
        lines.append(f"  scale {n}       {s['size'][0]}x{s['size'][1]}, {s['kernels']} kernels, "
                     f"{s['g_params']:,} + {s['d_params']:,} parameters")
    return "\n".join(lines)
