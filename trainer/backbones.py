"""SIFID and LPIPS, only from weight files the user gives (no package ships ImageNet backbones; a random backbone
gives numbers that mean nothing, so there is no fallback). Weights load with torch.load(weights_only=True) or
safetensors: never an arbitrary unpickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zoo.errors import UserError
from zoo.quality import frechet

INCEPTION_STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3")


def load_state(path: Path, what: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle refusals, truncated files: all one line for the user
        raise UserError(f"{path}: cannot read {what} weights ({str(e).splitlines()[0][:160]})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state dict of {what} weights")
    return state


class InceptionStem(torch.nn.Module):
    """InceptionV3 up to the first max-pool (64 channels at 1/4 resolution): SinGAN's SIFID features.
    Takes torchvision's inception_v3 weights or pytorch-fid's FID Inception weights (same stem names)."""

    def __init__(self, path: Path):
        super().__init__()
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=True, init_weights=False)
        state = load_state(path, "InceptionV3")
        stem = {k: v for k, v in state.items() if k.split(".")[0] in INCEPTION_STEM}
        self.layers = torch.nn.Sequential(*(getattr(net, n) for n in INCEPTION_STEM))
        own = {f"{i}.{k}": v for i, n in enumerate(INCEPTION_STEM) for k, v in getattr(net, n).state_dict().items()}
        renamed = {f"{INCEPTION_STEM.index(k.split('.')[0])}.{k.split('.', 1)[1]}": v for k, v in stem.items()}
        missing = sorted(set(own) - set(renamed))
        if missing:
            raise UserError(f"{path}: not InceptionV3 weights (missing {missing[0]} and {len(missing) - 1} more)")
        self.layers.load_state_dict({k: renamed[k] for k in own})
        self.eval()

    @torch.no_grad()
    def forward(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
        return F.max_pool2d(self.layers(x), 3, stride=2)


def _gaussian(feat: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    f = feat.flatten(1).T.double().numpy()  # positions x channels
    return f.mean(0), np.cov(f, rowvar=False)


def sifid(samples: np.ndarray, frames: np.ndarray, weights: Path) -> dict:
    """Per sample: SIFID against every training frame; the sample's SIFID is its best (min) over frames."""
    stem = InceptionStem(weights)
    real = [_gaussian(f) for f in stem(frames)]
    per = np.array([[frechet(*_gaussian(f), *r) for r in real] for s in np.array_split(samples, max(1, len(samples) // 16))
                    for f in stem(s)])
    best = per.min(1)
    return {"mean": float(best.mean()), "best": float(best.min()), "per_sample": best.round(5).tolist(),
            "mean_over_all_frames": float(per.mean())}


def lpips_model(weights: Path):
    """LPIPS v0.1 on AlexNet: the linear layers ship with the lpips package; the AlexNet ImageNet weights
    (torchvision's alexnet state dict, keys features.N.weight/bias) come from `weights`."""
    import warnings

    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    state = load_state(weights, "AlexNet")
    target = {}
    for k in model.net.state_dict():   # slice1.0.weight <- features.0.weight
        src = "features." + k.split(".", 1)[1]
        if src not in state:
            raise UserError(f"{weights}: not torchvision AlexNet weights (no {src})")
        target[k] = state[src]
    model.net.load_state_dict(target)
    return model.eval()


@torch.no_grad()
def lpips_metrics(samples: np.ndarray, nearest: np.ndarray, weights: Path, pairs: np.ndarray) -> dict:
    """nearest: each sample's closest training region (metrics.training_view), same shape as samples."""
    model = lpips_model(weights)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 127.5 - 1

    div = torch.cat([model(t(samples[c[:, 0]]), t(samples[c[:, 1]])).flatten()
                     for c in np.array_split(pairs, max(1, len(pairs) // 32))])
    dist = torch.cat([model(t(a), t(b)).flatten() for a, b in zip(np.array_split(samples, max(1, len(samples) // 32)),
                                                                   np.array_split(nearest, max(1, len(samples) // 32)))])
    return {"diversity": float(div.mean()), "dist_to_train": float(dist.mean()),
            "per_sample_dist": dist.numpy().round(5).tolist()}
