"""The collapse guard's signals: a fixed batch of latents through the raw generator, checked every `check_every`
iterations (100), plus the discriminator's fake loss over the iterations since the last check.

Measured on the raw G (not the EMA, which lags collapses by its horizon) in eval mode, so spectral norm does
not run its power iteration and the probe changes nothing in the training state: a run with checks gives the
same weights as one without. Signals:
- diversity: per-pixel std over the probe samples / std of the training frames (pixel diversity, 0 = all
  samples alike);
- saturated: share of image values at the ends of tanh (|x| > 0.98) minus the training frames' share of
  values at 0 or 255 (flat saturated colours push it towards 1);
- classes: per class, the share of pixels and the share of probe samples that contain it, against the
  training masks' shares;
- d_fake: the discriminator's mean loss on fakes since the last check (near 0: D rejects every fake).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PROBE_SAMPLES = 8
SATURATION = 0.98


@dataclass(frozen=True)
class Limits:
    """When a check reports a problem; `patience` consecutive problem checks make a collapse."""

    min_diversity: float = 0.05
    max_saturation: float = 0.5
    class_share: float = 0.01  # classes covering at least this share of the training masks must appear...
    class_presence: float = 0.25  # ...in at least this share of the probe samples
    min_d_fake: float = 0.02
    patience: int = 3


class Probe:
    def __init__(self, images_u8: np.ndarray, masks: np.ndarray | None, num_classes: int, noise_dim: int,
                 seed: int, limits: Limits = Limits()):
        gen = torch.Generator().manual_seed(seed + 2)  # +1 is the preview's
        self.z = torch.randn(PROBE_SAMPLES, noise_dim, generator=gen)
        self.real_std = float(images_u8.astype(np.float64).std()) or 1.0
        self.real_saturated = float(((images_u8 <= 2) | (images_u8 >= 253)).mean())
        self.num_classes = num_classes
        self.train_share = (np.bincount(masks.ravel(), minlength=num_classes)[:num_classes] / masks.size
                            if masks is not None and num_classes else None)
        self.limits = limits

    @torch.no_grad()
    def measure(self, G: torch.nn.Module, d_fake: float) -> dict:
        was_training = G.training
        G.eval()
        try:
            out = G(self.z.to(next(G.parameters()).device))
        finally:
            G.train(was_training)
        img = out.images[-1].float()
        u8 = ((img + 1) * 127.5).clamp(0, 255)
        signals = {"diversity": round(float(u8.std(0).mean()) / self.real_std, 4),
                   "saturated": round(float((img.abs() > SATURATION).float().mean()) - self.real_saturated, 4),
                   "d_fake": round(d_fake, 4)}
        if out.mask_logits is not None:
            ids = out.mask_logits.float().argmax(1)
            onehot = torch.nn.functional.one_hot(ids, self.num_classes).float()  # (N, H, W, M)
            signals["class_share"] = [round(float(v), 4) for v in onehot.mean((0, 1, 2))]
            signals["class_presence"] = [round(float(v), 3) for v in (onehot.amax((1, 2)).mean(0))]
        return signals

    def problems(self, s: dict, masks_settled: bool) -> list[str]:
        """What is wrong in one check's signals (empty = healthy). Class rules apply once masks are hard
        (after the Bernoulli warm-up), when a missing class can no longer come back by sampling."""
        lim, out = self.limits, []
        if s["diversity"] < lim.min_diversity:
            out.append("identical samples")
        if s["saturated"] > lim.max_saturation:
            out.append("saturated colours")
        if s["d_fake"] < lim.min_d_fake:
            out.append("D rejects every fake")
        if masks_settled and self.train_share is not None and "class_presence" in s:
            missing = [c for c, share in enumerate(self.train_share)
                       if share >= lim.class_share and s["class_presence"][c] < lim.class_presence]
            if missing:
                out.append("missing class " + ",".join(str(c) for c in missing))
        return out


@dataclass
class GuardState:
    """What the guard remembers between checks; saved in every checkpoint so a resumed run decides alike."""

    streak: int = 0  # consecutive checks with problems
    onset: int = -1  # iteration of the first check of the streak
    d_fake_sum: float = 0.0  # the D fake loss since the last check
    d_fake_count: int = 0
    rollbacks: int = 0
    last: dict | None = None  # the latest check: {"iter", "problems", signals...}

    @property
    def healthy(self) -> bool:
        return self.last is None or not self.last["problems"]

    def observe(self, d_fake: float) -> None:
        self.d_fake_sum += d_fake
        self.d_fake_count += 1

    def check(self, probe: Probe, G: torch.nn.Module, iteration: int, masks_settled: bool) -> dict:
        d_fake = self.d_fake_sum / max(1, self.d_fake_count)
        self.d_fake_sum, self.d_fake_count = 0.0, 0
        signals = probe.measure(G, d_fake)
        problems = probe.problems(signals, masks_settled)
        if problems:
            self.onset = iteration if self.streak == 0 else self.onset
            self.streak += 1
        else:
            self.streak, self.onset = 0, -1
        self.last = {"iter": iteration, **signals, "problems": problems}
        return self.last

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "GuardState":
        return cls(**d)
