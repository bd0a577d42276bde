"""Sampling backends on the torch side, registered for the runtime under the entry-point group
`oneshot_gan.backends` (pyproject.toml) and loaded by `runtime.sampler.load_backend` only when asked for:
- tensorrt: native TensorRT engines built from the entry's ONNX and cached per GPU (export.tensorrt);
- torch: the entry's PyTorch weights (model.safetensors) on the CPU or a CUDA GPU, fp32 / bf16 / fp16.
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

__all__ = ["EngineSampler", "TorchSampler", "TORCH_DTYPES"]

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _one_shot(entry: Entry, backend: str) -> None:
    if entry.arch != "oneshot":
        raise UserError(f"{entry.root}: a {entry.arch} entry; --backend {backend} samples one-shot GAN entries only "
                        "(use onnxruntime)")


class EngineSampler(BaseSampler):
    """Needs torch with CUDA and TensorRT (`pip install 'oneshot-gan[tensorrt]'`); the engine's profile covers
    batches 1..max_batch at the grid asked for."""

    backend, device = "tensorrt", "cuda"

    def __init__(self, entry: Entry, precision: str = "fp32", grid: tuple[int, int] | None = None,
                 max_batch: int = 64):
        _one_shot(entry, self.backend)
        super().__init__(entry, precision)
        self.max_batch = max_batch
        self.grid = self.grid_for(grid)
        profile = default_profile(entry.trained_grid, max_batch=max_batch, grid=self.grid)
        self.runner = EngineRunner(cached_engine(entry.root, profile, precision))

    def run(self, indices, seed, grid):
        if tuple(grid) != self.grid:
            raise UserError(f"this TensorRT engine was built for grid {self.grid[0]}x{self.grid[1]}")
        z, = self.latents(indices, seed, grid)
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
    """The entry's model.safetensors through the exported graph (spectral norm folded), inference mode,
    channels-last, in runs of exactly run_size latents (the last one padded), so a sample does not
    depend on the batch it came in. fp32 or bf16 on the CPU; fp32, bf16 or fp16 on CUDA, where each grid's run
    is captured once as a CUDA graph and replayed, the uint8 conversion and the argmax run on the GPU, and
    inputs and outputs move through pinned host memory with asynchronous copies, one synchronisation per call."""

    backend = "torch"

    def __init__(self, entry: Entry, precision: str = "fp32", device: str = "auto", *, cuda_graphs: bool = True,
                 run_size: int | None = None):
        """run_size: latents per run [MICRO_BATCH of the device]; samples are reproducible for a fixed one."""
        if precision not in TORCH_DTYPES:
            raise UserError(f"the torch backend runs {', '.join(TORCH_DTYPES)}, not {precision}")
        device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        if device not in ("cpu", "cuda"):
            raise UserError(f"the torch backend runs on cpu or cuda, not {device}")
        if device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: this PyTorch sees no CUDA GPU")
        if device == "cpu" and precision == "fp16":
            raise UserError("fp16 on the CPU: PyTorch has no fast kernels for it; use bf16 or fp32")
        _one_shot(entry, self.backend)
        weights = entry.root / "model.safetensors"
        if not weights.is_file():
            raise UserError(f"{entry.root}: the torch backend needs model.safetensors (`zoo pull --weights`)")
        super().__init__(entry, precision, model_sha256=sha256_file(weights))   # the file that runs here
        self.device, self.dtype = device, TORCH_DTYPES[precision]
        G = Generator(ModelConfig.from_dict(dict(entry.config.model)))
        G.load_state_dict(load_file(str(weights)))
        self.graph = SamplerGraph(fold_spectral_norm(G), dtype=self.dtype).eval().to(
            device, memory_format=torch.channels_last)
        self.cuda_graphs = cuda_graphs and device == "cuda"
        self.run_size = run_size or MICRO_BATCH[device]
        self._captured: dict[tuple[int, int], tuple] = {}   # grid -> (CUDAGraph, static input, static outputs)

    def run(self, indices, seed, grid):
        runs = fixed_runs(self.latents(indices, seed, grid)[0], self.run_size)
        with torch.inference_mode():
            if self.device == "cpu":
                outs = [self.graph(torch.from_numpy(z)) for z in runs]
                host = [torch.cat([o[k] for o in outs]) for k in range(len(outs[0]))]
            else:
                host = self._run_cuda(runs, tuple(grid))
        n = len(indices)
        return host[0][:n].numpy(), (host[1][:n].numpy() if len(host) > 1 else None)

    def _run_cuda(self, runs: list[np.ndarray], grid: tuple[int, int]) -> list[torch.Tensor]:
        """Every run queued on the GPU back to back (copy in, graph, copy out); one synchronisation at the end."""
        size = len(runs[0])
        z_host = torch.from_numpy(np.concatenate(runs)).pin_memory()
        host = None
        for i in range(len(runs)):
            outs = self._step(z_host[i * size:(i + 1) * size], grid)
            if host is None:
                host = [torch.empty((len(runs) * size, *o.shape[1:]), dtype=o.dtype, pin_memory=True) for o in outs]
            for h, o in zip(host, outs):
                h[i * size:(i + 1) * size].copy_(o, non_blocking=True)
        torch.cuda.current_stream().synchronize()
        return host

    def _step(self, z: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """One run's outputs on the GPU (queued, not waited for); z: a pinned host slice that outlives the copy."""
        if not self.cuda_graphs:
            return self.graph(z.to("cuda", non_blocking=True))
        if grid not in self._captured:
            static = torch.zeros(z.shape, device="cuda")
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):   # warm-up off the capture: cuDNN picks its algorithms here
                    self.graph(static)
            torch.cuda.current_stream().wait_stream(side)
            captured = torch.cuda.CUDAGraph()
            with torch.cuda.graph(captured):
                outs = self.graph(static)
            self._captured[grid] = (captured, static, outs)
        captured, static, outs = self._captured[grid]
        static.copy_(z, non_blocking=True)
        captured.replay()
        return outs

    def describe(self) -> dict:
        return {"latent_scheme": SCHEME, "precision": self.precision, "device": self.device,
                "providers": ["PyTorch" + (" + CUDA graphs" if self.cuda_graphs else " eager")]}
