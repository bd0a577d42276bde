"""Architecture configuration derived from the training image size (docs/model.md §0).

The reference picks the number of generator blocks g as the first g >= 5 for which both sides divided by
2^(g-1), rounded, lie in [3, 7]. Sizes too small for 5 blocks are not supported by the reference; we extend the table
downwards (g = 4, 3) only when no g >= 5 fits, so every reference configuration is reproduced unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

from zoo.errors import UserError

__all__ = ["ModelConfig", "TrainConfig", "ConfigError", "RECIPES", "SINGAN_RECIPE", "LEGACY", "auto_config", "capped_size", "choose_blocks"]

NOISE_DIM = 64
BASE_CHANNELS = 32
G_CHANNEL_MULT = [8, 8, 8, 8, 8, 8, 8, 4, 2, 1]
D_CHANNEL_MULT = [1, 2, 4, 8, 8, 8, 8, 8, 8]
# generator blocks -> (discriminator blocks, of which low-level). 3 and 4 are our extension for tiny sizes.
D_BLOCKS = {3: (4, 1), 4: (5, 2), 5: (6, 2), 6: (7, 3), 7: (7, 3), 8: (7, 4), 9: (8, 4)}
REFERENCE_MIN_BLOCKS = 5
MIN_BLOCKS = 3
MAX_BLOCKS = 9
GRID_MIN, GRID_MAX = 3, 7

# `trainer fit` defaults per device: index True = CPU (the short recipe of bench/robustness.py: half the reference
# widths at 64x112 for a 16:9 frame, ~15 minutes on one core; docs/robustness/experiments.md section 10), False =
# GPU (the reference's: 320 px, reference widths, 100,000 iterations).
RECIPES = {
    True: {"max_size": 112, "width": 0.5, "iters": 4500, "lr": 1e-4, "save_every": 500, "preview_every": 500},
    False: {"max_size": 320, "width": 1.0, "iters": 100_000, "lr": 2e-4, "save_every": 5000, "preview_every": 5000},
}
# --arch singan: the paper's settings on every device (iterations per scale); no CPU recipe has been measured
SINGAN_RECIPE = {"max_size": 250, "width": 1.0, "iters": 2000, "lr": 5e-4, "save_every": 500, "preview_every": 500}
REFERENCE_ITERS, REFERENCE_WARMUP, REFERENCE_EMA = 100_000, 15_000, 0.9999
MASK_GRADS = ("protect", "softmax")  # trainer.train.straight_through's estimators
# settings that runs from before issue 11 did not record, with the values they were trained with
LEGACY = {"lambda_freq": 0.0, "mask_grad": "softmax", "presence_floor": 0.0, "ceiling": 0.0, "floor": 0.0,
          "mask_resize": "nearest"}


@dataclass
class TrainConfig:
    iters: int = 100_000
    batch_size: int = 5
    aug_prob: float = 0.7
    fa_prob: float = 0.4
    lambda_dr: float = 0.15
    ema_decay: float | None = None  # None: 0.9999, its horizon scaled down to iters < 100,000
    bernoulli_warmup: int | None = None  # None: 15,000 scaled to iters
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    save_every: int = 5000
    preview_every: int = 5000
    keep: int = 3
    log_every: int = 10
    check_every: int = 100  # collapse-guard checks (trainer/health.py)
    guard: bool = True  # act on a collapse: roll back (max_rollbacks times), then stop
    max_rollbacks: int = 2
    # Issue 11 (docs/robustness/experiments.md), none of them in the reference:
    # class-frequency prior: TV of the fake batch's hard class shares vs the training's; at 1.0 it drew small classes
    # along region edges (docs/robustness/experiments.md sections 15-16)
    lambda_freq: float = 0.25
    # D's gradient into the mask logits: "protect" (the softmax's, but a rare class a sample under-draws is not
    # drained, experiments 17-19) or "softmax" (the reference's)
    mask_grad: str = "protect"
    presence_floor: float = 0.0  # each fake sample draws >= this x each rare class's smallest share in a frame
    ceiling: float = 4.0  # activation bounds (generator.activation_bounds): |block output| above this is penalised
    floor: float = 0.3  # ...and a latent-dependent share of it below this; 0 and 0 turn them off
    mask_resize: str = "area"  # the MCA mask at the feature resolution: "area" (class fractions) or "nearest"

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A run's config.json; runs written before a setting existed keep the behaviour they were trained with."""
        cfg = cls(**{**LEGACY, **d})
        if cfg.mask_grad not in MASK_GRADS:  # "top2" and "flip" were experiments, removed again (experiments.md 17-18)
            raise ConfigError(f"mask_grad {cfg.mask_grad!r} is no longer supported; use one of {', '.join(MASK_GRADS)}")
        return cfg

    def resolved(self) -> "TrainConfig":
        warm = self.bernoulli_warmup
        if warm is None:
            warm = round(REFERENCE_WARMUP * min(1.0, self.iters / REFERENCE_ITERS))
        ema = self.ema_decay
        if ema is None:  # a 10,000-iteration EMA horizon would leave a short run's EMA at its initial weights
            ema = max(0.0, 1.0 - (1.0 - REFERENCE_EMA) * max(1.0, REFERENCE_ITERS / self.iters))
        return TrainConfig(**{**asdict(self), "bernoulli_warmup": warm, "ema_decay": ema})


class ConfigError(UserError):
    """A size or option that cannot be turned into a model."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild G and D; serialised into config.json."""

    arch = "oneshot"   # not a field: trainer.singan.SinGANConfig says "singan"

    height: int  # training resolution = grid * 2^(g_blocks-1)
    width: int
    grid_h: int
    grid_w: int
    g_blocks: int
    d_blocks: int
    d_lowlevel: int
    num_classes: int = 0  # mask channels including background; 0 = no mask branch
    width_mult: float = 1.0
    noise_dim: int = NOISE_DIM

    @property
    def has_masks(self) -> bool:
        return self.num_classes > 0

    def g_channels(self) -> list[int]:
        """Channels of the first layer's output followed by every block's output (g+1 entries)."""
        mult = G_CHANNEL_MULT[-(self.g_blocks + 1):]
        return [_scaled(m * BASE_CHANNELS, self.width_mult) for m in mult]

    def d_channels(self) -> list[int]:
        """from_rgb output, then every D block's output (d_blocks+1 entries); content entries doubled with masks."""
        ch = [_scaled(m * BASE_CHANNELS, self.width_mult) for m in D_CHANNEL_MULT[: self.d_blocks + 1]]
        if self.has_masks:
            for i in range(self.d_lowlevel + 1, self.d_blocks):
                ch[i] *= 2
        return ch

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)


def _scaled(channels: int, mult: float) -> int:
    # Keep at least 8 channels so that the D's injection convs (C/8) never vanish.
    return max(8, int(round(channels * mult)))


def capped_size(height: int, width: int, max_size: int) -> tuple[int, int]:
    """Cap the longer side at max_size, keep the aspect, truncate to int (the reference's rule)."""
    scale = min(1.0, max_size / max(height, width))
    return int(height * scale), int(width * scale)


def choose_blocks(height: int, width: int) -> int:
    """Number of generator blocks g for an (already capped) size, or ConfigError."""
    order = list(range(REFERENCE_MIN_BLOCKS, MAX_BLOCKS + 1)) + list(range(REFERENCE_MIN_BLOCKS - 1, MIN_BLOCKS - 1, -1))
    for g in order:
        f = 2 ** (g - 1)
        if GRID_MIN <= round(height / f) <= GRID_MAX and GRID_MIN <= round(width / f) <= GRID_MAX:
            return g
    smallest = next(n for n in range(1, 64) if round(n / 2 ** (MIN_BLOCKS - 1)) >= GRID_MIN)
    if min(height, width) < smallest:
        raise ConfigError(
            f"{height}x{width} is too small: the smallest generator ({MIN_BLOCKS} blocks) needs both sides >= {smallest} px"
        )
    largest = (GRID_MAX + 0.5) * 2 ** (MAX_BLOCKS - 1)
    if max(height, width) >= largest:
        raise ConfigError(f"{height}x{width} is too large: the deepest generator ({MAX_BLOCKS} blocks) takes sides "
                          f"below {largest:.0f} px; cap it with --max-size")
    if max(height, width) / min(height, width) > GRID_MAX / GRID_MIN:
        raise ConfigError(f"{height}x{width}: aspect ratio above {GRID_MAX / GRID_MIN:.2f} is not supported "
                          f"(the latent grid must be {GRID_MIN}..{GRID_MAX} cells on both sides)")
    near = next((m for m in range(max(height, width) - 1, smallest - 1, -1) if _fits(*capped_size(height, width, m))),
                None)
    hint = f"; --max-size {near} works" if near else ""
    raise ConfigError(f"{height}x{width}: at this size no generator depth gives a latent grid of {GRID_MIN}..{GRID_MAX} "
                      f"cells on both sides{hint}")


def _fits(height: int, width: int) -> bool:
    try:
        choose_blocks(height, width)
        return True
    except ConfigError:
        return False


def auto_config(height: int, width: int, max_size: int | None = None, num_classes: int = 0,
                width_mult: float = 1.0) -> ModelConfig:
    """The reference's automatic configuration for an image of height x width pixels."""
    if max_size is not None:
        height, width = capped_size(height, width, max_size)
    if width_mult <= 0:
        raise ConfigError(f"--width must be positive, got {width_mult}")
    if num_classes == 1 or num_classes > 255:
        raise ConfigError(f"a mask needs 2..255 classes including background, got {num_classes}")
    g = choose_blocks(height, width)
    f = 2 ** (g - 1)
    gh, gw = round(height / f), round(width / f)
    d_blocks, d_ll = D_BLOCKS[g]
    return ModelConfig(height=gh * f, width=gw * f, grid_h=gh, grid_w=gw, g_blocks=g, d_blocks=d_blocks,
                       d_lowlevel=d_ll, num_classes=num_classes, width_mult=width_mult)


