"""Sampling backends on the torch side, registered for the runtime under the entry-point group
`oneshot_gan.backends` (pyproject.toml) and loaded by `runtime.sampler.load_backend` only when asked for:
- tensorrt: native TensorRT engines built from the entry's ONNX and cached per GPU (export.tensorrt);
- torch: the entry's PyTorch weights in eager mode (`runtime bench` compares onnxruntime with it).
Both follow the runtime's latent scheme, so sample i is the same sample as onnxruntime's up to rounding."""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load_file

from runtime.latents import SCHEME
from runtime.sampler import MICRO_BATCH, BaseSampler, fixed_runs
from trainer.config import ModelConfig
from trainer.generator import Generator
from zoo.entry import Entry
from zoo.errors import UserError
from zoo.files import sha256_file

from .graph import SamplerGraph, fold_spectral_norm
from .tensorrt import EngineRunner, cached_engine, default_profile

__all__ = ["EngineSampler", "TorchSampler"]


class EngineSampler(BaseSampler):
    """Needs torch with CUDA and TensorRT (`pip install 'oneshot-gan[tensorrt]'`); the engine's profile covers
    batches 1..max_batch at the grid asked for."""

    backend, device = "tensorrt", "cuda"

    def __init__(self, entry: Entry, precision: str = "fp32", grid: tuple[int, int] | None = None,
                 max_batch: int = 64):
        super().__init__(entry, precision)
        self.max_batch = max_batch
        self.grid = self.grid_for(grid)
        profile = default_profile(entry.trained_grid, max_batch=max_batch, grid=self.grid)
        self.runner = EngineRunner(cached_engine(entry.root, profile, precision))

    def run(self, indices, seed, grid):
        if tuple(grid) != self.grid:
            raise UserError(f"this TensorRT engine was built for grid {self.grid[0]}x{self.grid[1]}")
        z = self.latents(indices, seed, grid)
        images, masks = [], []
        for part in fixed_runs(z, min(MICRO_BATCH["tensorrt"], self.max_batch)):
            out = self.runner(torch.from_numpy(part).cuda())
            images.append(out["image"].cpu().numpy())
            if "mask" in out:
                masks.append(out["mask"].cpu().numpy())
        return np.concatenate(images)[:len(z)], (np.concatenate(masks)[:len(z)] if masks else None)

    def describe(self) -> dict:
        return {"latent_scheme": SCHEME, "precision": self.precision, "device": "cuda", "providers": ["TensorRT"]}


class TorchSampler(BaseSampler):
    """The entry's model.safetensors through the exported graph (spectral norm folded), eager, inference mode,
    channels_last, on the CPU."""

    backend, device = "torch", "cpu"

    def __init__(self, entry: Entry, precision: str = "fp32"):
        if precision != "fp32":
            raise UserError(f"the torch backend runs the fp32 weights only, not {precision}")
        super().__init__(entry, precision)
        weights = entry.root / "model.safetensors"
        if not weights.is_file():
            raise UserError(f"{entry.root}: the torch backend needs model.safetensors (`zoo pull --weights`)")
        self.model_sha256 = sha256_file(weights)   # what runs here
        G = Generator(ModelConfig.from_dict(dict(entry.config.model)))
        G.load_state_dict(load_file(str(weights)))
        self.graph = SamplerGraph(fold_spectral_norm(G)).eval().to(memory_format=torch.channels_last)

    def run(self, indices, seed, grid):
        z = torch.from_numpy(self.latents(indices, seed, grid))
        with torch.inference_mode():
            out = self.graph(z)
        return out[0].numpy(), (out[1].numpy() if len(out) > 1 else None)

    def describe(self) -> dict:
        return {"latent_scheme": SCHEME, "precision": "fp32", "device": "cpu", "providers": ["PyTorch eager"]}
